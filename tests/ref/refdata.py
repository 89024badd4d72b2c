"""What the reference scripts share: where the benchmark data lives, the order in which the
fixtures list its texts, and file hashing.

The data is read from the steering repo's shared/ folder beside this checkout
(`../shared/data`), or from $ETHOS_SHARED_DATA.
"""
import hashlib
import json
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_DATA = os.environ.get("ETHOS_SHARED_DATA", os.path.normpath(os.path.join(_HERE, "../../../shared/data")))
CIVICS = os.path.join(SHARED_DATA, "civics/civics_dataset.json")
NORMAD = os.path.join(SHARED_DATA, "normad/normad_eti_reconstructed.jsonl")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_texts():
    """(source, id, field, text) in fixture order: every CIVICS Statement, every non-empty
    CIVICS 'Statement - translated', every NormAd Story, each in file order."""
    with open(CIVICS, encoding="utf-8") as f:
        civics = json.load(f)
    for r in civics:
        yield "civics", r["ID"], "Statement", r["Statement"]
    for r in civics:
        if r["Statement - translated"]:
            yield "civics", r["ID"], "Statement - translated", r["Statement - translated"]
    with open(NORMAD, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                yield "normad", r["ID"], "Story", r["Story"]
