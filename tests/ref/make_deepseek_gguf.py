#!/usr/bin/env python3
"""GGUF versions of the tiny DeepSeek fixtures, made by llama.cpp's own converter, and
llama.cpp's log-probs on them.

    /work/pyref/bin/python tests/ref/make_deepseek_gguf.py \
        --llama-cpp /work/peers/llama_cpp_python-0.3.36/vendor/llama.cpp \
        --logprobs /tmp/llamacpp_logprobs \
        --quantize /work/peers/llama.cpp-build/bin/llama-quantize

`--llama-cpp` is llama.cpp's source tree (the one inside the `llama-cpp-python` sdist on PyPI);
its `convert_hf_to_gguf.py` converts each fixture folder to `model-f32.gguf` (architecture
`deepseek2`: experts merged into 3-D tensors, `kv_b_proj` split into `attn_k_b` (transposed)
and `attn_v_b`, MQA-shaped key/value lengths). The fixtures have no tokenizer, so the
converter's `set_vocab` is replaced by a placeholder SentencePiece vocabulary of
`vocab_size` pieces (ids only matter here).

`--logprobs` is `tests/ref/llamacpp_logprobs.cpp` built against the same llama.cpp; it reads
each GGUF and writes `llamacpp.json`: the log-probs of ids[1..] of every reference sequence.
The script prints how far they are from transformers' (reference.json): llama.cpp keeps its KV
cache in f16, so they agree to about 1e-2, not 1e-5; and llama.cpp scores expert groups by the
sum of their two best experts (V3's rule) also for V2's `group_limited_greedy` (which takes the
best expert), so on `deepseek_v2_group` some tokens route differently there.
llama.cpp loads a deepseek2 GGUF without q LoRA only when it has 27 layers (V2-Lite), so
`deepseek_v3_noqlora` is converted but has no llama.cpp log-probs.

Only fixtures GGUF can express are converted: `deepseek_v2_greedy` uses unequal YaRN mscales,
which GGUF (one `yarn_log_multiplier`) cannot carry.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

NAMES = ["deepseek_v2_group", "deepseek_v3", "deepseek_v3_noqlora"]


def convert(llama_cpp, folder):
    sys.path.insert(0, os.path.join(llama_cpp, "gguf-py"))
    sys.path.insert(0, llama_cpp)
    import gguf
    import convert_hf_to_gguf as conv
    from conversion.deepseek import DeepseekV2Model

    def placeholder_vocab(self):
        n = self.hparams["vocab_size"]
        self.gguf_writer.add_tokenizer_model("llama")
        self.gguf_writer.add_tokenizer_pre("default")
        self.gguf_writer.add_token_list([f"<t{i}>" for i in range(n)])
        self.gguf_writer.add_token_scores([0.0] * n)
        self.gguf_writer.add_token_types([gguf.TokenType.NORMAL] * n)
        self.gguf_writer.add_bos_token_id(self.hparams.get("bos_token_id", 0))
        self.gguf_writer.add_eos_token_id(self.hparams.get("eos_token_id", 1))

    DeepseekV2Model.set_vocab = placeholder_vocab
    out = os.path.join(folder, "model-f32.gguf")
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", folder, "--outfile", out, "--outtype", "f32"]
    try:
        conv.main()
    finally:
        sys.argv = argv
    return out


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def llamacpp_logprobs(tool, gguf_path, ids):
    text = "\n".join(" ".join(map(str, s)) for s in ids) + "\n" + " ".join(map(str, ids[0][:2])) + "\n"
    out = subprocess.run([tool, gguf_path, "64", "2", "1"], input=text, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    rows = [[float(x) for x in line.split()[1:]] for line in out if line.startswith("logprobs")]
    assert len(rows) == len(ids), out
    return rows


def top2_sum_check(folder, got):
    """transformers with V2's group score replaced by llama.cpp's (sum of the two best experts):
    how far from llama.cpp's log-probs (the routing rule explains the gap when this is small)."""
    import torch
    import torch.nn.functional as F
    from transformers import DeepseekV2ForCausalLM
    from transformers.models.deepseek_v2 import modeling_deepseek_v2 as md

    def forward(self, hidden_states):
        h = hidden_states.view(-1, self.hidden_dim)
        logits = F.linear(h.type(torch.float32), self.weight.type(torch.float32))
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        per = self.num_experts // self.num_group
        groups = scores.view(-1, self.num_group, per).topk(2, dim=-1)[0].sum(-1)
        idx = torch.topk(groups, k=self.topk_group, dim=-1, sorted=False)[1]
        mask = torch.zeros_like(groups).scatter_(1, idx, 1)
        keep = mask.unsqueeze(-1).expand(-1, self.num_group, per).reshape(-1, self.num_experts)
        w, i = torch.topk(scores.masked_fill(~keep.bool(), 0.0), k=self.top_k, dim=-1, sorted=False)
        return logits, w * self.routed_scaling_factor, i

    original = md.DeepseekV2TopkRouter.forward
    md.DeepseekV2TopkRouter.forward = forward
    try:
        m = DeepseekV2ForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        with open(os.path.join(folder, "reference.json")) as f:
            ids_all = json.load(f)["input_ids"]
        worst = 0.0
        for ids, lp in zip(ids_all, got):
            with torch.no_grad():
                ls = torch.log_softmax(m(input_ids=torch.tensor([ids])).logits[0].double(), -1)
            hf = [float(ls[i, ids[i + 1]]) for i in range(len(ids) - 1)]
            worst = max(worst, float(np.abs(np.asarray(hf) - np.asarray(lp)).max()))
        return worst
    finally:
        md.DeepseekV2TopkRouter.forward = original


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", required=True)
    ap.add_argument("--logprobs", required=True)
    ap.add_argument("--fixtures", default="tests/fixtures/tiny")
    ap.add_argument("--quantize", help="llama.cpp's llama-quantize: also write deepseek_v3/model-q8_0.gguf")
    args = ap.parse_args()
    worst = 0.0
    for name in NAMES:
        folder = os.path.join(args.fixtures, name)
        path = convert(args.llama_cpp, folder)
        with open(os.path.join(folder, "reference.json")) as f:
            ref = json.load(f)
        try:
            got = llamacpp_logprobs(args.logprobs, path, ref["input_ids"])
        except subprocess.CalledProcessError as e:
            # llama.cpp reads deepseek2 without q LoRA only when it has 27 layers (V2-Lite).
            print(f"{name}: llama.cpp cannot load it: "
                  + " ".join(l for l in e.stderr.splitlines() if "error" in l)[:200])
            continue
        diff = 0.0
        for ids, logits, lp in zip(ref["input_ids"], ref["logits"], got):
            want = log_softmax(logits)
            hf = [want[i][ids[i + 1]] for i in range(len(ids) - 1)]
            diff = max(diff, float(np.abs(np.asarray(hf) - np.asarray(lp)).max()))
        worst = max(worst, diff)
        with open(os.path.join(folder, "llamacpp.json"), "w") as f:
            json.dump({"input_ids": ref["input_ids"], "logprobs": got}, f, separators=(",", ":"))
        print(f"{name}: {os.path.getsize(path) / 1e6:.2f} MB GGUF; llama.cpp vs transformers log-probs: "
              f"max |diff| {diff:.2e}")
        if name == "deepseek_v2_group":
            print(f"  transformers with llama.cpp's group score (top-2 sum): max |diff| "
                  f"{top2_sum_check(folder, got):.2e}")
    print("worst", worst)
    if args.quantize:
        # The quantized path: Q8_0 (tensors whose rows are not a multiple of 32 fall back to
        # f16 in llama-quantize), and llama.cpp's log-probs on it.
        folder = os.path.join(args.fixtures, "deepseek_v3")
        q8 = os.path.join(folder, "model-q8_0.gguf")
        subprocess.run([args.quantize, os.path.join(folder, "model-f32.gguf"), q8, "Q8_0"], check=True,
                       capture_output=True)
        with open(os.path.join(folder, "reference.json")) as f:
            ref = json.load(f)
        got = llamacpp_logprobs(args.logprobs, q8, ref["input_ids"])
        with open(os.path.join(folder, "llamacpp-q8_0.json"), "w") as f:
            json.dump({"input_ids": ref["input_ids"], "logprobs": got}, f, separators=(",", ":"))
        print(f"deepseek_v3 Q8_0: {os.path.getsize(q8) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
