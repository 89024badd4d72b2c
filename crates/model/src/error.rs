//! One error type for the model crate. Every variant renders as a single line that names the
//! file, field or limit at fault, so the CLI can print it as-is and exit non-zero.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A weights file whose bytes do not form a valid file of its format.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A config value that is missing, of the wrong type or out of range.
    #[error("{path}: field `{field}`: {msg}")]
    Config {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A request that exceeds a hard limit (context length, batch capacity, ...).
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model not available: {0}")]
    NotFound(String),
    #[error("{0}")]
    Msg(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn config(path: impl Into<PathBuf>, field: &str, msg: impl Into<String>) -> Self {
        Error::Config {
            path: path.into(),
            field: field.to_string(),
            msg: msg.into(),
        }
    }
}

/// Candle's errors can span several lines (backtraces, nested context); keep only the first.
pub fn one_line(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    s.lines().next().unwrap_or("").to_string()
}
