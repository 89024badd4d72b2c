//! Persona (cultural) prompting as a condition on any benchmark (`ethos eval ... --persona
//! "a person from Hong Kong"`): the same items asked with an instruction to answer as that
//! persona, compared item by item with the run without one.
//!
//! The instruction ("You are a person from Hong Kong." by default; `--persona-template`)
//! goes where a prompt's instructions go: a chat prompt's system message (before the
//! benchmark's own system message, if it has one), and for a raw prompt a first paragraph
//! before the benchmark's text. The options and their scoring are unchanged.

use crate::benchmark::{Answer, Benchmark, Judgement, Prompt};
use crate::error::{bail, Error, Result};
use std::path::Path;

/// The default instruction; `{persona}` is replaced by the persona.
pub const DEFAULT_TEMPLATE: &str = "You are {persona}.";

/// The most personas one run takes (each is a full run of the benchmark).
pub const MAX_PERSONAS: usize = 64;

/// A persona and the instruction made from it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Persona {
    pub persona: String,
    pub instruction: String,
}

impl Persona {
    pub fn new(persona: &str, template: &str) -> Result<Self> {
        let persona = persona.trim();
        if persona.is_empty() {
            bail!(Selection, "--persona: an empty persona");
        }
        if !template.contains("{persona}") {
            bail!(
                Selection,
                "--persona-template `{template}` has no `{{persona}}` to put the persona in"
            );
        }
        Ok(Self {
            persona: persona.to_string(),
            instruction: template.replace("{persona}", persona),
        })
    }

    /// A folder name for this persona's run: its position and a slug of its words.
    pub fn folder(&self, index: usize) -> String {
        let slug: String = self
            .persona
            .chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .split('-')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let slug: String = slug.chars().take(40).collect();
        format!("persona-{}-{slug}", index + 1)
    }
}

/// The personas of a file: one per line; blank lines and lines starting with `#` are skipped.
pub fn read_personas(path: &Path, template: &str) -> Result<Vec<Persona>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(Persona::new(line, template)?);
        if out.len() > MAX_PERSONAS {
            bail!(
                Limit,
                "{}: more than {MAX_PERSONAS} personas (each is a full run of the benchmark)",
                path.display()
            );
        }
    }
    if out.is_empty() {
        bail!(Data, "{}: no personas (one per line)", path.display());
    }
    Ok(out)
}

/// `inner` with every prompt carrying the persona's instruction.
pub struct WithPersona<'b> {
    pub inner: &'b dyn Benchmark,
    pub persona: Persona,
}

impl WithPersona<'_> {
    fn instruct(&self, mut p: Prompt) -> Prompt {
        let i = &self.persona.instruction;
        if p.chat {
            p.system = Some(match p.system.take() {
                Some(s) => format!("{i}\n\n{s}"),
                None => i.clone(),
            });
        } else {
            p.body = format!("{i}\n\n{}", p.body);
        }
        p
    }
}

impl Benchmark for WithPersona<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn item_count(&self) -> usize {
        self.inner.item_count()
    }
    fn item_id(&self, i: usize) -> String {
        self.inner.item_id(i)
    }
    fn groups(&self, i: usize) -> Vec<(&'static str, String)> {
        self.inner.groups(i)
    }
    fn has_gold(&self) -> bool {
        self.inner.has_gold()
    }
    fn paired_conditions(&self) -> Option<(&'static str, &'static str, &'static str)> {
        self.inner.paired_conditions()
    }
    fn paired(&self, i: usize) -> bool {
        self.inner.paired(i)
    }
    fn conditions(&self) -> &'static [&'static str] {
        self.inner.conditions()
    }
    fn consistency_conditions(&self) -> &'static [&'static str] {
        self.inner.consistency_conditions()
    }
    fn check_format(&self, format: &str) -> Result<()> {
        self.inner.check_format(format)
    }
    fn default_formats(&self) -> Vec<String> {
        self.inner.default_formats()
    }
    fn expand_format(&self, name: &str) -> Vec<String> {
        self.inner.expand_format(name)
    }
    fn applies(&self, i: usize, condition: &str, format: &str) -> bool {
        self.inner.applies(i, condition, format)
    }
    fn prompts(
        &self,
        i: usize,
        condition: &str,
        format: &str,
        chat_available: bool,
    ) -> Result<Vec<Prompt>> {
        Ok(self
            .inner
            .prompts(i, condition, format, chat_available)?
            .into_iter()
            .map(|p| self.instruct(p))
            .collect())
    }
    fn judge(
        &self,
        i: usize,
        condition: &str,
        format: &str,
        prompts: &[Prompt],
        answers: &[Answer],
    ) -> Result<Judgement> {
        self.inner.judge(i, condition, format, prompts, answers)
    }
    fn reference(&self) -> Option<(&'static str, f64)> {
        self.inner.reference()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::benchmarks::task::Task;

    #[test]
    fn the_instruction_goes_first_in_raw_prompts_and_into_the_system_message_in_chat_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("d.jsonl"), "{\"q\": \"Q?\", \"a\": 0}\n").unwrap();
        let yaml = dir.path().join("t.yaml");
        std::fs::write(
            &yaml,
            "task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: d.jsonl\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{q}}\"\ndoc_to_choice: [\"x\", \"y\"]\ndoc_to_target: a\n",
        )
        .unwrap();
        let task = Task::load(&yaml).unwrap();
        let p = Persona::new(" a person from Hong Kong ", DEFAULT_TEMPLATE).unwrap();
        assert_eq!(p.instruction, "You are a person from Hong Kong.");
        assert_eq!(p.folder(0), "persona-1-a-person-from-hong-kong");
        let with = WithPersona {
            inner: &task,
            persona: p.clone(),
        };
        let raw = &with.prompts(0, "default", "harness", true).unwrap()[0];
        assert_eq!(raw.body, "You are a person from Hong Kong.\n\nQ?");
        assert_eq!(raw.system, None);
        let mut chat = task
            .prompts(0, "default", "harness", true)
            .unwrap()
            .remove(0);
        chat.chat = true;
        chat.system = Some("Answer with one letter.".into());
        let chat = with.instruct(chat);
        assert_eq!(
            chat.system.as_deref(),
            Some("You are a person from Hong Kong.\n\nAnswer with one letter.")
        );
        assert_eq!(chat.body, "Q?");
    }

    #[test]
    fn bad_personas_and_templates_are_refused() {
        let e = Persona::new("x", "Answer as a local.")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no `{persona}`"), "{e}");
        assert!(Persona::new("  ", DEFAULT_TEMPLATE).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.txt");
        std::fs::write(&f, "# none\n\n").unwrap();
        let e = read_personas(&f, DEFAULT_TEMPLATE).unwrap_err().to_string();
        assert!(e.contains("p.txt: no personas"), "{e}");
        std::fs::write(&f, "a person from Japan\n# skip\na person from Kenya\n").unwrap();
        let ps = read_personas(&f, DEFAULT_TEMPLATE).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[1].instruction, "You are a person from Kenya.");
        let many: String = (0..=MAX_PERSONAS).map(|i| format!("p{i}\n")).collect();
        std::fs::write(&f, many).unwrap();
        let e = read_personas(&f, DEFAULT_TEMPLATE).unwrap_err().to_string();
        assert!(e.contains("more than"), "{e}");
    }
}
