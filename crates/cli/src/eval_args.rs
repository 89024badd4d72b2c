//! The flags of `ethos eval` (apart from the command, so that the benchmarks with a loop of
//! their own, such as DIWALI's, read them without depending on `eval`).

use crate::common::{ControlArgs, ModelArgs, RemoteArgs};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// civics, cmoraleval, culturalbench, diwali, normad, utility, yue-arc-c,
    /// yue-truthfulqa; with your copy of the data (--data): cvc, hkcanto, valueprism (or
    /// `--task FILE` for your own).
    #[arg(required_unless_present = "task")]
    pub benchmark: Option<String>,
    /// Your own benchmark: an lm-evaluation-harness task YAML (multiple_choice or
    /// generate_until) over local JSON, JSON Lines or CSV data; see the README's "your own
    /// benchmark".
    #[arg(long, conflicts_with = "benchmark")]
    pub task: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Your own copy of the data in the upstream schema (default: the built-in copy).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Comma-separated formats (culturalbench: harness, paper, grid, all, or grid points
    /// such as rev.numbers.text.chat; normad: logprob, logprob-chat, generate; civics: yesno,
    /// likert4, yesno-chat, likert4-chat; cmoraleval: zero-shot, few-shot; hkcanto:
    /// five-shot, zero-shot; cvc: chat, raw).
    #[arg(long, value_delimiter = ',')]
    pub formats: Vec<String>,
    /// Comma-separated conditions (culturalbench: easy, hard; normad: none, country, value,
    /// rot; civics: original, english; cmoraleval: party-moral, party-unmoral,
    /// standby-moral, standby-unmoral; hkcanto: cultural, hk-law, dse; cvc: Surrogacy, Drugs,
    /// Prejudice, Firearms, Politics, Suicide).
    #[arg(long, value_delimiter = ',')]
    pub conditions: Vec<String>,
    /// Only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the bootstrap intervals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (default: runs/BENCHMARK-MODEL). A rerun into it resumes.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Prompts whose contexts run in one batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Print results.json instead of the table.
    #[arg(long)]
    pub json: bool,
    /// utility: the outcome set, hierarchical (510, the paper's) or testing (61).
    #[arg(long, default_value = "hierarchical")]
    pub options: String,
    /// A palette's lambda file: options are ranked by log-prob + lambda . r(prompt, option),
    /// i.e. by log p_lambda (civics, culturalbench, normad log-prob formats); the run is
    /// reported beside an untilted one. `--palette` names the same file: a palette is applied
    /// as its solved lambda.
    #[arg(long, visible_alias = "palette")]
    pub lambda: Option<PathBuf>,
    /// Persona prompting: also run the benchmark as this persona (e.g. "a person from Hong
    /// Kong"; repeatable), reported beside the run without one. The instruction is the chat
    /// prompt's system message, or the raw prompt's first paragraph.
    #[arg(long)]
    pub persona: Vec<String>,
    /// A file of personas, one per line (`#` starts a comment line).
    #[arg(long)]
    pub personas: Option<PathBuf>,
    /// The persona's instruction, `{persona}` replaced by the persona.
    #[arg(long, default_value = ethos_evals::persona::DEFAULT_TEMPLATE)]
    pub persona_template: String,
    /// diwali: score these adaptation outputs (the authors' format: a JSON list of JSON
    /// strings, each `[{"cultural_adapted_text", "replaced_concepts"}]`) without a model.
    #[arg(long)]
    pub adaptations: Option<std::path::PathBuf>,
    /// diwali: the culture-specific names to match (CANDLE's concepts_filtered records,
    /// DIWALI's india_cultural_features.json, or a .txt of one name per line; default: the
    /// built-in CANDLE list the published rows use).
    #[arg(long)]
    pub items: Option<std::path::PathBuf>,
    /// diwali: the most tokens of one adaptation [default: 512] (the authors let replies
    /// run to 32000).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// diwali: also judge each adaptation on the authors' 0-5 rubric (greedily), with the
    /// model that adapted (or served) it, or with --judge-model.
    #[arg(long)]
    pub judge: bool,
    /// diwali: the judge (a GGUF file, an HF folder or a hub repo id), loaded like --model.
    #[arg(long, requires = "judge")]
    pub judge_model: Option<String>,
    /// diwali: your own adaptation system prompt (a text file; default: the authors', for
    /// Indian culture), e.g. to adapt to Hong Kong.
    #[arg(long)]
    pub system_prompt: Option<PathBuf>,
    /// diwali: your own user message, `{text}` where the text to adapt goes.
    #[arg(long)]
    pub user_template: Option<PathBuf>,
    /// diwali: your own judge prompt, `{original_text}` and `{adapted_text}` where the texts go.
    #[arg(long, requires = "judge")]
    pub judge_template: Option<PathBuf>,
}

impl Args {
    /// The benchmark's name, or for `--task` the task file's stem.
    pub fn benchmark_name(&self) -> String {
        match (&self.benchmark, &self.task) {
            (Some(b), _) => b.clone(),
            (None, Some(t)) => t
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "task".into()),
            (None, None) => String::new(),
        }
    }
}
