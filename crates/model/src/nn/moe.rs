//! Mixture-of-experts routing for DeepSeek-V2/V3, in one function for every method, and the
//! grouping of tokens by expert that lets each expert run one matrix product per batch.
//!
//! `route` follows DeepSeek's reference code (and transformers' routers):
//! - scores: `softmax(logits)` (V2) or `sigmoid(logits)` (V3), in f32;
//! - `greedy`: the top-k scores;
//! - `group_limited_greedy` (V2): experts form `n_group` equal groups; a group's score is its
//!   best expert's score; only the `topk_group` best groups compete (the others' scores are
//!   set to 0, as the reference does) and the top-k scores among them win, weighted by their
//!   own scores (not by 1: candle's and mistral.rs' ports rank a 0/1 mask instead);
//! - `noaux_tc` (V3): the choice adds `e_score_correction_bias` to the scores; a group's
//!   score is the sum of its two best choices; experts outside the `topk_group` best groups are
//!   excluded (-inf, not 0: with a negative bias a 0 would outrank allowed experts); the
//!   weights are the scores without the bias;
//! - weights: V3 normalises the chosen weights to sum 1 when `norm_topk_prob`, then multiplies
//!   by `routed_scaling_factor`; V2 normalises when `norm_topk_prob` (and top-k > 1), else
//!   multiplies by `routed_scaling_factor`.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopkMethod {
    Greedy,
    GroupLimitedGreedy,
    NoauxTc,
}

impl TopkMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "greedy" => Some(Self::Greedy),
            "group_limited_greedy" => Some(Self::GroupLimitedGreedy),
            "noaux_tc" => Some(Self::NoauxTc),
            _ => None,
        }
    }

    /// The config's spelling.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Greedy => "greedy",
            Self::GroupLimitedGreedy => "group_limited_greedy",
            Self::NoauxTc => "noaux_tc",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoringFunc {
    Softmax,
    Sigmoid,
}

impl ScoringFunc {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "softmax" => Some(Self::Softmax),
            "sigmoid" => Some(Self::Sigmoid),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouterConfig {
    pub method: TopkMethod,
    pub scoring: ScoringFunc,
    pub n_experts: usize,
    pub top_k: usize,
    pub n_group: usize,
    pub topk_group: usize,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f32,
}

impl RouterConfig {
    /// The invariants `route` relies on; errors name the config field.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.top_k == 0 || self.top_k > self.n_experts {
            return Err((
                "num_experts_per_tok",
                format!("{} is not in 1..={}", self.top_k, self.n_experts),
            ));
        }
        if self.n_group == 0 || !self.n_experts.is_multiple_of(self.n_group) {
            return Err((
                "n_group",
                format!(
                    "{} does not divide n_routed_experts {}",
                    self.n_group, self.n_experts
                ),
            ));
        }
        if self.topk_group == 0 || self.topk_group > self.n_group {
            return Err((
                "topk_group",
                format!("{} is not in 1..={}", self.topk_group, self.n_group),
            ));
        }
        let grouped = self.method != TopkMethod::Greedy;
        if grouped && self.top_k > self.topk_group * (self.n_experts / self.n_group) {
            return Err((
                "num_experts_per_tok",
                format!(
                    "{} exceeds the {} experts of the {} groups that compete",
                    self.top_k,
                    self.topk_group * (self.n_experts / self.n_group),
                    self.topk_group
                ),
            ));
        }
        if self.method == TopkMethod::NoauxTc && self.n_experts / self.n_group < 2 {
            return Err((
                "n_group",
                "noaux_tc scores a group by its two best experts: groups need at least 2".into(),
            ));
        }
        if !self.routed_scaling_factor.is_finite() {
            return Err(("routed_scaling_factor", "is not finite".into()));
        }
        Ok(())
    }
}

/// The `k` largest `values` (indices), ties to the smaller index.
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Routes each token (a row of `logits`, `tokens x n_experts`) to its experts: per token,
/// `(expert, weight)` pairs sorted by expert. `bias` is V3's `e_score_correction_bias`
/// (required for `noaux_tc`, unused otherwise).
pub fn route(
    logits: &[f32],
    bias: Option<&[f32]>,
    cfg: &RouterConfig,
) -> Result<Vec<Vec<(u32, f32)>>> {
    let n = cfg.n_experts;
    if n == 0 || !logits.len().is_multiple_of(n) {
        return Err(Error::Msg(format!(
            "router logits: {} values are not rows of {n} experts",
            logits.len()
        )));
    }
    cfg.validate()
        .map_err(|(field, msg)| Error::Msg(format!("router config `{field}`: {msg}")))?;
    let bias = match (cfg.method, bias) {
        (TopkMethod::NoauxTc, Some(b)) if b.len() == n => Some(b),
        (TopkMethod::NoauxTc, Some(b)) => {
            return Err(Error::Msg(format!(
                "e_score_correction_bias has {} entries, there are {n} experts",
                b.len()
            )))
        }
        (TopkMethod::NoauxTc, None) => {
            return Err(Error::Msg(
                "noaux_tc routing needs e_score_correction_bias".into(),
            ))
        }
        _ => None,
    };
    let per_group = n / cfg.n_group;
    let mut out = Vec::with_capacity(logits.len() / n);
    for row in logits.chunks(n) {
        let scores: Vec<f32> = match cfg.scoring {
            ScoringFunc::Softmax => {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = row.iter().map(|x| (x - m).exp()).collect();
                let s: f32 = e.iter().sum();
                e.iter().map(|x| x / s).collect()
            }
            ScoringFunc::Sigmoid => row.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
        };
        let chosen = match cfg.method {
            TopkMethod::Greedy => top_indices(&scores, cfg.top_k),
            TopkMethod::GroupLimitedGreedy => {
                let group_scores: Vec<f32> = scores
                    .chunks(per_group)
                    .map(|g| g.iter().copied().fold(f32::NEG_INFINITY, f32::max))
                    .collect();
                let groups = top_indices(&group_scores, cfg.topk_group);
                let masked: Vec<f32> = scores
                    .iter()
                    .enumerate()
                    .map(|(e, &s)| {
                        if groups.contains(&(e / per_group)) {
                            s
                        } else {
                            0.0
                        }
                    })
                    .collect();
                top_indices(&masked, cfg.top_k)
            }
            TopkMethod::NoauxTc => {
                let bias = bias.unwrap_or(&[]);
                let choice: Vec<f32> = scores.iter().zip(bias).map(|(s, b)| s + b).collect();
                let group_scores: Vec<f32> = choice
                    .chunks(per_group)
                    .map(|g| top_indices(g, 2).iter().map(|&i| g[i]).sum())
                    .collect();
                let groups = top_indices(&group_scores, cfg.topk_group);
                let masked: Vec<f32> = choice
                    .iter()
                    .enumerate()
                    .map(|(e, &c)| {
                        if groups.contains(&(e / per_group)) {
                            c
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                top_indices(&masked, cfg.top_k)
            }
        };
        let mut weights: Vec<f32> = chosen.iter().map(|&e| scores[e]).collect();
        let normalise = |w: &mut Vec<f32>| {
            let d = w.iter().sum::<f32>() + 1e-20;
            w.iter_mut().for_each(|x| *x /= d);
        };
        match cfg.method {
            TopkMethod::NoauxTc => {
                if cfg.norm_topk_prob {
                    normalise(&mut weights);
                }
                weights
                    .iter_mut()
                    .for_each(|w| *w *= cfg.routed_scaling_factor);
            }
            _ if cfg.norm_topk_prob && cfg.top_k > 1 => normalise(&mut weights),
            _ => weights
                .iter_mut()
                .for_each(|w| *w *= cfg.routed_scaling_factor),
        }
        let mut pairs: Vec<(u32, f32)> = chosen.iter().map(|&e| e as u32).zip(weights).collect();
        pairs.sort_by_key(|p| p.0);
        out.push(pairs);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(
        method: TopkMethod,
        scoring: ScoringFunc,
        top_k: usize,
        n_group: usize,
        topk_group: usize,
    ) -> RouterConfig {
        RouterConfig {
            method,
            scoring,
            n_experts: 8,
            top_k,
            n_group,
            topk_group,
            norm_topk_prob: false,
            routed_scaling_factor: 1.0,
        }
    }

    fn softmax(x: &[f32]) -> Vec<f32> {
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn greedy_takes_the_top_scores_with_their_probabilities() {
        let logits = [0.1, 2.0, -1.0, 1.5, 0.0, 0.3, 3.0, -2.0];
        let r = route(
            &logits,
            None,
            &cfg(TopkMethod::Greedy, ScoringFunc::Softmax, 2, 1, 1),
        )
        .unwrap();
        let p = softmax(&logits);
        assert_eq!(r[0], vec![(1, p[1]), (6, p[6])]);
    }

    /// Groups of two: (0,1) (2,3) (4,5) (6,7). The best single expert is 6, but with
    /// topk_group 2 the groups are the two whose best expert is highest: (6,7) and (2,3). The
    /// weights are the router probabilities. candle's port ranks the groups' 0/1 mask and
    /// gives weight 1; it would also pick groups by expert scores, not group scores.
    #[test]
    fn group_limited_greedy_keeps_the_best_groups_and_real_weights() {
        let logits = [1.0, 1.1, 2.0, 1.9, 0.5, 0.2, 3.0, -1.0];
        let r = route(
            &logits,
            None,
            &cfg(
                TopkMethod::GroupLimitedGreedy,
                ScoringFunc::Softmax,
                3,
                4,
                2,
            ),
        )
        .unwrap();
        let p = softmax(&logits);
        // Top 3 within groups {2,3} and {6,7}: 6, 2, 3 (not 1 or 0, which outrank 7).
        assert_eq!(r[0], vec![(2, p[2]), (3, p[3]), (6, p[6])]);
        assert!(r[0].iter().all(|&(_, w)| w < 1.0));
    }

    /// noaux_tc: a group scores the sum of its top two choices (not its max): group (0,1) has
    /// the single best expert but the lower sum. Excluded experts are -inf: with a negative
    /// bias every allowed choice is below 0, where zero-filling (as mistral.rs and older
    /// transformers do) would pick an excluded expert. Weights are sigmoid scores, no bias.
    #[test]
    fn noaux_tc_sums_top_two_per_group_and_excludes_with_minus_infinity() {
        let logits = [4.0, -4.0, 1.0, 1.0, -3.0, -3.0, -3.0, -3.0];
        let bias = [-2.0; 8];
        let r = route(
            &logits,
            Some(&bias),
            &cfg(TopkMethod::NoauxTc, ScoringFunc::Sigmoid, 2, 4, 1),
        )
        .unwrap();
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        // Group sums of the top two choices (score - 2): (0,1) -1.02 - 1.98 = -3.0,
        // (2,3) 2 x -1.27 = -2.54, (4,5) and (6,7) 2 x -1.95: group (2,3) wins.
        assert_eq!(r[0], vec![(2, sig(1.0)), (3, sig(1.0))]);
    }

    #[test]
    fn weights_normalise_or_scale_as_each_version_does() {
        let logits = [0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0];
        let mut c = cfg(TopkMethod::NoauxTc, ScoringFunc::Sigmoid, 2, 2, 2);
        c.norm_topk_prob = true;
        c.routed_scaling_factor = 2.5;
        let r = route(&logits, Some(&[0.0; 8]), &c).unwrap();
        let total: f32 = r[0].iter().map(|p| p.1).sum();
        assert!((total - 2.5).abs() < 1e-5, "V3: normalised, then scaled");
        let mut c = cfg(TopkMethod::Greedy, ScoringFunc::Softmax, 2, 1, 1);
        c.norm_topk_prob = true;
        c.routed_scaling_factor = 2.5;
        let total: f32 = route(&logits, None, &c).unwrap()[0]
            .iter()
            .map(|p| p.1)
            .sum();
        assert!(
            (total - 1.0).abs() < 1e-6,
            "V2: normalised instead of scaled"
        );
    }

    #[test]
    fn bad_configs_and_inputs_are_errors() {
        let c = cfg(
            TopkMethod::GroupLimitedGreedy,
            ScoringFunc::Softmax,
            2,
            3,
            1,
        );
        assert!(route(&[0.0; 8], None, &c)
            .unwrap_err()
            .to_string()
            .contains("n_group"));
        let c = cfg(TopkMethod::NoauxTc, ScoringFunc::Sigmoid, 2, 4, 2);
        assert!(route(&[0.0; 8], None, &c)
            .unwrap_err()
            .to_string()
            .contains("e_score_correction_bias"));
        assert!(route(&[0.0; 8], Some(&[0.0; 7]), &c)
            .unwrap_err()
            .to_string()
            .contains("7 entries"));
        let c = cfg(TopkMethod::Greedy, ScoringFunc::Softmax, 9, 1, 1);
        assert!(route(&[0.0; 8], None, &c)
            .unwrap_err()
            .to_string()
            .contains("num_experts_per_tok"));
        let c = cfg(TopkMethod::Greedy, ScoringFunc::Softmax, 2, 1, 1);
        assert!(route(&[0.0; 9], None, &c)
            .unwrap_err()
            .to_string()
            .contains("rows of 8"));
        assert_eq!(TopkMethod::parse("sinkhorn"), None);
        assert_eq!(ScoringFunc::parse("tanh"), None);
    }
}
