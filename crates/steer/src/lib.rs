//! ethos-steer: sampling and value steering. The logits-processor chain and the seeded
//! sampler (`sampler`), and the generation loop that drives a model with them (`generate`).
//! Steering enters generation in exactly two places: the model's residual hook and the
//! logits-processor chain.

pub mod control;
pub mod error;
pub(crate) mod generate;
pub mod palette;
pub mod requests;
pub mod rewards;
pub mod rng;
pub(crate) mod sampler;
pub(crate) mod session;
pub mod vectors;

pub use error::{Error, Result};
pub use generate::{FinishReason, GenerateOptions, Generation};
pub use sampler::{LogitsProcessor, Sampler, SamplingParams};
pub use session::{GenerateRequest, Session};
