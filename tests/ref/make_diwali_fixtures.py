#!/usr/bin/env python3
"""Makes tests/fixtures/diwali/ from DIWALI's published matching files (github.com/pramitsahoo/
culture-evaluation @ 0b3cfeb, MIT): the two models' adaptation outputs as published, packed
with zstd, and from the authors' score files each entry's matches (`detailed_scores`, lists
sorted) and the published totals (`dataset_statistics`).
Usage: python3 make_diwali_fixtures.py DIWALI_MATCHING_DIR
(the folder holding `{llama-3.1-8b,mistral-7b}_gsm_8k_test.json` and `*-adaptation_scores.json`).
"""
import json
import os
import subprocess
import sys

src = sys.argv[1]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "diwali")
os.makedirs(out, exist_ok=True)


def pack(data: bytes, path: str):
    with open(path, "wb") as f:
        f.write(subprocess.run(["zstd", "-19", "-q", "-c"], input=data, check=True, capture_output=True).stdout)


for model in ("llama-3.1-8b", "mistral-7b"):
    with open(os.path.join(src, f"{model}_gsm_8k_test.json"), "rb") as f:
        pack(f.read(), os.path.join(out, f"{model}_gsm_8k_test.json.zst"))
    with open(os.path.join(src, f"{model}-adaptation_scores.json"), encoding="utf-8") as f:
        scores = json.load(f)
    lines = [json.dumps({"dataset_statistics": scores["dataset_statistics"]})]
    for e in scores["detailed_scores"]:
        lines.append(json.dumps({k: sorted(e[k]) for k in (
            "replaced_words", "strict_matches", "singular_plural_matches", "fuzzy_matches")}, ensure_ascii=False))
    pack(("\n".join(lines) + "\n").encode(), os.path.join(out, f"{model}-matches.jsonl.zst"))
    print(model, scores["dataset_statistics"])
