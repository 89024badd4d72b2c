//! Python's `random` module, as far as Utility Engineering's held-out split needs it: the
//! Mersenne Twister seeded with an int (`random.seed(42)`), `getrandbits` and `shuffle`. With
//! it `ethos eval utility` holds out exactly the pairs the reference code holds out.

pub struct PyRandom {
    mt: [u32; 624],
    index: usize,
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative int that fits in 32 bits.
    pub fn new(seed: u32) -> Self {
        let mut r = Self {
            mt: [0; 624],
            index: 624,
        };
        r.init_genrand(19_650_218);
        // init_by_array with the key [seed]
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624usize.max(key.len()) {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..624 {
            let prev = self.mt[i - 1] ^ (self.mt[i - 1] >> 30);
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = 624;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[k] = v;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random.getrandbits(k)` for 1 <= k <= 32.
    pub fn getrandbits(&mut self, k: u32) -> u32 {
        self.next_u32() >> (32 - k)
    }

    /// `random._randbelow(n)` (rejection sampling on getrandbits), n < 2^32.
    pub fn randbelow(&mut self, n: usize) -> usize {
        let k = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `random.sample(range(n), k)`: `k` distinct indices below `n` (k <= n), by CPython's
    /// two strategies (a shrinking pool for small `n`, rejection against a set for large).
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample of {k} from {n}");
        let mut setsize = 21;
        if k > 5 {
            setsize += 4usize.pow(((k * 3) as f64).log(4.0).ceil() as u32);
        }
        let mut out = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                out.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::new();
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while !selected.insert(j) {
                    j = self.randbelow(n);
                }
                out.push(j);
            }
        }
        out
    }

    /// `random.shuffle(x)`.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i + 1);
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_cpython() {
        // python3 -c "import random; random.seed(42); print([random.getrandbits(32) for _ in range(3)])"
        let mut r = PyRandom::new(42);
        let got: Vec<u32> = (0..3).map(|_| r.getrandbits(32)).collect();
        assert_eq!(got, [2_746_317_213, 478_163_327, 107_420_369]);
        // random.seed(42); l = list(range(20)); random.shuffle(l)
        let mut l: Vec<u32> = (0..20).collect();
        PyRandom::new(42).shuffle(&mut l);
        assert_eq!(
            l,
            [19, 5, 14, 4, 9, 13, 15, 18, 6, 12, 17, 10, 1, 11, 2, 16, 7, 8, 0, 3]
        );
        // e = list(itertools.combinations(range(61), 2)); random.seed(42); random.shuffle(e); e[:5]
        let mut e: Vec<(usize, usize)> = (0..61)
            .flat_map(|a| (a + 1..61).map(move |b| (a, b)))
            .collect();
        PyRandom::new(42).shuffle(&mut e);
        assert_eq!(&e[..5], &[(7, 10), (11, 46), (30, 54), (10, 52), (26, 37)]);
    }

    #[test]
    fn sample_matches_cpython() {
        // r = random.Random(1234); r.sample(range(10), 4), r.sample(range(100), 6),
        // r.sample(range(30), 4), r.sample(range(5), 5): both strategies, one generator.
        let mut r = PyRandom::new(1234);
        assert_eq!(r.sample(10, 4), [7, 1, 0, 9]);
        assert_eq!(r.sample(100, 6), [74, 4, 85, 88, 10, 12]);
        assert_eq!(r.sample(30, 4), [24, 11, 7, 0]);
        assert_eq!(r.sample(5, 5), [0, 4, 1, 2, 3]);
    }
}
