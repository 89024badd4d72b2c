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

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
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
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            Error::format(
                path,
                format!("not a valid tokenizer.json: {}", crate::error::one_line(&e)),
            )
        })?;
        Ok(Self {
            inner,
            kind: "tokenizer.json".into(),
            bos_id: None,
            eos_ids: vec![],
            add_bos: false,
        })
    }

    /// Builds the tokenizer that the GGUF metadata describes.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file.get_str("tokenizer.ggml.model")?.to_string();
        if model != "gpt2" {
            return Err(Error::Unsupported(format!(
                "{}: tokenizer model `{model}` (this version builds gpt2-style BPE tokenizers from GGUF)",
                file.path.display()
            )));
        }
        let tokens = strings(file, "tokenizer.ggml.tokens")?;
        let merges = strings(file, "tokenizer.ggml.merges")?;
        let types = ints(file, "tokenizer.ggml.token_type");
        let pre = file
            .get_str("tokenizer.ggml.pre")
            .unwrap_or("default")
            .to_string();
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            vocab.insert(t.clone(), json!(i));
        }
        let merges: Vec<Json> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| json!([a, b]))
                    .ok_or_else(|| {
                        Error::config(
                            &file.path,
                            "tokenizer.ggml.merges",
                            format!("entry {m:?} is not `a b`"),
                        )
                    })
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
        let inner: tokenizers::Tokenizer = spec.to_string().parse().map_err(|e| {
            Error::format(
                &file.path,
                format!("tokenizer metadata: {}", crate::error::one_line(&e)),
            )
        })?;
        let mut eos_ids = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Ok(id) = file.get_u64(key) {
                if !eos_ids.contains(&(id as u32)) {
                    eos_ids.push(id as u32);
                }
            }
        }
        Ok(Self {
            inner,
            kind: format!("gguf:gpt2/{pre}"),
            bos_id: file
                .get_u64("tokenizer.ggml.bos_token_id")
                .ok()
                .map(|x| x as u32),
            eos_ids,
            add_bos: file
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(false),
        })
    }

    /// Encodes text as it appears (no BOS); special-token strings map to their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(crate::error::one_line(&e)))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes a prompt: BOS first when the model asks for it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.add_bos {
            if let Some(b) = self.bos_id {
                ids.push(b);
            }
        }
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(crate::error::one_line(&e)))
    }

    /// The text of each id alone (raw vocabulary piece, byte-level symbols decoded).
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| self.inner.id_to_token(i).unwrap_or_default())
            .collect()
    }

    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
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
