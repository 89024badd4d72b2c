//! `ethos score`: JSONL in, JSONL out.
//!
//! Each input line is `{"context": "...", "continuations": ["...", ...]}`. As in
//! lm-evaluation-harness, a continuation's tokens are those of `context + continuation`
//! after the context's own tokens, so the model sees the text as it would be tokenized
//! whole (when the context's tokens are not a prefix of the whole, the continuation is
//! tokenized alone). With `--text`, every token of one text is scored.
//!
//! With `--control-vector`, the output is steered (`"steered": true`) and carries the
//! unsteered numbers beside the steered ones (`unsteered_logprob`, `unsteered_token_logprobs`).
//!
//! With `--lambda` (a palette's lambda file), each continuation also carries its rewards,
//! `palette_score` = lambda . r(context, continuation) and `tilted_logprob` = logprob +
//! palette_score: log p_lambda(continuation | context) up to the context's normaliser log Z,
//! which is the same for every continuation of a line, so comparisons among them are exact.

use crate::common::{print_json, ControlArgs, ModelArgs, RemoteArgs};
use anyhow::{Context, Result};
use ethos_evals::Backend;
use ethos_model::scoring::ScoreOptions;
use ethos_steer::requests::ScoreLine;
use std::io::{BufRead, BufReader, IsTerminal};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// JSONL requests ("-" = standard input).
    #[arg(long, short = 'i', default_value = "-")]
    pub input: String,
    /// Score every token of this text instead.
    #[arg(long)]
    pub text: Option<String>,
    /// Requests whose contexts run in one batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// JSON output for --text (JSONL requests always answer in JSON).
    #[arg(long)]
    pub json: bool,
    /// A palette's lambda file: add each continuation's lambda . r (JSONL requests). `--palette`
    /// names the same file: a palette is applied as its solved lambda.
    #[arg(long, visible_alias = "palette")]
    pub lambda: Option<std::path::PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    a.remote.check(&a.model)?;
    if a.remote.is_remote() {
        return run_remote(a);
    }
    let model = a.model.load()?;
    let tok = model.tokenizer()?;
    let mut session = a.control.session(&model)?;
    if let Some(text) = &a.text {
        let ids = tok.encode_prompt(text)?;
        let raw = session.unsteered().score_text(&ids)?;
        // With control vectors: the steered numbers, and the raw ones beside them.
        let steered = match session.is_steered() {
            true => Some(session.score_text(&ids)?),
            false => None,
        };
        let s = steered.as_ref().unwrap_or(&raw);
        let pieces = tok.pieces(&ids);
        let with_first = |v: &[f32]| {
            std::iter::once(None)
                .chain(v.iter().map(|&x| Some(x)))
                .collect::<Vec<_>>()
        };
        if a.json {
            let mut out = serde_json::json!({
                "token_ids": ids, "pieces": pieces, "token_logprobs": with_first(&s.token_logprobs),
                "logprob": s.logprob, "greedy": s.greedy, "steered": steered.is_some(),
            });
            if steered.is_some() {
                out["unsteered_token_logprobs"] =
                    serde_json::json!(with_first(&raw.token_logprobs));
                out["unsteered_logprob"] = serde_json::json!(raw.logprob);
            }
            return print_json(&out);
        }
        if steered.is_some() {
            println!("{:>8}  {:>10}  {:>10}  piece", "id", "steered", "unsteered");
            println!("{:>8}  {:>10}  {:>10}  {:?}", ids[0], "-", "-", pieces[0]);
            for (i, (lp, r)) in s.token_logprobs.iter().zip(&raw.token_logprobs).enumerate() {
                println!(
                    "{:>8}  {:>10.4}  {:>10.4}  {:?}",
                    ids[i + 1],
                    lp,
                    r,
                    pieces[i + 1]
                );
            }
            println!(
                "total log-prob {:.4} steered, {:.4} unsteered, over {} tokens",
                s.logprob,
                raw.logprob,
                s.token_logprobs.len()
            );
            return Ok(());
        }
        println!("{:>8}  {:>10}  piece", "id", "logprob");
        println!("{:>8}  {:>10}  {:?}", ids[0], "-", pieces[0]);
        for (i, lp) in s.token_logprobs.iter().enumerate() {
            println!("{:>8}  {:>10.4}  {:?}", ids[i + 1], lp, pieces[i + 1]);
        }
        println!(
            "total log-prob {:.4} over {} tokens",
            s.logprob,
            s.token_logprobs.len()
        );
        return Ok(());
    }
    let mut palette = match &a.lambda {
        Some(path) => {
            use ethos_steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
            let lf = LambdaFile::read(path)?;
            Some(PaletteDecoder::new(&lf, &model, PaletteMode::BestOfN, 1)?)
        }
        None => None,
    };
    let opts = ScoreOptions {
        batch_requests: a.batch,
        ..Default::default()
    };
    by_chunks(&a.input, tok, a.batch * 8, &|| String::new(), |ls, reqs| {
        // With control vectors each continuation carries the steered numbers and, beside them,
        // the unsteered ones.
        let raw = session.unsteered().score(reqs, &opts)?;
        let steered = match session.is_steered() {
            true => Some(session.score(reqs, &opts)?),
            false => None,
        };
        for (i, (l, r)) in ls.iter().zip(reqs).enumerate() {
            let shown = steered.as_ref().unwrap_or(&raw);
            // Rows: continuations; columns: the palette's values.
            let rewards = match palette.as_mut() {
                Some(p) => {
                    let cols = p.rewards_of(&l.context, &l.continuations)?;
                    Some(
                        (0..l.continuations.len())
                            .map(|j| cols.iter().map(|c| c[j]).collect::<Vec<f64>>())
                            .collect::<Vec<_>>(),
                    )
                }
                None => None,
            };
            let conts: Vec<serde_json::Value> = l
                .continuations
                .iter()
                .enumerate()
                .map(|(j, text)| {
                    let c = &shown[i][j];
                    let mut v = serde_json::json!({"text": text, "logprob": c.logprob, "greedy": c.greedy, "token_ids": c.token_ids, "token_logprobs": c.token_logprobs});
                    if steered.is_some() {
                        v["unsteered_logprob"] = serde_json::json!(raw[i][j].logprob);
                        v["unsteered_token_logprobs"] = serde_json::json!(raw[i][j].token_logprobs);
                    }
                    if let (Some(p), Some(rw)) = (palette.as_ref(), rewards.as_ref()) {
                        let bonus: f64 = p.lambda.iter().zip(&rw[j]).map(|(l, x)| l * x).sum();
                        v["rewards"] = serde_json::json!(p.values().iter().cloned().zip(rw[j].iter().copied()).collect::<std::collections::BTreeMap<_, _>>());
                        v["palette_score"] = serde_json::json!(bonus);
                        v["tilted_logprob"] = serde_json::json!(c.logprob + bonus);
                    }
                    v
                })
                .collect();
            print_json(
                &serde_json::json!({"id": l.id, "context_tokens": r.context.len(), "steered": steered.is_some(), "continuations": conts}),
            )?;
        }
        Ok(())
    })
}

fn open_input(input: &str) -> Result<Box<dyn BufRead>> {
    Ok(if input == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(input).with_context(|| format!("{input}: cannot open"))?,
        ))
    })
}

/// `ethos score --backend openai`: the same lines and answers, scored from the server's
/// prompt log-probs with its own tokenizer (`greedy` is not known there and is left out).
fn run_remote(a: Args) -> Result<()> {
    if !a.control.control_vector.is_empty() || a.lambda.is_some() {
        anyhow::bail!("--control-vector and --lambda need a model run here; with --backend openai the weights are the server's");
    }
    let backend = a.remote.backend()?;
    let client = &backend.client;
    let encoder = backend.encoder();
    if let Some(text) = &a.text {
        let ids = encoder.encode_text(text, true)?;
        let row = client
            .prompt_logprobs(std::slice::from_ref(&ids))?
            .remove(0);
        let logprob: f64 = row.iter().flatten().sum();
        if a.json {
            return print_json(&serde_json::json!({
                "token_ids": ids, "token_logprobs": row, "logprob": logprob, "steered": false,
            }));
        }
        println!("{:>8}  {:>10}", "id", "logprob");
        for (id, lp) in ids.iter().zip(&row) {
            match lp {
                Some(lp) => println!("{id:>8}  {lp:>10.4}"),
                None => println!("{id:>8}  {:>10}", "-"),
            }
        }
        println!(
            "total log-prob {logprob:.4} over {} tokens",
            row.len().saturating_sub(1)
        );
        return Ok(());
    }
    // Enough lines per round to keep every connection busy.
    let chunk = client.options().concurrency * client.options().prompts_per_request;
    let note = || format!(" ({})", backend.progress_note().unwrap_or_default());
    by_chunks(&a.input, encoder, chunk, &note, |lines, requests| {
        let lps = backend.token_logprobs(requests)?;
        for ((l, r), lp) in lines.iter().zip(requests).zip(&lps) {
            let conts: Vec<serde_json::Value> = l
                .continuations
                .iter()
                .zip(&r.continuations)
                .zip(lp)
                .map(|((text, ids), lps)| {
                    serde_json::json!({"text": text, "logprob": lps.iter().sum::<f64>(), "token_ids": ids, "token_logprobs": lps})
                })
                .collect();
            print_json(
                &serde_json::json!({"id": l.id, "context_tokens": r.context.len(), "steered": false, "continuations": conts}),
            )?;
        }
        Ok(())
    })
}

/// The request lines of `input`, parsed and encoded with `tok`, handed to `score` `chunk`
/// lines at a time, so that memory follows the chunk and not the input's length; on a
/// terminal the count scored so far (and `note()`) is shown.
fn by_chunks(
    input: &str,
    tok: &dyn ethos_model::tokenizer::TextEncoder,
    chunk: usize,
    note: &dyn Fn() -> String,
    mut score: impl FnMut(&[ScoreLine], &[ethos_model::scoring::ScoreRequest]) -> Result<()>,
) -> Result<()> {
    let chunk = chunk.max(1);
    let progress = std::io::stderr().is_terminal();
    let reader = open_input(input)?;
    let mut lines = Vec::with_capacity(chunk);
    let mut requests = Vec::with_capacity(chunk);
    let mut scored = 0usize;
    let mut numbered = crate::common::bounded_lines(reader, input).enumerate();
    loop {
        let next = numbered.next();
        let at_end = next.is_none();
        if let Some((n, line)) = next {
            let Some(l) = ScoreLine::parse(&line?, input, n + 1)? else {
                continue;
            };
            requests.push(l.request(tok, input, n + 1)?);
            lines.push(l);
            if requests.len() < chunk && !at_end {
                continue;
            }
        }
        if !requests.is_empty() {
            score(&lines, &requests)?;
            scored += requests.len();
            requests.clear();
            lines.clear();
            if progress {
                eprint!("\rscored {scored} requests{}", note());
            }
        }
        if at_end {
            break;
        }
    }
    if progress {
        eprintln!();
    }
    Ok(())
}
