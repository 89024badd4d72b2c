//! Load and faults, bounded and on loopback: 64 concurrent clients send a fixed mix
//! (completions with echo + logprobs, streamed chats, steered requests, bad requests, streams
//! they abandon) for a fixed number of rounds. Every good answer equals the same request sent
//! alone (f32, greedy), bad ones get their documented 4xx, the batch drains to 0 after the
//! abandoned streams, memory stays under the model (in use, after requests alone) plus the KV
//! budget, and memory after the rounds is within 10 % of memory after the warm-up round. Prints p50/p99
//! time-to-first-token and aggregate tokens/s.

mod common;

use common::{repo, smollm2, Running};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;
const ROUNDS: usize = 3;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

/// The request client `k` sends: (path, body, expected status).
fn request(k: usize) -> (&'static str, Value, u16) {
    let prompts = [
        "The capital of France is",
        "Hong Kong is",
        "Values differ across",
        "Once upon a time",
    ];
    let p = prompts[k % prompts.len()];
    match k % 5 {
        0 => (
            "/v1/completions",
            json!({"prompt": p, "max_tokens": 1, "temperature": 0, "echo": true, "logprobs": 1}),
            200,
        ),
        1 => (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": p}], "max_tokens": 12, "temperature": 0, "stream": true}),
            200,
        ),
        2 => (
            "/v1/completions",
            json!({"prompt": p, "max_tokens": 10, "temperature": 0, "control_vectors": [{"name": "smollm2_cv.gguf", "scale": 3.0}]}),
            200,
        ),
        3 => (
            "/v1/completions",
            json!({"prompt": p, "max_tokens": 10, "temperature": 0.8, "seed": k % 20}),
            200,
        ),
        _ => ("/v1/completions", json!({"prompt": p, "top_p": 2.0}), 400),
    }
}

/// The answer's text (streams concatenated), or the error's param.
fn send(server: &Running, path: &str, body: &Value) -> (u16, String, Option<f64>) {
    let start = Instant::now();
    if body["stream"] == json!(true) {
        let resp = ureq::post(&server.url(path))
            .timeout(Duration::from_secs(300))
            .send_string(&body.to_string())
            .unwrap();
        let mut text = String::new();
        let mut ttft = None;
        let reader = std::io::BufRead::lines(std::io::BufReader::new(resp.into_reader()));
        for line in reader.map_while(Result::ok) {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            let piece = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
            if !piece.is_empty() && ttft.is_none() {
                ttft = Some(start.elapsed().as_secs_f64());
            }
            text.push_str(piece);
        }
        return (200, text, ttft);
    }
    let (status, v) = server.post(path, body);
    let text = if status == 200 {
        v["choices"][0]["text"].as_str().unwrap_or("").to_string()
            + &v["choices"][0]["logprobs"]["token_logprobs"].to_string()
    } else {
        v["error"]["param"].as_str().unwrap_or("").to_string()
    };
    (status, text, Some(start.elapsed().as_secs_f64()))
}

/// Opens a stream and goes away after its first chunk.
fn abandon(server: &Running) {
    let conn = server.open_stream(
        &json!({"prompt": "Tell me a story.", "max_tokens": 200, "stream": true, "ignore_eos": true}),
    );
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

#[test]
fn sixty_four_clients_mixed_requests_and_abandoned_streams() {
    let before_model = rss_bytes();
    let Some(model) = smollm2(Some("f32")) else {
        return;
    };
    let weights = rss_bytes().saturating_sub(before_model);
    let kv_budget: u64 = 256 << 20;
    let server = Arc::new(Running::start(model, |c| {
        c.control_vector_dir = Some(repo().join("tests/fixtures/control"));
        c.kv_memory = Some(kv_budget);
    }));
    // Each distinct good request alone: the reference answers.
    let mut alone = std::collections::HashMap::new();
    for k in 0..20 {
        let (path, body, status) = request(k);
        let got = send(&server, path, &body);
        assert_eq!(got.0, status, "{body}: {}", got.1);
        alone.insert(k % 20, got.1);
    }
    // The model in use: its weights and what its products made of them on first use (the
    // f32 path packs a copy of every matrix for its GEMM), with nothing in the batch.
    server.wait_for("the batch to drain", |s| {
        s.metric("ethos_running_sequences") == 0.0
    });
    let model_in_use = rss_bytes().saturating_sub(before_model);
    let round = |r: usize| {
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let s = server.clone();
                std::thread::spawn(move || {
                    if c % 16 == 15 {
                        abandon(&s);
                        return (c, 0, String::new(), None);
                    }
                    let (path, body, _) = request(c);
                    let (status, text, ttft) = send(&s, path, &body);
                    (c, status, text, ttft)
                })
            })
            .collect();
        let mut ttfts = Vec::new();
        for t in threads {
            let (c, status, text, ttft) = t.join().unwrap();
            if c % 16 == 15 {
                continue;
            }
            let (_, body, want_status) = request(c);
            assert_eq!(status, want_status, "round {r} client {c}: {body}");
            // Sampled requests (seeded) and greedy ones alike: the same as alone.
            assert_eq!(text, alone[&(c % 20)], "round {r} client {c}: {body}");
            ttfts.extend(ttft);
        }
        ttfts
    };
    // The peak while the rounds run, sampled.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let start = Instant::now();
    let tokens_before = server.metric("ethos_generation_tokens_total");
    let mut ttfts = round(0);
    server.wait_for("the batch to drain after the warm-up", |s| {
        s.metric("ethos_running_sequences") == 0.0
    });
    let warm = rss_bytes();
    for r in 1..ROUNDS {
        ttfts.extend(round(r));
    }
    let elapsed = start.elapsed().as_secs_f64();
    server.wait_for("the batch to drain", |s| {
        s.metric("ethos_running_sequences") == 0.0
    });
    let end = rss_bytes();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let generated = server.metric("ethos_generation_tokens_total") - tokens_before;
    ttfts.sort_by(f64::total_cmp);
    let pct = |p: f64| ttfts[((ttfts.len() - 1) as f64 * p) as usize];
    eprintln!(
        "load: {CLIENTS} clients x {ROUNDS} rounds: first-token/answer latency p50 {:.3} s, p99 {:.3} s; {generated} tokens in {elapsed:.1} s ({:.1} tok/s aggregate); RSS {} MiB after warm-up, {} MiB at the end, {} MiB at the peak (server and clients in one process; the model {} MiB loaded, {} MiB in use, {} MiB before it; KV budget {} MiB)",
        pct(0.5),
        pct(0.99),
        generated / elapsed,
        warm >> 20,
        end >> 20,
        peak >> 20,
        weights >> 20,
        model_in_use >> 20,
        before_model >> 20,
        kv_budget >> 20,
    );
    assert!(
        server.metric("ethos_requests_total{outcome=\"cancelled\"}")
            >= (ROUNDS * CLIENTS / 16) as f64
    );
    assert!(
        peak <= before_model + model_in_use + kv_budget,
        "peak RSS {} MiB above the model in use ({} MiB) and the KV budget ({} MiB)",
        peak >> 20,
        model_in_use >> 20,
        kv_budget >> 20
    );
    assert!(
        (end as f64) <= warm as f64 * 1.10,
        "RSS grew from {} MiB after warm-up to {} MiB",
        warm >> 20,
        end >> 20
    );
}
