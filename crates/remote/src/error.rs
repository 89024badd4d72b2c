//! One-line errors that name the server, the endpoint and what went wrong.

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options themselves are wrong (no URL, a zero concurrency).
    #[error("{0}")]
    Options(String),
    /// The server answered with an error status (after the retries, where it is retried).
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// No answer at all (refused, reset, timed out), after the retries.
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    /// An answer that lacks what ethos needs, or is not the shape the API documents.
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
}
