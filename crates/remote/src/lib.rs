//! A client of a server that speaks the OpenAI completions API with vLLM's extensions
//! (vLLM on a cluster, `ethos serve`): the served model, its tokenizer (`/tokenize`), prompt
//! log-probs (`echo` + `logprobs`) and completions. Requests go out with bounded
//! concurrency and are retried with backoff on 429, 5xx and connection errors.

mod client;
mod concurrent;
mod error;
mod http;

pub use client::{Client, Completion, CompletionParams, RemoteOptions, Stats};
pub use concurrent::map_concurrent;
pub use error::{Error, Result};

impl ethos_model::tokenizer::TextEncoder for Client {
    fn encode_text(&self, text: &str, add_special: bool) -> ethos_model::Result<Vec<u32>> {
        self.tokenize(text, add_special)
            .map_err(|e| ethos_model::Error::Msg(e.to_string()))
    }
}
