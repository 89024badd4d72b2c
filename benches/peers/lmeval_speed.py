#!/usr/bin/env python3
"""Peer benchmark: `ethos eval` against lm-evaluation-harness' HF backend on the same machine,
in the same run, on the same prompts: CulturalBench-Easy (harness prompt) and NormAd in
log-prob mode with its four official conditions.

ethos runs SmolLM2-135M-Instruct Q4_1 as users run it (quantized, `--threads`); lm-eval runs
transformers' float32 model dequantized from the same GGUF (what its HF backend can load), on
PyTorch CPU with the same thread count. lm-eval 0.4.13 has neither task, so this script
writes task YAMLs with the same prompts (CulturalBench: the upstream `cultural_bench` YAML;
NormAd: the official prompts, options " Yes"/" No"/" Neither") over local CSVs.

Usage (repo root; the venv needs lm-eval, torch, transformers, gguf, accelerate):
  python benches/peers/lmeval_speed.py --ethos target/release/ethos [--normad-stories N] [--repeats R]
Writes benches/results/eval_speed.json and prints the table. `--normad-stories N` takes every
k-th story so that N remain (default: all 2,633).

Each benchmark runs ethos and then lm-eval right after it, `--repeats` times, so that each
ratio compares two runs minutes apart: this machine's speed drifts by several per cent
within minutes. The reported seconds and ratio are the medians of the runs; every run is
listed under `runs`. ethos' seconds are its whole command (model load included);
`ethos_eval_seconds` is its own run time without the load, the span lm-eval's time covers.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../tests/ref"))
from make_normad_hf_refs import PROMPTS  # noqa: E402  (the official prompts, in Python)
from make_culturalbench_lmeval_refs import EASY_YAML  # noqa: E402
from refdata import smollm_tokenizer  # noqa: E402

CB = "crates/evals/data/culturalbench/CulturalBench-Easy.csv"
NORMAD = "crates/evals/data/normad/normad_eti_reconstructed.csv"


def normad_yaml(cond, path):
    if cond == "rot":
        text = PROMPTS["rot"].replace("{rot}", "{{rot}}")
    elif cond == "country":
        text = PROMPTS["country"].replace("{rot}", "{{country}}")
    elif cond == "value":
        text = PROMPTS["value"].replace("{rot}", "{{value}}").replace("{country}", "{{country}}")
    else:
        text = PROMPTS["none"]
    text = text.replace("{story}", "{{story}}")
    return "\n".join([
        f"task: normad_{cond}_local",
        "dataset_path: csv",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {path}",
        "test_split: test",
        "output_type: multiple_choice",
        f"doc_to_text: {json.dumps(text)}",
        'target_delimiter: ""',
        'doc_to_choice: ["Yes", "No", "Neither"]',
        "doc_to_target: \"{{['yes', 'no', 'neutral'].index(gold)}}\"",
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "",
    ])


def run_ethos(args):
    t = time.time()
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return time.time() - t, json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ethos", default="target/release/ethos")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--normad-stories", type=int, default=0)
    ap.add_argument("--out", default="benches/results/eval_speed.json")
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="eval_speed_")
    with open(NORMAD, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    if a.normad_stories:
        step = max(1, len(rows) // a.normad_stories)
        rows = rows[::step][: a.normad_stories]
    subset = os.path.join(tmp, "normad_subset.csv")
    with open(subset, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    renamed = os.path.join(tmp, "normad_lmeval.csv")
    with open(renamed, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "country", "value", "rot", "story", "gold"])
        for r in rows:
            w.writerow([r["ID"], r["Country"], r["Value"], r["Rule-of-Thumb"], r["Story"], r["Gold Label"]])

    common = ["--model", a.model, "--threads", str(a.threads), "--batch", str(a.batch), "--json"]

    import torch
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    with open(os.path.join(tmp, "cb.yaml"), "w") as f:
        f.write(EASY_YAML.format(path=os.path.abspath(CB)))
    for cond in PROMPTS:
        with open(os.path.join(tmp, f"normad_{cond}.yaml"), "w") as f:
            f.write(normad_yaml(cond, renamed))
    d, fn = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=fn, dtype=torch.float32).eval()
    lm = HFLM(pretrained=model, tokenizer=smollm_tokenizer(d, fn), batch_size=a.batch, device="cpu")
    tm = TaskManager(include_path=tmp)

    def timed(tasks):
        t = time.time()
        r = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=tm)
        return time.time() - t, r["results"]

    def pair(name, ethos_args, tasks):
        """ethos, then lm-eval at once: one run of one benchmark."""
        out = os.path.join(tmp, name)
        shutil.rmtree(out, ignore_errors=True)
        e_s, e_res = run_ethos([a.ethos, "eval", *ethos_args, "-o", out, *common])
        l_s, l_res = timed(tasks)
        run = {"ethos_seconds": e_s, "ethos_eval_seconds": e_res["wall_seconds"],
               "lm_eval_seconds": l_s, "ratio": l_s / e_s}
        print(f"{name}: ethos {e_s:.1f} s, lm-eval {l_s:.1f} s, {l_s / e_s:.2f}x", file=sys.stderr)
        return run, e_res, l_res

    cb_runs, nm_runs = [], []
    for _ in range(a.repeats):
        run, cb_res, lcb = pair("cb", ["culturalbench", "--conditions", "easy"],
                                ["cultural_bench_easy_local"])
        cb_runs.append(run)
        run, nm_res, lnm = pair("nm", ["normad", "--data", subset],
                                [f"normad_{c}_local" for c in PROMPTS])
        nm_runs.append(run)

    def median(xs):
        xs = sorted(xs)
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    def summary(runs, items):
        e = median([r["ethos_seconds"] for r in runs])
        l = median([r["lm_eval_seconds"] for r in runs])
        return {
            "items": items, "ethos_seconds": e, "lm_eval_seconds": l,
            "ethos_items_per_second": items / e, "lm_eval_items_per_second": items / l,
            "ratio": median([r["ratio"] for r in runs]),
            "ratio_eval_only": median([r["lm_eval_seconds"] / r["ethos_eval_seconds"] for r in runs]),
            "runs": runs,
        }

    res = {
        "threads": a.threads, "batch": a.batch, "model": fn, "repeats": a.repeats,
        "ethos_quant_gemm": os.environ.get("ETHOS_QUANT_GEMM", "default"),
        "lm_eval": lm_eval.__version__, "torch": torch.__version__,
        "culturalbench_easy": {
            **summary(cb_runs, cb_res["tasks"]),
            "ethos_acc": cb_res["metrics"]["easy"]["harness"]["acc"]["value"],
            "lm_eval_acc": lcb["cultural_bench_easy_local"]["acc,none"],
        },
        "normad_four_conditions": {
            "stories": len(rows),
            **summary(nm_runs, nm_res["tasks"]),
            "ethos_acc": {c: nm_res["metrics"][c]["logprob"]["acc"]["value"] for c in PROMPTS},
            "lm_eval_acc": {c: lnm[f"normad_{c}_local"]["acc,none"] for c in PROMPTS},
        },
        "note": "ethos: Q4_1 as shipped, wall time of the whole command (model load included; "
                "ethos_eval_seconds and ratio_eval_only: its run without the load); "
                "lm-eval: HF backend, float32 from the same GGUF, simple_evaluate time (model load excluded); "
                "each run: ethos then lm-eval at once; seconds and ratios are medians over the runs",
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
