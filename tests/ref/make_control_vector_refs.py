#!/usr/bin/env python3
"""A control vector for SmolLM2 and llama.cpp's log-probs under it.

    /work/pyref/bin/python tests/ref/make_control_vector_refs.py --llamacpp /tmp/llamacpp_logprobs

Writes
  tests/fixtures/control/smollm2_cv.gguf    written by gguf-py's GGUFWriter exactly as repeng's
                                            export_gguf does: direction.5 .. direction.20, width 576,
                                            unit vectors from a fixed seed
  tests/fixtures/control/llamacpp_cv.json   llama.cpp (tests/ref/llamacpp_logprobs.cpp, its own
                                            loader common_control_vector_load) on
                                            SmolLM2-135M-Instruct.Q4_1.gguf with that file at scale 2,
                                            on the texts of tests/fixtures/smollm2/llamacpp_q41.json

With --generator (llama.cpp's llama-cvector-generator, built from the same tree), also
  tests/fixtures/control/smollm2_cvgen_mean.gguf   a vector llama.cpp itself trains (--method mean)
                                            on examples/data/acceptance_pairs.jsonl (newlines
                                            escaped as the tool expects)
  tests/fixtures/control/llamacpp_cvgen.json       llama.cpp's log-probs with it at GEN_SCALE
"""
import argparse
import json
import os
import subprocess

import numpy as np

SCALE = 2.0
GEN_SCALE = 0.5


def generated_vector(args):
    """llama.cpp's own cvector-generator on the acceptance pairs, and its log-probs with it."""
    import tempfile

    pairs = [json.loads(l) for l in open("examples/data/acceptance_pairs.jsonl") if l.strip()]
    esc = lambda t: t.replace("\n", "\\n")
    out = "tests/fixtures/control/smollm2_cvgen_mean.gguf"
    with tempfile.TemporaryDirectory() as d:
        pos, neg = os.path.join(d, "pos.txt"), os.path.join(d, "neg.txt")
        open(pos, "w").write("".join(esc(p["positive"]) + "\n" for p in pairs))
        open(neg, "w").write("".join(esc(p["negative"]) + "\n" for p in pairs))
        subprocess.run([args.generator, "-m", args.model, "--positive-file", pos, "--negative-file", neg,
                        "--method", "mean", "-o", out, "-t", "2"], check=True, capture_output=True)
    refs = json.load(open("tests/fixtures/smollm2/llamacpp_q41.json"))
    texts = refs["texts"]
    inp = "".join(" ".join(map(str, t["ids"])) + "\n" for t in texts) + "1 2\n"
    env = dict(os.environ, CVEC=f"{out}:{GEN_SCALE}")
    lines = subprocess.run([args.llamacpp, args.model, "512", "2", "1"], input=inp, env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    steered = []
    for i, t in enumerate(texts):
        lp = [float(x) for x in lines[2 * i].split()[1:]]
        moved = max(abs(a - b) for a, b in zip(lp, t["logprobs"]))
        print(f"{t['name']}: llama.cpp's own vector moved its log-probs by up to {moved:.3f}")
        steered.append({"name": t["name"], "ids": t["ids"], "logprobs": lp})
    json.dump({"engine": "llama.cpp (tests/ref/llamacpp_logprobs.cpp)", "model_file": os.path.basename(args.model),
               "control_vector": os.path.basename(out), "generator": "llama-cvector-generator --method mean",
               "scale": GEN_SCALE, "texts": steered},
              open("tests/fixtures/control/llamacpp_cvgen.json", "w"), separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--llamacpp", default="/tmp/llamacpp_logprobs")
    ap.add_argument("--generator", help="llama-cvector-generator: also make a vector with llama.cpp itself")
    args = ap.parse_args()
    if args.generator:
        generated_vector(args)
    import gguf

    os.makedirs("tests/fixtures/control", exist_ok=True)
    path = "tests/fixtures/control/smollm2_cv.gguf"
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", 16)
    for layer in range(5, 21):
        v = rng.standard_normal(576).astype(np.float32)
        w.add_tensor(f"direction.{layer}", v / np.linalg.norm(v))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    refs = json.load(open("tests/fixtures/smollm2/llamacpp_q41.json"))
    texts = refs["texts"]
    inp = "".join(" ".join(map(str, t["ids"])) + "\n" for t in texts) + "1 2\n"
    env = dict(os.environ, CVEC=f"{path}:{SCALE}")
    out = subprocess.run([args.llamacpp, args.model, "512", "2", "1"], input=inp, env=env,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    steered = []
    for i, t in enumerate(texts):
        lp = [float(x) for x in out[2 * i].split()[1:]]
        moved = max(abs(a - b) for a, b in zip(lp, t["logprobs"]))
        print(f"{t['name']}: steering moved llama.cpp's log-probs by up to {moved:.3f}")
        steered.append({"name": t["name"], "ids": t["ids"], "logprobs": lp})
    json.dump({"engine": "llama.cpp 0c1e570 (tests/ref/llamacpp_logprobs.cpp)", "model_file": os.path.basename(args.model),
               "control_vector": os.path.basename(path), "scale": SCALE, "texts": steered},
              open("tests/fixtures/control/llamacpp_cv.json", "w"), separators=(",", ":"))


if __name__ == "__main__":
    main()
