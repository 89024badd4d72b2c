//! A user's own benchmark, written as an lm-evaluation-harness task YAML over local data
//! (`ethos eval --task FILE`). Prompts are built as lm-eval builds them for its plain-text
//! models: the description, then each few-shot example's text, target delimiter, answer and
//! few-shot delimiter, then the item's text (and `gen_prefix`); each choice is scored as the
//! target delimiter followed by the choice. The `chat` format builds them as lm-eval's
//! `--apply_chat_template` does. Few-shot examples are drawn as lm-eval draws them (one
//! `random.Random(1234)` across the items in order, or the first N), so the same items get
//! the same examples.

pub mod config;
pub mod docs;
pub mod template;

use crate::benchmark::{argmax, argmax_norm, Answer, Ask, Benchmark, Judgement, Prompt};
use crate::data::{combined_sha256, Source};
use crate::error::{bail, Result, ResultExt};
use crate::pyrandom::PyRandom;
use config::{ExactMatch, FilterStep, OutputType, Sampler, TaskConfig};
use docs::{Doc, Splits};
use ethos_model::chat::Message;
use serde_json::Value;
use std::path::Path;
use template::{Target, Templates};

/// lm-eval's default seed of the few-shot sampler (`fewshot_random_seed`).
const FEWSHOT_SEED: u32 = 1234;

/// The one condition of a task, and its formats: the YAML as lm-eval runs it on a plain-text
/// model (`harness`) and with `--apply_chat_template` (`chat`: the description as the system
/// message, each few-shot example as a user turn and its answer as the assistant's, as lm-eval's
/// default `fewshot_as_multiturn` gives them, then the item, `gen_prefix` as the start of the
/// answer).
const CONDITIONS: &[&str] = &["default"];
const FORMAT: &str = "harness";
const CHAT: &str = "chat";

/// One item, rendered at load time (so that a template error stops the run before the model
/// loads), in the parts lm-eval's `fewshot_context` joins: raw, or as chat messages.
struct Item {
    /// The task's description: the start of a raw prompt, a chat prompt's system message.
    description: String,
    /// The few-shot examples as a raw prompt writes them.
    shots: String,
    /// The few-shot examples as chat turns: each example's text, then its answer.
    shot_turns: Vec<Message>,
    /// The item's text: the last user message of a chat prompt.
    text: String,
    /// `gen_prefix` rendered for the item, and the delimiter a raw prompt puts before it.
    gen_prefix: Option<(String, String)>,
    choices: Vec<String>,
    gold: Target,
}

impl Item {
    /// The prompt lm-eval builds for a plain-text model.
    fn raw_context(&self) -> String {
        let mut s = format!("{}{}{}", self.description, self.shots, self.text);
        if let Some((delimiter, prefix)) = &self.gen_prefix {
            s.push_str(delimiter);
            s.push_str(prefix);
        }
        s
    }
}

/// lm-eval's `requires_delimiter`: neither side has whitespace where they join.
fn requires_delimiter(prefix: &str, suffix: &str) -> bool {
    match (prefix.chars().last(), suffix.chars().next()) {
        (Some(a), Some(b)) => !(a.is_whitespace() || b.is_whitespace()),
        _ => false,
    }
}

/// lm-eval's `maybe_delimit`: `prefix` and `suffix` joined by `delimiter` unless either has
/// whitespace at the join.
fn maybe_delimit(prefix: Option<&str>, suffix: &str, delimiter: &str) -> String {
    match prefix {
        Some(p) if !p.is_empty() && !suffix.is_empty() => {
            if requires_delimiter(p, suffix) {
                format!("{p}{delimiter}{suffix}")
            } else {
                format!("{p}{suffix}")
            }
        }
        Some(p) if !p.is_empty() => p.to_string(),
        _ => suffix.to_string(),
    }
}

pub struct Task {
    pub config: TaskConfig,
    pub sources: Vec<Source>,
    items: Vec<Item>,
}

impl Task {
    pub fn load(path: &Path) -> Result<Self> {
        let config = TaskConfig::read(path)?;
        config.check_split(config.eval_split_key(), config.eval_split())?;
        if config.num_fewshot > 0 {
            config.check_split(config.fewshot_source_key(), config.fewshot_source())?;
        }
        let splits = Splits::load(&config.data)?;
        let name = path.display().to_string();
        let t = Templates::new(&name, splits.features.clone());
        let eval_docs = splits.get(config.eval_split());
        let shots = if config.num_fewshot > 0 {
            fewshot_examples(&config, &splits, eval_docs)?
        } else {
            vec![Vec::new(); eval_docs.len()]
        };
        let has_choices = config.doc_to_choice.is_some();
        let choices_of = |doc: &Doc| -> Result<Vec<String>> {
            match &config.doc_to_choice {
                Some(spec) => t.choices("doc_to_choice", spec, doc),
                None => Ok(Vec::new()),
            }
        };
        // A few-shot example's answer: the choice its target indexes, or the target's text.
        // A few-shot example's answer: the choice its target indexes, or the target's text;
        // none where the target is empty text (lm-eval then writes no answer turn).
        let answer_of = |doc: &Doc| -> Result<Option<String>> {
            // lm-eval renders an example's choices whether or not its answer needs them.
            let choices = choices_of(doc)?;
            Ok(
                match t.target("doc_to_target", &config.doc_to_target, doc, has_choices)? {
                    Target::Index(i) if has_choices => {
                        Some(choices.get(i as usize).cloned().ok_or_else(|| crate::error::Error::Data(format!("{name}: `doc_to_target` gives index {i} for a few-shot example with {} choices", choices.len())))?)
                    }
                    Target::Index(i) => Some(i.to_string()),
                    Target::Text(s) if s.is_empty() => None,
                    Target::Text(s) => Some(s),
                },
            )
        };
        let gen_prefix_of = |doc: &Doc| -> Result<Option<String>> {
            match &config.gen_prefix {
                Some(spec) => {
                    Ok(
                        Some(t.text("gen_prefix", &config::DocTo::Text(spec.clone()), doc)?)
                            .filter(|p| !p.is_empty()),
                    )
                }
                None => Ok(None),
            }
        };
        let delimiter = &config.target_delimiter;
        let mut items = Vec::with_capacity(eval_docs.len());
        for (i, (doc, shots_of_item)) in eval_docs.iter().zip(&shots).enumerate() {
            let at = || format!("{name}: item {i} of split `{}`", config.eval_split());
            let description = if config.description.is_empty() {
                String::new()
            } else {
                // lm-eval's `resolve_field`: a column's value, or the rendered template.
                t.text(
                    "description",
                    &config::DocTo::Text(config.description.clone()),
                    doc,
                )
                .context(at)?
            };
            // lm-eval's `build_qa_turn` for each example: its text, a delimiter, then its
            // answer (after the `gen_prefix`, where there is one) and the few-shot delimiter.
            let (mut shots, mut shot_turns) = (String::new(), Vec::new());
            for shot in shots_of_item {
                let q = t
                    .text("doc_to_text", &config.doc_to_text, shot)
                    .context(at)?;
                let prefix = gen_prefix_of(shot).context(at)?;
                let answer = answer_of(shot).context(at)?;
                shots.push_str(&q);
                shot_turns.push(Message::new("user", &q));
                let joins = match &prefix {
                    None => answer.is_some(),
                    Some(p) => requires_delimiter(&q, p),
                };
                if joins {
                    shots.push_str(delimiter);
                }
                match (answer, prefix) {
                    (Some(answer), prefix) => {
                        let reply = maybe_delimit(prefix.as_deref(), &answer, " ");
                        shots.push_str(&reply);
                        shots.push_str(&config.fewshot_delimiter);
                        shot_turns.push(Message::new("assistant", &reply));
                    }
                    (None, Some(prefix)) => {
                        shots.push_str(&prefix);
                        shot_turns.push(Message::new("assistant", &prefix));
                    }
                    (None, None) => {}
                }
            }
            let text = t
                .text("doc_to_text", &config.doc_to_text, doc)
                .context(at)?;
            let gen_prefix = gen_prefix_of(doc).context(at)?.map(|p| {
                let d = if requires_delimiter(&text, &p) {
                    delimiter.clone()
                } else {
                    String::new()
                };
                (d, p)
            });
            let choices = choices_of(doc).context(at)?;
            if config.output_type == OutputType::MultipleChoice && choices.is_empty() {
                bail!(Data, "{}: `doc_to_choice` gives no choices", at());
            }
            let gold = t
                .target("doc_to_target", &config.doc_to_target, doc, has_choices)
                .context(at)?;
            items.push(Item {
                description,
                shots,
                shot_turns,
                text,
                gen_prefix,
                choices,
                gold,
            });
        }
        if items.is_empty() {
            bail!(Data, "{name}: split `{}` has no items", config.eval_split());
        }
        // The task file, its includes and its data: a resumed run must see them unchanged.
        let mut sources = config
            .files
            .iter()
            .map(|f| Source::read(f))
            .collect::<Result<Vec<_>>>()?;
        sources.extend(splits.sources);
        Ok(Self {
            config,
            sources,
            items,
        })
    }

    /// The SHA-256 of the task file, the files it includes and its data together (a resumed
    /// run must see them all unchanged).
    pub fn sha256(&self) -> String {
        combined_sha256(&self.sources.iter().collect::<Vec<_>>())
    }

    /// The prompt text of item `i` (the context lm-eval builds for it).
    pub fn context(&self, i: usize) -> String {
        self.items[i].raw_context()
    }

    /// The continuations item `i`'s choices are scored as.
    pub fn continuations(&self, i: usize) -> Vec<String> {
        self.items[i]
            .choices
            .iter()
            .map(|c| format!("{}{c}", self.config.target_delimiter))
            .collect()
    }

    /// The gold choice's index, or `None` where the target names no choice (lm-eval counts
    /// such an item wrong).
    fn gold_index(&self, i: usize) -> Option<usize> {
        let item = &self.items[i];
        match &item.gold {
            Target::Index(g) => usize::try_from(*g).ok().filter(|g| *g < item.choices.len()),
            Target::Text(s) => item.choices.iter().position(|c| c == s),
        }
    }

    /// The strings that end a generation: `generation_kwargs.until`, else the few-shot
    /// delimiter (lm-eval's default).
    fn until(&self) -> Vec<String> {
        self.config
            .until
            .clone()
            .unwrap_or_else(|| vec![self.config.fewshot_delimiter.clone()])
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect()
    }

    fn gold_text(&self, i: usize) -> String {
        let item = &self.items[i];
        match &item.gold {
            Target::Index(g) => usize::try_from(*g)
                .ok()
                .and_then(|g| item.choices.get(g).cloned())
                .unwrap_or_else(|| g.to_string()),
            Target::Text(s) => s.clone(),
        }
    }
}

/// The few-shot documents of each item, drawn in item order as lm-eval's sampler draws them.
fn fewshot_examples(
    config: &TaskConfig,
    splits: &Splits,
    eval_docs: &[Doc],
) -> Result<Vec<Vec<Doc>>> {
    let pool = splits.get(config.fewshot_source());
    let n = config.num_fewshot;
    // lm-eval leaves the item itself out only where the few-shot split is the test split.
    let exclude = config.fewshot_split == config.test_split;
    let wanted = n + usize::from(exclude);
    if pool.len() < wanted {
        bail!(
            Data,
            "{}: `num_fewshot: {n}` needs {wanted} documents in split `{}`, which has {}",
            config.path.display(),
            config.fewshot_source(),
            pool.len()
        );
    }
    let mut rnd = PyRandom::new(FEWSHOT_SEED);
    Ok(eval_docs
        .iter()
        .map(|doc| match config.sampler {
            Sampler::Random => rnd
                .sample(pool.len(), wanted)
                .into_iter()
                .map(|j| &pool[j])
                .filter(|d| !exclude || *d != doc)
                .take(n)
                .cloned()
                .collect(),
            Sampler::FirstN => pool
                .iter()
                .filter(|d| !exclude || *d != doc)
                .take(n)
                .cloned()
                .collect(),
        })
        .collect())
}

/// The generated text cut at the first stop sequence, as lm-eval's models cut it.
fn cut_at_stops(text: &str, until: &[String]) -> String {
    let mut s = text;
    for stop in until.iter().filter(|u| !u.is_empty()) {
        if let Some(at) = s.find(stop.as_str()) {
            s = &s[..at];
        }
    }
    s.to_string()
}

/// `filter_list`'s pipeline on one answer.
fn apply_filters(text: String, steps: &[FilterStep]) -> Result<String> {
    let mut s = text;
    for step in steps {
        s = match step {
            FilterStep::Regex {
                pattern,
                group_select,
                fallback,
            } => {
                let re = regex::Regex::new(pattern).map_err(|e| {
                    crate::error::Error::Data(format!("filter regex `{pattern}`: {e}"))
                })?;
                // lm-eval's RegexFilter: all matches (`findall`), one picked by
                // `group_select` (negative from the end); a match with groups gives its
                // first non-empty group.
                // (Python's `findall`: one group gives that group, several give a tuple of
                // which the first non-empty one counts, none non-empty the fallback.)
                let matches: Vec<Option<String>> = re
                    .captures_iter(&s)
                    .map(|c| match c.len() {
                        1 => Some(c[0].to_string()),
                        2 => Some(c.get(1).map_or("", |m| m.as_str()).to_string()),
                        _ => (1..c.len())
                            .filter_map(|g| c.get(g).map(|m| m.as_str()))
                            .find(|m| !m.is_empty())
                            .map(str::to_string),
                    })
                    .collect();
                let k = *group_select;
                let idx = if k < 0 { matches.len() as i64 + k } else { k };
                match usize::try_from(idx).ok().and_then(|i| matches.get(i)) {
                    Some(Some(m)) => m.trim().to_string(),
                    _ => fallback.clone(),
                }
            }
            FilterStep::TakeFirst => s,
            FilterStep::Lowercase => s.to_lowercase(),
            FilterStep::Uppercase => s.to_uppercase(),
            // lm-eval's WhitespaceFilter drops one leading space.
            FilterStep::RemoveWhitespace => s.strip_prefix(' ').map(str::to_string).unwrap_or(s),
        };
    }
    Ok(s)
}

/// lm-eval's `exact_match` (Hugging Face `evaluate`'s): both sides through the same
/// removals and case folding, then equality.
fn exact_match(pred: &str, gold: &str, opts: &ExactMatch) -> Result<bool> {
    let norm = |s: &str| -> Result<String> {
        let mut s = s.to_string();
        for r in &opts.regexes_to_ignore {
            let re = regex::Regex::new(r)
                .map_err(|e| crate::error::Error::Data(format!("regexes_to_ignore `{r}`: {e}")))?;
            s = re.replace_all(&s, "").into_owned();
        }
        if opts.ignore_case {
            s = s.to_lowercase();
        }
        if opts.ignore_punctuation {
            s.retain(|c| !c.is_ascii_punctuation());
        }
        if opts.ignore_numbers {
            s.retain(|c| !c.is_ascii_digit());
        }
        Ok(s)
    };
    Ok(norm(pred)? == norm(gold)?)
}

impl Benchmark for Task {
    fn name(&self) -> &str {
        &self.config.task
    }
    fn item_count(&self) -> usize {
        self.items.len()
    }
    fn item_id(&self, i: usize) -> String {
        i.to_string()
    }
    fn conditions(&self) -> &'static [&'static str] {
        CONDITIONS
    }
    fn check_format(&self, format: &str) -> Result<()> {
        if format == FORMAT || format == CHAT {
            return Ok(());
        }
        bail!(
            Selection,
            "unknown format `{format}` for a task file (known: {FORMAT}, lm-eval's plain prompt; {CHAT}, as lm-eval's --apply_chat_template builds it; grid, both)"
        )
    }
    fn default_formats(&self) -> Vec<String> {
        vec![FORMAT.to_string()]
    }
    fn expand_format(&self, name: &str) -> Vec<String> {
        if name == "grid" {
            vec![FORMAT.to_string(), CHAT.to_string()]
        } else {
            vec![name.to_string()]
        }
    }
    fn prompts(
        &self,
        i: usize,
        _condition: &str,
        format: &str,
        _chat: bool,
    ) -> Result<Vec<Prompt>> {
        let item = &self.items[i];
        let ask = match self.config.output_type {
            OutputType::MultipleChoice => Ask::Choose {
                options: item.choices.clone(),
            },
            // lm-eval's models stop at the `until` strings: so does the generation.
            OutputType::GenerateUntil => Ask::Generate {
                max_tokens: self.config.max_gen_toks,
                stop: self.until(),
            },
        };
        let mut p = if format == CHAT {
            // lm-eval's chat requests: no target delimiter before a choice unless the
            // answer's start ends without a space.
            let delimiter = match &self.config.gen_prefix {
                Some(g) if !g.is_empty() && !g.ends_with(char::is_whitespace) => {
                    self.config.target_delimiter.as_str()
                }
                _ => "",
            };
            let mut p = Prompt::raw(item.text.clone(), delimiter, ask);
            p.chat = true;
            p.system = Some(item.description.clone()).filter(|d| !d.is_empty());
            p.history = item.shot_turns.clone();
            p.prefill = item.gen_prefix.as_ref().map(|(_, g)| g.clone());
            p
        } else {
            Prompt::raw(item.raw_context(), &self.config.target_delimiter, ask)
        };
        p.harness_split = true;
        Ok(vec![p])
    }
    fn judge(
        &self,
        i: usize,
        _condition: &str,
        _format: &str,
        _prompts: &[Prompt],
        answers: &[Answer],
    ) -> Result<Judgement> {
        let item = &self.items[i];
        let gold = self.gold_text(i);
        match answers {
            [Answer::Options(lps)] => {
                let pred = argmax(lps);
                let gold_index = self.gold_index(i);
                let mut logprobs = serde_json::Map::new();
                for (c, lp) in item.choices.iter().zip(lps) {
                    logprobs.insert(c.clone(), Value::from(*lp));
                }
                Ok(Judgement {
                    prediction: item.choices[pred].clone(),
                    gold,
                    correct: gold_index == Some(pred),
                    correct_norm: self
                        .config
                        .acc_norm
                        .then(|| gold_index == Some(argmax_norm(lps, &item.choices))),
                    option_logprobs: Value::Object(logprobs),
                    generated: None,
                    score: None,
                })
            }
            [Answer::Text(text)] => {
                let answer = apply_filters(cut_at_stops(text, &self.until()), &self.config.filter)?;
                let opts = self.config.exact_match.clone().unwrap_or_default();
                Ok(Judgement {
                    correct: exact_match(&answer, &gold, &opts)?,
                    prediction: answer,
                    gold,
                    correct_norm: None,
                    option_logprobs: Value::Null,
                    generated: Some(text.clone()),
                    score: None,
                })
            }
            _ => bail!(Internal, "task item {i}: one answer expected"),
        }
    }
}

#[cfg(test)]
mod tests;
