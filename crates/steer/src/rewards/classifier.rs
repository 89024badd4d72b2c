//! `classifier`: a sequence-classification reward model from an HF folder
//! (`LlamaForSequenceClassification`, `Qwen2ForSequenceClassification`, ...): the raw logit
//! of one label at the last token of `template` filled with the prompt and response (MAP's
//! reward models: the single score of a one-label model, class 1 of a two-label one).
//! Texts run in right-padded batches; the logit is read at each row's last real token, as
//! transformers pools it.

use super::{Pair, Reward};
use crate::error::{Error, Result};
use ethos_model::{loader, Model};
use std::path::Path;

/// Texts per forward batch.
const BATCH: usize = 16;

pub struct Classifier {
    name: String,
    model: Model,
    label: usize,
    template: String,
}

impl Classifier {
    /// `label`: default the last (0 of one, 1 of two); `template`: `{prompt}` and `{response}`
    /// are replaced (default `{prompt}{response}`).
    pub fn load(
        name: &str,
        folder: &Path,
        label: Option<usize>,
        template: Option<&str>,
    ) -> Result<Self> {
        let model = loader::load_folder(folder, &loader::LoadOptions::default())?;
        let labels = model.config().num_labels.ok_or_else(|| {
            Error::Msg(format!(
                "{}: not a sequence classifier (its architectures name no ...ForSequenceClassification)",
                folder.display()
            ))
        })?;
        let label = label.unwrap_or(labels - 1);
        if label >= labels {
            return Err(Error::Msg(format!(
                "reward `{name}`: label {label} of a classifier with {labels} labels"
            )));
        }
        model.tokenizer()?;
        Ok(Self {
            name: name.to_string(),
            model,
            label,
            template: template.unwrap_or("{prompt}{response}").to_string(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The classifier's logits of label `self.label` for token sequences.
    pub fn score_ids(&self, seqs: &[Vec<u32>]) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(BATCH) {
            let t = chunk.iter().map(Vec::len).max().unwrap_or(0);
            if t == 0 || chunk.iter().any(Vec::is_empty) {
                return Err(Error::Msg(format!("reward `{}`: an empty text", self.name)));
            }
            let rows: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let (ids, pos) = ethos_model::scoring::right_pad(&rows, &vec![0; rows.len()]);
            let d = &self.model.decoder;
            let mut cache = d.new_cache(chunk.len(), t)?;
            let logits = d.forward_last(&ids, &pos, &mut cache, None)?.rows()?;
            out.extend(logits.iter().map(|row| row[self.label] as f64));
        }
        Ok(out)
    }
}

impl Reward for Classifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, pairs: &[Pair]) -> Result<Vec<f64>> {
        let tok = self.model.tokenizer()?;
        let seqs = pairs
            .iter()
            .map(|p| {
                let text = self
                    .template
                    .replace("{prompt}", &p.prompt)
                    .replace("{response}", &p.response);
                tok.encode_prompt(&text)
            })
            .collect::<ethos_model::Result<Vec<_>>>()?;
        self.score_ids(&seqs)
    }
}
