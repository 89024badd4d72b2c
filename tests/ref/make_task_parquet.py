#!/usr/bin/env python3
"""The Yue-ARC-C task data of tests/fixtures/tasks/data as Parquet, written by pyarrow with its
defaults (snappy pages), as `datasets` writes and reads Parquet: the data of
tests/fixtures/tasks/arc_challenge_chat.yaml. Run from the repository root:

    python tests/ref/make_task_parquet.py
"""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

DATA = "tests/fixtures/tasks/data"

for split in ("train", "validation", "test"):
    with open(os.path.join(DATA, f"yue_arc_c_{split}.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, os.path.join(DATA, f"yue_arc_c_{split}.parquet"))
    print(split, table.num_rows, table.schema.types)
