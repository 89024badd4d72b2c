//! The clients users have, unmodified, against `ethos serve`: the official `openai` Python
//! package (`tests/clients/openai_client.py`). The interpreter is `ETHOS_PYTHON` (default
//! `python3`); without the package this skips with a printed reason, unless
//! `ETHOS_REQUIRE_CLIENTS=1` (CI installs it).

mod common;

use common::{repo, smollm2, Running};
use serde_json::{json, Value};
use std::process::Command;

fn python_with(module: &str) -> Option<String> {
    let python = std::env::var("ETHOS_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    if std::env::var("ETHOS_REQUIRE_CLIENTS").is_ok_and(|v| v == "1") {
        panic!("{python} cannot import {module} and ETHOS_REQUIRE_CLIENTS=1");
    }
    eprintln!(
        "skipped: {python} cannot import {module} (pip install {module}; .ci/run installs it)"
    );
    None
}

#[test]
fn the_openai_python_package_works_unmodified() {
    let Some(python) = python_with("openai") else {
        return;
    };
    let Some(model) = smollm2(Some("f32")) else {
        return;
    };
    let server = Running::start(model, |_| {});
    let out = Command::new(&python)
        .arg(repo().join("tests/clients/openai_client.py"))
        .args([&server.base, "smollm2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openai_client.py failed: {stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("openai {}", got["openai_version"]);

    // What the package parsed is what the server answers to the same requests.
    let (_, v) = server.post(
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}),
    );
    assert_eq!(got["completion"], v["choices"][0]["text"]);
    assert_eq!(got["completion_streamed"], v["choices"][0]["text"]);
    let (_, v) = server.post(
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 1, "temperature": 0, "echo": true, "logprobs": 2}),
    );
    assert_eq!(got["echo_text"], v["choices"][0]["text"]);
    assert_eq!(
        got["echo_token_logprobs"],
        v["choices"][0]["logprobs"]["token_logprobs"]
    );
    let (_, v) = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0}),
    );
    let reply = &v["choices"][0]["message"]["content"];
    assert!(!reply.as_str().unwrap().is_empty());
    assert_eq!(&got["chat"], reply);
    assert_eq!(&got["chat_streamed"], reply);
    assert_eq!(
        got["chat_logprobs"].as_array().unwrap().len() as u64,
        v["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        (got["error_status"].as_u64(), got["error_param"].as_str()),
        (Some(400), Some("logprobs"))
    );
    assert_eq!(got["not_found_status"], 404);
}

/// lm-evaluation-harness' `local-completions` against `ethos serve --dtype f32` on the first
/// 100 CulturalBench-Easy questions: every option log-likelihood equals lm-eval's own HF
/// backend on the same f32 model (`tests/fixtures/culturalbench/lmeval_harness_100.json`) to
/// 1e-4, with the same accuracy. The interpreter is `ETHOS_LMEVAL_PYTHON` (a venv with
/// `lm-eval[api]` and transformers; no PyTorch needed).
#[test]
fn lm_eval_local_completions_matches_its_hf_backend() {
    let python = std::env::var("ETHOS_LMEVAL_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import lm_eval, tenacity, transformers"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("ETHOS_REQUIRE_CLIENTS").is_ok_and(|v| v == "1") {
            panic!(
                "{python} cannot import lm_eval[api] and transformers and ETHOS_REQUIRE_CLIENTS=1"
            );
        }
        eprintln!("skipped: {python} cannot import lm_eval (pip install 'lm-eval[api]' transformers; .ci/run installs them)");
        return;
    }
    let Some(model) = smollm2(Some("f32")) else {
        return;
    };
    let server = Running::start(model, |_| {});
    let out = Command::new(&python)
        .arg(repo().join("tests/clients/lmeval_local_completions.py"))
        .args([&server.base, "smollm2", "100"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lmeval_local_completions.py failed: {stderr}"
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo().join("tests/fixtures/culturalbench/lmeval_harness_100.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (got_easy, want_easy) = (
        got["easy"].as_object().unwrap(),
        want["easy"].as_object().unwrap(),
    );
    assert_eq!(got_easy.len(), 100);
    let mut worst = 0f64;
    for (q, lls) in want_easy {
        let g = got_easy[q].as_array().unwrap();
        for (a, b) in g.iter().zip(lls.as_array().unwrap()) {
            let d = (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
            worst = worst.max(d);
            assert!(d < 1e-4, "question {q}: {a} vs lm-eval HF {b}");
        }
    }
    eprintln!(
        "lm-eval {} local-completions vs its HF backend: max |difference| {worst:.2e}",
        got["lm_eval"]
    );
    assert_eq!(
        got["metrics"]["cultural_bench_easy_local"]["acc,none"],
        want["metrics"]["cultural_bench_easy_local"]["acc,none"]
    );
}
