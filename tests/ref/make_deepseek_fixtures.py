#!/usr/bin/env python3
"""Golden fixtures for tiny random DeepSeek-V2 / V3 checkpoints.

Run from the repository root:

    /work/pyref/bin/python tests/ref/make_deepseek_fixtures.py [--out tests/fixtures/tiny]

Each fixture folder (`deepseek_v2_greedy`, `deepseek_v2_group`, `deepseek_v3`,
`deepseek_v3_noqlora`) holds what a real checkpoint holds, in the official layout:

  config.json          the official shape: rope_theta + rope_scaling {"type": "yarn", ...},
                       topk_method, scoring_func, moe_layer_freq, n_routed_experts
                       (as DeepSeek's own repositories write it, not transformers 5's shape;
                       that shape is unit-tested in `config.rs`)
  model.safetensors    float32, one tensor per expert (`mlp.experts.{e}.gate_proj.weight` ...),
                       the names of the official checkpoints
  reference.json       {"input_ids": [3 sequences], "logits": [per sequence [T][vocab]]}:
                       transformers' DeepseekV2/V3ForCausalLM in f32, eager attention, each
                       sequence alone, all positions

`deepseek_v3_fp8` holds the weights of `deepseek_v3` with every projection matrix stored as
float8 e4m3 plus `weight_scale_inv` 128x128 block scales (as DeepSeek-V3 ships), one extra
multi-token-prediction layer (`num_nextn_predict_layers` = 1) that the forward pass must skip,
and reference logits computed by transformers on the dequantized weights (torch does the e4m3
conversion).

The script reloads each saved folder with transformers and checks that its logits equal the
reference, which proves the per-expert layout and the official config shape load as intended.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

SEED = 4321
SEQ_LENS = [17, 9, 25]

COMMON = dict(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=160,
    moe_intermediate_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=4,
    kv_lora_rank=32,
    qk_rope_head_dim=8,
    qk_nope_head_dim=16,
    v_head_dim=24,
    n_shared_experts=1,
    n_routed_experts=8,
    num_experts_per_tok=3,
    first_k_dense_replace=1,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    bos_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
    attention_bias=False,
    hidden_act="silu",
)

# YaRN as DeepSeek-V2/V3 configure it (mscale == mscale_all_dim gives a cos/sin factor of 1 and
# an attention-scale correction of mscale^2), shrunk to this context length.
YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 32,
        "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}
# DeepSeek-V2-Lite's own values differ: mscale 0.707, mscale_all_dim 0.707 as well; V2 (236B)
# uses mscale_all_dim 0.707 and mscale 0.707. A fixture with unequal values tests the cos/sin
# factor too.
YARN_UNEQUAL = dict(YARN, mscale=1.0, mscale_all_dim=0.5)

FIXTURES = {
    # V2, softmax scores, plain top-k, no q LoRA, YaRN with unequal mscales, weights scaled.
    "deepseek_v2_greedy": dict(arch="v2", q_lora_rank=None, topk_method="greedy", n_group=1,
                               topk_group=1, norm_topk_prob=False, routed_scaling_factor=2.0,
                               rope_theta=10000.0, rope_scaling=YARN_UNEQUAL),
    # V2, group-limited greedy over 4 groups of 2 (2 compete), with q LoRA, no rope scaling.
    "deepseek_v2_group": dict(arch="v2", q_lora_rank=48, topk_method="group_limited_greedy", n_group=4,
                              topk_group=2, norm_topk_prob=False, routed_scaling_factor=1.0,
                              rope_theta=10000.0, rope_scaling=None),
    # V3, sigmoid + correction bias, noaux_tc over 4 groups of 2, with q LoRA, YaRN.
    "deepseek_v3": dict(arch="v3", q_lora_rank=48, topk_method="noaux_tc", n_group=4, topk_group=2,
                        norm_topk_prob=True, routed_scaling_factor=2.5, rope_theta=10000.0,
                        rope_scaling=YARN),
    # V3 without q LoRA and without normalising the chosen weights.
    "deepseek_v3_noqlora": dict(arch="v3", q_lora_rank=None, topk_method="noaux_tc", n_group=2,
                                topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.5,
                                rope_theta=10000.0, rope_scaling=None),
}


def hf_config(spec):
    """The transformers config object for `spec`."""
    from transformers import DeepseekV2Config, DeepseekV3Config

    kw = dict(COMMON)
    kw.update(q_lora_rank=spec["q_lora_rank"], n_group=spec["n_group"], topk_group=spec["topk_group"],
              norm_topk_prob=spec["norm_topk_prob"], routed_scaling_factor=spec["routed_scaling_factor"])
    rope = {"rope_type": "default", "rope_theta": spec["rope_theta"]}
    if spec["rope_scaling"] is not None:
        rope = {k: v for k, v in spec["rope_scaling"].items() if k != "type"}
        rope.update(rope_type="yarn", rope_theta=spec["rope_theta"])
    kw["rope_parameters"] = rope
    if spec["arch"] == "v2":
        cfg = DeepseekV2Config(topk_method=spec["topk_method"], **kw)
    else:
        cfg = DeepseekV3Config(**kw)
    cfg._attn_implementation = "eager"
    return cfg


def official_config(spec, mtp_layers=0):
    """config.json as DeepSeek's repositories write it."""
    v3 = spec["arch"] == "v3"
    c = dict(COMMON)
    c.update(
        architectures=["DeepseekV3ForCausalLM" if v3 else "DeepseekV2ForCausalLM"],
        model_type="deepseek_v3" if v3 else "deepseek_v2",
        q_lora_rank=spec["q_lora_rank"],
        topk_method=spec["topk_method"],
        scoring_func="sigmoid" if v3 else "softmax",
        n_group=spec["n_group"],
        topk_group=spec["topk_group"],
        norm_topk_prob=spec["norm_topk_prob"],
        routed_scaling_factor=spec["routed_scaling_factor"],
        moe_layer_freq=1,
        rope_theta=spec["rope_theta"],
        rope_scaling=spec["rope_scaling"],
        torch_dtype="float32",
    )
    if v3:
        c["num_nextn_predict_layers"] = mtp_layers
    else:
        c["aux_loss_alpha"] = 0.001
        c["seq_aux"] = True
    return c


def randomize_(model, gen):
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if pname.endswith("norm.weight") or "layernorm" in pname:
                vals = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            elif "embed_tokens" in pname or "lm_head" in pname:
                vals = 0.5 * torch.randn(p.shape, generator=gen)
            elif pname.endswith("gate.weight"):
                # router: loud enough that the routing differs between tokens
                vals = 0.5 * torch.randn(p.shape, generator=gen)
            else:
                vals = 0.15 * torch.randn(p.shape, generator=gen)
            p.copy_(vals.to(p.dtype))
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                # negative and positive: the case where masking with 0 instead of -inf goes wrong
                buf.copy_(0.3 * torch.randn(buf.shape, generator=gen))


def official_state_dict(model, cfg):
    """transformers 5 keeps experts fused; the official checkpoints have one tensor per expert."""
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().to(torch.float32).contiguous()
        if k.endswith("mlp.experts.gate_up_proj"):
            pre = k[: -len("gate_up_proj")]
            i = cfg.moe_intermediate_size
            for e in range(v.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = v[e, :i].clone()
                out[f"{pre}{e}.up_proj.weight"] = v[e, i:].clone()
        elif k.endswith("mlp.experts.down_proj"):
            pre = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = v[e].clone()
        else:
            out[k] = v
    return out


def f32_list(arr):
    return [float(np.format_float_positional(np.float32(v), unique=True, trim="-")) for v in arr]


def run_logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32).numpy()


def reload_check(folder, ref, cls):
    m = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    d = 0.0
    for ids, lg in zip(ref["input_ids"], ref["logits"]):
        d = max(d, float(np.abs(run_logits(m, ids) - np.asarray(lg, dtype=np.float32)).max()))
    return d


# ---------------------------------------------------------------- FP8


BLOCK = 128


def fp8_quantize(w):
    """Blockwise e4m3 as DeepSeek-V3 ships: scale_inv[i, j] covers rows 128i.., columns 128j..;
    the stored value is w / scale_inv, so w ~= fp8 * scale_inv."""
    rows, cols = w.shape
    br, bc = math.ceil(rows / BLOCK), math.ceil(cols / BLOCK)
    scale = torch.empty(br, bc, dtype=torch.float32)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(br):
        for j in range(bc):
            blk = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            s = float(blk.abs().max()) / 448.0
            s = s if s > 0 else 1.0
            scale[i, j] = s
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = (blk / s).to(torch.float8_e4m3fn)
    return q, scale


def fp8_dequantize(q, scale):
    rows, cols = q.shape
    full = scale.repeat_interleave(BLOCK, 0)[:rows].repeat_interleave(BLOCK, 1)[:, :cols]
    return q.to(torch.float32) * full


def is_fp8_target(name):
    # DeepSeek-V3 keeps embeddings, norms, the router and the head in bf16; projections are FP8.
    return name.endswith("proj.weight") or name.endswith("proj_with_mqa.weight")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tiny")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    import transformers
    from safetensors.torch import save_file
    from transformers import DeepseekV2ForCausalLM, DeepseekV3ForCausalLM

    print("torch", torch.__version__, "transformers", transformers.__version__)
    ok = True
    for idx, (name, spec) in enumerate(FIXTURES.items()):
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        gen = torch.Generator().manual_seed(SEED + idx)
        cfg = hf_config(spec)
        cls = DeepseekV3ForCausalLM if spec["arch"] == "v3" else DeepseekV2ForCausalLM
        model = cls(cfg).to(torch.float32).eval()
        randomize_(model, gen)
        rng = np.random.default_rng(SEED + 100 + idx)
        input_ids = [[int(x) for x in rng.integers(0, cfg.vocab_size, size=n)] for n in SEQ_LENS]
        logits = [run_logits(model, ids) for ids in input_ids]
        ref = {"input_ids": input_ids, "logits": [[f32_list(r) for r in l] for l in logits]}
        sd = official_state_dict(model, cfg)
        save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(official_config(spec), f, indent=1)
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))
        d = reload_check(folder, ref, cls)
        size = sum(os.path.getsize(os.path.join(folder, x)) for x in os.listdir(folder))
        print(f"{name}: max|logit| {max(float(np.abs(l).max()) for l in logits):.2f}, reload diff {d:.2e}, "
              f"{size / 1e6:.2f} MB")
        ok &= d <= 1e-5

        if name == "deepseek_v3":
            # FP8 copy: quantize, compute the reference on the dequantized weights.
            fp8_folder = os.path.join(args.out, "deepseek_v3_fp8")
            os.makedirs(fp8_folder, exist_ok=True)
            stored, deq = {}, {}
            for k, v in sd.items():
                if is_fp8_target(k):
                    q, s = fp8_quantize(v)
                    stored[k] = q
                    stored[k.replace(".weight", ".weight_scale_inv")] = s
                    deq[k] = fp8_dequantize(q, s)
                else:
                    stored[k] = v
                    deq[k] = v
            # One multi-token-prediction layer after the last block (its weights are not used).
            n = cfg.num_hidden_layers
            for k, v in list(sd.items()):
                if k.startswith(f"model.layers.{n - 1}."):
                    stored[k.replace(f"model.layers.{n - 1}.", f"model.layers.{n}.")] = torch.zeros_like(v)
            stored[f"model.layers.{n}.eh_proj.weight"] = torch.zeros(cfg.hidden_size, 2 * cfg.hidden_size)
            save_file(stored, os.path.join(fp8_folder, "model.safetensors"), metadata={"format": "pt"})
            oc = official_config(spec, mtp_layers=1)
            oc["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                         "quant_method": "fp8", "weight_block_size": [BLOCK, BLOCK]}
            with open(os.path.join(fp8_folder, "config.json"), "w") as f:
                json.dump(oc, f, indent=1)
            fused = {}
            for k, v in model.state_dict().items():
                fused[k] = v
            # Load the dequantized weights into the transformers model (fused expert layout).
            i = cfg.moe_intermediate_size
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if k.endswith("mlp.experts.gate_up_proj"):
                        pre = k[: -len("gate_up_proj")]
                        for e in range(v.shape[0]):
                            v[e, :i] = deq[f"{pre}{e}.gate_proj.weight"]
                            v[e, i:] = deq[f"{pre}{e}.up_proj.weight"]
                    elif k.endswith("mlp.experts.down_proj"):
                        pre = k[: -len("down_proj")]
                        for e in range(v.shape[0]):
                            v[e] = deq[f"{pre}{e}.down_proj.weight"]
                    elif k in deq:
                        v.copy_(deq[k])
            fp8_logits = [run_logits(model, ids) for ids in input_ids]
            change = max(float(np.abs(a - b).max()) for a, b in zip(fp8_logits, logits))
            ref8 = {"input_ids": input_ids, "logits": [[f32_list(r) for r in l] for l in fp8_logits]}
            with open(os.path.join(fp8_folder, "reference.json"), "w") as f:
                json.dump(ref8, f, separators=(",", ":"))
            print(f"deepseek_v3_fp8: FP8 rounding moves the logits by up to {change:.3f}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
