//! `ethos eval BENCHMARK`: run a culture benchmark on a model, writing `results.json` and
//! `items.jsonl` into the output folder (and resuming from it when interrupted).

use crate::common::print_json;
use anyhow::Result;
use ethos_evals::benchmarks;
use std::io::IsTerminal;
use std::path::PathBuf;

pub use crate::eval_args::Args;

/// The personas asked for (`--persona`, then `--personas FILE`).
fn personas_of(a: &Args) -> Result<Vec<ethos_evals::persona::Persona>> {
    let mut out = a
        .persona
        .iter()
        .map(|p| ethos_evals::persona::Persona::new(p, &a.persona_template))
        .collect::<ethos_evals::Result<Vec<_>>>()?;
    if let Some(f) = &a.personas {
        out.extend(ethos_evals::persona::read_personas(f, &a.persona_template)?);
    }
    if out.len() > ethos_evals::persona::MAX_PERSONAS {
        anyhow::bail!(
            "--persona: more than {} personas (each is a full run of the benchmark)",
            ethos_evals::persona::MAX_PERSONAS
        );
    }
    Ok(out)
}

/// A palette's tilt of option log-probs (`--lambda`).
struct PaletteTilt<'m>(ethos_steer::palette::decode::PaletteDecoder<'m>);

impl ethos_evals::OptionTilt for PaletteTilt<'_> {
    fn bonus(&mut self, prompt: &str, options: &[String]) -> ethos_evals::Result<Vec<f64>> {
        let cols = self.0.rewards_of(prompt, options)?;
        Ok((0..options.len())
            .map(|j| self.0.lambda.iter().zip(&cols).map(|(l, c)| l * c[j]).sum())
            .collect())
    }
}

/// The tilt of a lambda file on a model run here (`None` without one).
fn local_tilt<'m>(
    lambda: Option<&'m ethos_steer::palette::decode::LambdaFile>,
    model: &'m ethos_model::Model,
) -> Result<Option<PaletteTilt<'m>>> {
    lambda
        .map(|lf| {
            Ok(PaletteTilt(
                ethos_steer::palette::decode::PaletteDecoder::new(
                    lf,
                    model,
                    ethos_steer::palette::decode::PaletteMode::BestOfN,
                    1,
                )?,
            ))
        })
        .transpose()
}

fn default_output(a: &Args) -> PathBuf {
    let stem = a
        .model
        .model
        .as_deref()
        .map(|m| {
            let base = m
                .trim_end_matches('/')
                .rsplit(['/', ':'])
                .next()
                .unwrap_or(m);
            base.trim_end_matches(".gguf").to_string()
        })
        .unwrap_or_else(|| "SmolLM2-135M-Instruct.Q4_1".into());
    PathBuf::from("runs").join(format!("{}-{stem}", a.benchmark_name()))
}

/// Utility Engineering: pairs chosen adaptively, so it has its own loop.
fn run_utility(a: Args) -> Result<()> {
    let chat = match a.formats.as_slice() {
        [] => false,
        [f] if f == "raw" => false,
        [f] if f == "chat" => true,
        _ => anyhow::bail!("utility takes one format: raw or chat"),
    };
    if !a.conditions.is_empty() {
        anyhow::bail!("utility has no conditions");
    }
    // Check the outcome set before the model loads.
    ethos_evals::benchmarks::utility::load_outcomes(&a.options, a.data.as_deref())?;
    let output = a.output.clone().unwrap_or_else(|| default_output(&a));
    let opts = ethos_evals::benchmarks::utility::UtilityOptions {
        set: a.options.clone(),
        data: a.data.clone(),
        chat,
        output: output.clone(),
        seed: a.seed,
        batch: a.batch,
        progress: std::io::stderr().is_terminal(),
        steering: None,
    };
    if a.remote.is_remote() {
        let mut backend = a.remote.backend()?;
        let res = ethos_evals::benchmarks::utility::run_utility_on(&mut backend, &opts)?;
        if a.json {
            return print_json(&res);
        }
        print!("{}", ethos_evals::benchmarks::utility::table(&res));
        println!(
            "written: {}/results.json, items.jsonl, report.html",
            output.display()
        );
        return Ok(());
    }
    let steering = a.control.describe()?;
    let model = a.model.load()?;
    let mut session = a.control.session(&model)?;
    if session.is_steered() {
        // Unsteered and steered, then how the utilities moved.
        use ethos_evals::benchmarks::utility::{run_utility as run_u, table};
        let u_opts = ethos_evals::benchmarks::utility::UtilityOptions {
            output: output.join("unsteered"),
            ..opts.clone()
        };
        let s_opts = ethos_evals::benchmarks::utility::UtilityOptions {
            output: output.join("steered"),
            steering,
            ..opts
        };
        eprintln!("unsteered run:");
        let unsteered = run_u(&mut session.unsteered(), &u_opts)?;
        eprintln!("steered run:");
        let steered = run_u(&mut session, &s_opts)?;
        let shift = ethos_evals::compare::utility_shift(&unsteered, &steered, 5);
        let path = output.join("steering.json");
        std::fs::write(&path, serde_json::to_string_pretty(&shift)? + "\n")
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if a.json {
            return print_json(&serde_json::json!({
                "unsteered": unsteered, "steered": steered, "shift": shift,
            }));
        }
        println!("unsteered:");
        print!("{}", table(&unsteered));
        println!("steered:");
        print!("{}", table(&steered));
        println!(
            "utilities, steered against unsteered: Pearson r {:.3} over {} outcomes, mean |change| {:.3}",
            shift.pearson, shift.outcomes, shift.mean_abs_change
        );
        for (label, rows) in [("rose most", &shift.rose), ("fell most", &shift.fell)] {
            println!("{label}:");
            for (o, u, s) in rows {
                println!("  {u:+.3} -> {s:+.3}  {o}");
            }
        }
        println!(
            "written: {0}/unsteered/, {0}/steered/, {0}/steering.json",
            output.display()
        );
        return Ok(());
    }
    let res = ethos_evals::benchmarks::utility::run_utility(&mut session, &opts)?;
    if a.json {
        print_json(&res)?;
    } else {
        print!("{}", ethos_evals::benchmarks::utility::table(&res));
        println!(
            "written: {}/results.json, items.jsonl, report.html",
            output.display()
        );
    }
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    a.remote.check(&a.model)?;
    if a.remote.is_remote() && !a.control.control_vector.is_empty() {
        anyhow::bail!("--control-vector steers the residual stream of a model run here; with --backend openai the weights are the server's (ethos serve takes `control_vectors` per request)");
    }
    if a.benchmark.as_deref() == Some("diwali") {
        let output = a.output.clone().unwrap_or_else(|| default_output(&a));
        return crate::diwali::run(a, output);
    }
    if a.adaptations.is_some()
        || a.items.is_some()
        || a.max_tokens.is_some()
        || a.judge
        || a.system_prompt.is_some()
        || a.user_template.is_some()
    {
        anyhow::bail!("--adaptations, --items, --max-tokens, --judge, --system-prompt and --user-template are diwali's");
    }
    let personas = personas_of(&a)?;
    if a.benchmark.as_deref() == Some("utility") {
        if !personas.is_empty() {
            anyhow::bail!("--persona: utility asks for preferences between outcomes; persona prompting applies to civics, culturalbench, normad and task files");
        }
        if a.lambda.is_some() {
            anyhow::bail!("--lambda: utility asks for preferences between outcomes, not answers a palette could tilt (civics, culturalbench and normad take it)");
        }
        return run_utility(a);
    }
    // Everything about the selection is checked before the model loads.
    let loaded = match (&a.benchmark, &a.task) {
        (_, Some(task)) => {
            if a.data.is_some() {
                anyhow::bail!("--data: a task file names its own data (dataset_kwargs.data_files)");
            }
            benchmarks::load_task(task)?
        }
        (Some(name), None) => benchmarks::load(name, a.data.as_deref())?,
        (None, None) => anyhow::bail!("name a benchmark or a task file (--task FILE)"),
    };
    let bench = loaded.bench.as_ref();
    let formats = if a.formats.is_empty() {
        bench.default_formats()
    } else {
        benchmarks::expand_formats(bench, &a.formats)
    };
    let conditions = if a.conditions.is_empty() {
        bench.conditions().iter().map(|c| c.to_string()).collect()
    } else {
        a.conditions.clone()
    };
    let output = a.output.clone().unwrap_or_else(|| default_output(&a));
    let mut opts = ethos_evals::RunOptions {
        conditions,
        formats,
        limit: a.limit,
        seed: a.seed,
        output: output.clone(),
        batch: a.batch,
        progress: std::io::stderr().is_terminal(),
        steering: steering_record(&a)?,
    };
    ethos_evals::runner::check_selection(bench, &opts)?;
    if !personas.is_empty()
        && (a.lambda.is_some() || !a.model.lora.is_empty() || !a.control.control_vector.is_empty())
    {
        anyhow::bail!("--persona compares runs with and without a persona; run it apart from --lambda, --lora and --control-vector");
    }
    if a.remote.is_remote() {
        let mut backend = a.remote.backend()?;
        let client = &backend.client;
        if a.output.is_none() {
            let stem: String = client
                .model
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            opts.output = PathBuf::from("runs").join(format!("{}-{stem}", a.benchmark_name()));
        }
        if let Some(path) = &a.lambda {
            // The tilt's rewards (perplexity, lm-judge) ask the server through a client of
            // their own, beside the one the runner scores with.
            let rewards_backend = a.remote.backend()?;
            let served = rewards_backend.served();
            let lf = ethos_steer::palette::decode::LambdaFile::read(path)?;
            let mut tilt = PaletteTilt(ethos_steer::palette::decode::PaletteDecoder::on(
                &lf,
                ethos_steer::rewards::Scorer::Remote {
                    served,
                    judge: None,
                },
                ethos_steer::palette::decode::PaletteMode::BestOfN,
                1,
                &[],
            )?);
            let sha = loaded.dataset_sha256.clone();
            let mut run = |_steered: bool,
                           o: &ethos_evals::RunOptions,
                           t: Option<&mut dyn ethos_evals::OptionTilt>| {
                ethos_evals::run_on(&mut backend, bench, &sha, o, t)
            };
            return steered_and_unsteered(&a, &mut run, bench, opts, Some(&mut tilt));
        }
        if !personas.is_empty() {
            let sha = loaded.dataset_sha256.clone();
            let mut run = |b: &dyn ethos_evals::Benchmark, o: &ethos_evals::RunOptions| {
                ethos_evals::run_on(&mut backend, b, &sha, o, None)
            };
            return crate::personas::with_and_without(
                &mut run, bench, opts, &personas, a.seed, a.json,
            );
        }
        let res = ethos_evals::run_on(&mut backend, bench, &loaded.dataset_sha256, &opts, None)?;
        if a.json {
            return print_json(&res);
        }
        print!("{}", ethos_evals::results::table(&res));
        let s = backend.client.stats();
        println!(
            "server {} ({}): {} requests ({} retried), {} prompt and {} generated tokens",
            backend.client.host,
            backend.client.model,
            s.requests,
            s.retries,
            s.prompt_tokens,
            s.completion_tokens
        );
        println!(
            "written: {}/results.json, items.jsonl, report.html",
            opts.output.display()
        );
        return Ok(());
    }
    let lambda = match &a.lambda {
        Some(p) => Some(ethos_steer::palette::decode::LambdaFile::read(p)?),
        None => None,
    };
    if !a.model.lora.is_empty() {
        return base_and_adapted(&a, &loaded.dataset_sha256, bench, opts, lambda.as_ref());
    }
    let model = a.model.load()?;
    let mut session = a.control.session(&model)?;
    if !personas.is_empty() {
        let sha = loaded.dataset_sha256.clone();
        let mut run = |b: &dyn ethos_evals::Benchmark, o: &ethos_evals::RunOptions| {
            ethos_evals::run(&mut session, b, &sha, o)
        };
        return crate::personas::with_and_without(&mut run, bench, opts, &personas, a.seed, a.json);
    }
    let tilt = local_tilt(lambda.as_ref(), &model)?;
    if session.is_steered() || tilt.is_some() {
        let sha = loaded.dataset_sha256.clone();
        let mut run = |steered: bool,
                       o: &ethos_evals::RunOptions,
                       t: Option<&mut dyn ethos_evals::OptionTilt>| {
            if steered {
                ethos_evals::run_tilted(&mut session, bench, &sha, o, t)
            } else {
                ethos_evals::run(&mut session.unsteered(), bench, &sha, o)
            }
        };
        let mut tilt = tilt;
        return steered_and_unsteered(
            &a,
            &mut run,
            bench,
            opts,
            tilt.as_mut().map(|t| t as &mut dyn ethos_evals::OptionTilt),
        );
    }
    let res = ethos_evals::run(&mut session, bench, &loaded.dataset_sha256, &opts)?;
    if a.json {
        print_json(&res)?;
    } else {
        print!("{}", ethos_evals::results::table(&res));
        println!(
            "written: {}/results.json, items.jsonl, report.html",
            output.display()
        );
    }
    Ok(())
}

/// What steers a run: its control vectors and its lambda file (with their SHA-256s).
fn steering_record(a: &Args) -> Result<Option<serde_json::Value>> {
    let mut v = a.control.describe()?;
    if let Some(p) = &a.lambda {
        let rec = serde_json::json!({
            "file": p.display().to_string(),
            "sha256": ethos_evals::data::Source::read(p)?.sha256(),
        });
        let obj = v.get_or_insert_with(|| serde_json::json!({}));
        obj["lambda"] = rec;
    }
    Ok(v)
}

/// With control vectors or a lambda file: the benchmark unsteered (`OUTPUT/unsteered`) and steered
/// (`OUTPUT/steered`), each resumable on its own, and the item-by-item difference
/// (`OUTPUT/steering.json`).
/// `run(steered, options, tilt)` runs the benchmark unsteered or steered (on a local session
/// or a server).
type RunFn<'r> = dyn FnMut(
        bool,
        &ethos_evals::RunOptions,
        Option<&mut dyn ethos_evals::OptionTilt>,
    ) -> ethos_evals::Result<ethos_evals::results::Results>
    + 'r;

fn steered_and_unsteered(
    a: &Args,
    run: &mut RunFn<'_>,
    bench: &dyn ethos_evals::Benchmark,
    opts: ethos_evals::RunOptions,
    tilt: Option<&mut dyn ethos_evals::OptionTilt>,
) -> Result<()> {
    let root = opts.output.clone();
    let unsteered_opts = ethos_evals::RunOptions {
        output: root.join("unsteered"),
        steering: None,
        ..opts.clone()
    };
    let steered_opts = ethos_evals::RunOptions {
        output: root.join("steered"),
        ..opts
    };
    eprintln!("unsteered run:");
    let unsteered = run(false, &unsteered_opts, None)?;
    eprintln!("steered run:");
    let steered = run(true, &steered_opts, tilt)?;
    let diffs = ethos_evals::compare::steering_effect(
        &unsteered_opts.output,
        &steered_opts.output,
        !bench.has_gold(),
        a.seed,
    )?;
    let comparison = serde_json::json!({
        "steering": steered_opts.steering,
        "unsteered": unsteered_opts.output.display().to_string(),
        "steered": steered_opts.output.display().to_string(),
        "differences": diffs,
    });
    let path = root.join("steering.json");
    std::fs::write(&path, serde_json::to_string_pretty(&comparison)? + "\n")
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if a.json {
        return print_json(&serde_json::json!({
            "unsteered": unsteered, "steered": steered, "comparison": comparison,
        }));
    }
    println!("unsteered:");
    print!("{}", ethos_evals::results::table(&unsteered));
    println!("steered:");
    print!("{}", ethos_evals::results::table(&steered));
    println!("steered - unsteered, item by item:");
    print!("{}", ethos_evals::compare::table(&diffs));
    println!(
        "written: {0}/unsteered/, {0}/steered/ (results.json, items.jsonl, report.html each), {0}/steering.json",
        root.display()
    );
    Ok(())
}

/// With `--lora`: the benchmark on the base model (`OUTPUT/base`), on the adapted model
/// (`OUTPUT/adapted`) and, with control vectors or a lambda file, adapted and steered
/// (`OUTPUT/steered`), each resumable on its own; the item-by-item differences from the base
/// with paired bootstrap intervals go to `OUTPUT/adapters.json`. One model is loaded at a time.
fn base_and_adapted(
    a: &Args,
    dataset_sha256: &str,
    bench: &dyn ethos_evals::Benchmark,
    opts: ethos_evals::RunOptions,
    lambda: Option<&ethos_steer::palette::decode::LambdaFile>,
) -> Result<()> {
    let root = opts.output.clone();
    let unsteered = |dir: &str| ethos_evals::RunOptions {
        output: root.join(dir),
        steering: None,
        ..opts.clone()
    };
    let (base_opts, adapted_opts) = (unsteered("base"), unsteered("adapted"));
    let steered_opts = opts.steering.is_some().then(|| ethos_evals::RunOptions {
        output: root.join("steered"),
        ..opts.clone()
    });
    eprintln!("base run:");
    let base = {
        let model = a.model.without_adapters().load()?;
        let mut session = ethos_steer::Session::new(&model);
        ethos_evals::run(&mut session, bench, dataset_sha256, &base_opts)?
    };
    eprintln!("adapted run:");
    let model = a.model.load()?;
    let adapted = {
        let mut session = ethos_steer::Session::new(&model);
        ethos_evals::run(&mut session, bench, dataset_sha256, &adapted_opts)?
    };
    let steered = match &steered_opts {
        Some(o) => {
            eprintln!("adapted and steered run:");
            let mut session = a.control.session(&model)?;
            let mut tilt = local_tilt(lambda, &model)?;
            Some(ethos_evals::run_tilted(
                &mut session,
                bench,
                dataset_sha256,
                o,
                tilt.as_mut().map(|t| t as &mut dyn ethos_evals::OptionTilt),
            )?)
        }
        None => None,
    };
    let mut runs = vec![("adapted", &adapted_opts)];
    if let Some(o) = &steered_opts {
        runs.push(("steered", o));
    }
    let mut differences = serde_json::Map::new();
    let mut tables = Vec::new();
    for (name, o) in runs {
        let diffs = ethos_evals::compare::steering_effect(
            &base_opts.output,
            &o.output,
            !bench.has_gold(),
            a.seed,
        )?;
        tables.push((name, ethos_evals::compare::table_of(&diffs, "base", name)));
        differences.insert(format!("{name} - base"), serde_json::to_value(&diffs)?);
    }
    let comparison = serde_json::json!({
        "adapters": model.info.adapters,
        "steering": opts.steering,
        "base": base_opts.output.display().to_string(),
        "adapted": adapted_opts.output.display().to_string(),
        "steered": steered_opts.as_ref().map(|o| o.output.display().to_string()),
        "differences": differences,
    });
    let path = root.join("adapters.json");
    std::fs::write(&path, serde_json::to_string_pretty(&comparison)? + "\n")
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if a.json {
        return print_json(&serde_json::json!({
            "base": base, "adapted": adapted, "steered": steered, "comparison": comparison,
        }));
    }
    println!("base:");
    print!("{}", ethos_evals::results::table(&base));
    println!("adapted:");
    print!("{}", ethos_evals::results::table(&adapted));
    if let Some(s) = &steered {
        println!("adapted and steered:");
        print!("{}", ethos_evals::results::table(s));
    }
    for (name, t) in tables {
        println!("{name} - base, item by item:");
        print!("{t}");
    }
    let mut dirs = vec!["base", "adapted"];
    if steered.is_some() {
        dirs.push("steered");
    }
    let dirs: Vec<String> = dirs
        .iter()
        .map(|d| format!("{}/{d}/", root.display()))
        .collect();
    println!(
        "written: {} (results.json, items.jsonl, report.html each), {}/adapters.json",
        dirs.join(", "),
        root.display()
    );
    Ok(())
}
