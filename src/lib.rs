pub use ethos_evals as evals;
pub use ethos_model as model;
pub use ethos_steer as steer;
