#!/usr/bin/env python3
"""Makes tests/fixtures/hkcanto/: a SYNTHETIC HKCanto-Eval in the published layout of
github.com/hon9kon9ize/hkeval2025 `data/` (SET/{dev,test}/SUBJECT_{dev,test}.csv, headerless
rows `question, A, B, C, D, answer`), written for ethos' tests (the real questions have no
licence and are not shipped), and `expected_prompts.json`: each test question's five-shot and
zero-shot prompt as the authors' `scripts/eval.py` builds it (its `format_example` and
`gen_prompt`, re-stated here, over `pandas.read_csv(header=None)`).
Usage: python3 make_hkcanto_fixture.py   (needs pandas)
"""
import csv
import json
import os

import pandas as pd

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "hkcanto")
data = os.path.join(root, "data")

sets = {
    "cultural": {
        "food": [
            ["(synthetic) 菠蘿包入面通常有冇菠蘿？", "有", "冇", "有時有", "視乎季節", "B"],
            ["(synthetic) 港式奶茶又叫咩？", "絲襪奶茶", "珍珠奶茶", "鴛鴦", "檸檬茶", "A"],
            ["(synthetic) 雞蛋仔係咩？", "一種街頭小食", "一種湯", "一種飯", "一種茶", "A"],
        ],
        "local_knowledge": [
            ["(synthetic) 香港有幾多個區議會分區？", "18", "9", "20", "12", "A"],
            ["(synthetic) 天星小輪來往邊兩個地方？", "中環同尖沙咀", "屯門同元朗", "沙田同大埔", "東涌同梅窩", "a"],
        ],
    },
    "dse": {
        "math_en": [
            # An all-number option column: pandas prints its numbers (0.50 as 0.5).
            ["(synthetic) What is 1/2 as a decimal?", "0.50", "0.2", "1.5", "2", "A"],
            ["(synthetic) 3 + 4 = ?", "7", "12", "1", "34", "A"],
            ["(synthetic) Which is prime?", "9", "15", "NA", "11", "Ď"],
        ],
    },
}

dev_rows = lambda subject: [
    [f"(synthetic) dev question {k} about {subject}?", f"opt {k}a", f"opt {k}b", f"opt {k}c", f"opt {k}d", "ABCD"[k % 4]]
    for k in range(6)
]

for set_name, subjects in sets.items():
    for split in ("dev", "test"):
        os.makedirs(os.path.join(data, set_name, split), exist_ok=True)
    for subject, rows in subjects.items():
        for split, rs in (("test", rows), ("dev", dev_rows(subject))):
            with open(os.path.join(data, set_name, split, f"{subject}_{split}.csv"), "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(rs)

# The authors' prompt, over pandas' reading of the files.
choices = ["A", "B", "C", "D"]


def format_subject(subject):
    return " ".join(subject.split("_")).strip()


def format_example(df, idx, include_answer=True):
    prompt = df.iloc[idx, 0]
    k = df.shape[1] - 2
    for j in range(k):
        prompt += "\n{}. {}".format(choices[j], df.iloc[idx, j + 1])
    prompt += "\nAnswer:"
    if include_answer:
        prompt += " {}\n\n".format(df.iloc[idx, k + 1])
    return prompt


def gen_prompt(train_df, subject, k):
    extra = " DO NOT EXPLAIN." if k == 0 else ""
    if subject == "local_knowledge":
        subject = "geography"
    prompt = "The following are multiple choice questions (with answers) about {}.{}\n\n".format(format_subject(subject), extra)
    for i in range(k):
        prompt += format_example(train_df, i)
    return prompt


expected = {}
for set_name, subjects in sets.items():
    for subject in sorted(subjects):
        dev = pd.read_csv(os.path.join(data, set_name, "dev", f"{subject}_dev.csv"), header=None)
        test = pd.read_csv(os.path.join(data, set_name, "test", f"{subject}_test.csv"), header=None)
        for i in range(test.shape[0]):
            end = format_example(test, i, include_answer=False)
            expected[f"{set_name}/{subject}/{i + 1}"] = {
                "five-shot": gen_prompt(dev[:5], subject, 5) + end,
                "zero-shot": gen_prompt(dev[:0], subject, 0) + end,
                "answer": str(test.iloc[i, test.shape[1] - 1]),
            }
with open(os.path.join(root, "expected_prompts.json"), "w", encoding="utf-8") as f:
    json.dump(expected, f, ensure_ascii=False, indent=1, sort_keys=True)
with open(os.path.join(root, "README.md"), "w", encoding="utf-8") as f:
    f.write("# SYNTHETIC HKCanto-Eval fixture\n\nMade by `tests/ref/make_hkcanto_fixture.py`: invented questions in the published\nlayout of github.com/hon9kon9ize/hkeval2025 `data/`, not the real ones (those have no\nlicence). `expected_prompts.json` holds the authors' prompts for them, built by their\n`format_example`/`gen_prompt` over `pandas.read_csv(header=None)`.\n")
print(len(expected), "questions")
