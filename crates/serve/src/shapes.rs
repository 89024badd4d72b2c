//! OpenAI's and vLLM's response shapes: the legacy completions log-probs (`tokens`,
//! `token_logprobs`, `top_logprobs`, `text_offset`) that lm-evaluation-harness reads, vLLM's
//! `prompt_logprobs`, the chat shape (`content[].top_logprobs`), and whole responses with
//! their steering reports.

use crate::engine::TokenLogprob;
use crate::request::{ChoiceOut, Endpoint, Prepared, PromptOut, Reports};
use crate::state::{unix_now, AppState};
use ethos_model::tokenizer::Tokenizer;
use ethos_steer::FinishReason;
use serde_json::{json, Map, Value};

/// The steering report of one choice: the steered and unsteered log-probs of its tokens
/// (and of the prompt's, where they were asked for).
pub fn report_json(
    tok: &Tokenizer,
    prompt: &[u32],
    prompt_lp: Option<&Vec<Option<TokenLogprob>>>,
    c: &ChoiceOut,
    unsteered: &[Option<TokenLogprob>],
) -> Value {
    let lp = |e: Option<&TokenLogprob>| e.map_or(Value::Null, |l| json!(l.logprob));
    let n = prompt.len();
    json!({
        "tokens": c.tokens.iter().map(|(id, _)| token_text(tok, *id)).collect::<Vec<_>>(),
        "steered_logprobs": c.tokens.iter().map(|(_, l)| lp(l.as_ref())).collect::<Vec<_>>(),
        "unsteered_logprobs": unsteered.iter().skip(n).map(|l| lp(l.as_ref())).collect::<Vec<_>>(),
        "prompt_steered_logprobs": prompt_lp.map(|v| v.iter().map(|l| lp(l.as_ref())).collect::<Vec<_>>()),
        "prompt_unsteered_logprobs": unsteered.iter().take(n).map(|l| lp(l.as_ref())).collect::<Vec<_>>(),
    })
}

pub fn finish_reason(f: Option<FinishReason>) -> Value {
    match f {
        Some(FinishReason::Length) => json!("length"),
        Some(FinishReason::Eos | FinishReason::Stop) => json!("stop"),
        None => Value::Null,
    }
}

pub fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id]).unwrap_or_default()
}

/// The legacy completions log-probs of `entries` (`None`: the first prompt token, which has
/// no log-prob), offsets counted in characters from `offset`.
pub fn legacy_logprobs(
    tok: &Tokenizer,
    entries: &[(u32, Option<&TokenLogprob>)],
    mut offset: usize,
) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    for &(id, lp) in entries {
        let text = token_text(tok, id);
        text_offset.push(offset);
        offset += text.chars().count();
        match lp {
            None => {
                token_logprobs.push(Value::Null);
                top_logprobs.push(Value::Null);
            }
            Some(lp) => {
                token_logprobs.push(json!(lp.logprob));
                let mut top = Map::new();
                top.insert(text.clone(), json!(lp.logprob));
                for &(t, l) in &lp.top {
                    top.entry(token_text(tok, t)).or_insert(json!(l));
                }
                top_logprobs.push(Value::Object(top));
            }
        }
        tokens.push(text);
    }
    json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

/// vLLM's `prompt_logprobs`: `[null, {"<id>": {"logprob", "rank", "decoded_token"}}, ...]`,
/// each entry the actual token and the top N.
pub fn vllm_prompt_logprobs(tok: &Tokenizer, entries: &[Option<TokenLogprob>]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| match e {
                None => Value::Null,
                Some(lp) => {
                    let mut m = Map::new();
                    m.insert(
                        lp.id.to_string(),
                        json!({"logprob": lp.logprob, "rank": lp.rank, "decoded_token": token_text(tok, lp.id)}),
                    );
                    for (r, &(t, l)) in lp.top.iter().enumerate() {
                        m.entry(t.to_string()).or_insert(
                            json!({"logprob": l, "rank": r + 1, "decoded_token": token_text(tok, t)}),
                        );
                    }
                    Value::Object(m)
                }
            })
            .collect(),
    )
}

/// The chat shape of one token's log-probs.
pub fn chat_logprob(tok: &Tokenizer, lp: &TokenLogprob) -> Value {
    let entry = |id: u32, l: f32| {
        let t = token_text(tok, id);
        json!({"token": t, "logprob": l, "bytes": t.as_bytes()})
    };
    let mut e = entry(lp.id, lp.logprob);
    e["top_logprobs"] = Value::Array(lp.top.iter().map(|&(t, l)| entry(t, l)).collect());
    e
}

pub fn request_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{prefix}-{:016x}",
        t.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}

pub fn usage(p: &Prepared, outs: &[PromptOut]) -> Value {
    let prompt: usize = p.prompts.iter().map(|(ids, _)| ids.len()).sum();
    let completion: usize = outs
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| c.tokens.len()))
        .sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

pub fn whole_response(
    state: &AppState,
    p: &Prepared,
    tok: &Tokenizer,
    outs: Vec<PromptOut>,
    reports: Option<Reports>,
) -> Value {
    let model = &state.config.served_model_name;
    let usage = usage(p, &outs);
    let mut choices = Vec::new();
    for (i, ((prompt_lp, chs), (ids, prompt_text))) in outs.iter().zip(&p.prompts).enumerate() {
        for (j, c) in chs.iter().enumerate() {
            let index = i * p.choices.len() + j;
            let report = reports
                .as_ref()
                .map(|r| report_json(tok, ids, prompt_lp.as_ref(), c, &r[i][j]));
            match p.endpoint {
                Endpoint::Completions => {
                    let mut text = String::new();
                    let mut entries: Vec<(u32, Option<&TokenLogprob>)> = Vec::new();
                    if p.echo {
                        text.push_str(prompt_text);
                        if let Some(lp) = prompt_lp {
                            entries.extend(ids.iter().zip(lp).map(|(&id, l)| (id, l.as_ref())));
                        }
                    }
                    text.push_str(&c.text);
                    entries.extend(c.tokens.iter().map(|(id, l)| (*id, l.as_ref())));
                    let logprobs = if p.logprobs.is_some() {
                        legacy_logprobs(tok, &entries, 0)
                    } else {
                        Value::Null
                    };
                    let prompt_logprobs = match (p.prompt_logprobs, prompt_lp) {
                        (Some(_), Some(lp)) => vllm_prompt_logprobs(tok, lp),
                        _ => Value::Null,
                    };
                    let mut choice = json!({
                        "index": index,
                        "text": text,
                        "logprobs": logprobs,
                        "finish_reason": finish_reason(c.finish),
                        "stop_reason": null,
                        "prompt_logprobs": prompt_logprobs,
                    });
                    if let Some(r) = report {
                        choice["steering_report"] = r;
                    }
                    choices.push(choice);
                }
                Endpoint::Chat => {
                    let logprobs = match p.logprobs {
                        Some(_) => {
                            json!({"content": c.tokens.iter().filter_map(|(_, l)| l.as_ref()).map(|l| chat_logprob(tok, l)).collect::<Vec<_>>()})
                        }
                        None => Value::Null,
                    };
                    let mut choice = json!({
                        "index": index,
                        "message": {"role": "assistant", "content": c.text},
                        "logprobs": logprobs,
                        "finish_reason": finish_reason(c.finish),
                    });
                    if let Some(r) = report {
                        choice["steering_report"] = r;
                    }
                    choices.push(choice);
                }
            }
        }
    }
    let (id, object) = match p.endpoint {
        Endpoint::Completions => (request_id("cmpl"), "text_completion"),
        Endpoint::Chat => (request_id("chatcmpl"), "chat.completion"),
    };
    json!({
        "id": id,
        "object": object,
        "created": unix_now(),
        "model": model,
        "choices": choices,
        "usage": usage,
    })
}
