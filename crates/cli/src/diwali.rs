//! `ethos eval diwali`: the model adapts GSM8K problems to Indian culture and its replaced
//! concepts are matched against a culture-specific list (optionally judged on the authors'
//! rubric); or, with `--adaptations`, outputs in the authors' format are scored without
//! adapting anything.

use crate::common::print_json;
use crate::eval_args::Args;
use anyhow::Result;
use ethos_evals::benchmarks::diwali;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Long enough for a GSM8K problem's adaptation and its replaced concepts; it cuts off
/// replies that run on.
const DEFAULT_MAX_TOKENS: usize = 512;

pub fn run(a: Args, output: PathBuf) -> Result<()> {
    for (set, flag, why) in [
        (
            !a.formats.is_empty(),
            "--formats",
            "one format: the authors' prompt through the chat template",
        ),
        (!a.conditions.is_empty(), "--conditions", "no conditions"),
        (
            !a.persona.is_empty() || a.personas.is_some(),
            "--persona",
            "adaptations, not answers a persona could shift",
        ),
        (
            a.lambda.is_some(),
            "--lambda",
            "generations; a palette tilts option scores",
        ),
        (
            !a.model.lora.is_empty(),
            "--lora",
            "one model per run: run it once per adapter",
        ),
    ] {
        if set {
            anyhow::bail!("{flag}: diwali has {why}");
        }
    }
    let progress = std::io::stderr().is_terminal();
    // Everything given is read and checked before a model loads.
    let concepts = diwali::load_concepts(a.items.as_deref())?;
    let texts = match &a.data {
        Some(d) => diwali::Texts::read(d)?,
        None => diwali::Texts::builtin()?,
    };
    let prompts =
        diwali::AdaptationPrompts::read(a.system_prompt.as_deref(), a.user_template.as_deref())?;
    let judge_template = match &a.judge_template {
        Some(p) => diwali::judge::read_template(p)?,
        None => diwali::judge::default_template().to_string(),
    };
    let judge_on = |res: &mut diwali::DiwaliResults, backend: &mut dyn ethos_evals::Backend| {
        diwali::add_judgement(
            res,
            backend,
            &judge_template,
            &texts,
            &output,
            a.batch,
            progress,
        )
    };
    // Judged below by the model that adapted, unless a judge model is named or nothing was
    // adapted here.
    let judge_here = a.judge && a.judge_model.is_none() && a.adaptations.is_none();
    let mut res = if let Some(path) = &a.adaptations {
        if a.limit.is_some()
            || a.max_tokens.is_some()
            || a.system_prompt.is_some()
            || a.user_template.is_some()
        {
            anyhow::bail!("--adaptations scores outputs already made; --limit, --max-tokens, --system-prompt and --user-template are for a model's run");
        }
        diwali::score_adaptations(path, &concepts, &output)?
    } else {
        let opts = diwali::DiwaliOptions {
            limit: a.limit,
            max_tokens: a.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            prompts,
            output: output.clone(),
            batch: a.batch,
            progress,
            steering: a.control.describe()?,
        };
        if a.remote.is_remote() {
            let mut backend = a.remote.backend()?;
            let mut res = diwali::run_diwali_on(&mut backend, &texts, &concepts, &opts)?;
            if judge_here {
                judge_on(&mut res, &mut backend)?;
            }
            res
        } else {
            let model = a.model.load()?;
            let mut session = a.control.session(&model)?;
            let mut res = diwali::run_diwali(&mut session, &texts, &concepts, &opts)?;
            if judge_here {
                // The judge is the model unsteered: steering shapes the adaptations only.
                let mut judge = session.unsteered();
                judge_on(
                    &mut res,
                    &mut ethos_evals::LocalBackend::new(&mut judge, a.batch),
                )?;
            }
            res
        }
    };
    if a.judge && !judge_here {
        if a.remote.is_remote() && a.judge_model.is_none() {
            judge_on(&mut res, &mut a.remote.backend()?)?;
        } else {
            let judge_args = crate::common::ModelArgs {
                model: a.judge_model.clone().or_else(|| a.model.model.clone()),
                ..a.model.clone()
            };
            let model = judge_args.load()?;
            let mut session = ethos_steer::Session::new(&model);
            judge_on(
                &mut res,
                &mut ethos_evals::LocalBackend::new(&mut session, a.batch),
            )?;
        }
    }
    if a.json {
        return print_json(&res);
    }
    print!("{}", diwali::table(&res));
    let mut written = format!(
        "{}/results.json, scores.json, report.html",
        output.display()
    );
    if a.adaptations.is_none() {
        written.push_str(", adaptations.json (the outputs in the authors' format), items.jsonl");
    }
    if res.judge.is_some() {
        written.push_str(", judge/judge.csv");
    }
    println!("written: {written}");
    Ok(())
}
