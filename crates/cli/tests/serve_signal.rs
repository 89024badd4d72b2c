//! `ethos serve` as a process: SIGTERM lets the running request finish, then the server
//! exits 0. Needs SmolLM2 (skipped with a printed reason when absent; required in CI).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_drains_the_running_request_and_exits_zero() {
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        assert!(
            std::env::var("ETHOS_REQUIRE_REAL_MODEL").as_deref() != Ok("1"),
            "{} is missing",
            model.display()
        );
        eprintln!("skipped: {} is absent", model.display());
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(["serve", "--port", "0", "--model"])
        .arg(&model)
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
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let url = format!("{base}/v1/completions");
    let request = std::thread::spawn(move || {
        ureq::post(&url)
            .send_string(r#"{"prompt": "Count:", "max_tokens": 48, "ignore_eos": true}"#)
            .map_err(|e| e.to_string())
            .map(|r| r.into_json::<serde_json::Value>().unwrap())
    });
    let start = Instant::now();
    loop {
        let m = ureq::get(&format!("{base}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        if m.lines()
            .any(|l| l.starts_with("ethos_running_sequences") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the request never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let v = request.join().unwrap().unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 48);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(rest
        .join()
        .unwrap()
        .iter()
        .any(|l| l.contains("ethos serve: stopped")));
}
