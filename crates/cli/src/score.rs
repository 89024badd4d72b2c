//! `ethos score`: JSONL in, JSONL out.
//!
//! Each input line is `{"context": "...", "continuations": ["...", ...]}`. As in
//! lm-evaluation-harness, a continuation's tokens are those of `context + continuation`
//! after the context's own tokens, so the model sees the text as it would be tokenized
//! whole (when the context's tokens are not a prefix of the whole, the continuation is
//! tokenized alone). With `--text`, every token of one text is scored.

use crate::common::{print_json, ControlArgs, ModelArgs};
use anyhow::{bail, Context, Result};
use ethos_model::scoring::{continuation_tokens, score, score_text, ScoreOptions, ScoreRequest};
use serde::Deserialize;
use std::io::{BufRead, BufReader, IsTerminal};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub control: ControlArgs,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    context: String,
    continuations: Vec<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

pub fn run(a: Args) -> Result<()> {
    let model = a.model.load()?;
    let tok = model.tokenizer()?;
    let mut hook = a.control.hook(&model)?;
    if let Some(text) = &a.text {
        let ids = tok.encode_prompt(text)?;
        let s = score_text(
            &model.decoder,
            &ids,
            hook.as_mut()
                .map(|h| h as &mut dyn ethos_model::hooks::ResidualHook),
        )?;
        let pieces = tok.pieces(&ids);
        if a.json {
            return print_json(&serde_json::json!({
                "token_ids": ids, "pieces": pieces, "token_logprobs": std::iter::once(None).chain(s.token_logprobs.iter().map(|&x| Some(x))).collect::<Vec<_>>(),
                "logprob": s.logprob, "greedy": s.greedy,
            }));
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
    let reader: Box<dyn BufRead> = if a.input == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(&a.input).with_context(|| format!("{}: cannot open", a.input))?,
        ))
    };
    let mut lines = Vec::new();
    let mut requests = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", a.input, n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", a.input, n + 1))?;
        if l.continuations.is_empty() {
            bail!("{}:{}: `continuations` is empty", a.input, n + 1);
        }
        let ctx_ids = tok.encode_prompt(&l.context)?;
        let conts = l
            .continuations
            .iter()
            .map(|c| {
                continuation_tokens(tok, &ctx_ids, &l.context, c, true).map_err(anyhow::Error::from)
            })
            .collect::<Result<Vec<_>>>()?;
        if ctx_ids.is_empty() {
            bail!("{}:{}: the context is empty and the model adds no BOS token; give a non-empty context", a.input, n + 1);
        }
        requests.push(ScoreRequest {
            context: ctx_ids,
            continuations: conts,
        });
        lines.push(l);
    }
    let progress = std::io::stderr().is_terminal();
    let opts = ScoreOptions {
        batch_requests: a.batch,
        ..Default::default()
    };
    let chunk = (a.batch * 8).max(1);
    for (k, (reqs, ls)) in requests.chunks(chunk).zip(lines.chunks(chunk)).enumerate() {
        let scores = score(
            &model.decoder,
            reqs,
            &opts,
            hook.as_mut()
                .map(|h| h as &mut dyn ethos_model::hooks::ResidualHook),
        )?;
        for ((l, r), s) in ls.iter().zip(reqs).zip(scores) {
            let conts: Vec<serde_json::Value> = l
                .continuations
                .iter()
                .zip(s)
                .map(|(text, c)| serde_json::json!({"text": text, "logprob": c.logprob, "greedy": c.greedy, "token_ids": c.token_ids, "token_logprobs": c.token_logprobs}))
                .collect();
            print_json(
                &serde_json::json!({"id": l.id, "context_tokens": r.context.len(), "continuations": conts}),
            )?;
        }
        if progress {
            eprint!(
                "\rscored {}/{} requests",
                ((k + 1) * chunk).min(requests.len()),
                requests.len()
            );
        }
    }
    if progress {
        eprintln!();
    }
    Ok(())
}
