//! ethos-serve: `ethos serve`, an OpenAI-compatible HTTP server (axum on tokio) over the
//! continuous batcher (`engine`). The HTTP side parses and checks requests, tokenizes and
//! renders chat templates off the async threads, and turns the engine's events into
//! OpenAI's and vLLM's response shapes; the engine thread alone runs the model.

pub mod api;
mod completions;
pub mod engine;
pub mod error;
pub mod metrics;
mod palette;
mod request;
mod routes;
mod shapes;
mod state;
mod stream;

use ethos_model::Model;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Per-request and server-wide limits, each with a flag of `ethos serve`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest prompt in tokens (also capped by the context length).
    pub max_prompt_tokens: usize,
    /// Largest `max_tokens`.
    pub max_tokens: usize,
    /// Largest `n`.
    pub max_n: usize,
    /// Largest `logprobs`, `top_logprobs` and `prompt_logprobs`.
    pub max_logprobs: usize,
    /// Most prompts in one completions request.
    pub max_prompts: usize,
    /// Requests served at once; more get 503.
    pub max_concurrent: usize,
    /// Jobs waiting for the batch; more get 429.
    pub max_queue: usize,
    /// A request still running after this long is stopped with 504.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_prompt_tokens: 32768,
            max_tokens: 4096,
            max_n: 16,
            max_logprobs: 20,
            max_prompts: 256,
            max_concurrent: 128,
            max_queue: 512,
            timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    /// The model id clients name (`/v1/models`).
    pub served_model_name: String,
    /// Clients must send `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    pub limits: Limits,
    /// Bytes the running batch's KV cache may hold; `None`: a quarter of the memory
    /// available at start.
    pub kv_memory: Option<u64>,
    /// Control vectors requests may name (files in this folder, never paths).
    pub control_vector_dir: Option<PathBuf>,
    /// Solved palettes (lambda files of `ethos steer solve/fit --lambda-out`) requests may
    /// name.
    pub palette_dir: Option<PathBuf>,
}

impl ServeConfig {
    pub fn new(served_model_name: &str) -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            served_model_name: served_model_name.into(),
            api_key: None,
            limits: Limits::default(),
            kv_memory: None,
            control_vector_dir: None,
            palette_dir: None,
        }
    }
}

/// A bound server, not yet serving.
pub struct Server {
    listener: std::net::TcpListener,
    state: state::AppState,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Server {
    /// Checks the configuration, starts the engine and binds the listener.
    pub fn bind(model: Model, config: ServeConfig) -> Result<Self, ServeError> {
        if model.tokenizer.is_none() {
            return Err(ServeError::Config(format!(
                "{}: the model has no tokenizer; the server needs one",
                model.info.source
            )));
        }
        if config.limits.max_concurrent == 0 || config.limits.max_queue == 0 {
            return Err(ServeError::Config(
                "--max-concurrent and --max-queue must be at least 1".into(),
            ));
        }
        for (flag, dir) in [
            ("--control-vector-dir", &config.control_vector_dir),
            ("--palette-dir", &config.palette_dir),
        ] {
            if let Some(dir) = dir {
                if !dir.is_dir() {
                    return Err(ServeError::Config(format!(
                        "{flag} {}: not a folder",
                        dir.display()
                    )));
                }
            }
        }
        let kv_budget = match config.kv_memory {
            Some(b) => b,
            None => ethos_model::budget::memory_available().map_or(4 << 30, |m| m / 4),
        };
        let addr = format!("{}:{}", config.host, config.port);
        let listener = std::net::TcpListener::bind(&addr).map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
        listener.set_nonblocking(true)?;
        engine::limit_heaps();
        let model = Arc::new(model);
        let metrics = Arc::new(metrics::Metrics::new());
        let engine = engine::spawn(
            model.clone(),
            engine::EngineConfig {
                kv_budget,
                max_queue: config.limits.max_queue,
            },
            metrics.clone(),
        )?;
        let state = state::AppState::new(model, engine, metrics, config);
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets running requests finish.
    pub fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ethos-http")
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(self.listener)?;
            let app = routes::router(self.state);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        })?;
        Ok(())
    }

    /// Serves until SIGTERM or Ctrl-C, then drains running requests and returns.
    pub fn run(self) -> Result<(), ServeError> {
        self.run_until(async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(t) => t,
                        Err(_) => {
                            let _ = ctrl_c.await;
                            return;
                        }
                    };
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
        })
    }
}
