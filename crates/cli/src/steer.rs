//! `ethos steer solve`: the MAP palette solver on an existing reward table.

use crate::common::print_json;
use anyhow::{anyhow, bail, Result};
use ethos_steer::palette::solver::{nearest_feasible, solve, Objective, Solver, Status};
use ethos_steer::palette::{read_table, Palette};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Which {
    /// Solve a palette on a reward table (CSV: one column per value, one row per base
    /// sample; an optional `prompt` column groups samples for --objective per-prompt).
    Solve(SolveArgs),
}

#[derive(clap::Args, Debug)]
pub struct SolveArgs {
    #[arg(long)]
    pub rewards: PathBuf,
    /// TOML: [[value]] tables with `name` (a column) and `target` (number, qNN or keep).
    #[arg(long)]
    pub palette: PathBuf,
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
        Which::Solve(a) => solve_cmd(a),
    }
}

fn solve_cmd(a: SolveArgs) -> Result<()> {
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
    if !(a.min_ess >= 0.0) {
        bail!("--min-ess must be a number >= 0");
    }
    let table = read_table(&a.rewards).map_err(|e| anyhow!(e))?;
    if objective == Objective::PerPrompt && table.n_groups < 2 {
        bail!(
            "{}: --objective per-prompt needs a `prompt` column with several prompts",
            a.rewards.display()
        );
    }
    let palette = Palette::read(&a.palette).map_err(|e| anyhow!(e))?;
    let pfile = a.palette.display().to_string();
    let targets = palette.resolve(&table, &pfile).map_err(|e| anyhow!(e))?;
    let s = solve(&table, &targets, solver, objective, a.min_ess);
    let base: Vec<f64> = (0..table.values.len())
        .map(|k| ethos_steer::palette::solver::mean(&table, k))
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
        .then(|| nearest_feasible(&table, &targets, &base, objective));
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
            "lambda": by_name(&s.lambda), "status": s.status, "palette": pfile,
            "rewards": a.rewards.display().to_string(), "solver": a.solver, "objective": a.objective,
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
