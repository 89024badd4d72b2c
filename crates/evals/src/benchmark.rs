//! The one small trait every benchmark implements, and the types it speaks in.
//!
//! A benchmark is a list of items. For each item, condition (NormAd's context levels,
//! CulturalBench's Easy/Hard) and prompt format it builds one or more prompts; the runner
//! scores or generates them and hands the answers back to `judge`, which says what the
//! model predicted and whether that is right. Benchmarks never see the model.

use crate::error::Result;
use serde_json::Value;

/// What the runner should do with a prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum Ask {
    /// Score each option as a continuation of the prompt (log-likelihood).
    Choose { options: Vec<String> },
    /// Generate greedily up to `max_tokens` tokens, stopping where any of `stop` appears (the
    /// text ends before it).
    Generate {
        max_tokens: usize,
        stop: Vec<String>,
    },
}

/// One prompt, before any template is applied.
///
/// Raw: the context is `body + cue` and option `o` is the continuation `delimiter + o`
/// (lm-evaluation-harness' target delimiter, `" "` unless the prompt ends in a space). Chat: the body is the user message (after an
/// optional system message), rendered by the model's chat template with the generation
/// prompt, and the option is the assistant's first words, with no delimiter.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub system: Option<String>,
    pub body: String,
    pub cue: String,
    pub delimiter: String,
    pub chat: bool,
    /// Chat prompts: earlier turns between the system message and `body` (few-shot
    /// examples as a conversation, as lm-eval's `fewshot_as_multiturn` gives them).
    pub history: Vec<ethos_model::chat::Message>,
    /// Chat prompts: the start of the assistant's answer, which the model continues
    /// (lm-eval's `gen_prefix`, rendered as transformers' `continue_final_message`).
    pub prefill: Option<String>,
    /// lm-evaluation-harness' encoding (task files): a scored option's context gives its
    /// trailing whitespace to the continuation in chat prompts too, and a generation's
    /// context is kept whole.
    pub harness_split: bool,
    pub ask: Ask,
}

impl Prompt {
    /// A raw (no chat template) prompt: `body`, then each option after `delimiter`.
    pub fn raw(body: String, delimiter: &str, ask: Ask) -> Self {
        Self {
            system: None,
            body,
            cue: String::new(),
            delimiter: delimiter.to_string(),
            chat: false,
            history: Vec::new(),
            prefill: None,
            harness_split: false,
            ask,
        }
    }
}

/// The model's answer to one prompt.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Summed log-prob of each option, in the prompt's option order.
    Options(Vec<f64>),
    Text(String),
}

/// What the model predicted for one (item, condition, format), and whether it is right.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Judgement {
    /// The answer in the dataset's own terms (an option letter of the original order, a label).
    pub prediction: String,
    pub gold: String,
    pub correct: bool,
    /// lm-evaluation-harness `acc_norm` (log-likelihood divided by the option's length in
    /// characters), where the item is scored by options.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub correct_norm: Option<bool>,
    /// Option log-probs keyed by the dataset's own option names.
    pub option_logprobs: Value,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub generated: Option<String>,
    /// A graded answer in [-1, 1] (CIVICS agreement), for benchmarks without gold answers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub score: Option<f64>,
}

/// What a benchmark must say; the runner does the rest (encoding, scoring or generating,
/// batching, resuming, metrics and reports).
pub trait Benchmark {
    fn name(&self) -> &str;
    fn item_count(&self) -> usize;
    /// The dataset's own id of item `i` (CulturalBench `question_idx`, NormAd `ID`).
    fn item_id(&self, i: usize) -> String;
    /// Breakdown keys of item `i`, e.g. `[("country", "Japan")]`; a key may repeat (an item
    /// with several value labels belongs to each).
    fn groups(&self, _i: usize) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Whether items have gold answers (accuracy); CIVICS has none, only scores.
    fn has_gold(&self) -> bool {
        true
    }
    /// Two conditions whose scores are compared item by item (CIVICS: original language vs
    /// English), and the group kind the difference is broken down by.
    fn paired_conditions(&self) -> Option<(&'static str, &'static str, &'static str)> {
        None
    }
    /// Whether item `i` takes part in that comparison (CIVICS: not the English originals).
    fn paired(&self, _i: usize) -> bool {
        true
    }
    /// Conditions that ask the same thing differently (CMoralEval's four ways of asking a
    /// scenario): results give the share of items right under every one of them that ran.
    fn consistency_conditions(&self) -> &'static [&'static str] {
        &[]
    }
    /// All conditions (run when none is asked for).
    fn conditions(&self) -> &'static [&'static str];
    /// Is `format` a format of this benchmark? (`Err` names the known ones.)
    fn check_format(&self, format: &str) -> Result<()>;
    fn default_formats(&self) -> Vec<String>;
    /// The formats a name the user gives stands for: itself, or the members of a set such as
    /// `grid`.
    fn expand_format(&self, name: &str) -> Vec<String> {
        vec![name.to_string()]
    }
    /// Does item `i` have `condition`, and does `format` apply to it? (CulturalBench's grid
    /// formats apply to Easy only.)
    fn applies(&self, _i: usize, _condition: &str, _format: &str) -> bool {
        true
    }
    /// The prompts of item `i`. `chat_available` says whether the model has a chat template.
    fn prompts(
        &self,
        i: usize,
        condition: &str,
        format: &str,
        chat_available: bool,
    ) -> Result<Vec<Prompt>>;
    /// Judges `answers`, one per prompt of `prompts` (those `prompts` returned for item `i`).
    fn judge(
        &self,
        i: usize,
        condition: &str,
        format: &str,
        prompts: &[Prompt],
        answers: &[Answer],
    ) -> Result<Judgement>;
    /// Whether predictions and gold answers are class labels whose macro-F1 results report
    /// beside accuracy (ValuePrism's valence).
    fn macro_f1(&self) -> bool {
        false
    }
    /// Human or published reference accuracy to print beside the model's, if any.
    fn reference(&self) -> Option<(&'static str, f64)> {
        None
    }
}

/// `Ok` where `format` is one of `known`, else the one-line error naming them.
pub fn check_known_format(bench: &str, format: &str, known: &[&str]) -> Result<()> {
    if known.contains(&format) {
        return Ok(());
    }
    crate::error::bail!(
        Selection,
        "unknown format `{format}` for {bench} (known: {})",
        known.join(", ")
    )
}

/// Option log-probs keyed by the options' names (`Judgement::option_logprobs`).
pub fn logprobs_by_name<S: AsRef<str>>(names: &[S], lps: &[f64]) -> Value {
    names
        .iter()
        .zip(lps)
        .map(|(n, lp)| (n.as_ref().to_string(), Value::from(*lp)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The one scored prompt's option log-probs among `answers` (`Internal` if the runner gave
/// anything else).
pub fn one_scored<'a>(bench: &str, answers: &'a [Answer]) -> Result<&'a [f64]> {
    match answers {
        [Answer::Options(lps)] => Ok(lps),
        _ => crate::error::bail!(Internal, "{bench}: one scored prompt expected"),
    }
}

/// An item answered by the likeliest of its options, named `names`, whose right one is
/// `gold`.
pub fn judge_choice(names: &[&str], lps: &[f64], gold: usize) -> Judgement {
    let pred = argmax(lps);
    Judgement {
        prediction: names[pred].into(),
        gold: names[gold].into(),
        correct: pred == gold,
        correct_norm: None,
        option_logprobs: logprobs_by_name(names, lps),
        generated: None,
        score: None,
    }
}

/// Index of the largest value (the first on ties, as numpy's argmax).
pub fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// The lm-evaluation-harness `acc_norm` choice: log-likelihood per character of the option.
pub fn argmax_norm(logprobs: &[f64], options: &[String]) -> usize {
    let normed: Vec<f64> = logprobs
        .iter()
        .zip(options)
        .map(|(lp, o)| lp / (o.chars().count().max(1) as f64))
        .collect();
    argmax(&normed)
}

/// Softmax of the options' log-probs: their probabilities given that one of them is said.
pub fn renormalise(logprobs: &[f64]) -> Vec<f64> {
    let m = logprobs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logprobs.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}
