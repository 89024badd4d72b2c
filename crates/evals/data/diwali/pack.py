#!/usr/bin/env python3
"""Packs the texts DIWALI adapts, the GSM8K test set as the DIWALI repository holds it
(github.com/pramitsahoo/culture-evaluation @ 0b3cfeb, `dataset/gsm-8k/test.jsonl`; GSM8K is
MIT), into the file ethos embeds: the upstream lines unchanged, compressed with zstd -19.
Usage: python3 pack.py UPSTREAM_TEST_JSONL
"""
import json
import os
import subprocess
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    lines = [line.rstrip("\n") for line in f if line.strip()]
for line in lines:
    row = json.loads(line)
    assert isinstance(row.get("question"), str), line[:80]
data = ("\n".join(lines) + "\n").encode()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gsm8k_test.jsonl.zst")
with open(out, "wb") as f:
    f.write(subprocess.run(["zstd", "-19", "-q", "-c"], input=data, check=True, capture_output=True).stdout)
print(f"{len(lines)} rows, {len(data)} bytes -> {os.path.getsize(out)} bytes")
