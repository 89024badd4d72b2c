#!/usr/bin/env python3
"""lm-evaluation-harness references for `ethos eval culturalbench`: option log-likelihoods of
CulturalBench Easy and Hard from lm-eval's HF backend on SmolLM2-135M-Instruct, dequantized to
float32 by transformers from the same GGUF that ethos loads.

lm-eval 0.4.13 (the newest on PyPI) has no `cultural_bench` task, so this script writes the
upstream task definitions (lm_eval/tasks/cultural_bench, as quoted in the project's
benchmark notes: doc_to_text, doc_to_choice and target verbatim) pointed at local CSVs made
from the vendored data (the hub is unreachable here), and runs them with `simple_evaluate`.

Run from the repository root (the venv needs lm-eval, torch, transformers, gguf, accelerate):

    python tests/ref/make_culturalbench_lmeval_refs.py --questions 100 \
        --out tests/fixtures/culturalbench/lmeval_harness_100.json
    python tests/ref/make_culturalbench_lmeval_refs.py --questions 0 --out /tmp/full.json   # all

Writes per question the Easy log-likelihoods of " A".." D" and the Hard ones of
" False"/" True" per option row, lm-eval's own metrics, and its wall time.
"""
import argparse
import csv
import json
import os
import sys
import tempfile
import time

DATA = "crates/evals/data/culturalbench"

EASY_YAML = """task: cultural_bench_easy_local
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt_question.strip()}}}}\\nA. {{{{prompt_option_a}}}}\\nB. {{{{prompt_option_b}}}}\\nC. {{{{prompt_option_c}}}}\\nD. {{{{prompt_option_d}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(answer)}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

HARD_YAML = """task: cultural_bench_hard_local
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt_question.strip()}}}}\\n{{{{prompt_option}}}}\\nAnswer:"
doc_to_choice: ["False", "True"]
doc_to_target: "{{{{1 if (answer | string | lower) == 'true' else 0}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def subset(src, dst, keep):
    """Rows of src whose question_idx is in keep (None: all), written with every field a
    string so the csv loader cannot retype them."""
    with open(src, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if keep is None or int(r["question_idx"]) in keep]
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--questions", type=int, default=100, help="first N questions; 0 = all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM

    from refdata import smollm_tokenizer

    torch.set_num_threads(a.threads)
    with open(os.path.join(DATA, "CulturalBench-Easy.csv"), newline="", encoding="utf-8") as f:
        all_q = [int(r["question_idx"]) for r in csv.DictReader(f)]
    keep = set(all_q[: a.questions]) if a.questions else None

    tmp = tempfile.mkdtemp(prefix="cb_lmeval_")
    easy = subset(os.path.join(DATA, "CulturalBench-Easy.csv"), os.path.join(tmp, "easy.csv"), keep)
    hard = subset(os.path.join(DATA, "CulturalBench-Hard.csv"), os.path.join(tmp, "hard.csv"), keep)
    with open(os.path.join(tmp, "easy.yaml"), "w") as f:
        f.write(EASY_YAML.format(path=os.path.join(tmp, "easy.csv")))
    with open(os.path.join(tmp, "hard.yaml"), "w") as f:
        f.write(HARD_YAML.format(path=os.path.join(tmp, "hard.csv")))

    d, fn = os.path.split(os.path.abspath(a.model))
    t = time.time()
    # lm-eval's HF backend on the model and tokenizer transformers builds from the GGUF, the
    # tokenizer with SmolLM2's own pre-tokenizer put back (see refdata.smollm_tokenizer).
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=fn, dtype=torch.float32).eval()
    lm = HFLM(pretrained=model, tokenizer=smollm_tokenizer(d, fn), batch_size=a.batch, device="cpu")
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=["cultural_bench_easy_local", "cultural_bench_hard_local"],
        task_manager=TaskManager(include_path=tmp),
        log_samples=True,
    )
    wall = time.time() - t

    out = {"lm_eval": lm_eval.__version__, "torch": torch.__version__, "model": fn,
           "questions": len(easy), "threads": a.threads, "batch": a.batch, "wall_seconds": wall,
           "metrics": {k: {m: v for m, v in r.items() if m in ("acc,none", "acc_norm,none")}
                       for k, r in res["results"].items()},
           "easy": {}, "hard": {}}
    for s in res["samples"]["cultural_bench_easy_local"]:
        out["easy"][str(s["doc"]["question_idx"])] = [float(r[0]) for r in s["filtered_resps"]]
    hard_rows = {}
    for s in res["samples"]["cultural_bench_hard_local"]:
        doc = s["doc"]
        hard_rows.setdefault(str(doc["question_idx"]), []).append(
            (int(doc["data_idx"]), [float(r[0]) for r in s["filtered_resps"]]))
    for q, rows in hard_rows.items():
        out["hard"][q] = [ll for _, ll in sorted(rows)]
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: out[k] for k in ("questions", "wall_seconds", "metrics")}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
