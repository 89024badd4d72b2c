//! ethos-evals: culture and value benchmarks on locally loaded models — CulturalBench and
//! NormAd with exact log-prob scoring, the format-robustness grid, bootstrap intervals,
//! resumable runs and reports. The data is vendored under `data/` with its licences and
//! compiled in; benchmarks never see model internals, only prompts and answers.

pub mod benchmark;
pub mod benchmarks;
pub mod compare;
pub mod data;
pub mod encoding;
pub mod error;
pub mod formats;
pub mod identity;
pub mod log;
pub mod metrics;
pub mod pyrandom;
pub mod report;
pub mod results;
pub mod runner;
pub mod thurstonian;

pub use benchmark::{Answer, Ask, Benchmark, Judgement, Prompt};
pub use error::{Error, Result};
pub use runner::{run, run_tilted, OptionTilt, RunOptions};
