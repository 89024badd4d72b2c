//! The parts a decoder block is assembled from.
pub mod attention;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod rope;
