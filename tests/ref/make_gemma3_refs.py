#!/usr/bin/env python3
"""Reference log-probs for the real Gemma 3 270M (Q4_K_M GGUF) from two independent engines.

    /work/pyref/bin/python tests/ref/make_gemma3_refs.py [models/gemma-3-270m-q4_k_m.gguf] \
        --llamacpp /tmp/llamacpp_logprobs

Writes
  tests/fixtures/gemma3/hf_f32_logprobs.json   transformers, the GGUF dequantized to f32 (eager attention)
  tests/fixtures/gemma3/llamacpp_q4km.json     llama.cpp on the same file (its quantized arithmetic), and
                                               a 48-token greedy continuation

Texts: two CIVICS statements (English, and a translated one), a NormAd story, and NormAd stories
joined until the text is longer than the 512-token sliding window (so the window is exercised).
All start with <bos>, as the model expects. `logprobs[i] = log P(ids[i+1] | ids[:i+1])` (float64
log-softmax of each engine's logits, all ids in one batch).
The llama.cpp tool is tests/ref/llamacpp_logprobs.cpp (build line in its header), at llama.cpp
0c1e570 (the copy vendored in llama-cpp-python 0.3.36).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

from refdata import dataset_texts, sha256

OUT = "tests/fixtures/gemma3"
# A prompt whose 48 greedy steps have no near-tie in llama.cpp (smallest gap between the top two
# logits 0.19). Quantized arithmetic differs between engines by about 0.1 logit on this small
# model, so at a near-tie two faithful implementations may part: of 16 prompts tried, every one
# whose smallest gap was at least 0.17 gave the same 48 tokens in ethos and llama.cpp, and the
# others parted at their first gap under about 0.1 (e.g. "The three most important values in a
# good society are": a 0.002 gap at step 19).
GREEDY_PROMPT = "To make a cup of tea, first"
N_GREEDY = 48
N_CTX = 1024


def pick_texts():
    civ_en = civ_tr = story = None
    stories = []
    for source, rid, field, text in dataset_texts():
        if source == "civics" and field == "Statement" and civ_en is None and len(text) > 80:
            civ_en = (f"civics-{rid}-en", text)
        if source == "civics" and field == "Statement - translated" and civ_tr is None and len(text) > 80:
            civ_tr = (f"civics-{rid}-translated", text)
        if source == "normad":
            if story is None:
                story = (f"normad-{rid}", text)
            stories.append(text)
    long_text = ""
    for s in stories:
        long_text += s + "\n\n"
        if len(long_text) > 4000:
            break
    return [civ_en, civ_tr, story, ("normad-joined-long", long_text.strip())]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--llamacpp", default="/tmp/llamacpp_logprobs")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.dirname(args.model), os.path.basename(args.model)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    texts = []
    for tname, text in pick_texts():
        ids = [2] + tok(text, add_special_tokens=False).input_ids
        texts.append({"name": tname, "text": text, "ids": ids})
    prompt_ids = [2] + tok(GREEDY_PROMPT, add_special_tokens=False).input_ids
    assert len(texts[-1]["ids"]) > 600, len(texts[-1]["ids"])
    print("lengths", [len(t["ids"]) for t in texts])

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    hf = []
    for t in texts:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([t["ids"]])).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        ids = t["ids"]
        hf.append({
            "name": t["name"], "ids": ids,
            "logprobs": [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)],
            "top1": [int(x) for x in logits[:-1].argmax(-1)],
        })
    meta = {"model_file": name, "model_file_sha256": sha256(args.model)}
    os.makedirs(OUT, exist_ok=True)
    import transformers
    with open(os.path.join(OUT, "hf_f32_logprobs.json"), "w") as f:
        json.dump({**meta, "engine": f"transformers {transformers.__version__}, torch {torch.__version__}, f32 eager, GGUF dequantized",
                   "texts": hf}, f, separators=(",", ":"))

    inp = "".join(" ".join(map(str, t["ids"])) + "\n" for t in texts) + " ".join(map(str, prompt_ids)) + "\n"
    out = subprocess.run([args.llamacpp, args.model, str(N_CTX), "2", str(N_GREEDY)], input=inp,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    lc = []
    for i, t in enumerate(texts):
        lp_line, top_line = out[2 * i].split(), out[2 * i + 1].split()
        assert lp_line[0] == "logprobs" and top_line[0] == "top1"
        lc.append({"name": t["name"], "ids": t["ids"], "logprobs": [float(x) for x in lp_line[1:]],
                   "top1": [int(x) for x in top_line[1:]]})
    g, margins = out[-2].split(), out[-1].split()
    assert g[0] == "greedy" and margins[0] == "margins"
    greedy_ids = [int(x) for x in g[1:]]
    greedy = {"prompt": GREEDY_PROMPT, "prompt_ids": prompt_ids, "ids": greedy_ids,
              "text": tok.decode(greedy_ids), "logit_margins": [float(x) for x in margins[1:]]}
    with open(os.path.join(OUT, "llamacpp_q4km.json"), "w") as f:
        json.dump({**meta, "engine": "llama.cpp 0c1e570 (tests/ref/llamacpp_logprobs.cpp), 2 threads, n_ctx 1024, no flash attention, f16 KV cache",
                   "texts": lc, "greedy": greedy}, f, separators=(",", ":"))
    for h, l in zip(hf, lc):
        d = np.abs(np.array(h["logprobs"]) - np.array(l["logprobs"]))
        print(f"{h['name']}: {len(h['ids'])} ids; HF vs llama.cpp max {d.max():.4f} mean {d.mean():.4f}")
    print("greedy:", repr(greedy["text"]), "smallest margin", min(greedy["logit_margins"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
