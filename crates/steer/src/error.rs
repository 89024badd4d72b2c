//! One error type for the steering crate. Every variant renders as a single line that names
//! the file, field or limit at fault, so the CLI can print it as-is and exit non-zero.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading or running the model.
    #[error(transparent)]
    Model(#[from] ethos_model::Error),
    /// A control-vector, palette, lambda or reward-table file (or its flag) that does not
    /// parse or does not fit the model; the message names the file and field.
    #[error("{0}")]
    Input(String),
    /// Sampling parameters out of range.
    #[error("{0}")]
    Sampling(String),
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A file that cannot be read or written, named.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Model(ethos_model::Error::io(path, source))
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Model(e.into())
    }
}
