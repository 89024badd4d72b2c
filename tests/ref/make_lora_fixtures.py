#!/usr/bin/env python3
"""LoRA adapters made by the `peft` library on the tiny random bases, with golden logits.

Run from the repository root (after tests/ref/make_tiny_fixtures.py and
make_deepseek_fixtures.py, whose bases it reads from tests/fixtures/tiny):

    /work/pyref/bin/python tests/ref/make_lora_fixtures.py [--out tests/fixtures/lora] \
        [--llama-cpp DIR]

For each case it writes, under <out>/<case>/:

  <adapter>/adapter_config.json, adapter_model.safetensors   (PEFT save_pretrained)
  reference.json   {"base": "<tiny fixture>", "adapters": [[name, scale], ...],
                    "input_ids": [ids], "logits": [[T][vocab]]}
                   transformers + peft, f32, all positions, adapters unmerged.

Cases: every architecture with one adapter (ranks, alpha and rsLoRA vary; the MLP is a target
on all but DeepSeek, whose latent-attention projections are), and for Llama two adapters combined at
scales 0.5 and 1.0 with PEFT's `add_weighted_adapter(..., combination_type="cat")`.
With --llama-cpp, llama.cpp's `convert_lora_to_gguf.py` also converts Llama's first adapter
to <out>/llama/a.gguf.

Each adapter's B matrix is random (init_lora_weights=False), so that it changes the logits.
The script checks that merged weights (`merge_and_unload`) give the unmerged logits to 1e-4.
"""

import argparse
import json
import os
import subprocess
import sys

import torch

SEED = 2026
LLAMA_MLP = ["gate_proj", "up_proj", "down_proj"]
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
# DeepSeek: the latent-attention projections (peft under transformers 5 maps MLP names on a
# mixture-of-experts model to the routed experts' stacked parameters, which ethos refuses).
MLA = ["q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]

# case: (base fixture, [(adapter name, LoraConfig kwargs)], combination weights or None)
CASES = {
    "llama": (
        "llama",
        [
            ("a", dict(r=4, lora_alpha=8, target_modules=ATTN + LLAMA_MLP)),
            ("b", dict(r=8, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"])),
        ],
        [0.5, 1.0],
    ),
    "mistral": ("mistral", [("a", dict(r=2, lora_alpha=16, target_modules=ATTN + LLAMA_MLP))], None),
    "qwen2": ("qwen2", [("a", dict(r=6, lora_alpha=6, use_rslora=True, target_modules="all-linear"))], None),
    "qwen3": ("qwen3", [("a", dict(r=4, lora_alpha=32, target_modules=ATTN + LLAMA_MLP))], None),
    "gemma3": ("gemma3", [("a", dict(r=8, lora_alpha=16, target_modules="all-linear"))], None),
    "deepseek_v3": ("deepseek_v3", [("a", dict(r=4, lora_alpha=8, target_modules=MLA))], None),
    "deepseek_v2": ("deepseek_v2_greedy", [("a", dict(r=4, lora_alpha=4, use_rslora=True, target_modules=MLA))], None),
}


def load_base(folder):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/lora")
    ap.add_argument("--bases", default="tests/fixtures/tiny")
    ap.add_argument("--llama-cpp", default=None)
    args = ap.parse_args()

    from peft import LoraConfig, get_peft_model

    for case, (base_name, adapters, weights) in CASES.items():
        torch.manual_seed(SEED)
        base_dir = os.path.join(args.bases, base_name)
        ids = json.load(open(os.path.join(base_dir, "reference.json")))["input_ids"][0]
        out = os.path.join(args.out, case)
        os.makedirs(out, exist_ok=True)
        model = None
        for name, kw in adapters:
            cfg = LoraConfig(init_lora_weights=False, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **kw)
            if model is None:
                model = get_peft_model(load_base(base_dir), cfg, adapter_name=name)
            else:
                model.add_adapter(name, cfg)
            model.save_pretrained(out, selected_adapters=[name])
        # save_pretrained writes the first ("default"-less) adapter at the top and others in
        # subfolders; move every adapter to its own folder.
        for name, _ in adapters:
            src = out if os.path.exists(os.path.join(out, "adapter_config.json")) and name == adapters[0][0] else os.path.join(out, name)
            dst = os.path.join(out, name)
            if src != dst:
                os.makedirs(dst, exist_ok=True)
                for f in ("adapter_config.json", "adapter_model.safetensors"):
                    os.replace(os.path.join(src, f), os.path.join(dst, f))
        for f in ("README.md",):
            p = os.path.join(out, f)
            if os.path.exists(p):
                os.remove(p)
        for name, _ in adapters:
            readme = os.path.join(out, name, "README.md")
            if os.path.exists(readme):
                os.remove(readme)

        model.eval()
        refs = []
        for name, _ in adapters:
            model.set_adapter(name)
            refs.append(([[name, 1.0]], logits(model, ids)))
        if weights is not None:
            names = [n for n, _ in adapters]
            model.add_weighted_adapter(names, weights, "combined", combination_type="cat")
            model.set_adapter("combined")
            refs.append(([[n, w] for n, w in zip(names, weights)], logits(model, ids)))
        for i, (used, lg) in enumerate(refs):
            fname = "reference.json" if i == 0 else f"reference-{'+'.join(n for n, _ in used)}.json"
            with open(os.path.join(out, fname), "w") as fh:
                json.dump({"base": base_name, "adapters": used, "input_ids": ids, "logits": lg.tolist()}, fh)
        # Merging must give the same numbers (the Rust test checks --merge-lora against these).
        model.set_adapter(adapters[0][0])
        merged = model.merge_and_unload()
        diff = (logits(merged, ids) - refs[0][1]).abs().max().item()
        assert diff < 1e-4, f"{case}: merged vs unmerged {diff}"
        print(f"{case}: {len(refs)} references, merged vs unmerged {diff:.2e}")

    if args.llama_cpp:
        script = os.path.join(args.llama_cpp, "convert_lora_to_gguf.py")
        out = os.path.join(args.out, "llama")
        subprocess.check_call([
            sys.executable, script, os.path.join(out, "a"), "--base", os.path.join(args.bases, "llama"),
            "--outtype", "f32", "--outfile", os.path.join(out, "a.gguf"),
        ])
        print("llama: a.gguf")


if __name__ == "__main__":
    main()
