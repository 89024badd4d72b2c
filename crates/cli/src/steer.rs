//! `ethos steer solve`: the MAP palette solver on an existing reward table.

use crate::common::{print_json, ModelArgs};
use anyhow::{anyhow, bail, Result};
use ethos_steer::palette::fit::{sample_responses, score_table, write_table, FitOptions};
use ethos_steer::palette::solver::{
    nearest_feasible, solve, Objective, RewardTable, Solver, Status,
};
use ethos_steer::palette::{read_table, Palette};
use ethos_steer::SamplingParams;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Which {
    /// Solve a palette on a reward table (CSV: one column per value, one row per base
    /// sample; an optional `prompt` column groups samples for --objective per-prompt).
    Solve(SolveArgs),
    /// Sample the base model on prompts, score the palette's rewards on the samples, and
    /// solve: the reward table is written beside the result for `steer solve` to reuse.
    Fit(FitArgs),
    /// Decode held-out prompts in each mode with a lambda file and report the realised level
    /// of every value (95 % intervals) next to the base model's and the targets, and tokens/s.
    Evaluate(EvaluateArgs),
}

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The lambda file of `steer solve/fit --lambda-out`.
    #[arg(long)]
    pub lambda: PathBuf,
    /// Held-out prompts, one per line (or .jsonl with "prompt").
    #[arg(long)]
    pub prompts: PathBuf,
    /// Comma-separated: base, resample, best-of-n, token.
    #[arg(long, default_value = "base,resample,best-of-n,token")]
    pub modes: String,
    /// Candidates per prompt for resample and best-of-n.
    #[arg(long, default_value_t = 16)]
    pub candidates: usize,
    /// Candidate tokens weighted per step in token mode.
    #[arg(long, default_value_t = 10)]
    pub token_candidates: usize,
    /// Prompts token mode calibrates lambda on (apart from the held-out ones).
    #[arg(long)]
    pub calibration_prompts: Option<PathBuf>,
    /// Dual-ascent rounds for token mode (0: decode with the file's lambda).
    #[arg(long, default_value_t = 3)]
    pub calibration_rounds: usize,
    #[arg(long, default_value_t = 0.5)]
    pub calibration_step: f64,
    #[arg(long, default_value_t = 50)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub chat: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct SolveArgs {
    #[arg(long)]
    pub rewards: PathBuf,
    /// TOML: [[value]] tables with `name` (a column) and `target` (number, qNN or keep).
    #[arg(long)]
    pub palette: PathBuf,
    #[command(flatten)]
    pub solve: SolveOptions,
}

#[derive(clap::Args, Debug)]
pub struct FitArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// TOML: [[value]] tables (name, target) and the [[reward]] tables that define them.
    #[arg(long)]
    pub palette: PathBuf,
    /// One prompt per line (a .jsonl file: objects with a "prompt" field).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Responses sampled per prompt (MAP's M).
    #[arg(long, default_value_t = 16)]
    pub samples: usize,
    /// Tokens per response (MAP: 50).
    #[arg(long, default_value_t = 50)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// MAP samples with top-k 50.
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Put prompts in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// The reward table (CSV, with the responses beside it as .responses.jsonl).
    #[arg(long, default_value = "rewards.csv")]
    pub rewards_out: PathBuf,
    #[command(flatten)]
    pub solve: SolveOptions,
    #[command(flatten)]
    pub remote: crate::common::RemoteArgs,
    /// With --backend openai: a local model (GGUF, HF folder or hub id) for the lm-judge
    /// rewards, instead of asking the served model.
    #[arg(long, value_name = "MODEL")]
    pub judge_model: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct SolveOptions {
    /// newton (projected Newton, f64, exact) or adam150 (the MAP repository's procedure).
    #[arg(long, default_value = "newton")]
    pub solver: String,
    /// joint (one normaliser, as the paper) or per-prompt (needs the `prompt` column).
    #[arg(long, default_value = "joint")]
    pub objective: String,
    /// Below this effective sample size a feasible palette is flagged.
    #[arg(long, default_value_t = 16.0)]
    pub min_ess: f64,
    /// Write the lambda file here.
    #[arg(long)]
    pub lambda_out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(w: Which) -> Result<()> {
    match w {
        Which::Solve(a) => {
            let table = read_table(&a.rewards).map_err(|e| anyhow!(e))?;
            let palette = Palette::read(&a.palette).map_err(|e| anyhow!(e))?;
            report(&table, &palette, &a.palette, &a.rewards, &a.solve)
        }
        Which::Fit(a) => fit_cmd(a),
        Which::Evaluate(a) => evaluate_cmd(a),
    }
}

fn evaluate_cmd(a: EvaluateArgs) -> Result<()> {
    use ethos_steer::palette::decode::LambdaFile;
    use ethos_steer::palette::evaluate::{evaluate, EvaluateOptions};
    let lambda = LambdaFile::read(&a.lambda)?;
    let prompts = read_prompts(&a.prompts)?;
    let calibration_prompts = match &a.calibration_prompts {
        Some(p) => read_prompts(p)?,
        None => Vec::new(),
    };
    let modes: Vec<String> = a.modes.split(',').map(|m| m.trim().to_string()).collect();
    for m in &modes {
        if !["base", "resample", "best-of-n", "token"].contains(&m.as_str()) {
            bail!("--modes: `{m}` is not one of base, resample, best-of-n, token");
        }
    }
    let calibration_rounds = if calibration_prompts.is_empty() {
        if modes.iter().any(|m| m == "token") && a.calibration_prompts.is_none() {
            eprintln!("token mode decodes with the file's lambda: no --calibration-prompts");
        }
        0
    } else {
        a.calibration_rounds
    };
    let model = a.model.load()?;
    let o = EvaluateOptions {
        chat: a.chat,
        params: SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            seed: a.seed,
            ..Default::default()
        },
        generate: ethos_steer::GenerateOptions {
            max_tokens: a.max_tokens,
            ..Default::default()
        },
        candidates: a.candidates,
        token_k: a.token_candidates,
        modes,
        calibration_prompts,
        calibration_rounds,
        calibration_step: a.calibration_step,
    };
    let ev = evaluate(&model, &lambda, &prompts, &o)?;
    if a.json {
        return print_json(&serde_json::to_value(&ev)?);
    }
    print!("{:<16} {:>10}", "value", "target");
    for m in &ev.modes {
        print!(" {:>20}", m.mode);
    }
    println!();
    for (k, v) in ev.values.iter().enumerate() {
        let t = ev.targets[k].map_or("-".to_string(), |t| format!("{t:.3}"));
        print!("{v:<16} {t:>10}");
        for m in &ev.modes {
            let l = m.levels[k];
            print!(" {:>20}", format!("{:.3} ± {:.3}", l.mean, l.half_width));
        }
        println!();
    }
    print!("{:<16} {:>10}", "tokens/s", "");
    for m in &ev.modes {
        print!(" {:>20.1}", m.tokens_per_second);
    }
    println!();
    for m in ev.modes.iter().filter(|m| m.mode == "token") {
        let l: Vec<String> = ev
            .values
            .iter()
            .zip(&m.lambda)
            .map(|(v, x)| format!("{v} {x:.3}"))
            .collect();
        println!("token mode lambda: {}", l.join(", "));
    }
    println!(
        "{} held-out prompts; ± is the 95 % interval of the mean over prompts",
        prompts.len()
    );
    Ok(())
}

fn read_prompts(path: &std::path::Path) -> Result<Vec<String>> {
    let text = ethos_model::files::read_text(path)?;
    let jsonl = path.extension().is_some_and(|x| x == "jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| anyhow!("{}:{}: {e}", path.display(), i + 1))?;
            match v["prompt"].as_str() {
                Some(p) => out.push(p.to_string()),
                None => bail!("{}:{}: no \"prompt\" string", path.display(), i + 1),
            }
        } else {
            out.push(line.to_string());
        }
    }
    if out.is_empty() {
        bail!("{}: no prompts", path.display());
    }
    Ok(out)
}

fn fit_cmd(a: FitArgs) -> Result<()> {
    let palette = Palette::read(&a.palette).map_err(|e| anyhow!(e))?;
    let specs = palette
        .reward_specs(&a.palette.display().to_string())
        .map_err(|e| anyhow!(e))?;
    let prompts = read_prompts(&a.prompts)?;
    // Fail before the sampling, not after it, when the table cannot be written.
    if let Some(dir) = a.rewards_out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&a.rewards_out, "").map_err(|e| anyhow!("{}: {e}", a.rewards_out.display()))?;
    a.remote.check(&a.model)?;
    if a.judge_model.is_some() && !a.remote.is_remote() {
        bail!("--judge-model needs --backend openai (locally the judge is the model itself)");
    }
    let opts = FitOptions {
        samples: a.samples,
        max_tokens: a.max_tokens,
        params: SamplingParams {
            temperature: a.temperature,
            top_k: a.top_k,
            seed: a.seed,
            ..Default::default()
        },
        chat: a.chat,
    };
    // The rewards borrow the server's client or the local model, which live out here.
    let backend = match a.remote.is_remote() {
        true => Some(a.remote.backend()?),
        false => None,
    };
    let model = match (&backend, &a.judge_model) {
        (None, _) => Some(a.model.load()?),
        (Some(_), Some(m)) => Some(
            crate::common::ModelArgs {
                model: Some(m.clone()),
                ..a.model.clone()
            }
            .load()?,
        ),
        (Some(_), None) => None,
    };
    let (mut rewards, pairs) = match (&backend, &model) {
        (Some(b), judge) => {
            let served = b.served();
            let scorer = ethos_steer::rewards::Scorer::Remote {
                served,
                judge: judge.as_ref(),
            };
            (
                ethos_steer::rewards::build_on(&specs, scorer, &palette.dir)?,
                ethos_steer::palette::fit::sample_responses_remote(served, &prompts, &opts)?,
            )
        }
        (None, Some(m)) => (
            ethos_steer::rewards::build(&specs, m, &palette.dir)?,
            sample_responses(m, &prompts, &opts)?,
        ),
        (None, None) => bail!("internal error: a local fit without its model"),
    };
    eprintln!(
        "scoring {} responses with {} rewards",
        pairs.len(),
        rewards.len()
    );
    let table = score_table(&mut rewards, &pairs)?;
    write_table(&a.rewards_out, &table, &pairs)?;
    match &backend {
        Some(b) => {
            let s = b.client.stats();
            eprintln!(
                "reward table written to {} (server {}: {} requests, {} retried)",
                a.rewards_out.display(),
                b.client.host,
                s.requests,
                s.retries
            );
        }
        None => eprintln!("reward table written to {}", a.rewards_out.display()),
    }
    report(&table, &palette, &a.palette, &a.rewards_out, &a.solve)
}

fn report(
    table: &RewardTable,
    palette: &Palette,
    palette_path: &PathBuf,
    rewards_path: &std::path::Path,
    a: &SolveOptions,
) -> Result<()> {
    let solver = match a.solver.as_str() {
        "newton" => Solver::Newton,
        "adam150" => Solver::Adam150,
        s => bail!("unknown solver `{s}` (newton, adam150)"),
    };
    let objective = match a.objective.as_str() {
        "joint" => Objective::Joint,
        "per-prompt" => Objective::PerPrompt,
        s => bail!("unknown objective `{s}` (joint, per-prompt)"),
    };
    if a.min_ess.is_nan() || a.min_ess < 0.0 {
        bail!("--min-ess must be a number >= 0");
    }
    if objective == Objective::PerPrompt && table.n_groups < 2 {
        bail!(
            "{}: --objective per-prompt needs a `prompt` column with several prompts",
            rewards_path.display()
        );
    }
    let pfile = palette_path.display().to_string();
    let targets = palette.resolve(table, &pfile).map_err(|e| anyhow!(e))?;
    let s = solve(table, &targets, solver, objective, a.min_ess);
    let base: Vec<f64> = (0..table.values.len())
        .map(|k| ethos_steer::palette::solver::mean(table, k))
        .collect();
    let by_name = |xs: &[f64]| -> BTreeMap<String, f64> {
        table
            .values
            .iter()
            .cloned()
            .zip(xs.iter().copied())
            .collect()
    };
    let target_of: BTreeMap<String, f64> = targets
        .iter()
        .map(|&(k, c)| (table.values[k].clone(), c))
        .collect();
    let nearest = (s.status == Status::Infeasible)
        .then(|| nearest_feasible(table, &targets, &base, objective));
    let out = serde_json::json!({
        "status": s.status,
        "lambda": by_name(&s.lambda),
        "levels": by_name(&s.levels),
        "kl": s.kl,
        "ess": s.ess,
        "targets": target_of,
        "base": by_name(&base),
        "solver": a.solver,
        "objective": a.objective,
        "nearest_feasible": nearest.as_ref().map(|(rho, p)| serde_json::json!({
            "rho": rho,
            "targets": p.iter().map(|&(k, c)| (table.values[k].clone(), c)).collect::<BTreeMap<_, _>>(),
        })),
    });
    if let Some(path) = &a.lambda_out {
        let file = serde_json::json!({
            // Absolute, so that generate --lambda finds it from anywhere.
            "lambda": by_name(&s.lambda), "status": s.status, "targets": target_of, "levels": by_name(&s.levels),
            "palette": std::fs::canonicalize(palette_path).unwrap_or(palette_path.clone()),
            "rewards": rewards_path.display().to_string(), "solver": a.solver, "objective": a.objective,
        });
        std::fs::write(path, serde_json::to_string_pretty(&file)? + "\n")
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    if a.json {
        return print_json(&out);
    }
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10}",
        "value", "base", "target", "lambda", "level"
    );
    for (k, v) in table.values.iter().enumerate() {
        let t = target_of
            .get(v)
            .map_or("-".to_string(), |c| format!("{c:.4}"));
        println!(
            "{:<20} {:>10.4} {:>10} {:>10.4} {:>10.4}",
            v, base[k], t, s.lambda[k], s.levels[k]
        );
    }
    match s.status {
        Status::Infeasible => {
            let (rho, p) = nearest.unwrap_or((0.0, Vec::new()));
            let palette: Vec<String> = p
                .iter()
                .map(|&(k, c)| format!("{} {c:.4}", table.values[k]))
                .collect();
            println!(
                "status: infeasible. The nearest feasible palette on the way from the base levels (rho = {rho:.3}): {}",
                palette.join(", ")
            );
        }
        st => println!(
            "status: {}; KL {:.4} nats; ESS {:.1} of {} samples{}",
            if st == Status::Feasible {
                "feasible"
            } else {
                "feasible, but the effective sample size is below --min-ess"
            },
            s.kl,
            s.ess,
            table.rows.len(),
            a.lambda_out.as_ref().map_or(String::new(), |p| format!(
                "; lambda written to {}",
                p.display()
            ))
        ),
    }
    Ok(())
}
