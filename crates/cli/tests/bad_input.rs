//! Bad input through the real binary: each case must exit non-zero with one line on stderr
//! that names the file, field or limit, and must not panic.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny(name: &str) -> PathBuf {
    repo().join("tests/fixtures/tiny").join(name)
}

/// Runs `ethos ARGS`, expects failure; returns the single stderr line.
fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ethos"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "ethos {args:?} succeeded; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "ethos {args:?} panicked: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "ethos {args:?}: expected one line, got {stderr:?}"
    );
    lines[0].to_string()
}

/// A copy of a tiny model folder to break.
fn copy_folder(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "model-f32.gguf"] {
        std::fs::copy(tiny(name).join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn truncated_gguf() {
    let dir = copy_folder("llama");
    let p = dir.path().join("model-f32.gguf");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["info", "--model", s(&p)]);
    assert!(
        e.contains("model-f32.gguf") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn corrupt_gguf_magic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.gguf");
    std::fs::write(&p, b"this is not a gguf file at all").unwrap();
    let e = fails(&["info", "--model", s(&p)]);
    assert!(
        e.contains("junk.gguf") && e.contains("not a valid GGUF"),
        "{e}"
    );
}

/// A GGUF header that declares a 2^60-byte tensor in a file of a few hundred bytes.
#[test]
fn gguf_header_claiming_a_huge_tensor() {
    let mut b = Vec::new();
    b.extend_from_slice(&0x4655_4747u32.to_le_bytes()); // "GGUF"
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // metadata entries
    let key = b"general.architecture";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    b.extend_from_slice(&5u64.to_le_bytes());
    b.extend_from_slice(b"llama");
    let name = b"token_embd.weight";
    b.extend_from_slice(&(name.len() as u64).to_le_bytes());
    b.extend_from_slice(name);
    b.extend_from_slice(&2u32.to_le_bytes()); // dims
    b.extend_from_slice(&(1u64 << 30).to_le_bytes());
    b.extend_from_slice(&(1u64 << 28).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // F32
    b.extend_from_slice(&0u64.to_le_bytes()); // offset
    b.resize(b.len() + 64, 0);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.gguf");
    std::fs::write(&p, &b).unwrap();
    let e = fails(&["info", "--model", s(&p)]);
    assert!(
        e.contains("huge.gguf") && e.contains("token_embd.weight"),
        "{e}"
    );
}

#[test]
fn truncated_safetensors() {
    let dir = copy_folder("llama");
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(e.contains("model.safetensors"), "{e}");
}

/// A safetensors header length of 2^60 bytes.
#[test]
fn safetensors_header_claiming_a_huge_size() {
    let dir = copy_folder("llama");
    let p = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn config_with_a_missing_field() {
    let dir = copy_folder("llama");
    edit_config(dir.path(), |v| {
        v.as_object_mut().unwrap().remove("num_hidden_layers");
    });
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(
        e.contains("config.json") && e.contains("num_hidden_layers") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn config_with_a_wrong_field() {
    let dir = copy_folder("llama");
    edit_config(dir.path(), |v| {
        v["hidden_size"] = serde_json::json!("sixty-four")
    });
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(
        e.contains("config.json") && e.contains("hidden_size"),
        "{e}"
    );
    edit_config(dir.path(), |v| v["hidden_size"] = serde_json::json!(96));
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("shape"),
        "{e}"
    );
}

/// DeepSeek through the binary: an unknown routing method and a kv_lora_rank that disagrees
/// with the tensors each give one line naming the field or tensor (the library-level cases,
/// FP8 scales and missing experts among them, are in tests/deepseek_errors.rs).
#[test]
fn deepseek_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny("deepseek_v3").join(f), dir.path().join(f)).unwrap();
    }
    edit_config(dir.path(), |v| {
        v["topk_method"] = serde_json::json!("top_p")
    });
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(e.contains("topk_method") && e.contains("top_p"), "{e}");
    edit_config(dir.path(), |v| {
        v["topk_method"] = serde_json::json!("noaux_tc");
        v["kv_lora_rank"] = serde_json::json!(16);
    });
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(
        e.contains("kv_a_proj_with_mqa") && e.contains("shape"),
        "{e}"
    );
}

#[test]
fn unknown_architecture() {
    let dir = copy_folder("llama");
    edit_config(dir.path(), |v| {
        v["architectures"] = serde_json::json!(["GPTNeoXForCausalLM"]);
        v["model_type"] = serde_json::json!("gpt_neox");
    });
    let e = fails(&["info", "--model", s(dir.path())]);
    assert!(
        e.contains("GPTNeoXForCausalLM") && e.contains("supported"),
        "{e}"
    );
}

#[test]
fn unknown_device() {
    let e = fails(&["info", "--model", s(&tiny("llama")), "--device", "tpu"]);
    assert!(e.contains("tpu"), "{e}");
}

#[test]
fn missing_model_path() {
    let e = fails(&["info", "--model", "no/such/model.gguf"]);
    assert!(e.contains("no/such/model.gguf"), "{e}");
}

/// A prompt longer than the context: the real model with a 16-token context cap.
#[test]
fn prompt_longer_than_the_context() {
    let model = repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        assert!(
            std::env::var("ETHOS_REQUIRE_REAL_MODEL").as_deref() != Ok("1"),
            "{} missing",
            model.display()
        );
        eprintln!("SKIPPED: {} is absent; CI runs this test", model.display());
        return;
    }
    let prompt = "a long prompt ".repeat(20);
    let e = fails(&[
        "generate",
        "--model",
        s(&model),
        "--max-context",
        "16",
        "--prompt",
        &prompt,
        "--max-tokens",
        "4",
    ]);
    assert!(e.contains("context length 16"), "{e}");
    let e = fails(&[
        "score",
        "--model",
        s(&model),
        "--max-context",
        "16",
        "--text",
        &prompt,
    ]);
    assert!(e.contains("context length 16"), "{e}");
}

#[test]
fn malformed_score_input_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("req.jsonl");
    std::fs::write(
        &p,
        "{\"context\": \"a\", \"continuations\": [\"b\"]}\n{\"context\": 3}\n",
    )
    .unwrap();
    let model = repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        assert!(
            std::env::var("ETHOS_REQUIRE_REAL_MODEL").as_deref() != Ok("1"),
            "{} missing",
            model.display()
        );
        eprintln!("SKIPPED: {} is absent; CI runs this test", model.display());
        return;
    }
    let e = fails(&["score", "--model", s(&model), "--input", s(&p)]);
    assert!(e.contains("req.jsonl:2"), "{e}");
}

// `ethos eval`: the selection and the data are checked before any model loads.

#[test]
fn eval_unknown_benchmark_format_and_condition() {
    let e = fails(&["eval", "mmlu"]);
    assert!(e.contains("unknown benchmark `mmlu`"), "{e}");
    let e = fails(&["eval", "culturalbench", "--formats", "harness,sideways"]);
    assert!(e.contains("unknown format `sideways`"), "{e}");
    let e = fails(&["eval", "culturalbench", "--formats", "orig.roman.label.raw"]);
    assert!(e.contains("unknown label style `roman`"), "{e}");
    let e = fails(&["eval", "normad", "--conditions", "none,planet"]);
    assert!(
        e.contains("unknown condition `planet`") && e.contains("none, country, value, rot"),
        "{e}"
    );
}

#[test]
fn eval_data_with_a_missing_column_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("easy.csv");
    std::fs::write(
        &bad,
        "data_idx,question_idx,prompt_question,prompt_option_a,prompt_option_b,prompt_option_c,prompt_option_d,country\n0,0,q,a,b,c,d,X\n",
    )
    .unwrap();
    let e = fails(&["eval", "culturalbench", "--data", s(&bad)]);
    assert!(
        e.contains("easy.csv") && e.contains("missing column `answer`"),
        "{e}"
    );
    let empty = dir.path().join("normad.csv");
    std::fs::write(&empty, "").unwrap();
    let e = fails(&["eval", "normad", "--data", s(&empty)]);
    assert!(e.contains("normad.csv: the file is empty"), "{e}");
    let e = fails(&[
        "eval",
        "normad",
        "--data",
        s(&dir.path().join("absent.csv")),
    ]);
    assert!(e.contains("absent.csv: cannot read"), "{e}");
    // The flag's context, the file and the OS error, each once.
    assert!(
        e.starts_with("ethos: error: normad --data wants one CSV file: ")
            && e.matches("cannot read").count() == 1
            && e.matches("os error").count() == 1,
        "{e}"
    );
}

#[test]
fn eval_task_files_that_ethos_cannot_run_as_lm_eval_would() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.jsonl"), "{\"q\": \"x\", \"a\": 0}\n").unwrap();
    let base = "task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: d.jsonl\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{q}}\"\ndoc_to_choice: [\"a\", \"b\"]\ndoc_to_target: a\n";
    let task = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let p = task(
        "fn.yaml",
        &format!("{base}process_docs: !function utils.process_docs\n"),
    );
    let e = fails(&["eval", "--task", s(&p)]);
    assert!(
        e.contains("fn.yaml: `process_docs` is `!function utils.process_docs`"),
        "{e}"
    );
    let p = task("key.yaml", &format!("{base}use_prompt: promptsource:x\n"));
    let e = fails(&["eval", "--task", s(&p)]);
    assert!(
        e.contains("key.yaml: key `use_prompt` is not supported"),
        "{e}"
    );
    let p = task("tpl.yaml", &base.replace("{{q}}", "{{question}}"));
    let e = fails(&["eval", "--task", s(&p)]);
    assert!(
        e.contains("tpl.yaml: item 0 of split `test`") && e.contains("`doc_to_text`"),
        "{e}"
    );
    let p = task("yaml.yaml", "task: [unclosed\n");
    let e = fails(&["eval", "--task", s(&p)]);
    assert!(e.contains("yaml.yaml: not YAML"), "{e}");
    let e = fails(&["eval", "--task", s(&dir.path().join("absent.yaml"))]);
    assert!(e.contains("absent.yaml: cannot read the task"), "{e}");
    let ok = task("ok.yaml", base);
    let e = fails(&["eval", "--task", s(&ok), "--data", s(&ok)]);
    assert!(e.contains("--data: a task file names its own data"), "{e}");
}

#[test]
fn eval_personas_that_cannot_be_asked() {
    let e = fails(&[
        "eval",
        "culturalbench",
        "--persona",
        "x",
        "--persona-template",
        "Answer as a local.",
    ]);
    assert!(
        e.contains("--persona-template `Answer as a local.` has no `{persona}`"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("personas.txt");
    std::fs::write(&empty, "# nobody\n").unwrap();
    let e = fails(&["eval", "culturalbench", "--personas", s(&empty)]);
    assert!(e.contains("personas.txt: no personas"), "{e}");
    let e = fails(&[
        "eval",
        "culturalbench",
        "--personas",
        s(&dir.path().join("absent.txt")),
    ]);
    assert!(e.contains("absent.txt: cannot read"), "{e}");
    let e = fails(&["eval", "utility", "--persona", "a person from Japan"]);
    assert!(e.contains("--persona: utility asks for preferences"), "{e}");
    let cv = repo().join("tests/fixtures/control/smollm2_cv.gguf");
    let e = fails(&[
        "eval",
        "culturalbench",
        "--persona",
        "a person from Japan",
        "--control-vector",
        s(&cv),
    ]);
    assert!(
        e.contains("run it apart from --lambda, --lora and --control-vector"),
        "{e}"
    );
}

#[test]
fn eval_utility_bad_outcome_sets() {
    let e = fails(&["eval", "utility", "--options", "everything"]);
    assert!(e.contains("unknown outcome set `everything`"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("outcomes.json");
    std::fs::write(&empty, "").unwrap();
    let e = fails(&["eval", "utility", "--data", s(&empty)]);
    assert!(e.contains("outcomes.json: the file is empty"), "{e}");
    std::fs::write(&empty, r#"{"a": ["x", 3]}"#).unwrap();
    let e = fails(&["eval", "utility", "--data", s(&empty)]);
    assert!(e.contains("outcomes.json: invalid type"), "{e}");
    let e = fails(&["eval", "utility", "--formats", "raw,chat"]);
    assert!(e.contains("utility takes one format"), "{e}");
}

// `ethos steer solve`

fn map_table() -> PathBuf {
    repo().join("tests/fixtures/map/opt1.3b-anthropic-harmless.csv")
}

#[test]
fn steer_palette_with_an_unknown_reward_or_a_bad_target() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    let t = map_table();
    for (text, want) in [
        (
            "[[value]]\nname = \"kindness\"\ntarget = 1.0\n",
            "unknown reward `kindness`",
        ),
        (
            "[[value]]\nname = \"humor\"\ntarget = nan\n",
            "target NaN is not finite",
        ),
        (
            "[[value]]\nname = \"humor\"\ntarget = -inf\n",
            "target -inf is not finite",
        ),
        (
            "[[value]]\nname = \"humor\"\ntarget = 1.0\nweight = -2\n",
            "unknown field `weight`",
        ),
        ("", "missing field `value`"),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = fails(&["steer", "solve", "--rewards", s(&t), "--palette", s(&p)]);
        assert!(e.contains("p.toml") && e.contains(want), "{e}");
    }
    std::fs::write(&p, "[[value]]\nname = \"humor\"\ntarget = 1.0\n").unwrap();
    let solve = |extra: &[&str]| {
        let mut args = vec!["steer", "solve", "--rewards", s(&t), "--palette", s(&p)];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let e = solve(&["--solver", "sgd"]);
    assert!(e.contains("unknown solver `sgd`"), "{e}");
    // NaN compares false with everything, so the check must name it, not only `< 0`.
    for bad in ["-1", "NaN"] {
        let e = solve(&[&format!("--min-ess={bad}")]);
        assert!(e.contains("--min-ess must be a number >= 0"), "{bad}: {e}");
    }
    let e = solve(&["--objective", "per-prompt"]);
    assert!(e.contains("needs a `prompt` column"), "{e}");
    let bad = dir.path().join("r.csv");
    std::fs::write(&bad, "humor,helpful\n1.0,2.0\n1.5,abc\n").unwrap();
    let e = fails(&["steer", "solve", "--rewards", s(&bad), "--palette", s(&p)]);
    assert!(
        e.contains("r.csv: row 3, column `helpful`: `abc` is not a number"),
        "{e}"
    );
}

/// `ethos serve` loads models with the loader of every command: hostile files fail at load
/// with the same one-line errors, and a model without a tokenizer, a port in use and bad
/// limits are refused before serving.
#[test]
fn serve_refuses_bad_models_and_flags() {
    let dir = copy_folder("llama");
    let p = dir.path().join("model-f32.gguf");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["serve", "--model", s(&p), "--port", "0"]);
    assert!(
        e.contains("model-f32.gguf") && e.contains("truncated"),
        "{e}"
    );
    let e = fails(&["serve", "--model", s(&tiny("llama")), "--port", "0"]);
    assert!(e.contains("no tokenizer"), "{e}");
    let e = fails(&["serve", "--model", s(&tiny("llama")), "--kv-memory", "lots"]);
    assert!(e.contains("--kv-memory \"lots\""), "{e}");
    let e = fails(&[
        "serve",
        "--model",
        s(&tiny("llama")),
        "--request-timeout",
        "0",
    ]);
    assert!(e.contains("--request-timeout 0"), "{e}");
    let e = fails(&[
        "serve",
        "--model",
        s(&tiny("llama_classifier")),
        "--control-vector-dir",
        "/nonexistent",
    ]);
    assert!(
        e.contains("--control-vector-dir /nonexistent: not a folder"),
        "{e}"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let e = fails(&[
        "serve",
        "--model",
        s(&tiny("llama_classifier")),
        "--port",
        &port,
    ]);
    assert!(
        e.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{e}"
    );
}

/// Bad adapters through the binary: one line naming the file and field, on any command.
#[test]
fn bad_lora_adapters() {
    let lora = repo().join("tests/fixtures/lora");
    let llama = tiny("llama");
    // An adapter for another base (its layers' sizes).
    let e = fails(&["info", "-m", s(&llama), "--lora", s(&lora.join("gemma3/a"))]);
    assert!(
        e.contains("gemma3/a") && e.contains("the model's layer is"),
        "{e}"
    );
    // A LoRA GGUF for another architecture.
    let e = fails(&[
        "info",
        "-m",
        s(&tiny("qwen2")),
        "--lora",
        s(&lora.join("llama/a.gguf")),
    ]);
    assert!(
        e.contains("a.gguf") && e.contains("general.architecture"),
        "{e}"
    );
    // An unknown PEFT type, named with its field.
    let dir = tempfile::tempdir().unwrap();
    let ia3 = dir.path().join("ia3");
    std::fs::create_dir_all(&ia3).unwrap();
    std::fs::write(ia3.join("adapter_config.json"), r#"{"peft_type": "IA3"}"#).unwrap();
    let e = fails(&["info", "-m", s(&llama), "--lora", s(&ia3)]);
    assert!(
        e.contains("adapter_config.json") && e.contains("`peft_type`") && e.contains("IA3"),
        "{e}"
    );
    // A path that is not there, a non-finite scale, --merge-lora alone.
    let e = fails(&["info", "-m", s(&llama), "--lora", "/nonexistent/adapter"]);
    assert!(
        e.contains("/nonexistent/adapter") && e.contains("no such adapter"),
        "{e}"
    );
    let e = fails(&[
        "info",
        "-m",
        s(&llama),
        "--lora",
        &format!("{}:nan", s(&ia3)),
    ]);
    assert!(e.contains("finite"), "{e}");
    let e = fails(&["info", "-m", s(&llama), "--merge-lora"]);
    assert!(e.contains("--lora"), "{e}");
    // A truncated adapter file.
    let cut = dir.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::copy(
        lora.join("llama/a/adapter_config.json"),
        cut.join("adapter_config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(lora.join("llama/a/adapter_model.safetensors")).unwrap();
    std::fs::write(
        cut.join("adapter_model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let e = fails(&["info", "-m", s(&llama), "--lora", s(&cut)]);
    assert!(e.contains("adapter_model.safetensors"), "{e}");
    // Adapters on random weights: bench would measure the wrong base.
    let e = fails(&[
        "bench",
        "speed",
        "--load-format",
        "dummy",
        "--arch",
        "smollm2-135m",
        "--lora",
        s(&lora.join("llama/a")),
    ]);
    assert!(e.contains("--lora"), "{e}");
    // Adapters with a remote backend: the weights are the server's.
    let e = fails(&[
        "eval",
        "culturalbench",
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--lora",
        s(&lora.join("llama/a")),
    ]);
    assert!(e.contains("--lora"), "{e}");
}

#[test]
fn diwali_inputs_that_cannot_be_scored() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let obj = file("obj.json", "{\"x\": 1}");
    let e = fails(&["eval", "diwali", "--adaptations", s(&obj)]);
    assert!(
        e.contains("obj.json: not a JSON list of adaptation outputs"),
        "{e}"
    );
    let bad = file("bad.json", "[\"a\",");
    let e = fails(&["eval", "diwali", "--adaptations", s(&bad)]);
    assert!(e.contains("bad.json: EOF while parsing"), "{e}");
    let names = file("c.json", "[{\"facet\":\"f\",\"concepts\":[{\"name\":5}]}]");
    let e = fails(&[
        "eval",
        "diwali",
        "--adaptations",
        s(&bad),
        "--items",
        s(&names),
    ]);
    assert!(
        e.contains("c.json: record 1: concept 1: `name` is not a string"),
        "{e}"
    );
    let texts = file("texts.jsonl", "{\"q\": \"x\"}\n");
    let e = fails(&["eval", "diwali", "--data", s(&texts)]);
    assert!(e.contains("texts.jsonl:1: no string `question`"), "{e}");
    let e = fails(&["eval", "diwali", "--adaptations", s(&obj), "--limit", "3"]);
    assert!(
        e.contains(
            "--limit, --max-tokens, --system-prompt and --user-template are for a model's run"
        ),
        "{e}"
    );
    let tpl = file("user.txt", "Adapt this to Hong Kong.");
    let e = fails(&["eval", "diwali", "--user-template", s(&tpl)]);
    assert!(
        e.contains("user.txt: a user template needs `{text}` where the text to adapt goes"),
        "{e}"
    );
    let e = fails(&["eval", "diwali", "--judge", "--judge-template", s(&tpl)]);
    assert!(
        e.contains("user.txt: a judge template needs `{original_text}`"),
        "{e}"
    );
    let e = fails(&["eval", "diwali", "--formats", "chat"]);
    assert!(e.contains("--formats: diwali has one format"), "{e}");
    let e = fails(&["eval", "culturalbench", "--items", s(&names)]);
    assert!(
        e.contains("--judge, --system-prompt and --user-template are diwali's"),
        "{e}"
    );
}

#[test]
fn benchmarks_ethos_cannot_ship_say_where_their_data_is() {
    for (name, place) in [
        ("cvc", "Beijing-AISI/CVC"),
        ("hkcanto", "github.com/hon9kon9ize/hkeval2025"),
        ("valueprism", "allenai/ValuePrism"),
    ] {
        let e = fails(&["eval", name]);
        assert!(
            e.contains(&format!("{name} needs --data: ")) && e.contains(place),
            "{e}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&["eval", "hkcanto", "--data", s(dir.path())]);
    assert!(
        e.contains("holds none of HKCanto-Eval's set folders"),
        "{e}"
    );
    let csv = dir.path().join("valence.csv");
    std::fs::write(&csv, "situation,text,valence\ns,t,Maybe\n").unwrap();
    let e = fails(&["eval", "valueprism", "--data", s(&csv)]);
    assert!(
        e.contains("valence.csv: row 2: `valence` is `Maybe`"),
        "{e}"
    );
}
