//! One request to the server: retried on 429, 5xx and connection errors after a backoff
//! that doubles, with jitter, or the server's `Retry-After`; an answer read within a bound
//! and parsed as JSON; an error that names the address and the server's own message.

use crate::client::Client;
use crate::error::{Error, Result};
use serde_json::Value;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The most a response body may hold; a larger one is an error, not an allocation.
const MAX_RESPONSE_BYTES: u64 = 256 << 20;
/// The longest wait between two tries, whatever the backoff or the server's `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Client {
    /// One request (GET without a body, POST with one), retried on 429, 5xx and connection
    /// errors after a backoff that doubles, with jitter, or the server's `Retry-After`.
    pub(crate) fn call(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = self.url(path);
        let mut attempt: u32 = 0;
        loop {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = match body {
                Some(_) => self.agent.post(&url),
                None => self.agent.get(&url),
            };
            if let Some(k) = &self.opts.api_key {
                req = req.set("Authorization", &format!("Bearer {k}"));
            }
            let res = match body {
                Some(b) => req.send_json(b),
                None => req.call(),
            };
            let (retry_after, failure) = match res {
                Ok(r) => return read_json(r, &url),
                Err(ureq::Error::Status(status, r)) => {
                    let retry_after = r
                        .header("retry-after")
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64);
                    let message = error_message(r);
                    let failure = Error::Status {
                        url: url.clone(),
                        status,
                        message,
                    };
                    if !(status == 429 || status >= 500) {
                        return Err(failure);
                    }
                    (retry_after, failure)
                }
                Err(ureq::Error::Transport(t)) => (
                    None,
                    Error::Transport {
                        url: url.clone(),
                        message: one_line(&t.to_string()),
                    },
                ),
            };
            if attempt >= self.opts.retries {
                return Err(after_retries(failure, attempt));
            }
            std::thread::sleep(self.backoff(attempt, retry_after));
            attempt += 1;
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The wait before retry `attempt + 1`: the server's `Retry-After` when it gave one,
    /// else the doubled backoff, each with up to half again of jitter (so that clients that
    /// failed together do not return together).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = retry_after
            .unwrap_or_else(|| self.opts.backoff.saturating_mul(1u32 << attempt.min(16)));
        base.mul_f64(1.0 + 0.5 * jitter()).min(MAX_BACKOFF)
    }
}

/// A number in [0, 1) that differs between calls and threads.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn after_retries(e: Error, attempt: u32) -> Error {
    if attempt == 0 {
        return e;
    }
    let note = format!(" (after {attempt} retries)");
    match e {
        Error::Status {
            url,
            status,
            message,
        } => Error::Status {
            url,
            status,
            message: message + &note,
        },
        Error::Transport { url, message } => Error::Transport {
            url,
            message: message + &note,
        },
        other => other,
    }
}

fn read_json(r: ureq::Response, url: &str) -> Result<Value> {
    let mut buf = Vec::new();
    r.into_reader()
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Transport {
            url: url.to_string(),
            message: format!("reading the answer: {}", one_line(&e.to_string())),
        })?;
    if buf.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(Error::Protocol {
            url: url.to_string(),
            message: format!("the answer is over {} MiB", MAX_RESPONSE_BYTES >> 20),
        });
    }
    serde_json::from_slice(&buf).map_err(|e| Error::Protocol {
        url: url.to_string(),
        message: format!("the answer is not JSON: {}", one_line(&e.to_string())),
    })
}

/// The OpenAI error's `message` (vLLM, ethos serve), else the start of the body.
fn error_message(r: ureq::Response) -> String {
    let mut buf = Vec::new();
    let _ = r.into_reader().take(64 << 10).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let msg = parsed
        .as_ref()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("message").or(Some(e)))
                .or_else(|| v.get("message"))
                .or_else(|| v.get("detail"))
        })
        .map(|m| {
            m.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| m.to_string())
        })
        .unwrap_or_else(|| text.to_string());
    let mut msg = one_line(&msg);
    if msg.len() > 300 {
        let mut cut = 300;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
        msg.push_str("...");
    }
    msg
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
