"""Compares `ethos score` JSONL outputs token by token against a reference run.

usage: compare_logprobs.py REFERENCE.jsonl NAME=OTHER.jsonl ...
Prints one JSON object per comparison: max and mean |difference| of the token log-probs, and
the share of requests whose best continuation (highest total log-prob) is the same."""
import json
import sys


def load(path):
    return [json.loads(line) for line in open(path) if line.strip()]


ref = load(sys.argv[1])
for arg in sys.argv[2:]:
    name, path = arg.split("=", 1)
    other = load(path)
    assert len(other) == len(ref), f"{path}: {len(other)} lines, reference {len(ref)}"
    diffs, same_best = [], 0
    for a, b in zip(ref, other):
        ca, cb = a["continuations"], b["continuations"]
        for x, y in zip(ca, cb):
            assert x["token_ids"] == y["token_ids"]
            diffs += [abs(p - q) for p, q in zip(x["token_logprobs"], y["token_logprobs"])]
        best = lambda cs: max(range(len(cs)), key=lambda i: cs[i]["logprob"])
        same_best += best(ca) == best(cb)
    print(json.dumps({
        "compare": name, "reference": sys.argv[1], "tokens": len(diffs),
        "max_abs_diff": max(diffs), "mean_abs_diff": sum(diffs) / len(diffs),
        "same_best_continuation": same_best / len(ref),
    }))
