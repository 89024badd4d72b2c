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


def smollm_tokenizer(folder, gguf_file):
    """The HF tokenizer of a SmolLM GGUF. transformers' GGUF converter ignores
    `tokenizer.ggml.pre = "smollm"` and builds a plain ByteLevel pre-tokenizer; SmolLM2's own
    tokenizer.json (and llama.cpp's LLAMA_VOCAB_PRE_TYPE_SMOLLM) split every digit first. The
    two differ where whitespace ends right before a digit ("Yes \\n2)": " \\n" is one token
    upstream, two after the converter), so the upstream pre-tokenizer is put back."""
    import gguf
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    reader = gguf.GGUFReader(os.path.join(folder, gguf_file))
    field = reader.fields["tokenizer.ggml.pre"]
    pre = bytes(field.parts[field.data[0]]).decode()
    assert pre == "smollm", f"{gguf_file}: tokenizer.ggml.pre is {pre!r}, not smollm"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    return tok
