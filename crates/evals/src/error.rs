//! One error type for the evals crate. Every variant names the file, row, record, item or
//! limit at fault, so the CLI can print it as one line and exit non-zero.
//!
//! A variant that wraps a cause either prints it in its own message or returns it as its
//! `source()`, never both: the CLI prints the whole chain (`{:#}`, joined by ": "), and so
//! each part appears once. Which of the two a variant does keeps the line the CLI printed
//! when this crate used anyhow: a cause that was a context's inner error is the source, one
//! that was formatted into the message is part of the message.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading, scoring with or generating from the model.
    #[error(transparent)]
    Model(#[from] ethos_model::Error),
    /// Steering (control vectors, palettes) and the session's generation.
    #[error(transparent)]
    Steer(#[from] ethos_steer::Error),
    /// A server of the remote backend (its address, the endpoint and what went wrong).
    #[error(transparent)]
    Remote(#[from] ethos_remote::Error),
    /// A file or folder that cannot be read, listed, created or written (`what` says which,
    /// e.g. "cannot read"); the OS error is the source.
    #[error("{}: {what}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A line of a run folder's `items.jsonl` that is not an item record (1-based line).
    #[error("{}:{line}: not an item record: {err}", path.display())]
    ItemRecord {
        path: PathBuf,
        line: usize,
        err: serde_json::Error,
    },
    /// A data file (by the name errors use for it) whose header does not read as CSV.
    #[error("{name}: not a CSV file")]
    NotCsv {
        name: String,
        #[source]
        source: csv::Error,
    },
    /// A CSV data row that does not parse (row counted with the header as row 1).
    #[error("{name}: row {row}: {err}")]
    CsvRow {
        name: String,
        row: usize,
        err: csv::Error,
    },
    /// A JSON data file that is not UTF-8.
    #[error("{name}: not UTF-8")]
    NotUtf8 {
        name: String,
        #[source]
        source: std::str::Utf8Error,
    },
    /// A JSON data file, or one line of a JSON-lines file, that does not parse: `at` is the
    /// file's name, or `name:line`.
    #[error("{at}: {err}")]
    Json { at: String, err: serde_json::Error },
    /// Writing a result as JSON.
    #[error(transparent)]
    Serialize(serde_json::Error),
    /// Benchmark data that does not fit its schema: an empty file, a missing column or
    /// field, a value out of its set; the message names the file and the row or record.
    #[error("{0}")]
    Data(String),
    /// A benchmark, condition, format or outcome set that does not exist, or that the model
    /// cannot serve (a chat format without a chat template).
    #[error("{0}")]
    Selection(String),
    /// An output folder that holds another run's items.
    #[error("{0}")]
    RunFolder(String),
    /// A prompt longer than the model's context.
    #[error("{0}")]
    Limit(String),
    /// Answers that do not fit the prompts a benchmark built (a bug, not bad input).
    #[error("{0}")]
    Internal(String),
    /// `source` in the setting `context` names (an item, a flag).
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, what: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            what,
            source,
        }
    }
}

/// Puts an error in context: `context` names where it happened and the error stays its
/// source (printed after it by the CLI).
pub trait ResultExt<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context(),
            source: Box::new(e.into()),
        })
    }
}

/// Shorthand for the message variants: `bail!(Data, "...")` returns that variant's error.
macro_rules! bail {
    ($variant:ident, $($arg:tt)+) => {
        return Err($crate::error::Error::$variant(format!($($arg)+)))
    };
}
pub(crate) use bail;

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain as the CLI prints it.
    fn chain(e: &Error) -> String {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(c) = src {
            s.push_str(&format!(": {c}"));
            src = c.source();
        }
        s
    }

    #[test]
    fn context_and_sources_print_once_each() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e: Result<()> = Err(Error::io("a.csv", "cannot read", io));
        let e = e.context(|| "normad --data wants one CSV file".into());
        assert_eq!(
            chain(&e.unwrap_err()),
            "normad --data wants one CSV file: a.csv: cannot read: gone"
        );
    }
}
