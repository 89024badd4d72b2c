"""lm-evaluation-harness' `local-completions` model, unmodified, against `ethos serve`:
CulturalBench-Easy (the upstream task YAML, as `tests/ref/make_culturalbench_lmeval_refs.py`
writes it) over the first N questions of the vendored data, token ids sent as prompts with
echo + logprobs, as lm-eval sends them. Prints one JSON object: lm-eval's version, its metrics
and every question's option log-likelihoods, for the Rust test to compare with lm-eval's own
HF backend (`tests/fixtures/culturalbench/lmeval_harness_100.json`).

    python tests/clients/lmeval_local_completions.py BASE_URL MODEL_ID QUESTIONS

The venv needs lm-eval and transformers only (no PyTorch): lm-eval splits context and option
with SmolLM2's HF tokenizer, `tests/fixtures/smollm2/hf_tokenizer` (made by
`tests/ref/make_smollm2_hf_tokenizer.py` as the HF reference's tokenizer was).
"""
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../ref"))

import lm_eval  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from make_culturalbench_lmeval_refs import DATA, EASY_YAML, subset  # noqa: E402

base, model_id, questions = sys.argv[1], sys.argv[2], int(sys.argv[3])
root = os.path.join(HERE, "../..")
tmp = tempfile.mkdtemp(prefix="lmeval_serve_")
import csv  # noqa: E402

with open(os.path.join(root, DATA, "CulturalBench-Easy.csv"), newline="", encoding="utf-8") as f:
    keep = set([int(r["question_idx"]) for r in csv.DictReader(f)][:questions])
subset(os.path.join(root, DATA, "CulturalBench-Easy.csv"), os.path.join(tmp, "easy.csv"), keep)
with open(os.path.join(tmp, "easy.yaml"), "w") as f:
    f.write(EASY_YAML.format(path=os.path.join(tmp, "easy.csv")))

tok_dir = os.path.join(root, "tests/fixtures/smollm2/hf_tokenizer")

res = lm_eval.simple_evaluate(
    model="local-completions",
    model_args=(f"model={model_id},base_url={base}/v1/completions,tokenizer={tok_dir},"
                "tokenizer_backend=huggingface,tokenized_requests=True,num_concurrent=1,max_retries=1,"
                "batch_size=16"),
    tasks=["cultural_bench_easy_local"],
    task_manager=TaskManager(include_path=tmp),
    log_samples=True,
)
out = {
    "lm_eval": lm_eval.__version__,
    "metrics": {k: {m: v for m, v in r.items() if m in ("acc,none", "acc_norm,none")}
                for k, r in res["results"].items()},
    "easy": {str(s["doc"]["question_idx"]): [float(r[0]) for r in s["filtered_resps"]]
             for s in res["samples"]["cultural_bench_easy_local"]},
}
print(json.dumps(out))
