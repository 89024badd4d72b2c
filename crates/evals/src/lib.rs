//! ethos-evals: culture and value benchmarks on locally loaded models — CulturalBench and
//! NormAd with exact log-prob scoring, the format-robustness grid, bootstrap intervals,
//! resumable runs and reports. The data is vendored under `data/` with its licences and
//! compiled in; benchmarks never see model internals, only prompts and answers.

pub mod backend;
pub(crate) mod benchmark;
pub mod benchmarks;
pub mod compare;
pub mod data;
pub mod encoding;
pub mod error;
pub(crate) mod formats;
pub(crate) mod identity;
pub mod log;
pub(crate) mod metrics;
pub mod persona;
pub mod persona_report;
pub mod pyjson;
pub(crate) mod pyrandom;
pub(crate) mod report;
pub mod results;
pub mod runner;
pub(crate) mod thurstonian;

pub use backend::{Backend, LocalBackend, RemoteBackend};
pub use benchmark::{Answer, Ask, Benchmark, Judgement, Prompt};
pub use error::{Error, Result};
pub use metrics::Interval;
pub use runner::{run, run_on, run_tilted, OptionTilt, RunOptions};
