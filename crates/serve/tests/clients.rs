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
