//! The parts a decoder block is assembled from: the model's math, on the ops of `ops/`.
pub mod attention;
pub mod experts;
pub mod mla;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod rope;
