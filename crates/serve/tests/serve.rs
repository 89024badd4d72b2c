//! `ethos serve` over loopback with SmolLM2 (skipped with a printed reason when the model is
//! absent, required in CI): each test starts its own server on a free port and stops it at
//! the end; every request loop is bounded.

mod common;

use common::{lexicon_palette, repo, smollm2, smollm2_adapters, smollm2_with, Running};
use ethos_serve::Limits;
use ethos_steer::{GenerateOptions, GenerateRequest, SamplingParams, Session};
use serde_json::{json, Value};
use std::time::Duration;

fn text_of(v: &Value, i: usize) -> String {
    v["choices"][i]["text"].as_str().unwrap().to_string()
}

/// Greedy completions give what `Session::generate` gives, and echo + logprobs give the
/// prompt's log-probs as the scoring path computes them.
#[test]
fn completions_match_generate_and_scoring() {
    let Some(model) = smollm2(Some("f32")) else {
        return;
    };
    let tok = model.tokenizer().unwrap();
    let prompt = "The capital of France is";
    let ids = tok.encode_prompt(prompt).unwrap();
    let req = GenerateRequest::new(
        ids.clone(),
        SamplingParams::greedy(),
        GenerateOptions {
            max_tokens: 12,
            ..Default::default()
        },
    );
    let want = Session::new(&model).generate(&req, &mut |_| {}).unwrap();
    let mut full = ids.clone();
    full.push(want.token_ids[0]);
    let scored = Session::new(&model).score_text(&full).unwrap();
    let first_piece = tok.decode(&want.token_ids[..1]).unwrap();
    let server = Running::start(model, |_| {});

    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(text_of(&v, 0), want.text);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(v["object"], "text_completion");

    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 1, "temperature": 0, "echo": true, "logprobs": 2, "prompt_logprobs": 1}),
    );
    assert_eq!(status, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let token_lps = lp["token_logprobs"].as_array().unwrap();
    assert_eq!(token_lps.len(), ids.len() + 1);
    assert!(token_lps[0].is_null() && lp["top_logprobs"][0].is_null());
    // scored.token_logprobs[i] is the log-prob of full[i + 1].
    for (i, want) in scored.token_logprobs.iter().enumerate() {
        let got = token_lps[i + 1].as_f64().unwrap();
        assert!(
            (got - *want as f64).abs() < 1e-4,
            "token {}: {got} vs {want}",
            i + 1
        );
    }
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), text_of(&v, 0));
    assert_eq!(text_of(&v, 0), format!("{prompt}{first_piece}"));
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert_eq!(offsets[1], tokens[0].chars().count() as u64);
    // Each top_logprobs entry holds the actual token and the top 2.
    let top = lp["top_logprobs"][1].as_object().unwrap();
    assert!(top.contains_key(tokens[1]) && top.len() <= 3);
    // vLLM's prompt_logprobs: keyed by id, with rank.
    let plp = v["choices"][0]["prompt_logprobs"].as_array().unwrap();
    assert_eq!(plp.len(), ids.len());
    assert!(plp[0].is_null());
    let entry = &plp[1][ids[1].to_string()];
    assert!((entry["logprob"].as_f64().unwrap() - token_lps[1].as_f64().unwrap()).abs() < 1e-6);
    assert!(entry["rank"].as_u64().unwrap() >= 1);

    // Token ids give exactly the numbers of the same text.
    let (_, by_ids) = server.post(
        "/v1/completions",
        &json!({"prompt": ids, "max_tokens": 1, "temperature": 0, "echo": true, "logprobs": 0}),
    );
    assert_eq!(
        by_ids["choices"][0]["logprobs"]["token_logprobs"],
        lp["token_logprobs"]
    );

    // max_tokens 0 with echo returns the prompt alone.
    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 0, "echo": true, "logprobs": 0}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(text_of(&v, 0), prompt);
    assert_eq!(
        v["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        ids.len()
    );
}

/// A seeded request gives the same tokens and log-prob bits alone and among 15 others of
/// other lengths and seeds, which join and leave the batch while it runs: on the f32 path and
/// on the quantized default.
#[test]
fn a_seeded_request_is_the_same_alone_and_among_fifteen_others() {
    for dtype in [Some("f32"), None] {
        seeded_request_alone_and_among_others(dtype);
    }
}

fn seeded_request_alone_and_among_others(dtype: Option<&str>) {
    let Some(model) = smollm2(dtype) else {
        return;
    };
    let server = Running::start(model, |_| {});
    let ours = json!({"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0.9, "seed": 42, "logprobs": 0});
    let (status, alone) = server.post("/v1/completions", &ours);
    assert_eq!(status, 200, "{alone}");
    let words = [
        "The",
        "A long story about",
        "Hong Kong is",
        "Values differ",
        "1 2 3",
    ];
    let server = std::sync::Arc::new(server);
    let mut threads = Vec::new();
    for k in 0..15 {
        let s = server.clone();
        let body = json!({
            "prompt": format!("{} {}", words[k % words.len()], "x ".repeat(k * 7)),
            "max_tokens": 4 + 3 * k,
            "temperature": 0.7,
            "seed": k,
        });
        threads.push(std::thread::spawn(move || {
            // Staggered, so that requests join a running batch.
            std::thread::sleep(Duration::from_millis(10 * k as u64));
            s.post("/v1/completions", &body)
        }));
        if k == 7 {
            let s = server.clone();
            let ours = ours.clone();
            threads.push(std::thread::spawn(move || s.post("/v1/completions", &ours)));
        }
    }
    let results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|(s, _)| *s == 200));
    let batched = &results[8].1;
    assert_eq!(text_of(batched, 0), text_of(&alone, 0));
    assert_eq!(
        batched["choices"][0]["logprobs"]["tokens"],
        alone["choices"][0]["logprobs"]["tokens"]
    );
    // The same bits: a row's keys move between cache slots as others join and leave, and
    // attention's sums take lanes by key position, not slot.
    assert_eq!(
        batched["choices"][0]["logprobs"]["token_logprobs"],
        alone["choices"][0]["logprobs"]["token_logprobs"]
    );
    server.wait_for("the batch to drain", |s| {
        s.metric("ethos_running_sequences") == 0.0
    });
}

/// A streamed chat gives, chunk by chunk, the reply the whole response gives.
#[test]
fn streamed_chat_equals_the_whole_reply() {
    let Some(model) = smollm2(None) else { return };
    let server = Running::start(model, |_| {});
    let body = json!({"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 16, "temperature": 0, "logprobs": true, "top_logprobs": 2});
    let (status, whole) = server.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    let reply = whole["choices"][0]["message"]["content"].as_str().unwrap();
    let content = whole["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(
        content.len() as u64,
        whole["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 2);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = ureq::post(&server.url("/v1/chat/completions"))
        .send_string(&streamed.to_string())
        .unwrap()
        .into_string()
        .unwrap();
    let mut pieces = String::new();
    let mut lps = 0;
    let mut events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.pop(), Some("[DONE]"));
    for (i, e) in events.iter().enumerate() {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        let c = &v["choices"][0];
        if i == 0 {
            assert_eq!(c["delta"]["role"], "assistant");
        }
        pieces.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        lps += c["logprobs"]["content"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(pieces, reply);
    assert_eq!(lps, content.len());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string());
}

/// Bad requests get OpenAI's error shape with the right status and the field named, and
/// never stop the server.
#[test]
fn bad_requests_are_named_4xx_errors() {
    let Some(model) = smollm2(None) else { return };
    let server = Running::start(model, |c| {
        c.limits = Limits {
            max_body_bytes: 4096,
            max_prompt_tokens: 64,
            ..Limits::default()
        }
    });
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        ("/v1/completions", "{".into(), 400, None),
        ("/v1/completions", "[1]".into(), 400, None),
        (
            "/v1/completions",
            json!({"prompt": "a", "temprature": 1}).to_string(),
            400,
            Some("temprature"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": -1}).to_string(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "logprobs": 50}).to_string(),
            400,
            Some("logprobs"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "model": "nope"}).to_string(),
            404,
            Some("model"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [], "max_tokens": 1}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [999999999]}).to_string(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "top_p": 0}).to_string(),
            400,
            Some("top_p"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "n": 0}).to_string(),
            400,
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "stop": [""]}).to_string(),
            400,
            Some("stop"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "logit_bias": {"99999999": 1}}).to_string(),
            400,
            Some("logit_bias"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a ".repeat(100)}).to_string(),
            413,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "max_tokens": 100000}).to_string(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "x".repeat(5000)}).to_string(),
            413,
            Some("body"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "a", "control_vectors": [{"name": "v.gguf"}]}).to_string(),
            400,
            Some("control_vectors"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": []}).to_string(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": 3}]}).to_string(),
            400,
            Some("messages[0].content"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2}).to_string(),
            400,
            Some("top_logprobs"),
        ),
        ("/v1/nothing", "{}".into(), 404, None),
        (
            "/detokenize",
            json!({"tokens": [4000000000u32]}).to_string(),
            400,
            Some("tokens"),
        ),
    ];
    for (path, body, status, param) in cases {
        let (got, v) = server.post_raw(path, &body, None);
        let short: String = body.chars().take(80).collect();
        assert_eq!(got, status, "{path} {short}: {v}");
        let err = &v["error"];
        assert_eq!(err["code"], status, "{v}");
        let msg = err["message"].as_str().unwrap();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{v}");
        assert!(err["type"].is_string(), "{v}");
        if let Some(p) = param {
            assert_eq!(err["param"], p, "{path} {short}: {v}");
        }
    }
    let (status, _) = server.post(
        "/v1/completions",
        &json!({"prompt": "still up", "max_tokens": 2}),
    );
    assert_eq!(status, 200);
    // The generation endpoints' 19 bad requests, by outcome.
    let counted = server.metric("ethos_requests_total{outcome=\"bad_request\"}");
    assert_eq!(counted, 19.0);
}

/// With an API key every route but /health needs it; the tokenizer endpoints round-trip.
#[test]
fn api_key_and_tokenizer_endpoints() {
    let Some(model) = smollm2(None) else { return };
    let server = Running::start(model, |c| c.api_key = Some("s3cret".into()));
    let body = json!({"prompt": "Hong Kong"}).to_string();
    let (status, v) = server.post_raw("/tokenize", &body, None);
    assert_eq!((status, v["error"]["code"].as_u64()), (401, Some(401)));
    let (status, _) = server.post_raw("/tokenize", &body, Some("wrong"));
    assert_eq!(status, 401);
    assert_eq!(
        ureq::get(&server.url("/health")).call().unwrap().status(),
        200
    );
    let (status, v) = server.post_raw("/tokenize", &body, Some("s3cret"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["count"].as_u64().unwrap() as usize,
        v["tokens"].as_array().unwrap().len()
    );
    let (status, back) = server.post_raw(
        "/detokenize",
        &json!({"tokens": v["tokens"]}).to_string(),
        Some("s3cret"),
    );
    assert_eq!(status, 200);
    assert_eq!(back["prompt"], "Hong Kong");
    let models = ureq::get(&server.url("/v1/models"))
        .set("Authorization", "Bearer s3cret")
        .call()
        .unwrap()
        .into_json::<Value>()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "smollm2");
    assert_eq!(models["data"][0]["max_model_len"], 8192);
}

/// Past --max-concurrent a request gets 503; a client that goes away mid-stream frees its
/// sequence; a request larger than the KV budget is refused, while two that fit one at a
/// time both complete.
#[test]
fn limits_cancellation_and_the_kv_budget() {
    let Some(model) = smollm2(None) else { return };
    let bpt = model
        .decoder
        .kv_shape()
        .bytes_per_token(model.decoder.dtype) as u64;
    let server = std::sync::Arc::new(Running::start(model, |c| {
        c.limits.max_concurrent = 1;
        // Room for the stream below (the engine counts its cache twice, see `bytes_with`).
        c.kv_memory = Some(bpt * 600 + (1 << 20));
    }));
    // A stream that the client abandons after its first chunk.
    {
        let conn = server.open_stream(&json!({"prompt": "Tell me a long story.", "max_tokens": 250, "stream": true, "ignore_eos": true}));
        server.wait_for("the stream to join the batch", |s| {
            s.metric("ethos_running_sequences") >= 1.0
        });
        // While it runs, a second request is over --max-concurrent.
        let (status, v) = server.post("/v1/completions", &json!({"prompt": "a"}));
        assert_eq!(status, 503, "{v}");
        conn.shutdown(std::net::Shutdown::Both).unwrap();
    }
    server.wait_for("the abandoned stream to leave the batch", |s| {
        s.metric("ethos_running_sequences") == 0.0
            && s.metric("ethos_requests_total{outcome=\"cancelled\"}") >= 1.0
    });
    assert!(server.metric("ethos_generation_tokens_total") < 250.0);
    // 400 tokens, counted twice, do not fit in a 600-token budget even alone.
    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": "a", "max_tokens": 400}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--kv-memory"),
        "{v}"
    );
}

/// Per-request control vectors: a steered request gives what `Session::with_control`
/// gives, an unsteered one what the plain model gives, alone and batched together.
#[test]
fn steered_and_unsteered_requests_share_a_batch() {
    let Some(model) = smollm2(Some("f32")) else {
        return;
    };
    let dir = repo().join("tests/fixtures/control");
    let cv = dir.join("smollm2_cv.gguf");
    let cfg = model.config();
    let set =
        ethos_steer::control::ControlSet::load(&[(cv, 4.0)], None, cfg.hidden_size, cfg.num_layers)
            .unwrap();
    let prompt = "My favourite thing to do on a holiday is";
    let ids = model.tokenizer().unwrap().encode_prompt(prompt).unwrap();
    let req = GenerateRequest::new(
        ids,
        SamplingParams::greedy(),
        GenerateOptions {
            max_tokens: 16,
            ignore_eos: true,
            ..Default::default()
        },
    );
    let plain = Session::new(&model)
        .generate(&req, &mut |_| {})
        .unwrap()
        .text;
    let steered_gen = Session::new(&model)
        .with_control(Some(&set))
        .unwrap()
        .generate(&req, &mut |_| {})
        .unwrap();
    let steered = steered_gen.text.clone();
    // The report's references: the steered tokens scored with and without the vector.
    let mut seq = req.prompt.clone();
    seq.extend(&steered_gen.token_ids);
    let want_unsteered = Session::new(&model)
        .score_text(&seq)
        .unwrap()
        .token_logprobs;
    let want_steered = Session::new(&model)
        .with_control(Some(&set))
        .unwrap()
        .score_text(&seq)
        .unwrap()
        .token_logprobs;
    let n_prompt = req.prompt.len();
    assert_ne!(plain, steered, "the vector should change the greedy reply");
    let server = std::sync::Arc::new(Running::start(model, |c| c.control_vector_dir = Some(dir)));
    let body = |steer: bool| {
        let mut b =
            json!({"prompt": prompt, "max_tokens": 16, "temperature": 0, "ignore_eos": true});
        if steer {
            b["control_vectors"] = json!([{"name": "smollm2_cv.gguf", "scale": 4.0}]);
        }
        b
    };
    let (_, alone) = server.post("/v1/completions", &body(true));
    assert_eq!(text_of(&alone, 0), steered);
    // steering_report: the unsteered log-probs of the same tokens, from the same request.
    let mut b = body(true);
    b["steering_report"] = json!(true);
    let (status, v) = server.post("/v1/completions", &b);
    assert_eq!(status, 200, "{v}");
    let r = &v["choices"][0]["steering_report"];
    let nums = |x: &Value| -> Vec<f64> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_f64().unwrap())
            .collect()
    };
    let close = |got: Vec<f64>, want: &[f32]| {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - *w as f64).abs() < 1e-4, "{g} vs {w}");
        }
    };
    close(nums(&r["steered_logprobs"]), &want_steered[n_prompt - 1..]);
    close(
        nums(&r["unsteered_logprobs"]),
        &want_unsteered[n_prompt - 1..],
    );
    let prompt_unsteered = r["prompt_unsteered_logprobs"].as_array().unwrap();
    assert!(prompt_unsteered[0].is_null());
    close(
        nums(&json!(prompt_unsteered[1..])),
        &want_unsteered[..n_prompt - 1],
    );
    assert_ne!(r["steered_logprobs"], r["unsteered_logprobs"]);
    let mut b = body(false);
    b["steering_report"] = json!(true);
    let (status, v) = server.post("/v1/completions", &b);
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (400, Some("steering_report"))
    );
    // Together: several of each at once, so that they share decode steps.
    let threads: Vec<_> = (0..6)
        .map(|k| {
            let s = server.clone();
            let b = body(k % 2 == 0);
            std::thread::spawn(move || s.post("/v1/completions", &b))
        })
        .collect();
    for (k, t) in threads.into_iter().enumerate() {
        let (status, v) = t.join().unwrap();
        assert_eq!(status, 200, "{v}");
        let want = if k % 2 == 0 { &steered } else { &plain };
        assert_eq!(&text_of(&v, 0), want, "request {k}");
    }
    let listed = ureq::get(&server.url("/v1/control_vectors"))
        .call()
        .unwrap()
        .into_json::<Value>()
        .unwrap();
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .contains(&json!("smollm2_cv.gguf")));
    for (name, param) in [
        ("../control/smollm2_cv.gguf", "control_vectors[0].name"),
        ("/etc/passwd", "control_vectors[0].name"),
        ("missing.gguf", "control_vectors[0].name"),
    ] {
        let mut b = body(false);
        b["control_vectors"] = json!([{"name": name}]);
        let (status, v) = server.post("/v1/completions", &b);
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (400, Some(param)),
            "{v}"
        );
    }
    let mut b = body(false);
    b["control_vectors"] = json!([{"name": "smollm2_cv.gguf", "layers": [5, 2]}]);
    assert_eq!(server.post("/v1/completions", &b).0, 400);
}

/// Shutting down lets a running request finish.
#[test]
fn shutdown_drains_running_requests() {
    let Some(model) = smollm2(None) else { return };
    let server = Running::start(model, |_| {});
    let url = server.url("/v1/completions");
    let t = std::thread::spawn(move || {
        ureq::post(&url)
            .send_string(
                &json!({"prompt": "Count:", "max_tokens": 64, "ignore_eos": true}).to_string(),
            )
            .map(|r| r.into_json::<Value>().unwrap())
            .map_err(|e| e.to_string())
    });
    server.wait_for("the request to start", |s| {
        s.metric("ethos_running_sequences") >= 1.0
    });
    drop(server);
    let v = t.join().unwrap().unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 64);
}

/// A chat template from a hostile model file stops at its budget: the request gets a 400
/// naming the template, quickly, and the server goes on serving.
#[test]
fn a_hostile_chat_template_is_a_400_not_a_hang() {
    let Some(mut model) = smollm2(None) else {
        return;
    };
    model.chat_template = Some(ethos_model::chat::ChatTemplate::new(
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}".into(),
        String::new(),
        String::new(),
    ));
    let server = Running::start(model, |_| {});
    let start = std::time::Instant::now();
    let (status, v) = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "messages");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat template"),
        "{v}"
    );
    assert!(start.elapsed() < Duration::from_secs(15));
    let (status, _) = server.post("/v1/completions", &json!({"prompt": "ok", "max_tokens": 1}));
    assert_eq!(status, 200);
}

/// A palette request gives what `PaletteDecoder` gives for the same prompt and seed (the
/// path of `ethos generate --lambda`), with its candidates, rewards and weights.
#[test]
fn palette_requests_decode_as_generate_lambda_does() {
    use ethos_steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
    let Some(model) = smollm2(None) else { return };
    let dir = tempfile::tempdir().unwrap();
    lexicon_palette(
        dir.path(),
        "polite.json",
        "polite",
        &["please", "thank"],
        3.0,
    );
    let prompt = "Write a short note to a neighbour:";
    let ids = model.tokenizer().unwrap().encode_prompt(prompt).unwrap();
    let mut want = Vec::new();
    for mode in [PaletteMode::Resample, PaletteMode::BestOfN] {
        let lambda = LambdaFile::read(&dir.path().join("polite.json")).unwrap();
        let mut dec = PaletteDecoder::new(&lambda, &model, mode, 4).unwrap();
        let req = GenerateRequest::new(
            ids.clone(),
            SamplingParams {
                temperature: 0.9,
                seed: 5,
                ..SamplingParams::default()
            },
            GenerateOptions {
                max_tokens: 12,
                ..Default::default()
            },
        );
        let (cands, pick) = dec
            .generate(&mut Session::new(&model), prompt, &req)
            .unwrap();
        want.push((cands[pick].generation.text.clone(), pick, cands.len()));
    }
    let server = Running::start(model, |c| c.palette_dir = Some(dir.path().to_path_buf()));
    for (mode, (text, pick, n)) in ["resample", "best-of-n"].into_iter().zip(&want) {
        let (status, v) = server.post(
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 12, "temperature": 0.9, "seed": 5,
                    "palette": "polite.json", "palette_mode": mode, "palette_candidates": 4}),
        );
        assert_eq!(status, 200, "{v}");
        let c = &v["choices"][0];
        assert_eq!(&text_of(&v, 0), text, "{mode}");
        assert_eq!(c["palette"]["chosen"], *pick);
        assert_eq!(c["palette"]["mode"], mode);
        let cands = c["palette"]["candidates"].as_array().unwrap();
        assert_eq!(cands.len(), *n);
        assert!(cands[0]["rewards"]["polite"].is_number());
        let total: f64 = cands.iter().map(|x| x["weight"].as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }
    let listed = ureq::get(&server.url("/v1/palettes"))
        .call()
        .unwrap()
        .into_json::<Value>()
        .unwrap();
    assert_eq!(listed["data"], json!(["polite.json"]));
    for (body, param) in [
        (
            json!({"prompt": "a", "palette": "../polite.json"}),
            "palette",
        ),
        (json!({"prompt": "a", "palette": "nope.json"}), "palette"),
        (
            json!({"prompt": "a", "palette": "polite.json", "palette_mode": "best"}),
            "palette_mode",
        ),
        (
            json!({"prompt": "a", "palette": "polite.json", "palette_candidates": 0}),
            "palette_candidates",
        ),
        (
            json!({"prompt": "a", "palette": "polite.json", "stream": true}),
            "palette",
        ),
        (
            json!({"prompt": "a", "palette_mode": "token"}),
            "palette_mode",
        ),
        (
            json!({"prompt": ["a", "b"], "palette": "polite.json"}),
            "palette",
        ),
    ] {
        let (status, v) = server.post("/v1/completions", &body);
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}: {v}"
        );
    }
    // A chat request decodes with the palette too.
    let (status, v) = server.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "seed": 1,
                "palette": "polite.json", "palette_mode": "token", "palette_token_candidates": 5}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["palette"]["candidates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Two requests that each fit the KV budget alone but not together both complete: the
/// second waits in the queue until the first leaves the batch.
#[test]
fn requests_wait_for_room_in_the_kv_budget() {
    let Some(model) = smollm2(None) else { return };
    let bpt = model
        .decoder
        .kv_shape()
        .bytes_per_token(model.decoder.dtype) as u64;
    let vocab = model.config().vocab_size as u64;
    // One row of up to 110 tokens (counted twice) and its logits buffers, not two.
    let budget = 2 * 110 * bpt + 16 * vocab + (1 << 16);
    let server = std::sync::Arc::new(Running::start(model, |c| c.kv_memory = Some(budget)));
    let body =
        |p: &str| json!({"prompt": p, "max_tokens": 100, "temperature": 0, "ignore_eos": true});
    let (_, a_alone) = server.post("/v1/completions", &body("One"));
    let (_, b_alone) = server.post("/v1/completions", &body("Two"));
    // Never two rows in the batch at once.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (s, done) = (server.clone(), done.clone());
        std::thread::spawn(move || {
            let mut most = 0.0f64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(s.metric("ethos_running_sequences"));
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        })
    };
    let threads: Vec<_> = ["One", "Two"]
        .into_iter()
        .map(|p| {
            let s = server.clone();
            let b = body(p);
            std::thread::spawn(move || s.post("/v1/completions", &b))
        })
        .collect();
    let got: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        watcher.join().unwrap(),
        1.0,
        "the two requests shared the batch"
    );
    assert_eq!((got[0].0, got[1].0), (200, 200), "{got:?}");
    assert_eq!(text_of(&got[0].1, 0), text_of(&a_alone, 0));
    assert_eq!(text_of(&got[1].1, 0), text_of(&b_alone, 0));
}

/// Past --max-queue waiting prompts a request gets 429, while the queued one is served.
#[test]
fn a_full_queue_is_a_429() {
    let Some(model) = smollm2(None) else { return };
    let bpt = model
        .decoder
        .kv_shape()
        .bytes_per_token(model.decoder.dtype) as u64;
    let vocab = model.config().vocab_size as u64;
    let budget = 2 * 210 * bpt + 16 * vocab + (1 << 16);
    let server = std::sync::Arc::new(Running::start(model, |c| {
        c.kv_memory = Some(budget);
        c.limits.max_queue = 1;
    }));
    let body = json!({"prompt": "One", "max_tokens": 200, "temperature": 0, "ignore_eos": true});
    let spawn = |s: &std::sync::Arc<Running>| {
        let (s, b) = (s.clone(), body.clone());
        std::thread::spawn(move || s.post("/v1/completions", &b))
    };
    let first = spawn(&server);
    server.wait_for("the first request to run", |s| {
        s.metric("ethos_running_sequences") == 1.0
    });
    let second = spawn(&server);
    server.wait_for("the second request to queue", |s| {
        s.metric("ethos_queue_depth") == 1.0
    });
    let (status, v) = server.post("/v1/completions", &body);
    assert_eq!(status, 429, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-queue"),
        "{v}"
    );
    assert_eq!(first.join().unwrap().0, 200);
    assert_eq!(second.join().unwrap().0, 200);
    assert_eq!(
        server.metric("ethos_requests_total{outcome=\"rejected\"}"),
        1.0
    );
}

/// Past --request-timeout a whole request gets 504 and a stream ends with the error event
/// before `[DONE]`; both leave the batch.
#[test]
fn requests_past_the_timeout_are_stopped() {
    let Some(model) = smollm2(None) else { return };
    let server = Running::start(model, |c| c.limits.timeout = Duration::from_secs(1));
    let long = json!({"prompt": "Count:", "max_tokens": 4000, "ignore_eos": true});
    let (status, v) = server.post("/v1/completions", &long);
    assert_eq!(status, 504, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--request-timeout"),
        "{v}"
    );
    let mut streamed = long.clone();
    streamed["stream"] = json!(true);
    let text = ureq::post(&server.url("/v1/completions"))
        .send_string(&streamed.to_string())
        .unwrap()
        .into_string()
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let err: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], 504, "{err}");
    server.wait_for("the batch to drain", |s| {
        s.metric("ethos_running_sequences") == 0.0
    });
    assert_eq!(
        server.metric("ethos_requests_total{outcome=\"timeout\"}"),
        2.0
    );
}

/// `palette` with `palette_context_tokens` on prompt log-probs: each option's rewards given
/// its context, lambda . r and the tilted log-prob, as `PaletteDecoder` and the echoed
/// log-probs give them; misuses are named 400s.
#[test]
fn palette_tilts_the_option_scores_of_prompt_logprobs() {
    use ethos_steer::palette::decode::{LambdaFile, PaletteDecoder, PaletteMode};
    let Some(model) = smollm2(Some("f32")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    lexicon_palette(dir.path(), "paris.json", "paris", &["Paris"], 2.0);
    let (ctx, prompts, want) = {
        let tok = model.tokenizer().unwrap();
        let context = "The capital of France is";
        let ctx = tok.encode_prompt(context).unwrap();
        let options = [" Paris", " Lyon, not Paris"];
        let prompts: Vec<Vec<u32>> = options
            .iter()
            .map(|o| {
                let cont =
                    ethos_model::scoring::continuation_tokens(tok, &ctx, context, o, true).unwrap();
                ctx.iter().chain(&cont).copied().collect()
            })
            .collect();
        let lambda = LambdaFile::read(&dir.path().join("paris.json")).unwrap();
        let mut dec = PaletteDecoder::new(&lambda, &model, PaletteMode::BestOfN, 1).unwrap();
        let want: Vec<f64> = prompts
            .iter()
            .map(|p| {
                let c = tok.decode(&p[..ctx.len()]).unwrap();
                let o = tok.decode(&p[ctx.len()..]).unwrap();
                dec.weigh(&c, &[o], 0).unwrap().scores[0]
            })
            .collect();
        (ctx, prompts, want)
    };
    assert!(
        want[0] > 0.0 && want[1] > 0.0,
        "the lexicon reads the option's text"
    );
    let server = Running::start(model, |c| c.palette_dir = Some(dir.path().to_path_buf()));
    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": prompts, "max_tokens": 1, "temperature": 0, "echo": true, "logprobs": 1,
                "palette": "paris.json", "palette_context_tokens": ctx.len()}),
    );
    assert_eq!(status, 200, "{v}");
    for (i, w) in want.iter().enumerate() {
        let c = &v["choices"][i];
        let t = &c["palette"];
        let echoed: f64 = c["logprobs"]["token_logprobs"].as_array().unwrap()
            [ctx.len()..prompts[i].len()]
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert_eq!(t["context_tokens"], ctx.len());
        assert!(
            (t["option_logprob"].as_f64().unwrap() - echoed).abs() < 1e-6,
            "{t}"
        );
        assert!(
            (t["palette_score"].as_f64().unwrap() - w).abs() < 1e-12,
            "{t}"
        );
        assert!(t["rewards"]["paris"].is_number());
        let tilted = t["tilted_logprob"].as_f64().unwrap();
        assert!((tilted - (echoed + w)).abs() < 1e-6, "{t}");
    }
    // vLLM's prompt_logprobs ask for them too; one count per prompt is accepted.
    let (status, v) = server.post(
        "/v1/completions",
        &json!({"prompt": prompts, "max_tokens": 1, "prompt_logprobs": 0,
                "palette": "paris.json", "palette_context_tokens": [ctx.len(), ctx.len()]}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(v["choices"][1]["palette"]["tilted_logprob"].is_number());
    let n = ctx.len();
    for (body, param) in [
        (
            json!({"prompt": prompts, "palette": "paris.json", "palette_context_tokens": n}),
            "palette_context_tokens",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette_context_tokens": n}),
            "palette_context_tokens",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "paris.json", "palette_context_tokens": 0}),
            "palette_context_tokens",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "paris.json", "palette_context_tokens": 999}),
            "palette_context_tokens",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "paris.json", "palette_context_tokens": [n]}),
            "palette_context_tokens",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "paris.json", "palette_context_tokens": [n, n, n]}),
            "palette_context_tokens",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "paris.json", "palette_context_tokens": "4"}),
            "palette_context_tokens",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "paris.json", "palette_context_tokens": n, "palette_mode": "resample"}),
            "palette_mode",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "paris.json", "palette_context_tokens": n, "n": 2}),
            "n",
        ),
        (
            json!({"prompt": prompts, "echo": true, "logprobs": 1, "palette": "../paris.json", "palette_context_tokens": n}),
            "palette",
        ),
    ] {
        let (status, v) = server.post("/v1/completions", &body);
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}: {v}"
        );
    }
}

/// Per-request adapters (`--lora-dir`, `lora` by name): requests with different adapters, or
/// none, share decode steps, and each gets the tokens and log-probs it gets alone; an
/// adapter named as the model is vLLM's way to the same adapter; unknown names are 400s.
#[test]
fn requests_with_different_adapters_share_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    smollm2_adapters(dir.path());
    let named = ethos_model::lora::Adapters::load_dir(dir.path()).unwrap();
    assert_eq!(
        named.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["hk", "kr"]
    );
    let adapters = ethos_model::lora::Adapters {
        named,
        ..Default::default()
    };
    let Some(model) = smollm2_with(Some("f32"), adapters) else {
        return;
    };
    let server = std::sync::Arc::new(Running::start(model, |_| {}));
    let base = json!({"prompt": "The most important value in Hong Kong is", "max_tokens": 16,
                      "temperature": 0, "logprobs": 0});
    let with = |lora: Value| {
        let mut b = base.clone();
        b["lora"] = lora;
        b
    };
    let bodies = [
        with(json!([{"name": "hk"}])),
        with(json!([{"name": "kr", "scale": 0.5}])),
        with(json!([{"name": "hk", "scale": 0.7}, {"name": "kr", "scale": -0.4}])),
        base.clone(),
    ];
    let alone: Vec<Value> = bodies
        .iter()
        .map(|b| {
            let (status, v) = server.post("/v1/completions", b);
            assert_eq!(status, 200, "{v}");
            v
        })
        .collect();
    let logprobs = |v: &Value| v["choices"][0]["logprobs"]["token_logprobs"].clone();
    // The adapters change what the model says.
    assert_ne!(logprobs(&alone[0]), logprobs(&alone[3]));
    assert_ne!(logprobs(&alone[0]), logprobs(&alone[1]));
    // An adapter named as the model: the same as `lora` by name.
    let mut as_model = base.clone();
    as_model["model"] = json!("hk");
    let (status, v) = server.post("/v1/completions", &as_model);
    assert_eq!(status, 200, "{v}");
    assert_eq!(logprobs(&v), logprobs(&alone[0]));
    // All four among twelve others, staggered so that they join running batches.
    let mut threads = Vec::new();
    for k in 0..16 {
        let s = server.clone();
        let body = if k % 4 == 1 {
            bodies[k / 4].clone()
        } else {
            json!({"prompt": format!("Story {k}: {}", "x ".repeat(k * 5)), "max_tokens": 6 + 2 * k,
                   "temperature": 0.8, "seed": k, "lora": if k % 3 == 0 { json!([{"name": "kr"}]) } else { Value::Null }})
        };
        threads.push(std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(8 * k as u64));
            s.post("/v1/completions", &body)
        }));
    }
    let results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    // The same tokens and the same log-prob bits as alone (as for the seeded request above,
    // whose keys move in the cache as others join and leave).
    for (i, want) in alone.iter().enumerate() {
        let got = &results[4 * i + 1].1;
        assert_eq!(text_of(got, 0), text_of(want, 0), "request {i}");
        let tokens = |v: &Value| v["choices"][0]["logprobs"]["tokens"].clone();
        assert_eq!(tokens(got), tokens(want), "request {i}");
        assert_eq!(logprobs(got), logprobs(want), "request {i}");
    }
    // /v1/models lists the adapters with the model as parent.
    let models: Value = ureq::get(&server.url("/v1/models"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(&ids[1..], ["hk", "kr"]);
    assert_eq!(models["data"][1]["parent"], models["data"][0]["id"]);
    // Bad references are named 400s.
    for (lora, param) in [
        (json!([{"name": "nope"}]), "lora[0].name"),
        (json!([{"name": "hk", "scale": "big"}]), "lora[0].scale"),
        (json!([{"name": "hk", "path": "/etc"}]), "lora[0]"),
        (json!("hk"), "lora"),
    ] {
        let (status, v) = server.post("/v1/completions", &with(lora.clone()));
        assert_eq!(status, 400, "{lora}: {v}");
        assert!(
            v["error"]["param"]
                .as_str()
                .unwrap_or("")
                .starts_with(param),
            "{lora}: {v}"
        );
    }
    server.wait_for("the batch to drain", |s| {
        s.metric("ethos_running_sequences") == 0.0
    });
}
