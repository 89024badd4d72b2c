#!/usr/bin/env python3
"""Reference outputs from llama.cpp (via llama-cpp-python) for SmolLM2-135M-Instruct Q4_1.

Run from the repository root with the Python that has llama-cpp-python installed:

    LLAMA_CPP_LIB_PATH=/path/to/llama.cpp-build/bin \
        /path/to/venv/bin/python tests/ref/make_llamacpp_refs.py \
        [models/SmolLM2-135M-Instruct.Q4_1.gguf]

Writes
  tests/fixtures/smollm2/llamacpp_q41.json            logprobs / top-k / greedy / tokenizer summary
  tests/fixtures/smollm2/llamacpp_tokenizer_ids.jsonl  llama.cpp token ids of every CIVICS and NormAd text

See tests/ref/README.md for how llama.cpp was built.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from refdata import dataset_texts, sha256

N_THREADS = 2
N_CTX = 512
N_BATCH = 512

FIXTURES = Path("tests/fixtures/smollm2")


def llama_cpp_commit(llama_cpp_module):
    """Best effort: commit of the llama.cpp the shared library was built from."""
    lib_dir = os.environ.get("LLAMA_CPP_LIB_PATH")
    candidates = []
    if lib_dir:
        # <build>/bin -> the CMake cache names the source tree
        cache = Path(lib_dir).parent / "CMakeCache.txt"
        if cache.exists():
            for line in cache.read_text(errors="replace").splitlines():
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    candidates.append(Path(line.split("=", 1)[1]))
    for src in candidates:
        try:
            out = subprocess.run(
                ["git", "-C", str(src), "rev-parse", "HEAD"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            if out:
                return out
        except Exception:
            pass
    return None


def log_softmax64(logits):
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def top_k_ids(row, k):
    # stable ordering: highest logit first, ties by lower id
    idx = np.argsort(-np.asarray(row, dtype=np.float64), kind="stable")
    return [int(i) for i in idx[:k]]


def eval_all(llm, ids, split=None):
    """Evaluate ids from an empty context; return raw logits [T, vocab] (float32 copy)."""
    llm.reset()
    if split is None:
        llm.eval(ids)
    else:
        llm.eval(ids[:split])
        llm.eval(ids[split:])
    assert llm.n_tokens == len(ids)
    return np.array(llm.scores[: len(ids), :], dtype=np.float32, copy=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out-dir", default=str(FIXTURES))
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    out_dir = Path(args.out_dir)
    spec = json.loads((FIXTURES / "texts.json").read_text())

    llm = Llama(
        model_path=args.model,
        logits_all=True,
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_threads=N_THREADS,
        seed=0,
        verbose=False,
    )

    def tok(text, special):
        return [int(t) for t in llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)]

    result = {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_commit": llama_cpp_commit(llama_cpp),
        "model_file": os.path.basename(args.model),
        "model_file_sha256": sha256(args.model),
        "n_threads": N_THREADS,
        "n_ctx": N_CTX,
        "n_batch": N_BATCH,
        "tokenize": {"add_bos": False, "special": True},
        "logprobs_def": "logprobs[i] = log P(ids[i+1] | ids[:i+1]), float64 log_softmax of llama.cpp logits, ids evaluated in one batch",
    }

    # ---- per-text logprobs / top-1 / top-5 -------------------------------------------
    texts = []
    max_split_diff = 0.0
    split_report = []
    for entry in spec["texts"]:
        ids = tok(entry["text"], special=True)
        T = len(ids)
        logits = eval_all(llm, ids)
        lsm = log_softmax64(logits[: T - 1])
        logprobs = [float(lsm[i, ids[i + 1]]) for i in range(T - 1)]
        top1 = [int(np.argmax(logits[i])) for i in range(T - 1)]
        top5 = [top_k_ids(logits[i], 5) for i in range(T - 1)]
        texts.append({"name": entry["name"], "ids": ids, "logprobs": logprobs, "top1": top1, "top5": top5})

        # batch-split noise: same ids, evaluated as two halves
        logits2 = eval_all(llm, ids, split=T // 2)
        lsm2 = log_softmax64(logits2[: T - 1])
        lp2 = np.array([lsm2[i, ids[i + 1]] for i in range(T - 1)])
        d_lp = float(np.max(np.abs(lp2 - np.array(logprobs)))) if T > 1 else 0.0
        d_logit = float(np.max(np.abs(logits2.astype(np.float64) - logits.astype(np.float64))))
        max_split_diff = max(max_split_diff, d_lp)

        # for contrast: one token at a time (the single-token decode path, as in greedy)
        llm.reset()
        for t in ids:
            llm.eval([t])
        logits3 = np.array(llm.scores[:T, :], dtype=np.float32, copy=True)
        lsm3 = log_softmax64(logits3[: T - 1])
        lp3 = np.array([lsm3[i, ids[i + 1]] for i in range(T - 1)])
        d3 = np.abs(lp3 - np.array(logprobs))
        d3_logit = float(np.max(np.abs(logits3.astype(np.float64) - logits.astype(np.float64))))
        split_report.append({"name": entry["name"], "T": T, "split_at": T // 2,
                             "max_abs_logprob_diff": d_lp, "max_abs_logit_diff": d_logit,
                             "token_by_token_max_abs_logprob_diff": float(d3.max()),
                             "token_by_token_mean_abs_logprob_diff": float(d3.mean()),
                             "token_by_token_max_abs_logit_diff": d3_logit,
                             "token_by_token_top1_agree": float(np.mean(np.argmax(logits3[: T - 1], 1) == np.array(top1)))})
        print(f"{entry['name']}: T={T} first ids {ids[:10]} two-halves diff logprob {d_lp:.3e} logit {d_logit:.3e};"
              f" token-by-token diff logprob max {d3.max():.3f} mean {d3.mean():.3f}", file=sys.stderr)
    result["texts"] = texts
    result["batch_split_check"] = {
        "max_abs_logprob_diff": max_split_diff,
        "note": "two halves vs one batch; token_by_token_* compares one token per decode call against one batch",
        "per_text": split_report,
    }

    # ---- greedy -----------------------------------------------------------------------
    prompt_ids = tok(spec["greedy_prompt"], special=True)
    n_gen = int(spec["greedy_tokens"])
    llm.reset()
    llm.eval(prompt_ids)
    gen = []
    for _ in range(n_gen):
        row = llm.scores[llm.n_tokens - 1, :]
        nxt = int(np.argmax(row))
        gen.append(nxt)
        llm.eval([nxt])
    text = llm.detokenize(gen).decode("utf-8", errors="replace")
    # how stable is the greedy path: argmax of prompt+generated evaluated in ONE batch
    full = prompt_ids + gen
    lb = eval_all(llm, full)
    P = len(prompt_ids)
    batch_argmax = [int(np.argmax(lb[P - 1 + j])) for j in range(n_gen)]
    agree = [int(a == b) for a, b in zip(batch_argmax, gen)]
    result["greedy"] = {
        "prompt": spec["greedy_prompt"], "prompt_ids": prompt_ids, "ids": gen, "text": text,
        "one_batch_rescore_argmax_agrees": agree,
        "note": "ids: prompt in one batch, then one token per decode; one_batch_rescore_argmax_agrees[j] = 1 where "
                "the argmax at that step is the same when prompt+ids are evaluated in one batch (teacher forced)",
    }
    print(f"greedy: {gen[:10]}... {text!r}; one-batch rescore argmax agrees {sum(agree)}/{n_gen}", file=sys.stderr)

    # ---- tokenizer over the datasets --------------------------------------------------
    rows = list(dataset_texts())
    all_ids = []
    with open(out_dir / "llamacpp_tokenizer_ids.jsonl", "w") as f:
        for source, rid, field, t in rows:
            ids = tok(t, special=False)
            all_ids.append(ids)
            f.write(json.dumps({"source": source, "id": rid, "field": field, "ids": ids}) + "\n")
    digest = hashlib.sha256(json.dumps(all_ids).encode("utf-8")).hexdigest()
    result["tokenizer"] = {
        "texts": len(all_ids),
        "add_bos": False,
        "special": False,
        "order": "civics Statement (file order), civics non-empty 'Statement - translated' (file order), normad Story (file order)",
        "sha256_of_all_ids": digest,
        "sha256_def": "sha256 of json.dumps(list of id lists) with Python's default separators (', ' and ': ')",
        "total_ids": int(sum(len(x) for x in all_ids)),
    }
    print(f"tokenizer: {len(all_ids)} texts, {result['tokenizer']['total_ids']} ids, sha256 {digest}", file=sys.stderr)

    with open(out_dir / "llamacpp_q41.json", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
