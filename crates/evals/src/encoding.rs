//! Prompts as token ids: a benchmark's `Prompt` through the model's chat template (chat
//! formats) or lm-evaluation-harness' context/continuation split (raw formats).

use crate::benchmark::{Ask, Prompt};
use crate::error::{bail, Result};
use ethos_model::chat::{ChatTemplate, Message};
use ethos_model::scoring::continuation_split;

/// A prompt as token ids: the context and, when it is scored, each option's continuation.
pub struct Encoded {
    pub context: Vec<u32>,
    pub continuations: Vec<Vec<u32>>,
    pub max_tokens: usize,
}

pub use ethos_model::tokenizer::TextEncoder;

/// lm-evaluation-harness' rule: trailing whitespace of the context belongs to the
/// continuation (so "Answer: " + "Yes" is scored as "Answer:" + " Yes").
fn split_trailing_space(context: &str) -> (&str, &str) {
    let trimmed = context.trim_end();
    (trimmed, &context[trimmed.len()..])
}

/// `p` through a local model's tokenizer and chat template.
pub(crate) fn encode(model: &ethos_model::Model, p: &Prompt) -> Result<Encoded> {
    encode_with(model.tokenizer()?, model.chat_template.as_ref(), p)
}

/// A prompt as text: the context the model reads, and what comes between it and each option
/// (the continuation is `prefix` + option).
#[derive(Clone, Debug, PartialEq)]
pub struct PromptText {
    pub context: String,
    pub prefix: String,
    pub with_bos: bool,
}

/// `p` as text, through `template` where it is a chat prompt.
pub fn prompt_text(template: Option<&ChatTemplate>, p: &Prompt) -> Result<PromptText> {
    let scored = matches!(p.ask, Ask::Choose { .. });
    let (context, prefix, with_bos) = if p.chat {
        let Some(t) = template else {
            bail!(
                Selection,
                "the model has no chat template; use a raw format"
            );
        };
        let mut msgs = Vec::new();
        if let Some(s) = &p.system {
            msgs.push(Message::new("system", s));
        }
        msgs.extend(p.history.iter().cloned());
        msgs.push(Message::new("user", &p.body));
        let rendered = match &p.prefill {
            Some(start) => {
                msgs.push(Message::new("assistant", start));
                t.render_continuing(&msgs)?
            }
            None => t.render(&msgs, true)?,
        };
        if p.harness_split && scored {
            let (ctx, space) = split_trailing_space(&rendered);
            (ctx.to_string(), format!("{space}{}", p.delimiter), false)
        } else {
            // The rendered template is kept whole: its generation prompt is not the answer's.
            (rendered, String::new(), false)
        }
    } else {
        let raw = format!("{}{}", p.body, p.cue);
        if p.harness_split && !scored {
            (raw, String::new(), true)
        } else {
            let (ctx, space) = split_trailing_space(&raw);
            (ctx.to_string(), format!("{space}{}", p.delimiter), true)
        }
    };
    Ok(PromptText {
        context,
        prefix,
        with_bos,
    })
}

pub(crate) fn encode_with(
    tok: &dyn TextEncoder,
    template: Option<&ChatTemplate>,
    p: &Prompt,
) -> Result<Encoded> {
    let PromptText {
        context,
        prefix,
        with_bos,
    } = prompt_text(template, p)?;
    let ids = tok.encode_text(&context, with_bos)?;
    if ids.is_empty() {
        bail!(Data, "a prompt encodes to no tokens");
    }
    let (continuations, max_tokens) = match &p.ask {
        Ask::Choose { options } => (
            options
                .iter()
                .map(|o| {
                    continuation_split(
                        |text, special| tok.encode_text(text, special),
                        &ids,
                        &context,
                        &format!("{prefix}{o}"),
                        with_bos,
                    )
                    .map_err(Into::into)
                })
                .collect::<Result<Vec<_>>>()?,
            0,
        ),
        Ask::Generate { max_tokens, .. } => (Vec::new(), *max_tokens),
    };
    Ok(Encoded {
        context: ids,
        continuations,
        max_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_space_moves_to_the_continuation() {
        assert_eq!(split_trailing_space("Answer: "), ("Answer:", " "));
        assert_eq!(split_trailing_space("Answer:"), ("Answer:", ""));
        assert_eq!(split_trailing_space("x \n "), ("x", " \n "));
    }
}
