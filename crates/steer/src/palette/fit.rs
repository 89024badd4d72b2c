//! `ethos steer fit`'s first half: sample the base model on prompts, score every reward of
//! the palette on the samples, and make the reward table the solver reads.
//!
//! Sample j of prompt i is drawn with seed `seed + i * samples + j`, so a fit is reproducible.
//! A prompt's samples decode in one batch (`generate_batch`); with fewer than 16 samples any
//! one of them can be regenerated alone with `generate` and its seed.

use super::solver::RewardTable;
use crate::error::{Error, Result};
use crate::generate::GenerateOptions;
use crate::rewards::remote::Served;
use crate::rewards::{Pair, Reward};
use crate::sampler::SamplingParams;
use crate::session::Session;
use ethos_model::chat::Message;
use ethos_model::Model;
use ethos_remote::CompletionParams;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Responses per prompt (MAP's M).
    pub samples: usize,
    pub max_tokens: usize,
    /// The sampling settings of every draw (its seed is the base seed).
    pub params: SamplingParams,
    /// Put each prompt in the model's chat template (an instruct model); otherwise the
    /// prompt is continued as text (MAP's base models).
    pub chat: bool,
}

/// The tokens the model reads for `prompt`: as one user turn of its chat template with
/// `chat`, else the text itself.
pub fn prompt_ids(model: &Model, prompt: &str, chat: bool) -> Result<Vec<u32>> {
    let text = match (&model.chat_template, chat) {
        (Some(t), true) => t.render(&[Message::new("user", prompt)], true)?,
        (None, true) => return Err(Error::Msg("--chat: the model has no chat template".into())),
        _ => prompt.to_string(),
    };
    Ok(model.tokenizer()?.encode_prompt(&text)?)
}

/// The base model's responses: `samples` per prompt, in prompt order.
pub fn sample_responses(model: &Model, prompts: &[String], opts: &FitOptions) -> Result<Vec<Pair>> {
    if opts.samples == 0 || opts.max_tokens == 0 {
        return Err(Error::Msg(
            "--samples and --max-tokens must be at least 1".into(),
        ));
    }
    let bar = ProgressBar::new((prompts.len() * opts.samples) as u64);
    bar.set_style(
        ProgressStyle::with_template("sampling {bar:30} {pos}/{len} responses, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut pairs = Vec::with_capacity(prompts.len() * opts.samples);
    for (i, prompt) in prompts.iter().enumerate() {
        let ids = prompt_ids(model, prompt, opts.chat)?;
        let params: Vec<SamplingParams> = (0..opts.samples)
            .map(|j| SamplingParams {
                seed: opts.params.seed + (i * opts.samples + j) as u64,
                ..opts.params.clone()
            })
            .collect();
        let gens = Session::new(model).generate_batch(
            &ids,
            &params,
            &GenerateOptions {
                max_tokens: opts.max_tokens,
                ..Default::default()
            },
        )?;
        for g in gens {
            pairs.push(Pair {
                prompt: prompt.clone(),
                response: g.text,
            });
        }
        bar.inc(opts.samples as u64);
    }
    bar.finish_and_clear();
    Ok(pairs)
}

/// The served model's responses (`--backend openai`): `samples` per prompt from one request
/// with `n` = samples and `seed` = the fit's seed + i * samples for prompt i, the requests
/// `concurrency` at a time, in prompt order. With `chat`, each prompt is one user turn of the
/// chat template: the local copy's where `served` has one, else the server's
/// (`/v1/chat/completions`).
pub fn sample_responses_remote(
    served: Served<'_>,
    prompts: &[String],
    opts: &FitOptions,
) -> Result<Vec<Pair>> {
    if opts.samples == 0 || opts.max_tokens == 0 {
        return Err(Error::Msg(
            "--samples and --max-tokens must be at least 1".into(),
        ));
    }
    let bar = ProgressBar::new(prompts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("sampling {bar:30} {pos}/{len} prompts, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = served.client;
    let jobs: Vec<(usize, &String)> = prompts.iter().enumerate().collect();
    let answers = ethos_remote::map_concurrent(jobs, client.options().concurrency, |(i, p)| {
        let params = CompletionParams {
            max_tokens: opts.max_tokens,
            temperature: Some(opts.params.temperature as f64),
            top_k: (opts.params.top_k > 0).then_some(opts.params.top_k),
            seed: Some(opts.params.seed.wrapping_add((i * opts.samples) as u64)),
            n: Some(opts.samples),
            ..Default::default()
        };
        let out = match (opts.chat, served.template) {
            (true, None) if served.text_here => {
                return Err(Error::Msg(
                    "--chat: the model has no chat template (its --tokenizer files have none)"
                        .into(),
                ))
            }
            (true, None) => client
                .chat(&[("user".to_string(), p.clone())], &params)
                .map_err(|e| Error::Msg(e.to_string()))?,
            (chat, template) => {
                let text = match (chat, template) {
                    (true, Some(t)) => t.render(&[Message::new("user", p)], true)?,
                    _ => p.clone(),
                };
                let ids = served.encoder.encode_text(&text, true)?;
                client
                    .complete(&ids, &params)
                    .map_err(|e| Error::Msg(e.to_string()))?
            }
        };
        bar.inc(1);
        Ok::<_, Error>(out)
    })?;
    bar.finish_and_clear();
    Ok(prompts
        .iter()
        .zip(answers)
        .flat_map(|(p, choices)| {
            choices.into_iter().map(move |c| Pair {
                prompt: p.clone(),
                response: c.text,
            })
        })
        .collect())
}

/// Scores every pair with every reward: the reward table, its samples grouped by prompt.
pub fn score_table(rewards: &mut [Box<dyn Reward + '_>], pairs: &[Pair]) -> Result<RewardTable> {
    let mut columns = Vec::new();
    for r in rewards.iter_mut() {
        let col = r.score(pairs)?;
        if let Some((i, x)) = col.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(Error::Msg(format!(
                "reward `{}` of sample {i} is {x}, not a finite number",
                r.name()
            )));
        }
        columns.push(col);
    }
    let mut ids: Vec<&str> = Vec::new();
    let groups = pairs
        .iter()
        .map(|p| match ids.iter().position(|q| *q == p.prompt) {
            Some(g) => g,
            None => {
                ids.push(&p.prompt);
                ids.len() - 1
            }
        })
        .collect();
    Ok(RewardTable {
        values: rewards.iter().map(|r| r.name().to_string()).collect(),
        rows: (0..pairs.len())
            .map(|i| columns.iter().map(|c| c[i]).collect())
            .collect(),
        groups,
        n_groups: ids.len().max(1),
    })
}

/// Writes the table as `steer solve --rewards` reads it: a `prompt` column, then one column
/// per reward; and the responses themselves beside it (`<path>.responses.jsonl`).
pub fn write_table(path: &Path, table: &RewardTable, pairs: &[Pair]) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut w =
        csv::Writer::from_path(path).map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    let mut header = vec!["prompt".to_string()];
    header.extend(table.values.iter().cloned());
    w.write_record(&header)
        .map_err(|e| Error::Msg(e.to_string()))?;
    for (row, p) in table.rows.iter().zip(pairs) {
        let mut rec = vec![p.prompt.clone()];
        rec.extend(row.iter().map(|x| format!("{x}")));
        w.write_record(&rec)
            .map_err(|e| Error::Msg(e.to_string()))?;
    }
    w.flush().map_err(io)?;
    let responses: String = pairs
        .iter()
        .map(|p| serde_json::json!({"prompt": p.prompt, "response": p.response}).to_string() + "\n")
        .collect();
    let rpath = path.with_extension("responses.jsonl");
    std::fs::write(&rpath, responses).map_err(|e| Error::io(&rpath, e))?;
    Ok(())
}
