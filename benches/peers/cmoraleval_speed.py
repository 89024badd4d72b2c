#!/usr/bin/env python3
"""Peer benchmark: `ethos eval cmoraleval` against lm-evaluation-harness' HF backend on the
same machine, in the same run, on the same prompts, beside CulturalBench Easy (whose ratio
the CMoralEval one is compared with).

CMoralEval: the first N scenarios asked the `party-moral` way, zero-shot. lm-eval 0.4.13 has
no CMoralEval task, so this script writes one (the prompt ethos builds: the upstream question,
its three lettered options, "答案：", options " A" / " B" / " C") over a JSON Lines file of
those rows unpacked from the vendored copy; the same file run by `ethos eval --task` must give
ethos' built-in accuracy (printed as a check).

ethos runs the default Q4_1 model as users run it; lm-eval runs transformers' float32 model
dequantized from the same GGUF, on PyTorch CPU with the same thread count. Each benchmark
runs ethos, then lm-eval at once, `--repeats` times; seconds and ratios are medians.

Usage (repo root; the venv needs lm-eval, torch, transformers, gguf, accelerate):
  python benches/peers/cmoraleval_speed.py --ethos target/release/ethos [--scenarios N] [--repeats R] --out F.json
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../../tests/ref"))
from make_culturalbench_lmeval_refs import EASY_YAML  # noqa: E402
from refdata import smollm_tokenizer  # noqa: E402

CB = "crates/evals/data/culturalbench/CulturalBench-Easy.csv"
PACKED = "crates/evals/data/cmoraleval/cmoraleval.jsonl.zst"

CM_YAML = """task: cmoraleval_party_moral_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}\\n{{{{choices[0]}}}}\\n{{{{choices[1]}}}}\\n{{{{choices[2]}}}}\\n答案："
doc_to_choice: ["A", "B", "C"]
doc_to_target: "{{{{['A', 'B', 'C'].index(correct_answer)}}}}"
metric_list:
  - metric: acc
"""


def cpu():
    info = {}
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k in ("vendor_id", "cpu family", "model", "model name") and k not in info:
            info[k] = v
        if k == "flags" and "flags" not in info:
            info["flags"] = [f for f in v.split() if f.startswith(("avx", "fma", "f16c", "amx"))]
    info["cores"] = os.cpu_count()
    info["machine"] = platform.machine()
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ethos", default="target/release/ethos")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--scenarios", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="cm_speed_")
    raw = subprocess.run(["zstd", "-dc", PACKED], check=True, capture_output=True).stdout.decode()
    rows = [json.loads(l) for l in raw.splitlines() if l.strip()]
    rows = [r for r in rows if r["file"] == "c1_party_moral_test"][: a.scenarios]
    cm_data = os.path.join(tmp, "cm.jsonl")
    with open(cm_data, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(tmp, "cm.yaml"), "w", encoding="utf-8") as f:
        f.write(CM_YAML.format(path=cm_data))
    with open(os.path.join(tmp, "cb.yaml"), "w", encoding="utf-8") as f:
        f.write(EASY_YAML.format(path=os.path.abspath(CB)))

    common = ["--model", a.model, "--threads", str(a.threads), "--batch", str(a.batch), "--json"]

    def ethos(args):
        out = tempfile.mkdtemp(dir=tmp)
        t = time.time()
        p = subprocess.run([a.ethos, "eval", *args, "-o", out, *common], check=True, capture_output=True)
        return time.time() - t, json.loads(p.stdout)

    import torch
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    d, fn = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=fn, dtype=torch.float32).eval()
    lm = HFLM(pretrained=model, tokenizer=smollm_tokenizer(d, fn), batch_size=a.batch, device="cpu")
    tm = TaskManager(include_path=tmp)

    def lmeval(task):
        t = time.time()
        r = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=tm)
        return time.time() - t, r["results"][task]["acc,none"]

    # The task file and the built-in benchmark ask the same questions.
    _, via_task = ethos(["--task", os.path.join(tmp, "cm.yaml")])
    benches = {
        "cmoraleval_party_moral": (["cmoraleval", "--conditions", "party-moral", "--limit", str(a.scenarios)],
                                   "cmoraleval_party_moral_local", ("party-moral", "zero-shot")),
        "culturalbench_easy": (["culturalbench", "--conditions", "easy"], "cultural_bench_easy_local",
                               ("easy", "harness")),
    }
    out = {"cpu": cpu(), "threads": a.threads, "batch": a.batch, "model": fn, "repeats": a.repeats,
           "lm_eval": lm_eval.__version__, "torch": torch.__version__, "scenarios": a.scenarios,
           "ethos_task_file_acc": via_task["metrics"]["default"]["harness"]["acc"]["value"],
           "benchmarks": {}}
    for name, (eargs, task, (cond, fmt)) in benches.items():
        runs = []
        for _ in range(a.repeats):
            e_s, e_res = ethos(eargs)
            l_s, l_acc = lmeval(task)
            runs.append({"ethos_seconds": e_s, "ethos_eval_seconds": e_res["wall_seconds"],
                         "lm_eval_seconds": l_s, "ratio": l_s / e_s,
                         "ethos_acc": e_res["metrics"][cond][fmt]["acc"]["value"], "lm_eval_acc": l_acc})
            print(f"{name}: ethos {e_s:.1f} s, lm-eval {l_s:.1f} s, {l_s / e_s:.2f}x", file=sys.stderr)
        med = lambda xs: sorted(xs)[len(xs) // 2]
        out["benchmarks"][name] = {
            "items": e_res["tasks"], "ethos_seconds": med([r["ethos_seconds"] for r in runs]),
            "lm_eval_seconds": med([r["lm_eval_seconds"] for r in runs]),
            "ratio": med([r["ratio"] for r in runs]), "runs": runs,
        }
    out["note"] = ("ethos: Q4_1 as shipped, wall time of the whole command (model load included); lm-eval: "
                   "HF backend, float32 from the same GGUF, simple_evaluate time; each run ethos then lm-eval at once")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print(json.dumps({k: v for k, v in out.items() if k != "benchmarks"} |
                     {k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in out["benchmarks"].items()}, indent=1))


if __name__ == "__main__":
    main()
