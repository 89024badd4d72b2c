//! ethos: local LLM inference with exact log-probs and value-steering hooks.
//!
//! The common path in one import: load a model, open a `Session` on it (optionally steered by
//! control vectors), then generate from `GenerateRequest`s, score continuations, or run a
//! benchmark. The crates behind it stay reachable for everything else.

pub use ethos_evals as evals;
pub use ethos_model as model;
pub use ethos_steer as steer;

pub use ethos_evals::{Benchmark, RunOptions};
pub use ethos_model::scoring::{ContinuationScore, ScoreOptions, ScoreRequest};
pub use ethos_model::{load, LoadOptions, Model, ModelSpec};
pub use ethos_steer::control::ControlSet;
pub use ethos_steer::{GenerateOptions, GenerateRequest, Generation, SamplingParams, Session};
