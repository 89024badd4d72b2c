//! A session: the model handle, the residual steering every pass goes through, and the
//! samplers of the requests it runs. Requests are values (prompt, sampling, limits); each
//! generation gets its own seeded sampler, so requests do not share state.
//!
//! Steering stays in exactly two places: the residual hook the session holds (control
//! vectors; `ControlSet::rows_hook` steers each row of a batch by its own vectors) and the
//! processors appended to a sampler's chain (`generate_with`: a palette's token weighting).

use crate::control::ControlSet;
use crate::error::Result;
pub use crate::generate::GenerateRequest;
use crate::generate::{run_generate, run_generate_batch, GenerateOptions, Generation};
use crate::sampler::{LogitsProcessor, Sampler, SamplingParams};
use ethos_model::hooks::ResidualHook;
use ethos_model::scoring::{self, ContinuationScore, Openings, ScoreOptions, ScoreRequest};
use ethos_model::Model;

pub struct Session<'m> {
    model: &'m Model,
    hook: Option<Box<dyn ResidualHook + 'm>>,
}

impl<'m> Session<'m> {
    /// An unsteered session on `model`.
    pub fn new(model: &'m Model) -> Self {
        Self { model, hook: None }
    }

    /// Every pass of the session goes through `hook` (after each decoder block).
    pub fn with_hook(mut self, hook: Box<dyn ResidualHook + 'm>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Steered by a set of control vectors, or unsteered with `None`.
    pub fn with_control(self, set: Option<&ControlSet>) -> Result<Self> {
        match set {
            Some(s) => {
                let hook = s.hook(&self.model.decoder.device)?;
                Ok(self.with_hook(Box::new(hook)))
            }
            None => Ok(self),
        }
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Whether a residual hook steers the session's passes.
    pub fn is_steered(&self) -> bool {
        self.hook.is_some()
    }

    /// The same model without the residual hook (the unsteered numbers beside the steered
    /// ones).
    pub fn unsteered(&self) -> Session<'m> {
        Session::new(self.model)
    }

    /// Generates for `req`; `on_text` receives each piece of final text as it is known (text
    /// after a stop string is never emitted).
    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        self.run(req, Sampler::new(req.sampling.clone()), on_text)
    }

    /// `generate` with `processor` appended to the sampler's chain (step 4 of its order,
    /// after the request's penalties and bias): a palette's token weighting.
    pub fn generate_with<'p>(
        &mut self,
        req: &GenerateRequest,
        processor: Box<dyn LogitsProcessor + 'p>,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let mut sampler = Sampler::new(req.sampling.clone());
        sampler.push_processor(processor);
        self.run(req, sampler, on_text)
    }

    fn run(
        &mut self,
        req: &GenerateRequest,
        sampler: Sampler<'_>,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        let model = self.model;
        run_generate(model, req, sampler, self.hook.as_deref_mut(), on_text)
    }

    /// Generates one continuation of `prompt` per entry of `sampling` (each with its own seed
    /// and sampler) in one batch: the prompt runs once and the rows decode together.
    pub fn generate_batch(
        &mut self,
        prompt: &[u32],
        sampling: &[SamplingParams],
        limits: &GenerateOptions,
    ) -> Result<Vec<Generation>> {
        let samplers = sampling.iter().map(|p| Sampler::new(p.clone())).collect();
        let model = self.model;
        run_generate_batch(model, prompt, samplers, limits, self.hook.as_deref_mut())
    }

    /// Log-probs of each request's continuations (`ethos_model::scoring::score`).
    pub fn score(
        &mut self,
        requests: &[ScoreRequest],
        opts: &ScoreOptions,
    ) -> Result<Vec<Vec<ContinuationScore>>> {
        self.score_with_openings(requests, opts, &mut Openings::default())
    }

    /// `score`, reusing the openings earlier calls ran (unsteered sessions only: a hook must
    /// see every pass, so a steered session neither reads nor fills them).
    pub fn score_with_openings(
        &mut self,
        requests: &[ScoreRequest],
        opts: &ScoreOptions,
        openings: &mut Openings,
    ) -> Result<Vec<Vec<ContinuationScore>>> {
        let decoder = &self.model.decoder;
        Ok(scoring::score_with_openings(
            decoder,
            requests,
            opts,
            openings,
            self.hook.as_deref_mut(),
        )?)
    }

    /// Per-token log-probs of a whole text (`ids[0]` is the context).
    pub fn score_text(&mut self, ids: &[u32]) -> Result<ContinuationScore> {
        let decoder = &self.model.decoder;
        Ok(scoring::score_text(decoder, ids, self.hook.as_deref_mut())?)
    }
}
