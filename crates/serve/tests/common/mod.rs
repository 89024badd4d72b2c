//! Helpers shared by the server tests: SmolLM2 (skipped with a printed reason when absent,
//! required in CI) and a server on a free loopback port that stops when dropped.
#![allow(dead_code)]

use ethos_model::{LoadOptions, Model};
use ethos_serve::{ServeConfig, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn smollm2(dtype: Option<&str>) -> Option<Model> {
    smollm2_with(dtype, ethos_model::lora::Adapters::default())
}

/// SmolLM2 with `adapters` (skipped like `smollm2` when absent).
pub fn smollm2_with(dtype: Option<&str>, adapters: ethos_model::lora::Adapters) -> Option<Model> {
    let path = repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        if std::env::var("ETHOS_REQUIRE_REAL_MODEL").is_ok_and(|v| v == "1") {
            panic!(
                "{} is missing and ETHOS_REQUIRE_REAL_MODEL=1",
                path.display()
            );
        }
        eprintln!("skipped: {} is absent (make models)", path.display());
        return None;
    }
    let opts = LoadOptions {
        dtype: dtype.map(|d| ethos_model::parse_dtype(d).unwrap()),
        adapters,
        ..LoadOptions::default()
    };
    Some(ethos_model::loader::load_gguf(&path, &opts).unwrap())
}

/// A server on a free loopback port, stopped when dropped.
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(model: Model, edit: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut config = ServeConfig::new("smollm2");
        config.port = 0;
        edit(&mut config);
        let server = Server::bind(model, config).unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            server
                .run_until(async {
                    let _ = rx.await;
                })
                .unwrap();
        });
        Self {
            base,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body`; the status and the JSON answer (errors included).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string(), None)
    }

    pub fn post_raw(&self, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = ureq::post(&self.url(path))
            .timeout(Duration::from_secs(120))
            .set("Content-Type", "application/json");
        if let Some(k) = key {
            req = req.set("Authorization", &format!("Bearer {k}"));
        }
        match req.send_string(body) {
            Ok(r) => (r.status(), r.into_json().unwrap()),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap();
                (
                    code,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(e) => panic!("{path}: {e}"),
        }
    }

    pub fn metric(&self, name: &str) -> f64 {
        let text = ureq::get(&self.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Waits (bounded) until `cond` holds on the server's metrics.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Running {
    /// Opens a streamed completion of `body` on a raw connection and reads until its first
    /// event; the caller drops or shuts the connection to abandon the stream.
    pub fn open_stream(&self, body: &Value) -> std::net::TcpStream {
        use std::io::{BufRead, BufReader, Write};
        let addr = self.base.trim_start_matches("http://").to_string();
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        let body = body.to_string();
        write!(
            conn,
            "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        while !line.starts_with("data: ") {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
        }
        conn
    }
}

/// A solved palette in `dir`: one lexicon value `value` rewarding `phrases`, given `lambda`,
/// written as the lambda file `name` beside its palette (`p.toml`) and lexicon (`l.csv`).
pub fn lexicon_palette(dir: &Path, name: &str, value: &str, phrases: &[&str], lambda: f64) {
    let rows: String = phrases.iter().map(|p| format!("{p},1\n")).collect();
    std::fs::write(dir.join("l.csv"), format!("phrase,weight\n{rows}")).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        format!("[[value]]\nname = \"{value}\"\ntarget = 1.0\n[[reward]]\nname = \"{value}\"\nkind = \"lexicon\"\nfile = \"l.csv\"\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join(name),
        format!(r#"{{"lambda": {{"{value}": {lambda}}}, "palette": "p.toml"}}"#),
    )
    .unwrap();
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A folder of named adapters for SmolLM2: the committed fine-tune
/// (`tests/fixtures/lora/smollm2/hk`, made by `tests/ref/make_smollm2_lora.py`) as `hk`, and
/// the same as `kr` (requests tell them apart by their scales).
pub fn smollm2_adapters(dir: &Path) {
    let src = repo().join("tests/fixtures/lora/smollm2/hk");
    for name in ["hk", "kr"] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(src.join(f), dir.join(name).join(f)).unwrap();
        }
    }
}
