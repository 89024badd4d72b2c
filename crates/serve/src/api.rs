//! Request bodies as OpenAI's and vLLM's clients send them, and their checks. Every field
//! this server does not know is refused by name (never ignored in silence), except a few
//! that clients send by default and that change nothing here (`user`, `stream_options`).

use crate::error::ApiError;
use crate::Limits;
use ethos_model::chat::Message;
use ethos_steer::SamplingParams;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;

pub const SAMPLING_FIELDS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "n",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "ignore_eos",
];

/// Fields both generation endpoints take besides the sampling ones: the model, streaming,
/// fields clients send by default, and the steering extensions.
pub const SHARED_FIELDS: &[&str] = &[
    "model",
    "max_tokens",
    "stream",
    "logprobs",
    "user",
    "stream_options",
    "control_vectors",
    "lora",
    "steering_report",
    "palette",
    "palette_mode",
    "palette_candidates",
    "palette_token_candidates",
];

pub const COMPLETION_FIELDS: &[&str] = &[
    "prompt",
    "echo",
    "prompt_logprobs",
    "palette_context_tokens",
];

pub const CHAT_FIELDS: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "add_generation_prompt",
];

/// A JSON object body whose every key is in `known` (an unknown one is refused by name).
pub fn parse_object(body: &[u8], known: &[&[&str]]) -> Result<serde_json::Value, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    let Some(map) = v.as_object() else {
        return Err(ApiError::bad_request("request body: not a JSON object"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !known.iter().any(|set| set.contains(&k.as_str())))
    {
        return Err(ApiError::field(
            k,
            format!("unknown field `{k}`: not supported by this server"),
        ));
    }
    Ok(v)
}

/// Reads `T` from a parsed body; a type error names the field (`param`) it is in.
pub fn read<T: DeserializeOwned>(v: &serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        // serde lists every field it expected: the name of the unknown one is enough.
        let msg = match msg.split_once(", expected one of") {
            Some((head, _)) if head.starts_with("unknown field") => {
                format!("{head}: not supported by this server")
            }
            _ => msg,
        };
        if path == "." {
            ApiError::bad_request(format!("request body: {msg}"))
        } else {
            ApiError::field(&path, msg)
        }
    })
}

/// `parse_object` then `read`.
pub fn parse_body<T: DeserializeOwned>(body: &[u8], known: &[&[&str]]) -> Result<T, ApiError> {
    read(&parse_object(body, known)?)
}

/// `stop`: one string or a list.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug, Clone)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: serde_json::Value,
    pub max_tokens: Option<usize>,
    pub stream: Option<bool>,
    pub echo: Option<bool>,
    pub logprobs: Option<usize>,
    pub prompt_logprobs: Option<usize>,
    pub user: Option<String>,
    pub stream_options: Option<serde_json::Value>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    pub stream: Option<bool>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<usize>,
    pub add_generation_prompt: Option<bool>,
    pub user: Option<String>,
    pub stream_options: Option<serde_json::Value>,
}

/// The sampling fields both generation endpoints take, read from the same body as the
/// endpoint's own fields.
#[derive(Deserialize, Debug, Default, Clone)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub n: Option<usize>,
    pub logit_bias: Option<BTreeMap<String, f32>>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub ignore_eos: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: serde_json::Value,
    pub name: Option<String>,
}

/// A request's palette decoding: a solved lambda file of the server's palette folder, the
/// mode and the candidates.
#[derive(Deserialize, Debug, Clone)]
pub struct PaletteFields {
    pub palette: Option<String>,
    pub palette_mode: Option<String>,
    pub palette_candidates: Option<usize>,
    pub palette_token_candidates: Option<usize>,
}

/// The most candidates a palette request may sample.
pub const MAX_PALETTE_CANDIDATES: usize = 64;

/// `palette*` fields, checked: `None` without `palette`. A palette request is one prompt, one
/// choice, a whole response.
pub fn palette(
    v: &serde_json::Value,
    prompts: usize,
    n: usize,
) -> Result<Option<(String, ethos_steer::palette::decode::PaletteMode, usize)>, ApiError> {
    let f: PaletteFields = read(v)?;
    let Some(name) = f.palette else {
        for (k, set) in [
            ("palette_mode", f.palette_mode.is_some()),
            ("palette_candidates", f.palette_candidates.is_some()),
            (
                "palette_token_candidates",
                f.palette_token_candidates.is_some(),
            ),
        ] {
            if set {
                return Err(ApiError::field(k, "needs \"palette\""));
            }
        }
        return Ok(None);
    };
    check_file_name("palette", &name)?;
    let k = f.palette_token_candidates.unwrap_or(10);
    if k == 0 || k > 1000 {
        return Err(ApiError::field(
            "palette_token_candidates",
            "must be in 1..=1000",
        ));
    }
    let mode_name = f.palette_mode.as_deref().unwrap_or("resample");
    let Some(mode) = ethos_steer::palette::decode::PaletteMode::parse(mode_name, k) else {
        return Err(ApiError::field(
            "palette_mode",
            format!("{mode_name:?} is not one of resample, best-of-n, token"),
        ));
    };
    let candidates = f.palette_candidates.unwrap_or(8);
    if candidates == 0 || candidates > MAX_PALETTE_CANDIDATES {
        return Err(ApiError::field(
            "palette_candidates",
            format!("must be in 1..={MAX_PALETTE_CANDIDATES}"),
        ));
    }
    if prompts != 1 || n != 1 {
        return Err(ApiError::field("palette", "decodes one prompt with n = 1"));
    }
    for k in [
        "stream",
        "echo",
        "logprobs",
        "prompt_logprobs",
        "steering_report",
    ] {
        if v.get(k)
            .is_some_and(|x| !x.is_null() && x != &serde_json::json!(false))
        {
            return Err(ApiError::field(
                "palette",
                format!("cannot be combined with {k}"),
            ));
        }
    }
    Ok(Some((name, mode, candidates)))
}

/// A palette's tilt of option scores: the lambda file, and for each prompt how many of its
/// tokens are the context (the rest is the option the palette's rewards read).
pub struct PaletteScoring {
    pub name: String,
    /// One count for every prompt (a number), or one per prompt (a list).
    pub context_tokens: Vec<usize>,
    pub per_prompt: bool,
}

/// `palette` with `palette_context_tokens`: the tilted option scores of prompt log-probs
/// (`None` without `palette_context_tokens`). The request scores prompts: it asks for their
/// log-probs, one choice each, and nothing that only generation reads.
pub fn palette_scoring(
    v: &serde_json::Value,
    prompts: usize,
    n: usize,
) -> Result<Option<PaletteScoring>, ApiError> {
    const FIELD: &str = "palette_context_tokens";
    let Some(split) = v.get(FIELD).filter(|x| !x.is_null()) else {
        return Ok(None);
    };
    let context_tokens: Vec<usize> = match split {
        serde_json::Value::Number(_) => vec![serde_json::from_value(split.clone())
            .map_err(|_| ApiError::field(FIELD, "must be a token count or a list of them"))?],
        serde_json::Value::Array(_) => serde_json::from_value(split.clone())
            .map_err(|_| ApiError::field(FIELD, "must be a token count or a list of them"))?,
        _ => {
            return Err(ApiError::field(
                FIELD,
                "must be a token count or a list of them",
            ))
        }
    };
    if split.is_array() && context_tokens.len() != prompts {
        return Err(ApiError::field(
            FIELD,
            format!(
                "{} counts for {prompts} prompts: give one number for all, or a list with one per prompt",
                context_tokens.len()
            ),
        ));
    }
    let Some(name) = v.get("palette").and_then(|x| x.as_str()) else {
        return Err(ApiError::field(FIELD, "needs \"palette\""));
    };
    check_file_name("palette", name)?;
    let asked = |k: &str| {
        v.get(k)
            .is_some_and(|x| !x.is_null() && x != &serde_json::json!(false))
    };
    if !(asked("prompt_logprobs") || asked("echo") && asked("logprobs")) {
        return Err(ApiError::field(
            FIELD,
            "tilts the options' prompt log-probs: ask for them (echo with logprobs, or prompt_logprobs)",
        ));
    }
    for k in [
        "palette_mode",
        "palette_candidates",
        "palette_token_candidates",
        "stream",
        "steering_report",
    ] {
        if asked(k) {
            return Err(ApiError::field(
                k,
                "palette decoding and streams do not apply to palette_context_tokens (option scores)",
            ));
        }
    }
    if n != 1 {
        return Err(ApiError::field(
            "n",
            "option scores take one choice per prompt",
        ));
    }
    Ok(Some(PaletteScoring {
        name: name.to_string(),
        context_tokens,
        per_prompt: split.is_array(),
    }))
}

/// A name of a file in one of the server's folders: no path, no hidden file.
pub fn check_file_name(param: &str, name: &str) -> Result<(), ApiError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(())
    } else {
        Err(ApiError::field(
            param,
            format!("{name:?} is not a file name in the server's folder"),
        ))
    }
}

/// One entry of `control_vectors`: a file of the server's control-vector folder, its scale
/// and the blocks it steers (inclusive; default all of the file's).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ControlRef {
    pub name: String,
    pub scale: Option<f32>,
    pub layers: Option<Vec<usize>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: String,
    pub add_special_tokens: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

/// A completions body checked without the model: every field's type and range, token ids
/// inside a vocabulary of `vocab`.
pub struct CheckedCompletion {
    pub body: serde_json::Value,
    pub palette: Option<(String, ethos_steer::palette::decode::PaletteMode, usize)>,
    pub palette_scoring: Option<PaletteScoring>,
    pub req: CompletionRequest,
    pub sampling: SamplingFields,
    pub prompts: Vec<PromptInput>,
    pub choices: Vec<SamplingParams>,
    pub stop: Vec<String>,
}

pub fn check_completion(
    body: &[u8],
    limits: &Limits,
    vocab: usize,
) -> Result<CheckedCompletion, ApiError> {
    let v = parse_object(body, &[COMPLETION_FIELDS, SHARED_FIELDS, SAMPLING_FIELDS])?;
    let req: CompletionRequest = read(&v)?;
    let sampling: SamplingFields = read(&v)?;
    check_logprobs(limits, "logprobs", req.logprobs)?;
    check_logprobs(limits, "prompt_logprobs", req.prompt_logprobs)?;
    let prompts = prompts(&req.prompt, limits)?;
    for p in &prompts {
        if let PromptInput::Ids(ids) = p {
            if let Some(t) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::field(
                    "prompt",
                    format!("token id {t} is outside the vocabulary ({vocab})"),
                ));
            }
        }
    }
    let (choices, stop) = sampling.params(vocab, limits)?;
    control_refs(&v)?;
    lora_refs(&v)?;
    let palette_scoring = palette_scoring(&v, prompts.len(), choices.len())?;
    let palette = match palette_scoring {
        Some(_) => None,
        None => palette(&v, prompts.len(), choices.len())?,
    };
    Ok(CheckedCompletion {
        body: v,
        palette,
        palette_scoring,
        req,
        sampling,
        prompts,
        choices,
        stop,
    })
}

/// A chat body checked without the model; `top` is the top log-probs per token when
/// `logprobs` is on.
pub struct CheckedChat {
    pub body: serde_json::Value,
    pub palette: Option<(String, ethos_steer::palette::decode::PaletteMode, usize)>,
    pub req: ChatRequest,
    pub sampling: SamplingFields,
    pub messages: Vec<Message>,
    pub top: Option<usize>,
    pub choices: Vec<SamplingParams>,
    pub stop: Vec<String>,
}

pub fn check_chat(body: &[u8], limits: &Limits, vocab: usize) -> Result<CheckedChat, ApiError> {
    let v = parse_object(body, &[CHAT_FIELDS, SHARED_FIELDS, SAMPLING_FIELDS])?;
    let req: ChatRequest = read(&v)?;
    let sampling: SamplingFields = read(&v)?;
    if req.messages.is_empty() {
        return Err(ApiError::field("messages", "is empty"));
    }
    let top = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (true, n) => Some(n.unwrap_or(0)),
        (false, Some(_)) => {
            return Err(ApiError::field("top_logprobs", "needs \"logprobs\": true"))
        }
        (false, None) => None,
    };
    check_logprobs(limits, "top_logprobs", top)?;
    let messages = req
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| Ok(Message::new(&m.role, &message_text(m, i)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let (choices, stop) = sampling.params(vocab, limits)?;
    control_refs(&v)?;
    lora_refs(&v)?;
    let palette = palette(&v, 1, choices.len())?;
    Ok(CheckedChat {
        body: v,
        palette,
        req,
        sampling,
        messages,
        top,
        choices,
        stop,
    })
}

fn check_logprobs(limits: &Limits, param: &str, n: Option<usize>) -> Result<(), ApiError> {
    let max = limits.max_logprobs;
    match n {
        Some(n) if n > max => Err(ApiError::field(
            param,
            format!("{n} is more than the limit of {max} (--max-logprobs)"),
        )),
        _ => Ok(()),
    }
}

/// The `control_vectors` entries of a body (empty when absent).
pub fn control_refs(v: &serde_json::Value) -> Result<Vec<ControlRef>, ApiError> {
    match v.get("control_vectors") {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(list) => read(list).map_err(|e| {
            let msg = e.message.trim_start_matches("request body: ").to_string();
            match e.param {
                Some(p) => ApiError::field(&format!("control_vectors{}", index_path(&p)), msg),
                None => ApiError::field("control_vectors", msg),
            }
        }),
    }
}

/// One entry of `lora`: an adapter of the server's adapter folder (`--lora-dir`), by name,
/// and its scale (default 1).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LoraRef {
    pub name: String,
    pub scale: Option<f32>,
}

/// The `lora` entries of a body (empty when absent), scales finite.
pub fn lora_refs(v: &serde_json::Value) -> Result<Vec<LoraRef>, ApiError> {
    let refs: Vec<LoraRef> = match v.get("lora") {
        None | Some(serde_json::Value::Null) => vec![],
        Some(list) => read(list).map_err(|e| {
            let msg = e.message.trim_start_matches("request body: ").to_string();
            match e.param {
                Some(p) => ApiError::field(&format!("lora{}", index_path(&p)), msg),
                None => ApiError::field("lora", msg),
            }
        })?,
    };
    for (i, r) in refs.iter().enumerate() {
        if r.scale.is_some_and(|s| !s.is_finite()) {
            return Err(ApiError::field(
                &format!("lora[{i}].scale"),
                "must be a finite number",
            ));
        }
    }
    Ok(refs)
}

/// `[0].scale` for the path `[0].scale` or `0.scale` of an element inside a list.
fn index_path(p: &str) -> String {
    if p.starts_with('[') {
        p.to_string()
    } else {
        format!(".{p}")
    }
}

/// A prompt as the request gave it: text to tokenize, or token ids.
#[derive(Debug)]
pub enum PromptInput {
    Text(String),
    Ids(Vec<u32>),
}

/// `prompt`: a string, a list of strings, a list of token ids or a list of such lists.
pub fn prompts(v: &serde_json::Value, limits: &Limits) -> Result<Vec<PromptInput>, ApiError> {
    use serde_json::Value;
    let ids = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| ApiError::field("prompt", "token ids must be integers >= 0"))
            })
            .collect()
    };
    let out = match v {
        Value::String(s) => vec![PromptInput::Text(s.clone())],
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::field("prompt", "is empty"));
        }
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|s| PromptInput::Text(s.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            vec![PromptInput::Ids(ids(items)?)]
        }
        Value::Array(items) if items.iter().all(Value::is_array) => items
            .iter()
            .map(|x| ids(x.as_array().map(Vec::as_slice).unwrap_or_default()).map(PromptInput::Ids))
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::field(
                "prompt",
                "must be a string, a list of strings, a list of token ids or a list of such lists",
            ))
        }
    };
    if out.len() > limits.max_prompts {
        return Err(ApiError::too_large(
            "prompt",
            format!(
                "{} prompts in one request, more than the limit of {} (--max-prompts)",
                out.len(),
                limits.max_prompts
            ),
        ));
    }
    Ok(out)
}

/// A chat message's text: a string, or a list of `{"type": "text", "text": ...}` parts.
pub fn message_text(m: &ChatMessage, i: usize) -> Result<String, ApiError> {
    use serde_json::Value;
    match &m.content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    _ => {
                        return Err(ApiError::field(
                            &format!("messages[{i}].content[{j}]"),
                            "only {\"type\": \"text\", \"text\": ...} parts are supported",
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::field(
            &format!("messages[{i}].content"),
            "must be a string or a list of text parts",
        )),
    }
}

impl SamplingFields {
    /// The sampling parameters of choice 0 (choice j draws with seed + j) and the stop
    /// strings, checked; `vocab` bounds `logit_bias`' ids.
    pub fn params(
        &self,
        vocab: usize,
        limits: &Limits,
    ) -> Result<(Vec<SamplingParams>, Vec<String>), ApiError> {
        let n = self.n.unwrap_or(1);
        if n == 0 {
            return Err(ApiError::field("n", "must be at least 1"));
        }
        if n > limits.max_n {
            return Err(ApiError::field(
                "n",
                format!("{n} is more than the limit of {} (--max-n)", limits.max_n),
            ));
        }
        let mut logit_bias = Vec::new();
        for (k, &b) in self.logit_bias.iter().flatten() {
            let id: u32 = k.trim().parse().map_err(|_| {
                ApiError::field("logit_bias", format!("key {k:?} is not a token id"))
            })?;
            if id as usize >= vocab {
                return Err(ApiError::field(
                    "logit_bias",
                    format!("token id {id} is outside the vocabulary ({vocab})"),
                ));
            }
            if !b.is_finite() {
                return Err(ApiError::field("logit_bias", "biases must be finite"));
            }
            logit_bias.push((id, b.clamp(-100.0, 100.0)));
        }
        // No seed: a fresh one per request, as OpenAI's API samples.
        let seed = self.seed.unwrap_or_else(random_seed);
        let base = SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_k: self.top_k.filter(|&k| k > 0).unwrap_or(0) as usize,
            top_p: self.top_p.unwrap_or(1.0),
            min_p: self.min_p.unwrap_or(0.0),
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logit_bias,
            seed,
        };
        base.validate().map_err(|e| {
            let msg = e.to_string();
            let param = msg
                .split_whitespace()
                .next()
                .unwrap_or("sampling")
                .to_string();
            ApiError::field(&param, msg)
        })?;
        let stop = match &self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.iter().any(String::is_empty) {
            return Err(ApiError::field(
                "stop",
                "an empty stop string would end every generation at once",
            ));
        }
        if stop.len() > 16 {
            return Err(ApiError::field("stop", "at most 16 stop strings"));
        }
        let choices = (0..n as u64)
            .map(|j| SamplingParams {
                seed: seed.wrapping_add(j),
                ..base.clone()
            })
            .collect();
        Ok((choices, stop))
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let known = &[COMPLETION_FIELDS, SHARED_FIELDS, SAMPLING_FIELDS][..];
        let e = parse_body::<CompletionRequest>(br#"{"prompt": "a", "temprature": 1}"#, known)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temprature"));
        assert!(
            e.message.contains("unknown field `temprature`"),
            "{}",
            e.message
        );
        let e = parse_body::<CompletionRequest>(br#"{"prompt": "a", "max_tokens": "x"}"#, known)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e =
            parse_body::<SamplingFields>(br#"{"prompt": "a", "top_p": "x"}"#, known).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("top_p"));
        let e = parse_body::<ChatRequest>(
            br#"{"messages": [{"role": "user", "content": "a", "x": 1}]}"#,
            &[CHAT_FIELDS],
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field `x`"), "{}", e.message);
        assert_eq!(e.param.as_deref(), Some("messages[0].x"));
        assert!(!e.message.contains("expected one of"), "{}", e.message);
        let e = parse_body::<CompletionRequest>(b"{", known).unwrap_err();
        assert!(e.message.starts_with("request body:"), "{}", e.message);
    }

    #[test]
    fn prompts_take_every_shape() {
        let l = Limits::default();
        let p = |v: serde_json::Value| prompts(&v, &l);
        assert_eq!(p(serde_json::json!("a")).unwrap().len(), 1);
        assert_eq!(p(serde_json::json!(["a", "b"])).unwrap().len(), 2);
        assert!(
            matches!(&p(serde_json::json!([1, 2])).unwrap()[0], PromptInput::Ids(v) if v == &[1, 2])
        );
        assert_eq!(p(serde_json::json!([[1], [2, 3]])).unwrap().len(), 2);
        for bad in [
            serde_json::json!([]),
            serde_json::json!([1, "a"]),
            serde_json::json!([-1]),
            serde_json::json!(3),
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("prompt"));
        }
    }

    #[test]
    fn sampling_fields_are_checked_by_name() {
        let l = Limits::default();
        let f = |v: serde_json::Value| {
            serde_json::from_value::<SamplingFields>(v)
                .unwrap()
                .params(100, &l)
        };
        let (c, _) = f(serde_json::json!({"n": 3, "seed": 7})).unwrap();
        assert_eq!(c.iter().map(|p| p.seed).collect::<Vec<_>>(), [7, 8, 9]);
        for (v, param) in [
            (serde_json::json!({"n": 0}), "n"),
            (serde_json::json!({"n": 1000}), "n"),
            (serde_json::json!({"top_p": 0}), "top_p"),
            (serde_json::json!({"temperature": -1}), "temperature"),
            (serde_json::json!({"logit_bias": {"100": 1}}), "logit_bias"),
            (serde_json::json!({"logit_bias": {"x": 1}}), "logit_bias"),
            (serde_json::json!({"stop": [""]}), "stop"),
        ] {
            let e = f(v.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{v}: {}", e.message);
        }
    }
}
