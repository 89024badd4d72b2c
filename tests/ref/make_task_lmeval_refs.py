#!/usr/bin/env python3
"""lm-evaluation-harness references for `ethos eval --task`: for each task file in
tests/fixtures/tasks, plain and with `--apply_chat_template` (ethos' `chat` format), every
request lm-eval builds (context and continuation per choice, or the generation's context)
and what its HF backend answers on SmolLM2-135M-Instruct dequantized to float32 by
transformers from the GGUF ethos loads: log-likelihoods with acc and acc_norm, or the
greedy generation, its filtered answer and exact_match.

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

TASKS = [  # (file, lm-eval task name, item limit, ethos format)
    ("cultural_bench_easy.yaml", "cultural_bench_easy_local", 100, "harness"),
    ("arc_easy.yaml", "arc_easy_yue_local", None, "harness"),
    ("ja_leaderboard_jnli.yaml", "ja_leaderboard_jnli_synthetic_local", None, "harness"),
    ("arc_challenge_chat.yaml", "arc_challenge_chat_yue_local", 20, "harness"),
    ("jnli_gen_prefix.yaml", "jnli_gen_prefix_synthetic_local", 10, "harness"),
    ("cultural_bench_easy.yaml", "cultural_bench_easy_local", 40, "chat"),
    ("arc_easy.yaml", "arc_easy_yue_local", None, "chat"),
    ("ja_leaderboard_jnli.yaml", "ja_leaderboard_jnli_synthetic_local", 10, "chat"),
    ("arc_challenge_chat.yaml", "arc_challenge_chat_yue_local", 20, "chat"),
    ("jnli_gen_prefix.yaml", "jnli_gen_prefix_synthetic_local", 10, "chat"),
]
ONLY = os.environ.get("ONLY")  # one file's references, merged into --out


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
    tok = smollm_tokenizer(d, fn)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=16, device="cpu")
    # Generations one at a time: a left-padded batch can move a near-tie of greedy decoding.
    lm_gen = HFLM(pretrained=model, tokenizer=tok, batch_size=1, device="cpu")
    os.chdir("tests/fixtures/tasks")
    out = {"lm_eval": lm_eval.__version__, "torch": torch.__version__, "model": fn, "tasks": {}}
    if ONLY and os.path.exists(out_path):
        with open(out_path, encoding="utf-8") as f:
            out["tasks"] = json.load(f)["tasks"]
    for file, name, limit, fmt in TASKS:
        if ONLY and file != ONLY:
            continue
        t = time.time()
        chat = fmt == "chat"
        generate = "generate_until" in open(file, encoding="utf-8").read()
        res = lm_eval.simple_evaluate(model=lm_gen if generate else lm, tasks=[name], limit=limit,
                                      log_samples=True, apply_chat_template=chat,
                                      task_manager=TaskManager(include_path="."))
        docs = []
        for s in sorted(res["samples"][name], key=lambda s: s["doc_id"]):
            if generate:
                docs.append({"doc_id": s["doc_id"], "context": s["arguments"][0][0],
                             "generation": s["resps"][0][0],
                             "answer": s["filtered_resps"][0],
                             "exact_match": s.get("exact_match")})
                continue
            args = [(v[0], v[1]) for v in s["arguments"]]
            docs.append({"doc_id": s["doc_id"], "context": args[0][0],
                         "continuations": [c for _, c in args],
                         "lls": [float(r[0]) for r in s["filtered_resps"]],
                         "acc": s.get("acc"), "acc_norm": s.get("acc_norm")})
        key = file if fmt == "harness" else f"{file}#{fmt}"
        out["tasks"][key] = {"file": file, "format": fmt, "task": name, "limit": limit,
                             "seconds": time.time() - t,
                             "metrics": {m: v for m, v in res["results"][name].items()
                                         if m.split(",")[0] in ("acc", "acc_norm", "exact_match")},
                             "docs": docs}
        print(key, out["tasks"][key]["metrics"], len(docs), file=sys.stderr)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    sys.exit(main())
