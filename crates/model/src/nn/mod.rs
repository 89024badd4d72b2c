//! The parts a decoder block is assembled from.
pub mod attention;
pub mod experts;
pub mod linear;
pub mod mla;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod rope;
