//! `ethos eval ... --persona P` / `--personas FILE`: the benchmark without a persona
//! (`OUTPUT/no-persona`) and with each persona (`OUTPUT/persona-K-SLUG`), each resumable on
//! its own, and each persona's shift from no persona, item by item with paired bootstrap
//! intervals (`OUTPUT/personas.json`, and `OUTPUT/personas.html`, one page for them all).

use crate::common::print_json;
use anyhow::Result;
use ethos_evals::persona::{Persona, WithPersona};
use ethos_evals::{Benchmark, RunOptions};

/// Runs `bench` (through `run`) without and with each persona.
pub fn with_and_without(
    run: &mut dyn FnMut(
        &dyn Benchmark,
        &RunOptions,
    ) -> ethos_evals::Result<ethos_evals::results::Results>,
    bench: &dyn Benchmark,
    opts: RunOptions,
    personas: &[Persona],
    seed: u64,
    json: bool,
) -> Result<()> {
    let root = opts.output.clone();
    let base_opts = RunOptions {
        output: root.join("no-persona"),
        ..opts.clone()
    };
    eprintln!("without a persona:");
    let base = run(bench, &base_opts)?;
    let mut runs = Vec::new();
    for (k, p) in personas.iter().enumerate() {
        let o = RunOptions {
            output: root.join(p.folder(k)),
            // Recorded in the run's identity: a folder of one persona never resumes another.
            steering: Some(serde_json::json!({ "persona": p })),
            ..opts.clone()
        };
        eprintln!("persona {}: {}", k + 1, p.instruction);
        let with = WithPersona {
            inner: bench,
            persona: p.clone(),
        };
        let res = run(&with, &o)?;
        let diffs = ethos_evals::compare::steering_effect(
            &base_opts.output,
            &o.output,
            !bench.has_gold(),
            seed,
        )?;
        runs.push((p, o.output, res, diffs));
    }
    let report = serde_json::json!({
        "no_persona": base_opts.output.display().to_string(),
        "personas": runs.iter().map(|(p, dir, _, diffs)| serde_json::json!({
            "persona": p.persona,
            "instruction": p.instruction,
            "folder": dir.display().to_string(),
            "shift_from_no_persona": diffs,
        })).collect::<Vec<_>>(),
    });
    let path = root.join("personas.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let page = ethos_evals::persona_report::html(
        &base,
        "no-persona",
        &runs
            .iter()
            .enumerate()
            .map(
                |(k, (p, _, res, diffs))| ethos_evals::persona_report::PersonaRun {
                    persona: p,
                    folder: p.folder(k),
                    results: res,
                    shift: diffs,
                },
            )
            .collect::<Vec<_>>(),
    );
    let page_path = root.join("personas.html");
    std::fs::write(&page_path, page)
        .map_err(|e| anyhow::anyhow!("{}: {e}", page_path.display()))?;
    if json {
        return print_json(&serde_json::json!({
            "no_persona": base,
            "personas": runs.iter().map(|(_, _, r, _)| r).collect::<Vec<_>>(),
            "comparison": report,
        }));
    }
    println!("without a persona:");
    print!("{}", ethos_evals::results::table(&base));
    for (k, (p, _, res, diffs)) in runs.iter().enumerate() {
        println!("persona {}: {}", k + 1, p.instruction);
        print!("{}", ethos_evals::results::table(res));
        let label = format!("persona {}", k + 1);
        print!("{}", ethos_evals::compare::table_of(diffs, "none", &label));
    }
    println!(
        "written: {}/no-persona/ and one folder per persona (results.json, items.jsonl, report.html each), {}, {}",
        root.display(),
        path.display(),
        page_path.display()
    );
    Ok(())
}
