//! SentencePiece tokenization as llama.cpp runs it on `tokenizer.ggml.model = llama` GGUF
//! vocabularies (Llama 2, Gemma): text with spaces written as `▁` (and one prepended when
//! `add_space_prefix`), split into characters, then adjacent pieces merged greedily by the
//! score of the merged piece (highest first, leftmost on ties); pieces left outside the
//! vocabulary fall back to byte tokens `<0xNN>`. Control and user-defined tokens are matched
//! verbatim in the text before that.

use std::collections::{BinaryHeap, HashMap};

pub struct Spm {
    pieces: Vec<String>,
    scores: Vec<f32>,
    ids: HashMap<String, u32>,
    /// Byte fallback tokens `<0x00>`..`<0xFF>`.
    bytes: [Option<u32>; 256],
    /// Tokens matched verbatim (control and user-defined), longest first.
    specials: Vec<(String, u32)>,
    add_space_prefix: bool,
    unk: Option<u32>,
}

#[derive(PartialEq)]
struct Candidate {
    score: f32,
    left: usize,
    len: usize,
}

impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    /// Highest score first; on ties the leftmost pair.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}

impl Spm {
    /// `types` are llama.cpp token types (1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte).
    pub fn new(
        pieces: Vec<String>,
        scores: Vec<f32>,
        types: &[i64],
        add_space_prefix: bool,
        unk: Option<u32>,
    ) -> Self {
        let mut ids = HashMap::with_capacity(pieces.len());
        let mut bytes = [None; 256];
        let mut specials = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let ty = types.get(i).copied().unwrap_or(1);
            if ty == 6 {
                if let Some(b) = p
                    .strip_prefix("<0x")
                    .and_then(|h| h.strip_suffix('>'))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    bytes[b as usize] = Some(i as u32);
                }
                continue;
            }
            if (ty == 3 || ty == 4) && !p.is_empty() {
                specials.push((p.clone(), i as u32));
            }
            if ty == 1 || ty == 4 {
                ids.entry(p.clone()).or_insert(i as u32);
            }
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Self {
            pieces,
            scores,
            ids,
            bytes,
            specials,
            add_space_prefix,
            unk,
        }
    }

    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    pub fn id(&self, piece: &str) -> Option<u32> {
        self.ids
            .get(piece)
            .copied()
            .or_else(|| self.specials.iter().find(|s| s.0 == piece).map(|s| s.1))
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        // As llama.cpp: the space prefix goes before the text and after every special token.
        let mut after_special = true;
        while !rest.is_empty() {
            // The earliest special token in the rest of the text (longest on ties).
            let hit = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let (plain, special) = match hit {
                Some((at, len, id)) => (&rest[..at], Some((len, id, at))),
                None => (rest, None),
            };
            if !plain.is_empty() {
                self.encode_plain(plain, after_special, &mut out);
            }
            match special {
                Some((len, id, at)) => {
                    out.push(id);
                    after_special = true;
                    rest = &rest[at + len..];
                }
                None => break,
            }
        }
        out
    }

    fn encode_plain(&self, text: &str, prefix: bool, out: &mut Vec<u32>) {
        let mut s = String::with_capacity(text.len() + 3);
        if self.add_space_prefix && prefix {
            s.push(' ');
        }
        s.push_str(text);
        let s = s.replace(' ', "\u{2581}");
        // Symbols as byte ranges into `s`, linked left/right.
        let mut starts: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
        starts.push(s.len());
        let n = starts.len() - 1;
        let mut sym: Vec<(usize, usize)> = (0..n)
            .map(|i| (starts[i], starts[i + 1] - starts[i]))
            .collect();
        let mut prev: Vec<isize> = (0..n as isize).map(|i| i - 1).collect();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let push =
            |heap: &mut BinaryHeap<Candidate>, l: usize, r: usize, sym: &[(usize, usize)]| {
                let (start, len) = (sym[l].0, sym[l].1 + sym[r].1);
                if let Some(&id) = self.ids.get(&s[start..start + len]) {
                    heap.push(Candidate {
                        score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                        left: l,
                        len,
                    });
                }
            };
        for i in 0..n.saturating_sub(1) {
            push(&mut heap, i, i + 1, &sym);
        }
        while let Some(c) = heap.pop() {
            let l = c.left;
            let r = next[l];
            // Stale candidate: one side was merged since it was pushed.
            if !alive[l] || r >= n || !alive[r] || sym[l].1 + sym[r].1 != c.len {
                continue;
            }
            sym[l].1 = c.len;
            alive[r] = false;
            next[l] = next[r];
            if next[l] < n {
                prev[next[l]] = l as isize;
            }
            if prev[l] >= 0 {
                push(&mut heap, prev[l] as usize, l, &sym);
            }
            if next[l] < n {
                push(&mut heap, l, next[l], &sym);
            }
        }
        let mut i = 0;
        while i < n {
            let (start, len) = sym[i];
            let piece = &s[start..start + len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        match (self.bytes[b as usize], self.unk) {
                            (Some(id), _) | (None, Some(id)) => out.push(id),
                            (None, None) => {}
                        }
                    }
                }
            }
            i = next[i];
        }
    }

    /// Text of ids: `▁` back to spaces, byte tokens to bytes, the prefix space dropped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(p) = self.piece(id) else { continue };
            if let Some(b) = self.bytes.iter().position(|x| *x == Some(id)) {
                bytes.push(b as u8);
            } else {
                bytes.extend_from_slice(p.replace('\u{2581}', " ").as_bytes());
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match (self.add_space_prefix, text.strip_prefix(' ')) {
            (true, Some(t)) => t.to_string(),
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Spm {
        // id: 0 <unk>, 1 <s>, 2 </s>, 3.. pieces; byte tokens for 'é' (0xC3 0xA9)
        let pieces = [
            "<unk>",
            "<s>",
            "</s>",
            "▁",
            "a",
            "b",
            "c",
            "ab",
            "▁ab",
            "abc",
            "<0xC3>",
            "<0xA9>",
            "<start_of_turn>",
        ];
        let scores = [
            0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -2.0, -1.5, -0.5, -3.0, 0.0, 0.0, 0.0,
        ];
        let types = [2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 6, 6, 3];
        Spm::new(
            pieces.iter().map(|s| s.to_string()).collect(),
            scores.to_vec(),
            &types,
            true,
            Some(0),
        )
    }

    #[test]
    fn merges_by_score_with_space_prefix() {
        let t = toy();
        // "▁abc": ▁+ab... "ab" (-1.5) merges first, then "▁ab" (-0.5); "abc" never forms.
        assert_eq!(t.encode("abc"), vec![8, 6]);
        assert_eq!(t.decode(&[8, 6]), "abc");
    }

    #[test]
    fn byte_fallback_and_specials() {
        let t = toy();
        assert_eq!(t.encode("é"), vec![3, 10, 11]);
        // as llama.cpp: the space prefix also follows a special token
        assert_eq!(t.encode("<start_of_turn>ab"), vec![12, 8]);
        assert_eq!(t.decode(&[3, 10, 11]), "é");
    }
}
