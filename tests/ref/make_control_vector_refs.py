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
"""
import argparse
import json
import os
import subprocess

import numpy as np

SCALE = 2.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--llamacpp", default="/tmp/llamacpp_logprobs")
    args = ap.parse_args()
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
