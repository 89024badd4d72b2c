#!/usr/bin/env python3
"""Where the per-option log-likelihoods of `ethos eval --task` and lm-evaluation-harness' HF
backend part, on long continuations (docs/benchmarks.md, "Your own benchmark"): for a few
options of tests/fixtures/tasks/arc_easy.yaml, the HF model's f32 logits through torch's f32
log_softmax (what lm-eval sums), through an f64 log_softmax of the same logits, and ethos'
number from a run folder. Run from the repository root (the venv of
tests/ref/make_task_lmeval_refs.py):

    target/release/ethos eval --task tests/fixtures/tasks/arc_easy.yaml --dtype f32 -o /tmp/ae
    python benches/peers/lmeval_softmax_precision.py --run /tmp/ae
"""
import argparse
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--refs", default="tests/fixtures/tasks/lmeval_refs.json")
    ap.add_argument("--run", required=True, help="an `ethos eval --task arc_easy.yaml --dtype f32` folder")
    ap.add_argument("--docs", default="39,6,26")
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, "tests/ref")
    from refdata import smollm_tokenizer

    torch.set_num_threads(2)
    d, fn = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=fn, dtype=torch.float32).eval()
    tok = smollm_tokenizer(d, fn)
    with open(a.refs, encoding="utf-8") as f:
        ref = json.load(f)["tasks"]["arc_easy.yaml"]["docs"]
    ours = {}
    with open(os.path.join(a.run, "items.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            ours[int(r["id"])] = r["option_logprobs"]
    print("doc  lm-eval  torch-f32-softmax  torch-f64-softmax  ethos  |lm-eval - f64|  |ethos - f64|")
    for doc in map(int, a.docs.split(",")):
        item = ref[doc]
        ctx = item["context"]
        for cont, ll in zip(item["continuations"], item["lls"]):
            whole = tok(ctx + cont, add_special_tokens=False).input_ids
            n_ctx = len(tok(ctx, add_special_tokens=False).input_ids)
            with torch.no_grad():
                logits = model(torch.tensor([whole])).logits[0]
            target = torch.tensor(whole[n_ctx:])[:, None]
            rows = logits[n_ctx - 1 : len(whole) - 1]
            f32 = torch.log_softmax(rows, -1).gather(1, target).sum().item()
            f64 = torch.log_softmax(rows.double(), -1).gather(1, target).sum().item()
            e = ours[doc][cont[1:]]
            print(f"{doc:3d}  {ll:.6f}  {f32:.6f}  {f64:.6f}  {e:.6f}  {abs(ll - f64):.1e}  {abs(e - f64):.1e}")


if __name__ == "__main__":
    sys.exit(main())
