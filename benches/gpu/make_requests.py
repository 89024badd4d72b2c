"""Writes benches/gpu/requests.jsonl: 60 CulturalBench-Easy questions (every 20th row of the
vendored CSV) as `ethos score` requests, context "Question: ...\nAnswer:" and the four options."""
import csv
import json
from pathlib import Path

root = Path(__file__).resolve().parents[2]
rows = list(csv.DictReader(open(root / "crates/evals/data/culturalbench/CulturalBench-Easy.csv")))
with open(root / "benches/gpu/requests.jsonl", "w") as out:
    for r in rows[::20][:60]:
        options = [r[f"prompt_option_{c}"] for c in "abcd"]
        out.write(json.dumps({
            "id": r["question_idx"],
            "context": f"Question: {r['prompt_question']}\nAnswer:",
            "continuations": [" " + o for o in options],
        }) + "\n")
