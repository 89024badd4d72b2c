//! The page at `/`, driven in headless Chromium by playwright-core
//! (`tests/clients/page_test.cjs`): it loads, a message streams a reply, a slider change
//! sends the control vector and changes the reply, the side-by-side view shows what the API
//! gives for the steered and the unsteered request, and a palette chosen in its menu decodes
//! as the API does. Assertions are on the DOM's text.
//! Needs Chromium and playwright-core (`ETHOS_PLAYWRIGHT_DIR`: a folder with
//! node_modules/playwright-core); skips with a printed reason without them unless
//! `ETHOS_REQUIRE_CLIENTS=1` (CI installs both).

mod common;

use common::{lexicon_palette, repo, smollm2, Running};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn playwright() -> Option<std::path::PathBuf> {
    let dir = std::env::var("ETHOS_PLAYWRIGHT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join("target/playwright"));
    let ok = dir.join("node_modules/playwright-core").is_dir()
        && Path::new("/usr/bin/chromium").exists();
    if ok {
        return Some(dir.join("node_modules"));
    }
    if std::env::var("ETHOS_REQUIRE_CLIENTS").is_ok_and(|v| v == "1") {
        panic!(
            "playwright-core in {} or /usr/bin/chromium is missing and ETHOS_REQUIRE_CLIENTS=1",
            dir.display()
        );
    }
    eprintln!(
        "skipped: needs /usr/bin/chromium and playwright-core in {} (npm install --prefix DIR playwright-core; .ci/run installs both)",
        dir.display()
    );
    None
}

#[test]
fn the_page_streams_replies_and_its_sliders_steer_them() {
    let Some(node_path) = playwright() else {
        return;
    };
    let Some(model) = smollm2(Some("f32")) else {
        return;
    };
    let dir = repo().join("tests/fixtures/control");
    let palettes = tempfile::tempdir().unwrap();
    lexicon_palette(
        palettes.path(),
        "colour.json",
        "colour",
        &["blue", "red"],
        2.0,
    );
    let server = Running::start(model, |c| {
        c.control_vector_dir = Some(dir);
        c.palette_dir = Some(palettes.path().to_path_buf());
    });
    let ask = |steer: bool| {
        let mut b = json!({"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0, "seed": 0});
        if steer {
            b["control_vectors"] = json!([{"name": "smollm2_cv.gguf", "scale": 4.0}]);
        }
        let (status, v) = server.post("/v1/chat/completions", &b);
        assert_eq!(status, 200, "{v}");
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (plain, steered) = (ask(false), ask(true));
    let (status, v) = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 12, "temperature": 0, "seed": 0,
                "palette": "colour.json", "palette_mode": "best-of-n", "palette_candidates": 4}),
    );
    assert_eq!(status, 200, "{v}");
    let by_palette = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(plain, steered);

    let out = Command::new("node")
        .arg(repo().join("tests/clients/page_test.cjs"))
        .args([&server.base, "smollm2_cv.gguf", "colour.json"])
        .env("NODE_PATH", &node_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "page_test.cjs failed: {stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["errors"], json!([]), "the page logged errors");
    assert!(got["model"].as_str().unwrap().starts_with("smollm2"));
    assert_eq!(got["sliders"], 2, "one slider per vector of the folder");
    assert_eq!(got["plain"], plain.as_str());
    assert!(got["titles"].as_u64().unwrap() >= 1);
    assert_eq!(
        got["titles"], got["tokens"],
        "every token has its log-probs on hover"
    );
    assert!(got["first_title"]
        .as_str()
        .unwrap()
        .starts_with("log-prob -"));
    assert_eq!(got["slider_label"], "4");
    assert_eq!(got["steered"], steered.as_str());
    assert_eq!(got["unsteered"], plain.as_str());
    assert_eq!(got["steered_title"], "steered: smollm2_cv.gguf × 4");
    assert_eq!(got["palette_reply"], by_palette.as_str());
    assert!(
        got["palette_note"]
            .as_str()
            .unwrap()
            .starts_with("best-of-n: candidate "),
        "{got}"
    );
}
