#!/usr/bin/env python3
"""lm-evaluation-harness references for `ethos eval --task`: for each task file in
tests/fixtures/tasks, every request lm-eval builds (context and continuation per choice)
and the log-likelihood its HF backend gives it on SmolLM2-135M-Instruct dequantized to
float32 by transformers from the GGUF ethos loads, with lm-eval's acc and acc_norm.

Run from the repository root (the venv needs lm-eval 0.4.13, torch, transformers, gguf,
accelerate; see tests/ref/README.md):

    python tests/ref/make_task_lmeval_refs.py --out tests/fixtures/tasks/lmeval_refs.json

lm-eval runs inside tests/fixtures/tasks, so the data paths of the task files resolve as
ethos resolves them (from the task file's folder).
"""
import argparse
import json
import os
import sys
import time

TASKS = {  # file: (lm-eval task name, item limit)
    "cultural_bench_easy.yaml": ("cultural_bench_easy_local", 100),
    "arc_easy.yaml": ("arc_easy_yue_local", None),
    "ja_leaderboard_jnli.yaml": ("ja_leaderboard_jnli_synthetic_local", None),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from refdata import smollm_tokenizer

    torch.set_num_threads(a.threads)
    d, fn = os.path.split(os.path.abspath(a.model))
    out_path = os.path.abspath(a.out)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=fn, dtype=torch.float32).eval()
    lm = HFLM(pretrained=model, tokenizer=smollm_tokenizer(d, fn), batch_size=16, device="cpu")
    os.chdir("tests/fixtures/tasks")
    out = {"lm_eval": lm_eval.__version__, "torch": torch.__version__, "model": fn, "tasks": {}}
    for file, (name, limit) in TASKS.items():
        t = time.time()
        res = lm_eval.simple_evaluate(model=lm, tasks=[name], limit=limit, log_samples=True,
                                      task_manager=TaskManager(include_path="."))
        docs = []
        for s in sorted(res["samples"][name], key=lambda s: s["doc_id"]):
            args = [(v[0], v[1]) for v in s["arguments"]]
            docs.append({"doc_id": s["doc_id"], "context": args[0][0],
                         "continuations": [c for _, c in args],
                         "lls": [float(r[0]) for r in s["filtered_resps"]],
                         "acc": s.get("acc"), "acc_norm": s.get("acc_norm")})
        out["tasks"][file] = {"task": name, "limit": limit, "seconds": time.time() - t,
                              "metrics": {m: v for m, v in res["results"][name].items()
                                          if m in ("acc,none", "acc_norm,none")},
                              "docs": docs}
        print(file, out["tasks"][file]["metrics"], len(docs), file=sys.stderr)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    sys.exit(main())
