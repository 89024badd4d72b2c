#!/usr/bin/env python3
"""Reference token ids for the Gemma 3 270M GGUF tokenizer (SentencePiece, tokenizer.ggml.model = "llama").

Run from the repository root:

    /work/pyref/bin/python tests/ref/make_gemma3_tokenizer_refs.py [GGUF] \
        [--llama-python /work/pyllama/bin/python] [--llama-lib /work/peers/llama.cpp-build/bin] \
        [--no-llamacpp] [--describe-only]

GGUF defaults to models/gemma-3-270m-q4_k_m.gguf. The tokenizer is built by transformers from
the GGUF itself (AutoTokenizer.from_pretrained(dir, gguf_file=name)); every text is encoded with
add_special_tokens=False. Writes

  tests/fixtures/gemma3/tokenizer_ids.jsonl   one line per text:
      {"source", "id", "field", "ids"}                   (CIVICS / NormAd texts; no text field)
      {"source": "extra", "id", "field", "text", "ids"}  (12 hand-picked tricky strings)
      plus "llamacpp_ids" on the lines where llama.cpp's ids differ from transformers'.

Order: every CIVICS "Statement" (700), every non-empty CIVICS "Statement - translated" (560),
every NormAd "Story" (2633), then the 12 extras.

llama.cpp ids come from llama-cpp-python (a separate venv): this script re-runs itself under
--llama-python with --llamacpp-worker, which reads the texts as JSON lines on stdin and writes
Llama(model, vocab_only=True).tokenize(text.encode(), add_bos=False, special=True) per line.
It also prints the GGUF tokenizer metadata and the structure of the transformers tokenizer.
"""

import argparse
import json
import os
import subprocess
import sys
from collections import Counter

from refdata import dataset_texts, sha256

FIX = "tests/fixtures/gemma3"
DEFAULT_GGUF = "models/gemma-3-270m-q4_k_m.gguf"

EXTRAS = [
    " leading space",
    "trailing space ",
    "multiple   spaces  between   words",
    "   ",
    "line one\nline two\n\n\nline five\n",
    "tab\tseparated\t\tvalues\t",
    "2024 12345",
    "emoji \U0001F642 smile\U0001F642",
    "\u9999\u6e2f\u7684\u6587\u5316",  # 香港的文化
    "na\u00efve caf\u00e9",  # naïve café
    "<start_of_turn>user\nHi<end_of_turn>\n",
    "",
]


def all_texts():
    """(source, id, field, text, is_extra) in fixture order."""
    for source, rid, field, text in dataset_texts():
        yield source, rid, field, text, False
    for i, t in enumerate(EXTRAS):
        yield "extra", i, "text", t, True


# --------------------------------------------------------------------------- llama.cpp worker
def llamacpp_worker(model):
    import llama_cpp
    from llama_cpp import Llama

    m = Llama(model_path=model, vocab_only=True, verbose=False)
    sys.stdout.write(json.dumps({"llama_cpp_python": llama_cpp.__version__}) + "\n")
    for line in sys.stdin:
        text = json.loads(line)
        ids = [int(t) for t in m.tokenize(text.encode("utf-8"), add_bos=False, special=True)]
        sys.stdout.write(json.dumps(ids) + "\n")
    sys.stdout.flush()


def llamacpp_ids(texts, model, py, lib):
    env = dict(os.environ, LLAMA_CPP_LIB_PATH=lib)
    inp = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts)
    out = subprocess.run(
        [py, os.path.abspath(__file__), model, "--llamacpp-worker"],
        input=inp.encode("utf-8"), capture_output=True, env=env, check=True,
    ).stdout.decode("utf-8").splitlines()
    info = json.loads(out[0])
    ids = [json.loads(l) for l in out[1:]]
    assert len(ids) == len(texts), (len(ids), len(texts))
    return info, ids


# --------------------------------------------------------------------------- descriptions
def describe_gguf(path):
    from gguf import GGUFReader

    r = GGUFReader(path)
    fields = r.fields

    def val(key):
        f = fields.get(key)
        if f is None:
            return None
        v = f.contents()
        return v

    print("== GGUF tokenizer metadata")
    for k in sorted(fields):
        if k.startswith("tokenizer.") and k not in (
            "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges", "tokenizer.chat_template",
        ):
            print(f"  {k} = {val(k)!r}")
    tokens = val("tokenizer.ggml.tokens")
    scores = val("tokenizer.ggml.scores")
    types = val("tokenizer.ggml.token_type")
    print("  tokenizer.ggml.tokens: n =", len(tokens))
    print("  tokenizer.ggml.scores present:", scores is not None, "n =", None if scores is None else len(scores))
    print("  tokenizer.ggml.token_type present:", types is not None)
    print("  tokenizer.ggml.merges present:", "tokenizer.ggml.merges" in fields)
    print("  tokenizer.chat_template present:", "tokenizer.chat_template" in fields)
    tname = {1: "NORMAL", 2: "UNKNOWN", 3: "CONTROL", 4: "USER_DEFINED", 5: "UNUSED", 6: "BYTE"}
    if types is not None:
        c = Counter(types)
        print("  token_type counts:", {f"{k}({tname.get(k, '?')})": v for k, v in sorted(c.items())})

    def show(i):
        s = None if scores is None else scores[i]
        t = None if types is None else types[i]
        print(f"    {i:6d} {tokens[i]!r:28} type={t}({tname.get(t, '?')}) score={s}")

    print("  first 10 tokens:")
    for i in range(10):
        show(i)
    byte_ids = [i for i, t in enumerate(tokens) if len(t) == 6 and t.startswith("<0x") and t.endswith(">")]
    print(f"  byte tokens <0x..>: n = {len(byte_ids)}, ids {byte_ids[:1]}..{byte_ids[-1:]}")
    for i in byte_ids[:3] + [b for b in byte_ids if tokens[b] in ("<0x0A>", "<0x20>", "<0xFF>")]:
        show(i)
    for name in ("<start_of_turn>", "<end_of_turn>", "<image_soft_token>", "\n", "\u2581", "\u2581\u2581", "\t"):
        if name in tokens:
            show(tokens.index(name))
    if types is not None:
        for k in sorted(set(types)):
            ex = [i for i, t in enumerate(types) if t == k][:3]
            print(f"  examples of type {k}({tname.get(k, '?')}):", [(i, tokens[i]) for i in ex])
    return {
        "n_tokens": len(tokens),
        "token_type_counts": dict(sorted(Counter(types).items())) if types is not None else None,
    }


def describe_tokenizer(tok):
    j = json.loads(tok.backend_tokenizer.to_str())
    m = j["model"]
    print("== transformers tokenizer built from the GGUF:", type(tok).__name__)
    print("  normalizer:", json.dumps(j.get("normalizer")))
    print("  pre_tokenizer:", json.dumps(j.get("pre_tokenizer")))
    print("  post_processor:", json.dumps(j.get("post_processor"))[:400])
    print("  decoder:", json.dumps(j.get("decoder")))
    print("  model.type:", m.get("type"), " byte_fallback:", m.get("byte_fallback"),
          " unk_id/unk_token:", m.get("unk_id", m.get("unk_token")),
          " fuse_unk:", m.get("fuse_unk"), " ignore_merges:", m.get("ignore_merges"))
    if m.get("type") == "BPE":
        print("  merges:", len(m.get("merges", [])), " vocab:", len(m.get("vocab", {})))
    else:
        print("  vocab:", len(m.get("vocab", [])))
    print("  added_tokens:", len(j.get("added_tokens", [])), " special:",
          sum(1 for a in j.get("added_tokens", []) if a.get("special")))
    print("  bos/eos/unk/pad:", [(t, tok.convert_tokens_to_ids(t) if t else None)
                                  for t in (tok.bos_token, tok.eos_token, tok.unk_token, tok.pad_token)])
    print("  add_bos_token:", getattr(tok, "add_bos_token", None), " add_eos_token:", getattr(tok, "add_eos_token", None))
    print("  with add_special_tokens=True, 'Hi' ->", tok("Hi").input_ids)


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?", default=DEFAULT_GGUF)
    ap.add_argument("--llama-python", default="/work/pyllama/bin/python")
    ap.add_argument("--llama-lib", default=os.environ.get("LLAMA_CPP_LIB_PATH", "/work/peers/llama.cpp-build/bin"))
    ap.add_argument("--no-llamacpp", action="store_true")
    ap.add_argument("--describe-only", action="store_true")
    ap.add_argument("--llamacpp-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.llamacpp_worker:
        llamacpp_worker(args.gguf)
        return

    import gguf
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    try:
        import sentencepiece
        spv = sentencepiece.__version__
    except Exception:
        spv = None
    print("transformers", transformers.__version__, "tokenizers", tokenizers.__version__,
          "gguf", getattr(gguf, "__version__", "?"), "sentencepiece", spv)
    print("gguf sha256", sha256(args.gguf))

    describe_gguf(args.gguf)
    tok = AutoTokenizer.from_pretrained(os.path.dirname(args.gguf) or ".", gguf_file=os.path.basename(args.gguf))
    describe_tokenizer(tok)
    if args.describe_only:
        return

    rows = list(all_texts())
    texts = [r[3] for r in rows]
    hf = [list(tok(t, add_special_tokens=False).input_ids) for t in texts]

    lc = None
    if not args.no_llamacpp:
        info, lc = llamacpp_ids(texts, args.gguf, args.llama_python, args.llama_lib)
        print("llama-cpp-python", info["llama_cpp_python"])

    os.makedirs(FIX, exist_ok=True)
    ndiff = 0
    ndiff_by = Counter()
    examples = []
    with open(os.path.join(FIX, "tokenizer_ids.jsonl"), "w", encoding="utf-8") as f:
        for i, (source, rid, field, text, extra) in enumerate(rows):
            rec = {"source": source, "id": rid, "field": field}
            if extra:
                rec["text"] = text
            rec["ids"] = hf[i]
            if lc is not None and lc[i] != hf[i]:
                rec["llamacpp_ids"] = lc[i]
                ndiff += 1
                ndiff_by[f"{source}/{field}"] += 1
                examples.append((rec, text))
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")

    counts = Counter(f"{r[0]}/{r[2]}" for r in rows)
    print("tokenizer_ids.jsonl:", len(rows), "lines", dict(counts), "total ids", sum(map(len, hf)))
    if lc is not None:
        print(f"llama.cpp vs transformers: {ndiff} of {len(rows)} texts differ", dict(ndiff_by))
        for rec, text in examples[:5]:
            a, b = rec["ids"], rec["llamacpp_ids"]
            k = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
            print(f"  {rec['source']}/{rec['id']}/{rec['field']}: first diff at {k}")
            print("    text around:", repr(tok.decode(a[max(0, k - 3):k + 4])))
            print("    hf  :", a[max(0, k - 3):k + 6], tok.convert_ids_to_tokens(a[max(0, k - 3):k + 6]))
            print("    lcpp:", b[max(0, k - 3):k + 6], tok.convert_ids_to_tokens(b[max(0, k - 3):k + 6]))


if __name__ == "__main__":
    main()
