//! `nn::moe::route` against transformers' own DeepSeek routers (DeepseekV2TopkRouter for
//! `greedy` and `group_limited_greedy`, DeepseekV3TopkRouter for `noaux_tc` with and without
//! `norm_topk_prob`), on the router logits they computed (`tests/ref/make_moe_routing_refs.py`).

mod common;

use common::*;
use ethos::model::{route_experts as route, RouterConfig, ScoringFunc, TopkMethod};

#[test]
fn routing_matches_transformers_for_every_method() {
    let v = read_json(&fixtures().join("moe/routing.json"));
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let logits: Vec<Vec<f32>> = serde_json::from_value(c["logits"].clone()).unwrap();
        let n = logits[0].len();
        let cfg = RouterConfig {
            method: TopkMethod::parse(c["topk_method"].as_str().unwrap()).unwrap(),
            scoring: ScoringFunc::parse(c["scoring_func"].as_str().unwrap()).unwrap(),
            n_experts: n,
            top_k: c["top_k"].as_u64().unwrap() as usize,
            n_group: c["n_group"].as_u64().unwrap() as usize,
            topk_group: c["topk_group"].as_u64().unwrap() as usize,
            norm_topk_prob: c["norm_topk_prob"].as_bool().unwrap(),
            routed_scaling_factor: c["routed_scaling_factor"].as_f64().unwrap() as f32,
        };
        let bias: Option<Vec<f32>> = c
            .get("bias")
            .map(|b| serde_json::from_value(b.clone()).unwrap());
        let flat: Vec<f32> = logits.concat();
        let got = route(&flat, bias.as_deref(), &cfg).unwrap();
        let want: Vec<Vec<(u32, f32)>> = serde_json::from_value(c["chosen"].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{}: tokens routed", c["name"]);
        for (t, (g, w)) in got.iter().zip(&want).enumerate() {
            let ids = |v: &Vec<(u32, f32)>| v.iter().map(|p| p.0).collect::<Vec<_>>();
            assert_eq!(ids(g), ids(w), "{} token {t}: experts", c["name"]);
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (a.1 - b.1).abs() <= 1e-6 + 1e-5 * b.1.abs(),
                    "{} token {t}: weight {} vs {}",
                    c["name"],
                    a.1,
                    b.1
                );
            }
        }
    }
}
