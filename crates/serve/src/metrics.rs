//! `GET /metrics`: the server's counters, gauges and latency histograms in Prometheus' text
//! format (prometheus-client writes it).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// success, bad_request, rejected (queue or connection limit), cancelled, timeout, error.
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabel, Counter>,
    pub prompt_tokens: Counter,
    pub generated_tokens: Counter,
    pub queue_depth: Gauge,
    pub running: Gauge,
    pub ttft: Histogram,
    pub token_latency: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ethos");
        let requests = Family::<OutcomeLabel, Counter>::default();
        let prompt_tokens = Counter::default();
        let generated_tokens = Counter::default();
        let queue_depth = Gauge::default();
        let running = Gauge::default();
        // 1 ms to about 65 s.
        let ttft = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let token_latency = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("requests", "Requests by outcome", requests.clone());
        registry.register(
            "prompt_tokens",
            "Prompt tokens prefilled",
            prompt_tokens.clone(),
        );
        registry.register(
            "generation_tokens",
            "Tokens generated",
            generated_tokens.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting to be prefilled",
            queue_depth.clone(),
        );
        registry.register(
            "running_sequences",
            "Sequences in the running batch",
            running.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "From a request's arrival to its first token",
            ttft.clone(),
        );
        registry.register(
            "decode_step_seconds",
            "One batched decode step (the per-token latency of every running sequence)",
            token_latency.clone(),
        );
        Self {
            registry,
            requests,
            prompt_tokens,
            generated_tokens,
            queue_depth,
            running,
            ttft,
            token_latency,
        }
    }

    pub fn outcome(&self, outcome: &str) {
        self.requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
