#!/usr/bin/env python3
"""The exact model steered: HF transformers in f32 on SmolLM2's dequantized weights, each
control vector added to the residual stream after its layer as llama.cpp adds it.

    /work/pyref/bin/python tests/ref/make_control_exact_refs.py --hf /path/to/smollm2-f32-hf

(`--hf`: the f32 HF folder `make_smollm2_refs.py --export-hf` writes from the GGUF.)

Writes tests/fixtures/control/hf_f32_steered.json: per control-vector file of
tests/fixtures/control/llamacpp_*.json, the same texts' next-token log-probs. The quantized
path's distance from llama.cpp steered is then measured against llama.cpp's own distance
from this exact model (tests/smollm2_real.rs).
"""
import argparse
import json

import numpy as np
import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM

FIX = "tests/fixtures/control"


def directions(path, hidden):
    """direction.N -> vector (llama.cpp: added to the output of 0-based block N, N >= 1)."""
    out = {}
    for t in GGUFReader(path).tensors:
        if t.name.startswith("direction."):
            v = np.array(t.data, dtype=np.float32).reshape(-1)
            assert v.shape[0] == hidden
            out[int(t.name.split(".")[1])] = torch.from_numpy(v.copy())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    args = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(args.hf, dtype=torch.float32, attn_implementation="eager").eval()
    hidden = model.config.hidden_size
    res = {"transformers_model": "SmolLM2-135M-Instruct Q4_1, dequantized, f32", "files": {}}
    for ref in ["llamacpp_cv.json", "llamacpp_cvgen.json"]:
        spec = json.load(open(f"{FIX}/{ref}"))
        dirs = directions(f"{FIX}/{spec['control_vector']}", hidden)
        scale = float(spec["scale"])
        hooks = []
        for n, v in dirs.items():
            layer = n
            if 0 <= layer < len(model.model.layers):
                def add(mod, inp, out, v=v):
                    h = out[0] if isinstance(out, tuple) else out
                    h = h + scale * v
                    return (h,) + tuple(out[1:]) if isinstance(out, tuple) else h
                hooks.append(model.model.layers[layer].register_forward_hook(add))
        texts = []
        with torch.no_grad():
            for t in spec["texts"]:
                ids = t["ids"]
                logits = model(input_ids=torch.tensor([ids])).logits[0].double()
                lp = torch.log_softmax(logits, -1)
                texts.append({"name": t["name"], "logprobs": [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)]})
        for h in hooks:
            h.remove()
        res["files"][ref] = {"control_vector": spec["control_vector"], "scale": scale, "texts": texts}
        print(ref, "done")
    with open(f"{FIX}/hf_f32_steered.json", "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
