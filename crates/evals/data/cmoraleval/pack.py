#!/usr/bin/env python3
"""Packs CMoralEval (github.com/tjunlp-lab/CMoralEval @ 9db71bf, MIT) into the one file ethos
embeds: every line of the upstream `data/test_data/*` and `data/val_data/*` files, in file-name
order, with the file's name added as `"file"` (e.g. `c1_party_moral_test`), compressed with
zstd -19. Usage: python3 pack.py UPSTREAM_DATA_DIR  (the folder holding test_data/, val_data/)
"""
import json
import os
import subprocess
import sys

src = sys.argv[1]
lines = []
for sub, suffix in (("test_data", "_test_data"), ("val_data", "_val_data")):
    for name in sorted(os.listdir(os.path.join(src, sub))):
        tag = name.removeprefix("cmoraleval_").removesuffix(suffix) + "_" + sub.split("_")[0]
        with open(os.path.join(src, sub, name), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    lines.append(json.dumps({"file": tag, **row}, ensure_ascii=False))
data = ("\n".join(lines) + "\n").encode()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cmoraleval.jsonl.zst")
with open(out, "wb") as f:
    f.write(subprocess.run(["zstd", "-19", "-q", "-c"], input=data, check=True, capture_output=True).stdout)
print(f"{len(lines)} rows, {len(data)} bytes -> {os.path.getsize(out)} bytes")
