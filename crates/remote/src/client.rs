//! The client: which model the server serves, its tokenizer, prompt log-probs and
//! completions, each request retried with backoff and jitter on 429, 5xx and connection errors.

use crate::concurrent::map_concurrent;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// The server's address, with or without the trailing `/v1`.
    pub base_url: String,
    /// The model id to use; without it, the one model the server lists.
    pub served_model: Option<String>,
    /// Sent as a Bearer token.
    pub api_key: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Prompts sent as one list in a scoring request.
    pub prompts_per_request: usize,
    /// The limit on one request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    /// Tries after the first, on 429, 5xx and connection errors.
    pub retries: u32,
    /// The first wait before a retry; it doubles with each retry, with jitter.
    pub backoff: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            base_url: String::new(),
            served_model: None,
            api_key: None,
            concurrency: 8,
            prompts_per_request: 8,
            timeout: Duration::from_secs(600),
            retries: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// What a run has sent and received so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub retries: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

/// Sampling for a completion; `None` fields are left to the server's defaults.
#[derive(Clone, Debug, Default)]
pub struct CompletionParams {
    pub max_tokens: usize,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub min_p: Option<f64>,
    pub seed: Option<u64>,
    pub n: Option<usize>,
    pub stop: Vec<String>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// vLLM's extension (OpenAI has none).
    pub repetition_penalty: Option<f64>,
    pub logit_bias: Vec<(u32, f64)>,
    /// vLLM's extension: generate past the end-of-sequence token.
    pub ignore_eos: bool,
}

impl CompletionParams {
    /// The body fields these parameters set (those left `None` are the server's defaults).
    fn fields(&self, b: &mut serde_json::Map<String, Value>) {
        b.insert("max_tokens".into(), json!(self.max_tokens));
        let opt = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
            ("repetition_penalty", self.repetition_penalty),
        ];
        for (k, v) in opt {
            if let Some(v) = v {
                b.insert(k.into(), json!(v));
            }
        }
        if let Some(k) = self.top_k {
            b.insert("top_k".into(), json!(k));
        }
        if let Some(s) = self.seed {
            b.insert("seed".into(), json!(s));
        }
        if let Some(n) = self.n {
            b.insert("n".into(), json!(n));
        }
        if !self.stop.is_empty() {
            b.insert("stop".into(), json!(self.stop));
        }
        if !self.logit_bias.is_empty() {
            let m: serde_json::Map<String, Value> = self
                .logit_bias
                .iter()
                .map(|(id, bias)| (id.to_string(), json!(bias)))
                .collect();
            b.insert("logit_bias".into(), Value::Object(m));
        }
        if self.ignore_eos {
            b.insert("ignore_eos".into(), json!(true));
        }
    }
}

/// One generated choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish_reason: Option<String>,
}

pub struct Client {
    pub(crate) agent: ureq::Agent,
    root: String,
    /// The server's host (and port), for run records: never the path or a key.
    pub host: String,
    /// The served model's id.
    pub model: String,
    /// The server's context length (`max_model_len` in `/v1/models`), when it says.
    pub max_model_len: Option<usize>,
    pub(crate) opts: RemoteOptions,
    pub(crate) counters: Counters,
    started: Instant,
}

impl Client {
    /// Checks the options, asks the server which models it serves and picks one.
    pub fn connect(opts: RemoteOptions) -> Result<Client> {
        let url = opts.base_url.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                Error::Options(format!(
                    "--base-url `{url}`: not an http:// or https:// address"
                ))
            })?;
        let host = rest.split('/').next().unwrap_or("").to_string();
        if host.is_empty() {
            return Err(Error::Options(format!("--base-url `{url}`: no host")));
        }
        if opts.concurrency == 0 || opts.prompts_per_request == 0 {
            return Err(Error::Options(
                "--concurrency and --prompts-per-request must be at least 1".into(),
            ));
        }
        let root = url.strip_suffix("/v1").unwrap_or(url).to_string();
        let agent = ureq::AgentBuilder::new()
            .timeout(opts.timeout)
            .max_idle_connections_per_host(opts.concurrency.max(1))
            .build();
        let mut client = Client {
            agent,
            root,
            host,
            model: String::new(),
            max_model_len: None,
            opts,
            counters: Counters::default(),
            started: Instant::now(),
        };
        let url = client.url("/v1/models");
        let models = client.call("/v1/models", None)?;
        let list = models
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Protocol {
                url: url.clone(),
                message: "no `data` list of models in the answer".into(),
            })?;
        let ids: Vec<&str> = list
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .collect();
        let chosen = match (&client.opts.served_model, ids.as_slice()) {
            (Some(name), _) if ids.contains(&name.as_str()) => name.clone(),
            (Some(name), _) => {
                return Err(Error::Protocol {
                    url,
                    message: format!(
                        "the server does not serve `{name}` (it serves: {})",
                        ids.join(", ")
                    ),
                })
            }
            (None, [one]) => one.to_string(),
            (None, []) => {
                return Err(Error::Protocol {
                    url,
                    message: "the server lists no model".into(),
                })
            }
            (None, several) => {
                return Err(Error::Protocol {
                    url,
                    message: format!(
                        "the server serves several models ({}); name one with --served-model",
                        several.join(", ")
                    ),
                })
            }
        };
        client.max_model_len = list
            .iter()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(&chosen))
            .and_then(|m| m.get("max_model_len"))
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        client.model = chosen;
        Ok(client)
    }

    pub fn options(&self) -> &RemoteOptions {
        &self.opts
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: c.completion_tokens.load(Ordering::Relaxed),
        }
    }

    /// Tokens the server has read and written per second since the client connected.
    pub fn tokens_per_second(&self) -> f64 {
        let s = self.stats();
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (s.prompt_tokens + s.completion_tokens) as f64 / secs
        } else {
            0.0
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    /// The server's tokens of `text` (`/tokenize`); `add_special_tokens` as the server's
    /// tokenizer understands it (the BOS a prompt starts with, where the model has one).
    pub fn tokenize(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let answer = self
            .call(
                "/tokenize",
                Some(&json!({
                    "model": self.model,
                    "prompt": text,
                    "add_special_tokens": add_special_tokens,
                })),
            )
            .map_err(|e| match e {
                Error::Status { url, status: 404, .. } => Error::Protocol {
                    url,
                    message: "the server has no /tokenize endpoint: pass --tokenizer (a local copy of the served model's tokenizer, HF folder or GGUF)".into(),
                },
                e => e,
            })?;
        let tokens = answer
            .get("tokens")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|t| t.as_u64().map(|t| t as u32))
                    .collect::<Option<Vec<u32>>>()
            })
            .ok_or_else(|| Error::Protocol {
                url: self.url("/tokenize"),
                message: "no `tokens` list of token ids in the answer".into(),
            })?;
        if tokens.is_empty() && !text.is_empty() {
            // llama-server's /tokenize reads another field and answers [] for this one.
            return Err(Error::Protocol {
                url: self.url("/tokenize"),
                message: "no tokens for a non-empty text: this server's /tokenize is not vLLM's; pass --tokenizer (a local copy of the served model's tokenizer, HF folder or GGUF)".into(),
            });
        }
        Ok(tokens)
    }

    /// The log-prob of each token of each prompt given the tokens before it (`None` for the
    /// first), from `echo` + `logprobs`; prompts go out as token ids, several per request,
    /// the requests `concurrency` at a time.
    pub fn prompt_logprobs(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<Option<f64>>>> {
        let chunks: Vec<&[Vec<u32>]> = prompts.chunks(self.opts.prompts_per_request).collect();
        let answers = map_concurrent(chunks, self.opts.concurrency, |chunk| {
            self.prompt_logprobs_request(chunk)
        })?;
        Ok(answers.into_iter().flatten().collect())
    }

    fn prompt_logprobs_request(&self, prompts: &[Vec<u32>]) -> Result<Vec<Vec<Option<f64>>>> {
        let answer = self.call(
            "/v1/completions",
            Some(&json!({
                "model": self.model,
                "prompt": prompts,
                "max_tokens": 1,
                "temperature": 0.0,
                "echo": true,
                "logprobs": 1,
            })),
        )?;
        let url = self.url("/v1/completions");
        let choices = choices_in_order(&answer, prompts.len(), &url)?;
        let mut out = Vec::with_capacity(prompts.len());
        for (choice, prompt) in choices.iter().zip(prompts) {
            let lps = choice
                .get("logprobs")
                .and_then(|l| l.get("token_logprobs"))
                .and_then(Value::as_array)
                .filter(|a| a.len() >= prompt.len())
                .ok_or_else(|| Error::Protocol {
                    url: url.clone(),
                    message: "the answer has no prompt log-probs (`echo` with `logprobs`): this server cannot score options; generation formats still run on it".into(),
                })?;
            let mut row = Vec::with_capacity(prompt.len());
            for (i, v) in lps.iter().take(prompt.len()).enumerate() {
                match (i, v.as_f64()) {
                    (_, Some(x)) => row.push(Some(x)),
                    (0, None) => row.push(None),
                    (_, None) => {
                        return Err(Error::Protocol {
                            url: url.clone(),
                            message: format!("prompt token {i} has no log-prob in the answer"),
                        })
                    }
                }
            }
            out.push(row);
        }
        self.count_usage(&answer);
        Ok(out)
    }

    /// Completions of one prompt (token ids), `params.n` choices of it.
    pub fn complete(&self, prompt: &[u32], params: &CompletionParams) -> Result<Vec<Completion>> {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("prompt".into(), json!(prompt));
        params.fields(&mut body);
        self.choices("/v1/completions", Value::Object(body), params, |c| {
            c.get("text")
        })
    }

    /// Chat completions of `messages` (role, content) through the server's chat template.
    pub fn chat(
        &self,
        messages: &[(String, String)],
        params: &CompletionParams,
    ) -> Result<Vec<Completion>> {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert(
            "messages".into(),
            json!(messages
                .iter()
                .map(|(r, c)| json!({"role": r, "content": c}))
                .collect::<Vec<_>>()),
        );
        params.fields(&mut body);
        self.choices("/v1/chat/completions", Value::Object(body), params, |c| {
            c.get("message").and_then(|m| m.get("content"))
        })
    }

    fn choices(
        &self,
        path: &str,
        body: Value,
        params: &CompletionParams,
        text: impl Fn(&Value) -> Option<&Value>,
    ) -> Result<Vec<Completion>> {
        let answer = self.call(path, Some(&body))?;
        let url = self.url(path);
        let choices = choices_in_order(&answer, params.n.unwrap_or(1), &url)?;
        let out = choices
            .iter()
            .map(|c| {
                Ok(Completion {
                    text: text(c)
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::Protocol {
                            url: url.clone(),
                            message: "a choice has no text".into(),
                        })?
                        .to_string(),
                    finish_reason: c
                        .get("finish_reason")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.count_usage(&answer);
        Ok(out)
    }

    /// `complete` for many prompts, `concurrency` requests at a time, answers in order.
    pub fn complete_many(
        &self,
        jobs: Vec<(Vec<u32>, CompletionParams)>,
    ) -> Result<Vec<Vec<Completion>>> {
        map_concurrent(jobs, self.opts.concurrency, |(p, params)| {
            self.complete(&p, &params)
        })
    }

    fn count_usage(&self, answer: &Value) {
        let usage = answer.get("usage");
        let field = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
        self.counters
            .prompt_tokens
            .fetch_add(field("prompt_tokens").unwrap_or(0), Ordering::Relaxed);
        self.counters
            .completion_tokens
            .fetch_add(field("completion_tokens").unwrap_or(0), Ordering::Relaxed);
    }
}

/// The answer's choices sorted by `index`, exactly `n` of them.
fn choices_in_order<'a>(answer: &'a Value, n: usize, url: &str) -> Result<Vec<&'a Value>> {
    let mut choices: Vec<&Value> = answer
        .get("choices")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if choices.len() != n {
        return Err(Error::Protocol {
            url: url.to_string(),
            message: format!("{} choices in the answer, {n} expected", choices.len()),
        });
    }
    choices.sort_by_key(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0));
    Ok(choices)
}
