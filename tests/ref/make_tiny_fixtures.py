#!/usr/bin/env python3
"""Golden fixtures for tiny random Llama / Mistral / Qwen2 / Gemma 3 / Qwen3 models.

Run from the repository root:

    /work/pyref/bin/python tests/ref/make_tiny_fixtures.py [--out tests/fixtures/tiny] [--no-check]

For each of "llama", "mistral", "qwen2", "gemma3", "qwen3" this writes, under <out>/<name>/:

  config.json, generation_config.json, model.safetensors   (HF save_pretrained, float32)
  model-f32.gguf      F32 GGUF laid out like llama.cpp's convert_hf_to_gguf.py
                      (Q/K rows permuted for arch "llama", rope_freqs.weight for llama3 scaling)
  reference.json      {"input_ids": [[17 ids], [9 ids], [25 ids]],
                       "logits": [per sequence [T][vocab] float32 logits]}
                      each sequence run alone (batch 1, no padding, all positions).

Afterwards it verifies every GGUF (GGUFReader shapes + a transformers GGUF reload whose
logits must match reference.json to 1e-4) unless --no-check is given.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

SEED = 1234
SEQ_LENS = [17, 9, 25]

COMMON = dict(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
    attention_dropout=0.0,
)

LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def rope_kwargs(theta, scaling):
    """transformers >= 5 uses `rope_parameters`; 4.x uses rope_theta / rope_scaling."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        params = {"rope_type": "default", "rope_theta": theta}
        if scaling is not None:
            params = dict(scaling)
            params["rope_theta"] = theta
        return {"rope_parameters": params}
    kw = {"rope_theta": theta}
    if scaling is not None:
        kw["rope_scaling"] = dict(scaling)
    return kw


# Gemma 3: sliding layers 0, 1, 3 and a global layer 2 (pattern 3, which GGUF can express),
# a 5-token window (the 17- and 25-token sequences cross it), two rotary bases, head_dim 32
# (q wider than hidden), tied head. query_pre_attn_scalar equals head_dim because llama.cpp's
# GGUF does not carry it (the GGUF reload must agree); its parsing is unit-tested.
GEMMA3 = dict(
    COMMON,
    num_hidden_layers=4,
    head_dim=32,
    query_pre_attn_scalar=32,
    rms_norm_eps=1e-6,
    pad_token_id=0,
    sliding_window=5,
    layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
    tie_word_embeddings=True,
    hidden_activation="gelu_pytorch_tanh",
)
GEMMA3_THETA, GEMMA3_LOCAL_THETA = 1000000.0, 10000.0

# Qwen3: head_dim 32 set independently of hidden/heads (q_out = 4*32 = 128 != hidden 64, k/v out
# 2*32 = 64), per-head RMSNorm on q and k (q_norm/k_norm, weight [head_dim]), no q/k/v bias,
# untied head, NeoX rotary (no Q/K row permutation in the GGUF, as qwen2).
QWEN3 = dict(
    COMMON,
    head_dim=32,
    rms_norm_eps=1e-6,
    attention_bias=False,
    tie_word_embeddings=False,
    use_sliding_window=False,
    sliding_window=None,
)


def build_config(name):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    if name == "gemma3":
        from transformers import Gemma3TextConfig
        import transformers

        if int(transformers.__version__.split(".")[0]) >= 5:
            rope = {"rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": GEMMA3_THETA},
                "sliding_attention": {"rope_type": "default", "rope_theta": GEMMA3_LOCAL_THETA},
            }}
        else:
            rope = {"rope_theta": GEMMA3_THETA, "rope_local_base_freq": GEMMA3_LOCAL_THETA}
        return Gemma3TextConfig(**GEMMA3, **rope)

    if name == "llama":
        return LlamaConfig(
            **COMMON,
            tie_word_embeddings=True,
            attention_bias=False,
            mlp_bias=False,
            **rope_kwargs(10000.0, LLAMA3_SCALING),
        )
    if name == "mistral":
        return MistralConfig(
            **COMMON,
            tie_word_embeddings=False,
            sliding_window=None,
            **rope_kwargs(10000.0, None),
        )
    if name == "qwen3":
        from transformers import Qwen3Config

        return Qwen3Config(**QWEN3, **rope_kwargs(1000000.0, None))
    if name == "qwen2":
        return Qwen2Config(
            **COMMON,
            tie_word_embeddings=False,
            use_sliding_window=False,
            sliding_window=None,
            **rope_kwargs(1000000.0, None),
        )
    raise ValueError(name)


def model_class(name):
    from transformers import Gemma3ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM

    if name == "qwen3":
        from transformers import Qwen3ForCausalLM

        return Qwen3ForCausalLM
    return {"llama": LlamaForCausalLM, "mistral": MistralForCausalLM, "qwen2": Qwen2ForCausalLM,
            "gemma3": Gemma3ForCausalLM}[name]


def randomize_(model, gen):
    """Deterministic, deliberately 'loud' init so the logits are discriminative."""
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if pname.endswith("norm.weight") or "layernorm" in pname:
                vals = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            elif pname.endswith(".bias"):
                vals = 0.2 * torch.randn(p.shape, generator=gen)
            elif "embed_tokens" in pname:
                vals = 0.5 * torch.randn(p.shape, generator=gen)
            elif "lm_head" in pname:
                vals = 0.5 * torch.randn(p.shape, generator=gen)
            else:
                vals = 0.1 * torch.randn(p.shape, generator=gen)
            p.copy_(vals.to(p.dtype))


def f32_str_list(arr):
    """float32 values as Python floats with the shortest repr that round-trips float32."""
    return [float(np.format_float_positional(np.float32(v), unique=True, trim="-")) for v in arr]


def run_logits(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].to(torch.float32).numpy()


# ---------------------------------------------------------------- GGUF (llama.cpp layout)


def lcpp_permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def llama3_rope_factors(cfg_head_dim, theta, scaling):
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors (rope_freqs)."""
    base = theta
    dim = cfg_head_dim
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = scaling.get("factor", 8.0)
    low_freq_factor = scaling.get("low_freq_factor", 1.0)
    high_freq_factor = scaling.get("high_freq_factor", 4.0)
    old_context_len = scaling.get("original_max_position_embeddings", 8192)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    assert low_freq_wavelen != high_freq_wavelen
    rope_factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            rope_factors.append(1)
        elif wavelen > low_freq_wavelen:
            rope_factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            rope_factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array([float(x) for x in rope_factors], dtype=np.float32)


HF_TO_GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",  # qwen3 only (others have none)
    "self_attn.k_norm.weight": "attn_k_norm.weight",  # qwen3 only
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

# Gemma 3 (conversion/gemma.py): four block norms and q/k norms, each stored as 1 + w.
HF_TO_GGUF_GEMMA3 = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}


def write_gguf_gemma3(cfg, state_dict, path):
    import gguf

    w = gguf.GGUFWriter(path, "gemma3")
    w.add_name("ethos-tiny-gemma3")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(GEMMA3_THETA)
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_sliding_window(cfg.sliding_window)
    w.add_uint32("gemma3.attention.sliding_window_pattern", 3)
    w.add_float32("gemma3.rope.freq_base_swa", GEMMA3_LOCAL_THETA)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in state_dict.items()}
    plus_one = lambda k, t: t + 1.0 if k.endswith("norm.weight") else t
    tensors = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(cfg.num_hidden_layers):
        for hf_suffix, g_suffix in HF_TO_GGUF_GEMMA3.items():
            key = f"model.layers.{i}.{hf_suffix}"
            tensors.append((f"blk.{i}.{g_suffix}", plus_one(key, sd[key])))
    tensors.append(("output_norm.weight", plus_one("model.norm.weight", sd["model.norm.weight"])))
    for tname, t in tensors:
        w.add_tensor(tname, np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return [(n, t.shape) for n, t in tensors]


def write_gguf(name, cfg, state_dict, path, scaling, theta):
    import gguf

    arch = name if name in ("qwen2", "qwen3") else "llama"
    n_head = cfg.num_attention_heads
    n_kv = cfg.num_key_value_heads
    head_dim = cfg.head_dim if arch == "qwen3" else cfg.hidden_size // n_head
    tied = bool(cfg.tie_word_embeddings)

    w = gguf.GGUFWriter(path, arch)
    # order as in convert_hf_to_gguf.py: general.* then hparams
    w.add_name(f"ethos-tiny-{name}")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    if arch == "qwen3":
        # TextModel.set_gguf_parameters writes key/value_length from config "head_dim"; Qwen3Model
        # (via Qwen2Model) adds no rope.dimension_count and no vocab_size (llama.cpp's n_rot then
        # defaults to key_length).
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    if arch == "llama":
        w.add_vocab_size(cfg.vocab_size)
    if arch != "qwen3":
        w.add_rope_dimension_count(head_dim)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    sd = {k: v.detach().to(torch.float32).numpy() for k, v in state_dict.items()}
    tensors = []
    if scaling is not None:
        tensors.append(("rope_freqs.weight", llama3_rope_factors(head_dim, theta, scaling)))
    tensors.append(("token_embd.weight", sd["model.embed_tokens.weight"]))
    for i in range(cfg.num_hidden_layers):
        prefix = f"model.layers.{i}."
        for hf_suffix, g_suffix in HF_TO_GGUF_LAYER.items():
            key = prefix + hf_suffix
            if key not in sd:
                continue
            t = sd[key]
            if arch == "llama" and hf_suffix == "self_attn.q_proj.weight":
                t = lcpp_permute(t, n_head, n_head)
            elif arch == "llama" and hf_suffix == "self_attn.k_proj.weight":
                t = lcpp_permute(t, n_head, n_kv)
            tensors.append((f"blk.{i}.{g_suffix}", t))
    tensors.append(("output_norm.weight", sd["model.norm.weight"]))
    if not tied:
        tensors.append(("output.weight", sd["lm_head.weight"]))

    for tname, t in tensors:
        w.add_tensor(tname, np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return [(n, t.shape) for n, t in tensors]


# ---------------------------------------------------------------- checks


def check_gguf(folder, expected, ref):
    import gguf
    from transformers import AutoModelForCausalLM

    r = gguf.GGUFReader(os.path.join(folder, "model-f32.gguf"))
    got = {t.name: (tuple(int(x) for x in t.shape), t.tensor_type) for t in r.tensors}
    for n, shp in expected:
        # GGUF stores ne[] innermost-first, i.e. reversed numpy shape
        assert n in got, n
        assert got[n][0] == tuple(reversed(shp)), (n, got[n][0], shp)
        assert got[n][1] == gguf.GGMLQuantizationType.F32, (n, got[n][1])
    assert len(got) == len(expected), (sorted(got), [n for n, _ in expected])
    kv = {f.name: f for f in r.fields.values()}
    print(f"  GGUFReader ok: {len(got)} tensors, {len(kv)} kv")

    from transformers import AutoConfig

    results = {}
    variants = [
        # config read purely from the GGUF metadata (what transformers infers)
        ("gguf-config", {}),
        # weights from the GGUF, config from config.json. Needed for llama3 rope scaling
        # (transformers ignores rope_freqs.weight) and for qwen2 (no <arch>.vocab_size key
        # and no tokenizer in the GGUF, so transformers cannot infer vocab_size).
        ("hf-config", {"config": AutoConfig.from_pretrained(folder)}),
    ]
    for label, extra in variants:
        try:
            m = AutoModelForCausalLM.from_pretrained(
                folder, gguf_file="model-f32.gguf", dtype=torch.float32, attn_implementation="eager", **extra
            )
            m.eval()
            maxdiff = 0.0
            for ids, lg in zip(ref["input_ids"], ref["logits"]):
                out = run_logits(m, ids)
                maxdiff = max(maxdiff, float(np.abs(out - np.asarray(lg, dtype=np.float32)).max()))
            results[label] = maxdiff
            print(f"  transformers GGUF reload [{label}]: max |dlogit| = {maxdiff:.3e} ->",
                  "PASS" if maxdiff <= 1e-4 else "FAIL")
        except Exception as e:  # noqa: BLE001
            results[label] = f"error: {type(e).__name__}: {e}"
            print(f"  transformers GGUF reload [{label}]: ERROR {type(e).__name__}: {e}")
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tiny")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--only", help="comma-separated fixture names (default: all)")
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    import transformers

    print("torch", torch.__version__, "transformers", transformers.__version__)
    summary = {}
    all_names = ["llama", "mistral", "qwen2", "gemma3", "qwen3"]  # append only: idx seeds the RNGs
    names = list(all_names)
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    for name in names:
        idx = all_names.index(name)
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        torch.manual_seed(SEED + idx)
        gen = torch.Generator().manual_seed(SEED + idx)

        cfg = build_config(name)
        cfg._attn_implementation = "eager"
        model = model_class(name)(cfg).to(torch.float32)
        model.eval()
        randomize_(model, gen)
        if cfg.tie_word_embeddings and name != "gemma3":
            assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()

        model.save_pretrained(folder, safe_serialization=True)

        rng = np.random.default_rng(SEED + 100 + idx)
        input_ids = [[int(x) for x in rng.integers(0, cfg.vocab_size, size=n)] for n in SEQ_LENS]
        logits = [run_logits(model, ids) for ids in input_ids]
        maxabs = max(float(np.abs(l).max()) for l in logits)
        std = float(np.concatenate([l.ravel() for l in logits]).std())
        ref = {"input_ids": input_ids, "logits": [[f32_str_list(row) for row in l] for l in logits]}
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(ref, f, separators=(",", ":"))

        if name == "llama":
            scaling, theta = LLAMA3_SCALING, 10000.0
        elif name == "mistral":
            scaling, theta = None, 10000.0
        else:
            scaling, theta = None, 1000000.0
        gguf_path = os.path.join(folder, "model-f32.gguf")
        if name == "gemma3":
            expected = write_gguf_gemma3(cfg, model.state_dict(), gguf_path)
        else:
            expected = write_gguf(name, cfg, model.state_dict(), gguf_path, scaling, theta)

        total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"{name}: max|logit|={maxabs:.3f} std={std:.3f} folder={total/1e6:.3f} MB")
        assert total < (2.0e6 if name == "gemma3" else 1.5e6), f"{folder} too large: {total}"
        if scaling is not None:
            print("  rope_freqs factors:", llama3_rope_factors(16, theta, scaling).tolist())
        summary[name] = {"max_abs_logit": maxabs, "bytes": total}
        if not args.no_check:
            with open(os.path.join(folder, "reference.json")) as f:
                ref_loaded = json.load(f)
            summary[name]["reload"] = check_gguf(folder, expected, ref_loaded)
    print(json.dumps(summary, indent=1))
    if not args.no_check:
        for name, info in summary.items():
            ok = any(isinstance(v, float) and v <= 1e-4 for v in info["reload"].values())
            print(f"{name}: GGUF reload check {'PASS' if ok else 'FAIL'}")
            if not ok:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
