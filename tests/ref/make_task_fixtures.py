#!/usr/bin/env python3
"""Data and task files for the `ethos eval --task` tests (tests/fixtures/tasks/):

- arc_easy.yaml: lm-evaluation-harness' lm_eval/tasks/arc/arc_easy.yaml (MIT), verbatim but
  for its dataset lines, over data/yue_arc_c_*.jsonl: the first 60 questions of Yue-ARC-C
  (Yue-Benchmark, github.com/jiangjyjy/Yue-Benchmark @ 675254d, MIT; translated from ARC,
  CC BY-SA 4.0) put into ARC's schema (`choices: {text, label}`, `answerKey`): 40 test,
  10 train, 10 validation.
- ja_leaderboard_jnli.yaml: lm-eval's lm_eval/tasks/japanese_leaderboard/
  ja_leaderboard_jnli.yaml (3-shot from `train`, a description, "\\n" as target delimiter, a
  column as target), verbatim but for its dataset lines, over data/jnli_synthetic_*.jsonl:
  SYNTHETIC premise/hypothesis pairs made below from templates (not JGLUE's data, which is
  not shipped here), in JNLI's schema (sentence1, sentence2, label 0-2).

Run from the repository root: python3 tests/ref/make_task_fixtures.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import SHARED_DATA  # noqa: E402

OUT = "tests/fixtures/tasks"


def arc(start, n):
    with open(os.path.join(SHARED_DATA, "yue-benchmark/data/Yue-ARC-C/Yue-ARC-C.json"), encoding="utf-8") as f:
        rows = json.load(f)[start:start + n]
    out = []
    for r in rows:
        labels = [k for k in "ABCDE" if r.get(k)]
        out.append({"id": r["id"], "question": r["question"],
                    "choices": {"text": [r[k] for k in labels], "label": labels},
                    "answerKey": r["answer"]})
    return out


PEOPLE = ["田中さん", "佐藤さん", "鈴木さん", "高橋さん", "山本さん", "小林さん", "中村さん"]
PLACES = ["公園", "図書館", "駅", "喫茶店", "学校", "市場"]
ACTS = [("本を読んでいる", "本を読んでいない", "雑誌を読んでいる"),
        ("友達と話している", "一人で黙っている", "家族と話している"),
        ("コーヒーを飲んでいる", "何も飲んでいない", "紅茶を飲んでいる"),
        ("写真を撮っている", "写真を撮っていない", "絵を描いている")]


def jnli(start, n):
    """n pairs; label 0 entailment (含意), 1 contradiction (矛盾), 2 neutral (中立)."""
    out = []
    for i in range(start, start + n):
        who, where = PEOPLE[i % len(PEOPLE)], PLACES[(i * 5) % len(PLACES)]
        act, neg, other = ACTS[(i * 3) % len(ACTS)]
        label = (i * 7) % 3
        premise = f"{who}が{where}で{act}。"
        hyp = [f"{who}は{where}にいる。", f"{who}は{where}で{neg}。", f"{who}は{where}で{other}。"][label]
        out.append({"sentence_pair_id": str(i), "yjcaptions_id": "synthetic",
                    "sentence1": premise, "sentence2": hyp, "label": label})
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    os.makedirs(os.path.join(OUT, "data"), exist_ok=True)
    write_jsonl(os.path.join(OUT, "data/yue_arc_c_test.jsonl"), arc(0, 40))
    # lm-eval builds the few-shot sampler from `training_split` even for zero-shot runs.
    write_jsonl(os.path.join(OUT, "data/yue_arc_c_train.jsonl"), arc(40, 10))
    write_jsonl(os.path.join(OUT, "data/yue_arc_c_validation.jsonl"), arc(50, 10))
    write_jsonl(os.path.join(OUT, "data/jnli_synthetic_train.jsonl"), jnli(0, 12))
    write_jsonl(os.path.join(OUT, "data/jnli_synthetic_validation.jsonl"), jnli(100, 30))


if __name__ == "__main__":
    main()
