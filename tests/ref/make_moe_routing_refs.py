#!/usr/bin/env python3
"""Golden expert routing from transformers' DeepSeek routers, for `nn::moe::route`.

    /work/pyref/bin/python tests/ref/make_moe_routing_refs.py

Runs transformers' own router modules (DeepseekV2TopkRouter: `greedy` and
`group_limited_greedy` on softmax scores; DeepseekV3TopkRouter: `noaux_tc` on sigmoid scores plus
`e_score_correction_bias`, with and without `norm_topk_prob`) on random hidden states and writes
`tests/fixtures/moe/routing.json`: per case the config, the router logits (tokens x experts, as
the router computed them) and, per token, the chosen experts with their weights (sorted by
expert id; torch's top-k order is unspecified). Random values are continuous, so there are no ties.
"""
import json

import torch
from transformers import DeepseekV2Config, DeepseekV3Config
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

TOKENS, HIDDEN, EXPERTS = 24, 32, 16


def case(name, router, extra):
    g = torch.Generator().manual_seed(len(name) * 7919)
    with torch.no_grad():
        router.weight.copy_(torch.randn(router.weight.shape, generator=g))
        if hasattr(router, "e_score_correction_bias"):
            router.e_score_correction_bias.copy_(0.5 * torch.randn(EXPERTS, generator=g))
        h = torch.randn(TOKENS, HIDDEN, generator=g)
        logits, weights, idx = router(h)
    chosen = []
    for t in range(TOKENS):
        pairs = sorted(zip(idx[t].tolist(), weights[t].tolist()))
        chosen.append([[int(e), float(w)] for e, w in pairs])
    out = {"name": name, **extra, "logits": logits.tolist(), "chosen": chosen}
    if hasattr(router, "e_score_correction_bias"):
        out["bias"] = router.e_score_correction_bias.tolist()
    return out


def main():
    torch.manual_seed(0)
    cases = []
    for method, n_group, topk_group in [("greedy", 1, 1), ("group_limited_greedy", 4, 2)]:
        cfg = DeepseekV2Config(hidden_size=HIDDEN, n_routed_experts=EXPERTS, num_experts_per_tok=3, n_group=n_group,
                               topk_group=topk_group, topk_method=method, routed_scaling_factor=2.5)
        extra = {"topk_method": method, "scoring_func": "softmax", "n_group": n_group, "topk_group": topk_group,
                 "top_k": 3, "norm_topk_prob": False, "routed_scaling_factor": 2.5}
        cases.append(case(f"v2-{method}", DeepseekV2TopkRouter(cfg), extra))
    for norm in [True, False]:
        cfg = DeepseekV3Config(hidden_size=HIDDEN, n_routed_experts=EXPERTS, num_experts_per_tok=4, n_group=4,
                               topk_group=2, norm_topk_prob=norm, routed_scaling_factor=2.5)
        extra = {"topk_method": "noaux_tc", "scoring_func": "sigmoid", "n_group": 4, "topk_group": 2, "top_k": 4,
                 "norm_topk_prob": norm, "routed_scaling_factor": 2.5}
        cases.append(case(f"v3-noaux_tc-norm-{norm}", DeepseekV3TopkRouter(cfg), extra))
    import transformers
    with open("tests/fixtures/moe/routing.json", "w") as f:
        json.dump({"transformers": transformers.__version__, "cases": cases}, f, separators=(",", ":"))
    print([c["name"] for c in cases])


if __name__ == "__main__":
    main()
