//! Chat templates: the model's own Jinja template (from `tokenizer_config.json` or GGUF
//! `tokenizer.chat_template`), rendered with minijinja the way transformers renders it
//! (trim_blocks, lstrip_blocks, Python string methods, `raise_exception`).

use crate::error::{Error, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Template instructions one rendering may run (minijinja's fuel): a chat template from a
/// stranger's file that loops without end, or fans out macros, stops here with an error.
/// Real templates over hundreds of turns use a small share of it.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

/// What one rendering may hold in memory, and for how long it may run, where the `ethos`
/// binary's allocator counts it (`crate::budget`): string doubling, huge `indent` widths and
/// `replace('', ...)` stop here instead of exhausting memory.
pub const TEMPLATE_MEMORY: usize = 256 << 20;
pub const TEMPLATE_TIME: std::time::Duration = std::time::Duration::from_secs(10);

static MEMORY: AtomicUsize = AtomicUsize::new(TEMPLATE_MEMORY);
static TIME_MS: AtomicU64 = AtomicU64::new(TEMPLATE_TIME.as_millis() as u64);

/// Sets the memory and time budgets of later renderings (the defaults are `TEMPLATE_MEMORY`
/// and `TEMPLATE_TIME`). The fuzz targets lower them: a rendering stopped at its memory budget
/// keeps that memory until the process ends.
pub fn set_template_budget(memory: usize, time: std::time::Duration) {
    MEMORY.store(memory, Ordering::Relaxed);
    TIME_MS.store(time.as_millis() as u64, Ordering::Relaxed);
}

/// The longest rendered prompt handed to the tokenizer (a template that multiplies strings
/// made 100 MB prompts, which the tokenizer took gigabytes to split).
pub const MAX_PROMPT_BYTES: usize = 16 << 20;

#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

impl ChatTemplate {
    pub fn new(source: String, bos_token: String, eos_token: String) -> Self {
        Self {
            source,
            bos_token,
            eos_token,
        }
    }

    /// The prompt for `messages`, rendered under the template budgets (fuel, memory, time,
    /// stack).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.clone();
        let messages = messages.to_vec();
        let memory = MEMORY.load(Ordering::Relaxed);
        let time = std::time::Duration::from_millis(TIME_MS.load(Ordering::Relaxed));
        let out = crate::budget::run_with_budget(memory, time, move || {
            template.render_here(&messages, add_generation_prompt)
        });
        let text = match out {
            Ok(text) => text?,
            Err(overrun) => {
                use crate::budget::Overrun;
                let why = match overrun {
                    Overrun::Memory => {
                        format!("it needed more than {} MiB while rendering", memory >> 20)
                    }
                    Overrun::Time => format!("it ran longer than {:.1} s", time.as_secs_f64()),
                    Overrun::Stack => {
                        "it recursed past its stack (a namespace that holds itself?)".into()
                    }
                    Overrun::Panic => "the template engine failed on it".into(),
                };
                return Err(Error::Limit(format!("chat template failed: {why}")));
            }
        };
        if text.len() > MAX_PROMPT_BYTES {
            return Err(Error::Limit(format!(
                "chat template rendered {} bytes, more than the limit of {MAX_PROMPT_BYTES}",
                text.len()
            )));
        }
        Ok(text)
    }

    /// The prompt for `messages` with the last one (an assistant's start) left open for the
    /// model to continue, as transformers' `continue_final_message` renders it: a marker is
    /// appended to the last message and the text is cut where the marker begins.
    pub fn render_continuing(&self, messages: &[Message]) -> Result<String> {
        const MARK: &str = "CONTINUE_FINAL_MESSAGE_TAG ";
        let Some(last) = messages.last() else {
            return Err(Error::Msg("no message to continue".into()));
        };
        let mut marked = messages.to_vec();
        if let Some(m) = marked.last_mut() {
            m.content.push_str(MARK);
        }
        let text = self.render(&marked, false)?;
        let at = match text.rfind(MARK.trim_end()) {
            Some(at) if text.contains(last.content.trim()) => at,
            _ => return Err(Error::Msg(
                "the chat template drops the start of the answer that the model should continue"
                    .into(),
            )),
        };
        Ok(if text[at..].starts_with(MARK) {
            text[..at].to_string()
        } else {
            // The template trimmed the message's trailing space: so is the cut.
            text[..at].trim_end().to_string()
        })
    }

    fn render_here(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", &self.source).map_err(|e| {
            Error::Msg(format!(
                "chat template does not parse: {}",
                crate::error::one_line(&e)
            ))
        })?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::Msg(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| {
            let why = if e.kind() == minijinja::ErrorKind::OutOfFuel {
                format!("ran past its budget of {TEMPLATE_FUEL} instructions")
            } else {
                crate::error::one_line(&e)
            };
            Error::Limit(format!("chat template failed: {why}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ChatML as SmolLM2 ships it (abridged): a default system line, then turns.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_default_system() {
        let t = ChatTemplate::new(CHATML.into(), String::new(), String::new());
        let out = t.render(&[Message::new("user", "Hi")], true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_continued_answer_is_left_open_as_transformers_leaves_it() {
        let t = ChatTemplate::new(CHATML.into(), String::new(), String::new());
        let msgs = [
            Message::new("user", "Hi"),
            Message::new("assistant", "The answer is"),
        ];
        assert_eq!(
            t.render_continuing(&msgs).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nThe answer is"
        );
        // A template that strips messages trims the cut too (transformers' second case).
        let strip = ChatTemplate::new(
            "{% for m in messages %}<{{ m['role'] }}>{{ m['content'].strip() }}</s>{% endfor %}"
                .into(),
            String::new(),
            String::new(),
        );
        let msgs = [Message::new("user", "Q"), Message::new("assistant", "A: ")];
        assert_eq!(
            strip.render_continuing(&msgs).unwrap(),
            "<user>Q</s><assistant>A:"
        );
        // One that drops the answer cannot be continued.
        let drop = ChatTemplate::new(
            "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}".into(),
            String::new(),
            String::new(),
        );
        assert!(drop.render_continuing(&msgs).is_err());
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let t = ChatTemplate::new("{{ messages[0]['content'].strip() }}{% if messages|length > 1 %}{{ raise_exception('one only') }}{% endif %}".into(), String::new(), String::new());
        assert_eq!(
            t.render(&[Message::new("user", "  x ")], false).unwrap(),
            "x"
        );
        let e = t
            .render(
                &[Message::new("user", "a"), Message::new("user", "b")],
                false,
            )
            .unwrap_err();
        assert!(e.to_string().contains("one only"));
    }

    /// A template that loops without end stops at its budget with one line, in well under a
    /// second; one that renders a prompt past the limit is refused before tokenizing.
    #[test]
    fn hostile_templates_stop_at_their_budget() {
        let spin = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                .into(),
            String::new(),
            String::new(),
        );
        let e = spin
            .render(&[Message::new("user", "hi")], true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("budget") && !e.contains('\n'), "{e}");
        let wide = ChatTemplate::new(
            "{{ messages[0]['content'] * 9000000 }}".into(),
            String::new(),
            String::new(),
        );
        let e = wide
            .render(&[Message::new("user", "ab")], true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than the limit"), "{e}");
    }
}
