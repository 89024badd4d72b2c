//! `--backend openai` against `ethos serve` on loopback: remote option log-probs equal the
//! local f32 run's, a killed run resumes with nothing lost or scored twice, a server that
//! serves another model is refused on resume, and bad flags get one-line errors. Needs
//! SmolLM2 (skipped with a printed reason when absent; required in CI).

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn model() -> Option<PathBuf> {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if model.exists() {
        return Some(model);
    }
    assert!(
        std::env::var("ETHOS_REQUIRE_REAL_MODEL").as_deref() != Ok("1"),
        "{} is missing",
        model.display()
    );
    eprintln!("skipped: {} is absent", model.display());
    None
}

/// The tests that run a server take turns: each server has the machine's two cores.
static ONE_SERVER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_server_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_SERVER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// An `ethos serve` process, stopped when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ethos"))
            .args(["serve", "--port", "0", "--threads", "2", "--model"])
            .arg(model)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let base = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .trim_end_matches(';')
            .to_string();
        // Keep reading so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Server { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ethos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = ethos(args);
    assert!(
        out.status.success(),
        "ethos {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

type Key = (String, String, String);

fn items(dir: &Path) -> Vec<(Key, Value)> {
    std::fs::read_to_string(dir.join("items.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let k = (
                v["id"].as_str().unwrap().to_string(),
                v["condition"].as_str().unwrap().to_string(),
                v["format"].as_str().unwrap().to_string(),
            );
            (k, v)
        })
        .collect()
}

/// The largest option log-prob difference between two runs of the same tasks, and how many
/// predictions differ.
fn compare(a: &Path, b: &Path) -> (f64, usize, usize) {
    let a: BTreeMap<Key, Value> = items(a).into_iter().collect();
    let b: BTreeMap<Key, Value> = items(b).into_iter().collect();
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the runs judged different tasks"
    );
    let (mut worst, mut differ) = (0f64, 0);
    for (k, x) in &a {
        let y = &b[k];
        let (lx, ly) = (
            x["option_logprobs"].as_object().unwrap(),
            y["option_logprobs"].as_object().unwrap(),
        );
        assert_eq!(lx.len(), ly.len());
        for (o, v) in lx {
            worst = worst.max((v.as_f64().unwrap() - ly[o].as_f64().unwrap()).abs());
        }
        differ += usize::from(x["prediction"] != y["prediction"]);
    }
    (worst, differ, a.len())
}

#[test]
fn remote_eval_against_ethos_serve() {
    let Some(model) = model() else { return };
    let _turn = one_server_at_a_time();
    let m = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let server = Server::start(&model, &["--dtype", "f32", "--served-model-name", "smol"]);
    let url = format!("{}/v1", server.base);
    let remote = |bench: &str, extra: &[&str], out: &str| {
        let mut args = vec![
            "eval",
            bench,
            "--backend",
            "openai",
            "--base-url",
            &url,
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };

    // 1. Agreement with the local f32 path, item by item (CulturalBench-Easy's first 100
    //    questions, NormAd's first 50 stories in its four conditions): raw formats with the server's
    //    tokenizer, and a chat format with a local copy of it (the server gives no template).
    let chat = [
        "--conditions",
        "easy",
        "--limit",
        "8",
        "--formats",
        "rev.numbers.text.chat",
    ];
    let cases: [(&str, &str, &[&str], bool); 3] = [
        (
            "culturalbench",
            "culturalbench",
            &["--conditions", "easy", "--limit", "100"],
            false,
        ),
        ("normad", "normad", &["--limit", "50"], false),
        ("culturalbench-chat", "culturalbench", &chat, true),
    ];
    for (name, bench, extra, local_tokenizer) in cases {
        let (r, l) = (
            dir(&format!("{name}-remote")),
            dir(&format!("{name}-local")),
        );
        let mut extra_remote = extra.to_vec();
        if local_tokenizer {
            extra_remote.extend(["--tokenizer", m]);
        }
        remote(bench, &extra_remote, &r);
        let mut args = vec!["eval", bench, "--model", m, "--dtype", "f32", "-o", &l];
        args.extend_from_slice(extra);
        ok(&args);
        let (worst, differ, n) = compare(Path::new(&r), Path::new(&l));
        eprintln!(
            "{name}: {n} tasks, max |remote - local| {worst:.2e}, {differ} predictions differ"
        );
        // The issue's bar is 1e-3 and 99 % of answers; f32 on both sides gives far less.
        assert!(worst < 1e-4, "{name}: max difference {worst}");
        assert!(differ * 100 <= n, "{name}: {differ} of {n} answers differ");
        let res: Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(&r).join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(res["model"]["backend"], "openai");
        assert_eq!(res["model"]["served_model"], "smol");
        assert!(res["model"]["max_model_len"].as_u64().unwrap() > 0);
        assert_eq!(
            res["model"]["host"].as_str().unwrap(),
            server.base.trim_start_matches("http://")
        );
        let requests = res["traffic"]["requests"].as_u64().unwrap();
        assert!(requests > 0 && res["traffic"]["prompt_tokens"].as_u64().unwrap() > 0);
    }

    // score and generate: the same numbers and text as the local f32 model.
    let req = tmp.path().join("req.jsonl");
    std::fs::write(
        &req,
        "{\"context\": \"The capital of France is\", \"continuations\": [\" Paris\", \" the city of Lyon\"]}\n{\"context\": \"Hong Kong is a\", \"continuations\": [\" city\", \" country\"]}\n",
    )
    .unwrap();
    let lines = |out: &Output| -> Vec<Value> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let r = lines(&ok(&[
        "score",
        "-i",
        req.to_str().unwrap(),
        "--backend",
        "openai",
        "--base-url",
        &url,
    ]));
    let l = lines(&ok(&[
        "score",
        "-i",
        req.to_str().unwrap(),
        "--model",
        m,
        "--dtype",
        "f32",
    ]));
    assert_eq!(r.len(), 2);
    for (x, y) in r.iter().zip(&l) {
        for (cx, cy) in x["continuations"]
            .as_array()
            .unwrap()
            .iter()
            .zip(y["continuations"].as_array().unwrap())
        {
            assert_eq!(cx["token_ids"], cy["token_ids"]);
            let d = (cx["logprob"].as_f64().unwrap() - cy["logprob"].as_f64().unwrap()).abs();
            assert!(d < 1e-4, "{cx} against {cy}");
        }
    }
    let text = |extra: &[&str]| -> String {
        let mut args = vec![
            "generate",
            "-p",
            "The capital of France is",
            "--temperature",
            "0",
            "--max-tokens",
            "16",
            "--json",
        ];
        args.extend_from_slice(extra);
        let v: Value = serde_json::from_slice(&ok(&args).stdout).unwrap();
        v["text"].as_str().unwrap().to_string()
    };
    assert_eq!(
        text(&["--backend", "openai", "--base-url", &url]),
        text(&["--model", m, "--dtype", "f32"])
    );

    // 2. A run killed mid-way resumes: every task once, none lost.
    let out = dir("killed");
    let args = [
        "eval",
        "culturalbench",
        "--conditions",
        "easy",
        "--limit",
        "40",
        "--backend",
        "openai",
        "--base-url",
        &url,
        "--concurrency",
        "1",
        "--batch",
        "1",
        "-o",
        &out,
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let items_path = Path::new(&out).join("items.jsonl");
    let start = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&items_path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 8 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no items appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = items(Path::new(&out)).len();
    assert!(
        (8..40).contains(&before),
        "{before} items before the resume"
    );
    ok(&args);
    let after = items(Path::new(&out));
    let keys: HashSet<&Key> = after.iter().map(|(k, _)| k).collect();
    assert_eq!(after.len(), 40, "every task once");
    assert_eq!(keys.len(), 40, "no task twice");
    let res: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&out).join("results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(res["resumed"].as_u64().unwrap() as usize, before);
    assert_eq!(
        res["computed_this_run"].as_u64().unwrap() as usize,
        40 - before
    );
    drop(server);

    // 3. A server that now serves another model: the folder is refused.
    let other = Server::start(&model, &["--served-model-name", "other"]);
    let url = format!("{}/v1", other.base);
    let mut args = args.to_vec();
    let at = args.iter().position(|a| a.starts_with("http://")).unwrap();
    args[at] = &url;
    let e = ethos(&args);
    assert!(!e.status.success());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        msg.contains("another run") && msg.contains("smol") && msg.lines().count() == 1,
        "{msg}"
    );
}

#[test]
fn remote_flags_are_checked() {
    for (args, want) in [
        (
            &["eval", "culturalbench", "--backend", "openai"][..],
            "needs --base-url",
        ),
        (
            &["eval", "culturalbench", "--base-url", "http://127.0.0.1:9"][..],
            "need --backend openai",
        ),
        (
            &[
                "score",
                "--text",
                "x",
                "--backend",
                "openai",
                "--base-url",
                "http://127.0.0.1:9",
                "--model",
                "m.gguf",
            ][..],
            "the model is the server's",
        ),
        (
            &[
                "eval",
                "culturalbench",
                "--backend",
                "openai",
                "--base-url",
                "http://127.0.0.1:9",
                "--control-vector",
                "v.gguf",
            ][..],
            "--control-vector",
        ),
        (
            &["eval", "culturalbench", "--tokenizer", "t.gguf"][..],
            "need --backend openai",
        ),
        (
            &[
                "generate",
                "-p",
                "x",
                "--backend",
                "openai",
                "--base-url",
                "ftp://h",
            ][..],
            "not an http:// or https:// address",
        ),
        (
            &[
                "generate",
                "-p",
                "x",
                "--backend",
                "openai",
                "--base-url",
                "http://127.0.0.1:9",
                "--api-key-env",
                "ETHOS_TEST_UNSET_VAR",
            ][..],
            "ETHOS_TEST_UNSET_VAR",
        ),
    ] {
        let out = ethos(args);
        let msg = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(msg.contains(want), "{args:?}: {msg}");
        assert_eq!(msg.trim().lines().count(), 1, "{args:?}: {msg}");
    }
    // Nothing listens: the address is named after the retries.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = ethos(&[
        "score",
        "--text",
        "x",
        "--backend",
        "openai",
        "--base-url",
        &url,
        "--retries",
        "1",
    ]);
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        msg.contains(&format!("127.0.0.1:{port}/v1/models")) && msg.contains("after 1 retries"),
        "{msg}"
    );
}

/// The CSV the fit wrote: its header and rows (prompt, then one column per reward).
fn read_table(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut r = csv_rows(&text);
    let header = r.remove(0);
    (header, r)
}

/// A small CSV reader for the fit's table (quoted fields, commas and newlines inside quotes).
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

#[test]
fn remote_map_fit_and_palette_decoding_against_ethos_serve() {
    let Some(model) = model() else { return };
    let _turn = one_server_at_a_time();
    let m = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let palette = tmp.path().join("p.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/palette/polite.csv"),
        tmp.path().join("polite.csv"),
    )
    .unwrap();
    std::fs::write(
        &palette,
        r#"
[[value]]
name = "respect"
target = "q70"

[[value]]
name = "polite-words"
target = "q70"

[[value]]
name = "perplexity"
target = "keep"

[[reward]]
name = "respect"
kind = "lm-judge"
question = "Is the response respectful and polite?"

[[reward]]
name = "polite-words"
kind = "lexicon"
file = "polite.csv"
"#,
    )
    .unwrap();
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(
        &prompts,
        "How should I greet my neighbour?\nWhat do you think of my cooking?\n",
    )
    .unwrap();
    let server = Server::start(&model, &["--dtype", "f32"]);
    let url = format!("{}/v1", server.base);
    let fit = |out: &str| {
        let table = tmp.path().join(out);
        let lambda = tmp.path().join(format!("{out}.lambda.json"));
        let args = [
            "steer",
            "fit",
            "--palette",
            palette.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--samples",
            "3",
            "--max-tokens",
            "12",
            "--chat",
            "--backend",
            "openai",
            "--base-url",
            &url,
            "--tokenizer",
            m,
            "--rewards-out",
            table.to_str().unwrap(),
            "--lambda-out",
            lambda.to_str().unwrap(),
        ];
        ok(&args);
        (table, lambda)
    };
    let (table, lambda) = fit("a.csv");
    let (header, rows) = read_table(&table);
    assert_eq!(header, ["prompt", "respect", "polite-words", "perplexity"]);
    assert_eq!(rows.len(), 6, "3 samples of 2 prompts");
    let pairs: Vec<ethos_steer::rewards::Pair> =
        std::fs::read_to_string(table.with_extension("responses.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                ethos_steer::rewards::Pair {
                    prompt: v["prompt"].as_str().unwrap().to_string(),
                    response: v["response"].as_str().unwrap().to_string(),
                }
            })
            .collect();
    assert!(pairs.iter().all(|p| !p.response.is_empty()));
    // Seeded: the same fit draws the same samples.
    let (again, _) = fit("b.csv");
    assert_eq!(
        std::fs::read_to_string(table.with_extension("responses.jsonl")).unwrap(),
        std::fs::read_to_string(again.with_extension("responses.jsonl")).unwrap()
    );
    // The remote rewards equal the same rewards computed here on the same model in f32.
    let local = ethos_model::load(
        &ethos_model::ModelSpec::parse(Some(m)).unwrap(),
        &ethos_model::LoadOptions {
            dtype: Some(ethos_model::DType::F32),
            ..Default::default()
        },
    )
    .unwrap();
    let pal = ethos_steer::palette::Palette::read(&palette).unwrap();
    let specs = pal.reward_specs("p.toml").unwrap();
    let mut rewards = ethos_steer::rewards::build(&specs, &local, tmp.path()).unwrap();
    for (col, r) in rewards.iter_mut().enumerate() {
        let want = r.score(&pairs).unwrap();
        for (row, w) in rows.iter().zip(&want) {
            let got: f64 = row[col + 1].parse().unwrap();
            assert!(
                (got - w).abs() < 1e-3,
                "{}: remote {got}, local {w}",
                header[col + 1]
            );
        }
    }
    // Palette decoding: candidates drawn there, weighed here.
    let out = ok(&[
        "generate",
        "-p",
        "How should I greet my neighbour?",
        "--chat",
        "--max-tokens",
        "12",
        "--lambda",
        lambda.to_str().unwrap(),
        "--palette-mode",
        "best-of-n",
        "--candidates",
        "4",
        "--seed",
        "7",
        "--backend",
        "openai",
        "--base-url",
        &url,
        "--tokenizer",
        m,
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cands = v["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 4);
    let best = cands
        .iter()
        .enumerate()
        .max_by(|a, b| {
            a.1["score"]
                .as_f64()
                .unwrap()
                .total_cmp(&b.1["score"].as_f64().unwrap())
        })
        .unwrap()
        .0;
    assert_eq!(v["chosen"].as_u64().unwrap() as usize, best);
    assert_eq!(v["text"], cands[best]["text"]);
    // Palette-tilted option scores: through the server as here, with the served model's
    // chat template (the judge's question reads through it); without it, refused up front.
    let tilted = |dir: &str, extra: &[&str]| {
        let out = tmp.path().join(dir);
        let mut args = vec![
            "eval",
            "culturalbench",
            "--conditions",
            "easy",
            "--limit",
            "6",
            "--lambda",
            lambda.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (ethos(&args), out)
    };
    let (o, remote) = tilted(
        "tilt-remote",
        &["--backend", "openai", "--base-url", &url, "--tokenizer", m],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, local) = tilted("tilt-local", &["--model", m, "--dtype", "f32"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for part in ["unsteered", "steered"] {
        let (worst, differ, n) = compare(&remote.join(part), &local.join(part));
        eprintln!("palette {part}: {n} tasks, max |remote - local| {worst:.2e}");
        assert!(
            worst < 1e-3 && differ == 0,
            "{part}: {worst}, {differ} differ"
        );
    }
    let (o, none) = tilted("tilt-refused", &["--backend", "openai", "--base-url", &url]);
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && msg.contains("--tokenizer") && msg.trim().lines().count() == 1,
        "{msg}"
    );
    assert!(!none.exists(), "nothing is written before the refusal");
    let e = ethos(&[
        "generate",
        "-p",
        "x",
        "--lambda",
        lambda.to_str().unwrap(),
        "--palette-mode",
        "token",
        "--backend",
        "openai",
        "--base-url",
        &url,
    ]);
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && msg.contains("token") && msg.contains("local model"),
        "{msg}"
    );
}
