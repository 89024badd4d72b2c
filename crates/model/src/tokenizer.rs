//! Text <-> token ids, from an HF `tokenizer.json` or built from GGUF metadata.
//!
//! GGUF vocabularies are turned into an HF tokenizer description (JSON) and handed to the
//! `tokenizers` crate, so both sources run the same, well-tested encoder. The pre-tokenizer
//! follows `tokenizer.ggml.pre` as llama.cpp does.

use crate::error::{Error, Result};
use crate::weights::gguf::GgufFile;
use candle_core::quantized::gguf_file::Value;
use serde_json::{json, Value as Json};
use std::path::Path;
use std::str::FromStr;

// One per model: the size difference is not worth boxing the SentencePiece tables.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Hf(Box<tokenizers::Tokenizer>),
    Spm(crate::spm::Spm),
}

pub struct Tokenizer {
    inner: Inner,
    /// Where it came from ("tokenizer.json", "gguf:gpt2/smollm", ...), for `ethos info`.
    pub kind: String,
    pub bos_id: Option<u32>,
    pub eos_ids: Vec<u32>,
    /// Prepend BOS when encoding a prompt.
    pub add_bos: bool,
}

/// Regexes of llama.cpp's pre-tokenizer types that HF expresses as a `Split`.
const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(use_regex: bool) -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split(regex: &str) -> Json {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

/// The pre-tokenizer (and normalizer) for a `tokenizer.ggml.pre` value.
fn pre_tokenizer(pre: &str) -> (Json, Json) {
    match pre {
        "smollm" => (
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            Json::Null,
        ),
        "llama3" | "llama-bpe" | "smaug-bpe" | "lfm2" => (
            json!({"type": "Sequence", "pretokenizers": [split(REGEX_LLAMA3), byte_level(false)]}),
            Json::Null,
        ),
        "qwen2" | "deepseek-r1-qwen" => (
            json!({"type": "Sequence", "pretokenizers": [split(REGEX_QWEN2), byte_level(false)]}),
            json!({"type": "NFC"}),
        ),
        _ => (byte_level(true), Json::Null),
    }
}

fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    match file.meta(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(Error::config(&file.path, key, "has a non-string element")),
            })
            .collect(),
        Some(_) => Err(Error::config(&file.path, key, "not an array")),
        None => Err(Error::config(&file.path, key, "missing")),
    }
}

fn floats(file: &GgufFile, key: &str) -> Result<Vec<f32>> {
    match file.meta(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                _ => Err(Error::config(&file.path, key, "has a non-float element")),
            })
            .collect(),
        Some(_) => Err(Error::config(&file.path, key, "not an array")),
        None => Err(Error::config(&file.path, key, "missing")),
    }
}

fn ints(file: &GgufFile, key: &str) -> Vec<i64> {
    match file.meta(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::I32(x) => *x as i64,
                Value::U32(x) => *x as i64,
                Value::I8(x) => *x as i64,
                Value::U8(x) => *x as i64,
                Value::I64(x) => *x,
                _ => 1,
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path)?;
        // The tokenizers library panics (`expect("Helper")`) on a `decoder` that is not valid
        // JSON or not an object, so the file is parsed and that field checked first; a panic
        // left in the library becomes an error too.
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not a valid tokenizer.json: {e}")))?;
        if !matches!(
            json.get("decoder"),
            None | Some(Json::Null | Json::Object(_))
        ) {
            return Err(Error::format(
                path,
                "not a valid tokenizer.json: `decoder` is neither null nor an object",
            ));
        }
        let built = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(&text));
        let inner = match built {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                return Err(Error::format(
                    path,
                    format!("not a valid tokenizer.json: {}", crate::error::one_line(&e)),
                ))
            }
            Err(_) => {
                return Err(Error::format(
                    path,
                    "not a valid tokenizer.json (the tokenizers library failed on it)",
                ))
            }
        };
        Ok(Self {
            inner: Inner::Hf(Box::new(inner)),
            kind: "tokenizer.json".into(),
            bos_id: None,
            eos_ids: vec![],
            add_bos: false,
        })
    }

    /// Builds the tokenizer that the GGUF metadata describes.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file.get_str("tokenizer.ggml.model")?.to_string();
        let tokens = strings(file, "tokenizer.ggml.tokens")?;
        let types = ints(file, "tokenizer.ggml.token_type");
        let inner = match model.as_str() {
            "gpt2" => Inner::Hf(Box::new(Self::bpe_from_gguf(file, &tokens, &types)?)),
            "llama" => {
                let scores = floats(file, "tokenizer.ggml.scores")?;
                if scores.len() != tokens.len() {
                    return Err(Error::config(&file.path, "tokenizer.ggml.scores", format!("has {} entries for {} tokens", scores.len(), tokens.len())));
                }
                let add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
                let unk = file.get_u64("tokenizer.ggml.unknown_token_id").ok().map(|x| x as u32);
                Inner::Spm(crate::spm::Spm::new(tokens, scores, &types, add_space_prefix, unk))
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "{}: tokenizer model `{other}` (supported: gpt2 byte-level BPE, llama SentencePiece)",
                    file.path.display()
                )))
            }
        };
        let kind = match &inner {
            Inner::Hf(_) => format!(
                "gguf:gpt2/{}",
                file.get_str("tokenizer.ggml.pre").unwrap_or("default")
            ),
            Inner::Spm(_) => "gguf:llama/sentencepiece".to_string(),
        };
        Ok(Self {
            inner,
            kind,
            bos_id: file
                .get_u64("tokenizer.ggml.bos_token_id")
                .ok()
                .map(|x| x as u32),
            eos_ids: file.eos_ids(),
            add_bos: file
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(model == "llama"),
        })
    }

    /// A gpt2-style byte-level BPE described as HF tokenizer JSON.
    fn bpe_from_gguf(
        file: &GgufFile,
        tokens: &[String],
        types: &[i64],
    ) -> Result<tokenizers::Tokenizer> {
        let merges = strings(file, "tokenizer.ggml.merges")?;
        let pre = file
            .get_str("tokenizer.ggml.pre")
            .unwrap_or("default")
            .to_string();
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            vocab.insert(t.clone(), json!(i));
        }
        // Both halves and their concatenation must be tokens: the tokenizers library refuses
        // other merges, or panics on them (a merge longer than every token).
        let known: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
        let merges: Vec<Json> = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let bad = |why: String| {
                    Error::config(
                        &file.path,
                        "tokenizer.ggml.merges",
                        format!("entry {i} {m:?} {why}"),
                    )
                };
                let (a, b) = m
                    .split_once(' ')
                    .ok_or_else(|| bad("is not `a b`".into()))?;
                for part in [a, b, &format!("{a}{b}")] {
                    if !known.contains(part) {
                        return Err(bad(format!("names `{part}`, which is not a token")));
                    }
                }
                Ok(json!([a, b]))
            })
            .collect::<Result<_>>()?;
        // llama.cpp token types: 3 = control, 4 = user-defined; both are matched verbatim in text.
        let added: Vec<Json> = types
            .iter()
            .enumerate()
            .filter(|(_, &ty)| ty == 3 || ty == 4)
            .filter_map(|(i, &ty)| {
                tokens.get(i).map(|t| {
                    json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                           "normalized": false, "special": ty == 3})
                })
            })
            .collect();
        let (pre_tok, normalizer) = pre_tokenizer(&pre);
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tok,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        });
        let text = spec.to_string();
        match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(&text)) {
            Ok(built) => built.map_err(|e| {
                Error::format(
                    &file.path,
                    format!("tokenizer metadata: {}", crate::error::one_line(&e)),
                )
            }),
            Err(_) => Err(Error::format(
                &file.path,
                "tokenizer metadata: the tokenizers library failed on it",
            )),
        }
    }

    /// Encodes text as it appears (no BOS); special-token strings map to their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match &self.inner {
            Inner::Hf(t) => {
                let enc = t
                    .encode(text, false)
                    .map_err(|e| Error::Tokenizer(crate::error::one_line(&e)))?;
                Ok(enc.get_ids().to_vec())
            }
            Inner::Spm(t) => Ok(t.encode(text)),
        }
    }

    /// Encodes a prompt: BOS first when the model asks for it, unless the text already begins
    /// with it (chat templates such as Gemma's write `<bos>` themselves).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let body = self.encode(text)?;
        if self.add_bos {
            if let Some(b) = self.bos_id {
                if body.first() != Some(&b) {
                    ids.push(b);
                }
            }
        }
        ids.extend(body);
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match &self.inner {
            Inner::Hf(t) => t
                .decode(ids, false)
                .map_err(|e| Error::Tokenizer(crate::error::one_line(&e))),
            Inner::Spm(t) => Ok(t.decode(ids)),
        }
    }

    /// The text of each id alone (raw vocabulary piece, byte-level symbols decoded).
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| match &self.inner {
                Inner::Hf(t) => t.id_to_token(i).unwrap_or_default(),
                Inner::Spm(t) => t.piece(i).unwrap_or_default().to_string(),
            })
            .collect()
    }

    pub fn token_id(&self, piece: &str) -> Option<u32> {
        match &self.inner {
            Inner::Hf(t) => t.token_to_id(piece),
            Inner::Spm(t) => t.id(piece),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Hf(t) => t.get_vocab_size(true),
            Inner::Spm(t) => t.vocab_size(),
        }
    }
}

/// Decodes tokens incrementally for streaming: emits only text that can no longer change
/// (a multi-byte character split across tokens is held back until complete).
pub struct StreamDecoder {
    ids: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self {
            ids: Vec::new(),
            emitted: 0,
        }
    }

    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tok.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        Ok(new)
    }
}

impl Default for StreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A tokenizer, this one or a server's (`/tokenize`): `add_special` encodes a prompt (with
/// the BOS where the model asks for one), else the text as it appears.
pub trait TextEncoder: Sync {
    fn encode_text(&self, text: &str, add_special: bool) -> Result<Vec<u32>>;
}

impl TextEncoder for Tokenizer {
    fn encode_text(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        if add_special {
            self.encode_prompt(text)
        } else {
            self.encode(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str =
        include_str!("../../../tests/fixtures/tiny/llama_classifier/tokenizer.json");

    /// Found by the hf_tokenizer fuzz target: a `decoder` that is not valid JSON, or not an
    /// object, made the tokenizers library panic (`expect("Helper")`); it is one line naming
    /// the file now. The fixture itself still builds.
    #[test]
    fn a_bad_decoder_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("ethos-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, FIXTURE).unwrap();
        assert!(Tokenizer::from_file(&path).is_ok());
        for decoder in [
            "\"decoder\": \u{1}\u{0}",
            "\"decoder\": 7",
            "\"decoder\": [1]",
        ] {
            std::fs::write(&path, FIXTURE.replace("\"decoder\": null", decoder)).unwrap();
            let e = Tokenizer::from_file(&path).err().unwrap().to_string();
            assert!(
                e.contains("tokenizer.json: not a valid tokenizer.json") && !e.contains('\n'),
                "{decoder}: {e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn fuzz_fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/fuzz")
            .join(name)
    }

    /// The fuzz targets' crashing inputs, kept as they were found: each is one line now.
    /// The GGUF one merges two tokens into a string longer than every token (the tokenizers
    /// library indexed past its buffer); the JSON one has a decoder that is not JSON.
    #[test]
    fn fuzz_crashes_are_errors() {
        let path = fuzz_fixture("gguf_tokenizer_merge_past_every_token.gguf");
        let file = GgufFile::open(&path).unwrap();
        let e = Tokenizer::from_gguf(&file).err().unwrap().to_string();
        assert!(
            e.contains("field `tokenizer.ggml.merges`: entry")
                && e.contains("which is not a token"),
            "{e}"
        );
        let path = fuzz_fixture("hf_tokenizer_decoder_not_json.json");
        let e = Tokenizer::from_file(&path).err().unwrap().to_string();
        assert!(
            e.contains("not a valid tokenizer.json") && !e.contains('\n'),
            "{e}"
        );
    }
}
