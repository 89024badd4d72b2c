//! The Thurstonian utility model of Utility Engineering (Mazeika et al. 2025), fitted as their
//! `fit_thurstonian_model` specifies: each outcome i has a mean mu_i and a variance
//! sigma2_i = exp(s_i); P(A over B) = Phi((mu_A - mu_B) / sqrt(sigma2_A + sigma2_B + 1e-5)).
//! Full-batch Adam (lr 0.01, 1000 epochs) on the mean binary cross-entropy against the soft
//! labels; at every step the means are standardised inside the model (mean 0, sample std +
//! 1e-5) and the variances scaled by 1 / (std + 1e-5)^2, so the gradients flow through the
//! standardisation. The gradients are written out by hand (f64) and checked against PyTorch
//! autograd by `tests/ref/make_thurstonian_refs.py`.

use serde::Serialize;

/// One compared pair: outcome indices and the probability that `a` is preferred.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edge {
    pub a: usize,
    pub b: usize,
    pub p_a: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Utility {
    pub mean: f64,
    pub variance: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub utilities: Vec<Utility>,
    /// On the training edges, as the reference computes them (probabilities clipped to 1e-5).
    pub log_loss: f64,
    pub accuracy: f64,
}

pub const EPOCHS: usize = 1000;
pub const LEARNING_RATE: f64 = 0.01;

/// Standard normal CDF (via libm's erfc, accurate in both tails).
pub fn phi_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

fn phi_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The standardised parameters: (mu_normalised, sigma2_normalised, S = std + 1e-5).
fn normalise(mu: &[f64], s: &[f64]) -> (Vec<f64>, Vec<f64>, f64, f64) {
    let n = mu.len() as f64;
    let mean = mu.iter().sum::<f64>() / n;
    let var = mu.iter().map(|m| (m - mean) * (m - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    let std = var.sqrt();
    let big_s = std + 1e-5;
    let scale = 1.0 / (big_s + 1e-5);
    let mu_n = mu.iter().map(|m| (m - mean) / big_s).collect();
    let s2_n = s.iter().map(|v| v.exp() * scale * scale).collect();
    (mu_n, s2_n, big_s, std)
}

/// torch's binary_cross_entropy clamps each log term at -100.
fn bce(p: f64, y: f64) -> f64 {
    -(y * p.ln().max(-100.0) + (1.0 - y) * (1.0 - p).ln().max(-100.0))
}

/// Loss and gradients with respect to (mu, s).
fn loss_and_grad(mu: &[f64], s: &[f64], edges: &[Edge]) -> (f64, Vec<f64>, Vec<f64>) {
    let n = mu.len();
    let (mu_n, s2_n, big_s, std) = normalise(mu, s);
    let mut g_mu_n = vec![0.0; n];
    let mut g_s2_n = vec![0.0; n];
    let m = edges.len() as f64;
    let mut loss = 0.0;
    for e in edges {
        let v = s2_n[e.a] + s2_n[e.b] + 1e-5;
        let sv = v.sqrt();
        let d = mu_n[e.a] - mu_n[e.b];
        let z = d / sv;
        let p = phi_cdf(z);
        loss += bce(p, e.p_a);
        // d(bce)/dp, with torch's clamp: no gradient through a clamped log.
        let mut dp = 0.0;
        if p.ln() > -100.0 {
            dp -= e.p_a / p;
        }
        if (1.0 - p).ln() > -100.0 {
            dp += (1.0 - e.p_a) / (1.0 - p);
        }
        let dz = dp * phi_pdf(z) / m;
        let dd = dz / sv;
        let dv = -dz * d / (2.0 * v * sv);
        g_mu_n[e.a] += dd;
        g_mu_n[e.b] -= dd;
        g_s2_n[e.a] += dv;
        g_s2_n[e.b] += dv;
    }
    loss /= m;
    // Back through sigma2_n = exp(s) / (S + 1e-5)^2 and mu_n = (mu - mean) / S.
    let g_s: Vec<f64> = (0..n).map(|i| g_s2_n[i] * s2_n[i]).collect();
    let d_big_s = -(0..n).map(|i| g_mu_n[i] * mu_n[i]).sum::<f64>() / big_s
        - 2.0 * (0..n).map(|i| g_s2_n[i] * s2_n[i]).sum::<f64>() / (big_s + 1e-5);
    let mean_g = g_mu_n.iter().sum::<f64>() / n as f64;
    let nf = n as f64;
    let g_mu: Vec<f64> = (0..n)
        .map(|k| {
            let centred = mu_n[k] * big_s; // mu_k - mean
            let dstd = if std > 0.0 {
                centred / ((nf - 1.0).max(1.0) * std)
            } else {
                0.0
            };
            (g_mu_n[k] - mean_g) / big_s + d_big_s * dstd
        })
        .collect();
    (loss, g_mu, g_s)
}

/// Adam as torch.optim.Adam with its defaults (betas 0.9, 0.999; eps 1e-8).
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
    t: i32,
    lr: f64,
}

impl Adam {
    fn new(n: usize, lr: f64) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            lr,
        }
    }

    fn step(&mut self, x: &mut [f64], g: &[f64]) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.t += 1;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        for i in 0..x.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let denom = (self.v[i] / bc2).sqrt() + eps;
            x[i] -= self.lr / bc1 * self.m[i] / denom;
        }
    }
}

/// Fits `n` outcomes to `edges` from the initial parameters (mu0, s0).
pub fn fit_from(mu0: &[f64], s0: &[f64], edges: &[Edge], epochs: usize, lr: f64) -> Fit {
    let n = mu0.len();
    let mut mu = mu0.to_vec();
    let mut s = s0.to_vec();
    let mut opt_mu = Adam::new(n, lr);
    let mut opt_s = Adam::new(n, lr);
    if !edges.is_empty() {
        for _ in 0..epochs {
            let (loss, g_mu, g_s) = loss_and_grad(&mu, &s, edges);
            if loss.is_nan() {
                break;
            }
            opt_mu.step(&mut mu, &g_mu);
            opt_s.step(&mut s, &g_s);
        }
    }
    let (mu_n, s2_n, _, _) = normalise(&mu, &s);
    let utilities: Vec<Utility> = mu_n
        .iter()
        .zip(&s2_n)
        .map(|(&mean, &variance)| Utility { mean, variance })
        .collect();
    let (log_loss, accuracy) = evaluate(&utilities, edges);
    Fit {
        utilities,
        log_loss,
        accuracy,
    }
}

/// Fits with the reference's initialisation, mu and s ~ N(0, 0.01^2), drawn from `rng`.
pub fn fit(n: usize, edges: &[Edge], rng: &mut ethos_steer::rng::Rng) -> Fit {
    let mut normal = || {
        // Box-Muller
        let u1 = rng.uniform().max(1e-300);
        let u2 = rng.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let mu0: Vec<f64> = (0..n).map(|_| 0.01 * normal()).collect();
    let s0: Vec<f64> = (0..n).map(|_| 0.01 * normal()).collect();
    fit_from(&mu0, &s0, edges, EPOCHS, LEARNING_RATE)
}

/// P(a over b) under the fitted utilities.
pub fn prob(u: &[Utility], a: usize, b: usize) -> f64 {
    let v = u[a].variance + u[b].variance + 1e-5;
    phi_cdf((u[a].mean - u[b].mean) / v.sqrt())
}

/// Log loss (probabilities clipped to [1e-5, 1 - 1e-5]) and accuracy (model and label both
/// thresholded at 0.5), as the reference reports them.
pub fn evaluate(u: &[Utility], edges: &[Edge]) -> (f64, f64) {
    if edges.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut ll = 0.0;
    let mut ok = 0usize;
    for e in edges {
        let p = prob(u, e.a, e.b).clamp(1e-5, 1.0 - 1e-5);
        ll -= e.p_a * p.ln() + (1.0 - e.p_a) * (1.0 - p).ln();
        ok += ((p >= 0.5) == (e.p_a >= 0.5)) as usize;
    }
    (ll / edges.len() as f64, ok as f64 / edges.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_is_exact_enough() {
        // scipy.stats.norm.cdf
        for (z, want) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-1.96, 0.024_997_895_148_220_435),
            (2.5, 0.993_790_334_674_224),
            (-4.0, 3.167_124_183_311_992e-5),
            (6.0, 0.999_999_999_013_412_4),
        ] {
            let got = phi_cdf(z);
            assert!(
                (got - want).abs() <= 1e-14 + 1e-12 * want,
                "{z}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mu = [0.3, -0.2, 0.5, 0.1, -0.4];
        let s = [0.1, -0.3, 0.2, 0.0, 0.4];
        let edges = [
            Edge {
                a: 0,
                b: 1,
                p_a: 0.8,
            },
            Edge {
                a: 2,
                b: 3,
                p_a: 0.3,
            },
            Edge {
                a: 4,
                b: 0,
                p_a: 0.1,
            },
            Edge {
                a: 1,
                b: 3,
                p_a: 0.55,
            },
            Edge {
                a: 2,
                b: 4,
                p_a: 0.9,
            },
        ];
        let (_, g_mu, g_s) = loss_and_grad(&mu, &s, &edges);
        let h = 1e-6;
        for i in 0..5 {
            let (mut a, mut b) = (mu, mu);
            a[i] += h;
            b[i] -= h;
            let fd =
                (loss_and_grad(&a, &s, &edges).0 - loss_and_grad(&b, &s, &edges).0) / (2.0 * h);
            assert!((fd - g_mu[i]).abs() < 1e-7, "mu {i}: {fd} vs {}", g_mu[i]);
            let (mut a, mut b) = (s, s);
            a[i] += h;
            b[i] -= h;
            let fd =
                (loss_and_grad(&mu, &a, &edges).0 - loss_and_grad(&mu, &b, &edges).0) / (2.0 * h);
            assert!((fd - g_s[i]).abs() < 1e-7, "s {i}: {fd} vs {}", g_s[i]);
        }
    }

    /// PyTorch autograd + Adam in float64 from the same start
    /// (`tests/ref/make_thurstonian_refs.py`).
    #[test]
    fn the_fit_matches_pytorch() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/utility/thurstonian_ref.json"
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let f64s = |k: &str| -> Vec<f64> {
            r[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let edges: Vec<Edge> = r["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Edge {
                a: e[0].as_u64().unwrap() as usize,
                b: e[1].as_u64().unwrap() as usize,
                p_a: e[2].as_f64().unwrap(),
            })
            .collect();
        let fit = fit_from(&f64s("mu0"), &f64s("s0"), &edges, EPOCHS, LEARNING_RATE);
        let (mean, var) = (f64s("mean"), f64s("variance"));
        let mut worst = 0f64;
        for (u, (m, v)) in fit.utilities.iter().zip(mean.iter().zip(&var)) {
            worst = worst
                .max((u.mean - m).abs())
                .max((u.variance - v).abs() / v);
        }
        assert!(worst < 1e-6, "largest difference {worst}");
        assert!((fit.log_loss - r["log_loss"].as_f64().unwrap()).abs() < 1e-9);
        assert_eq!(fit.accuracy, r["accuracy"].as_f64().unwrap());
    }

    #[test]
    fn a_consistent_order_is_recovered() {
        // Outcome i is preferred to j exactly when i > j.
        let n = 8;
        let mut edges = Vec::new();
        for i in 0..n {
            for j in 0..i {
                edges.push(Edge {
                    a: i,
                    b: j,
                    p_a: 0.9,
                });
            }
        }
        let f = fit(n, &edges, &mut ethos_steer::rng::Rng::new(1));
        for i in 1..n {
            assert!(f.utilities[i].mean > f.utilities[i - 1].mean);
        }
        assert_eq!(f.accuracy, 1.0);
        let mean: f64 = f.utilities.iter().map(|u| u.mean).sum::<f64>() / n as f64;
        assert!(mean.abs() < 1e-9, "standardised");
    }
}
