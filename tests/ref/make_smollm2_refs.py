#!/usr/bin/env python3
"""HF transformers references for SmolLM2-135M-Instruct (Q4_1 GGUF), PyTorch CPU, float32.

Run from the repository root:

    /work/pyref/bin/python tests/ref/make_smollm2_refs.py [GGUF] [--skip-tokenize] [--skip-model] [--skip-hf-export]

GGUF defaults to models/SmolLM2-135M-Instruct.Q4_1.gguf. Writes:

  tests/fixtures/smollm2/tokenizer_ids.jsonl       ids of every CIVICS Statement / non-empty
                                                   "Statement - translated" and NormAd Story
  tests/fixtures/smollm2/hf_tokenizer_from_gguf.json   the tokenizer transformers builds from the GGUF
  tests/fixtures/smollm2/hf_f32_logprobs.json      per-text next-token logprobs / top1 + greedy run
  models/smollm2-f32-hf/                           dequantized f32 HF folder (git-ignored, local only)
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

from refdata import dataset_texts, sha256

FIX = "tests/fixtures/smollm2"
HF_OUT = "models/smollm2-f32-hf"


def load_tokenizer(gguf_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.path.dirname(gguf_path) or ".", gguf_file=os.path.basename(gguf_path))


def encode(tok, text):
    return list(tok(text, add_special_tokens=False).input_ids)


def tokenize_datasets(tok):
    os.makedirs(FIX, exist_ok=True)
    n = 0
    counts = {}
    with open(os.path.join(FIX, "tokenizer_ids.jsonl"), "w", encoding="utf-8") as f:
        for source, rid, field, text in dataset_texts():
            rec = {"source": source, "id": rid, "field": field, "text": text, "ids": encode(tok, text)}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
            counts[(source, field)] = counts.get((source, field), 0) + 1
    print("tokenizer_ids.jsonl:", n, "lines", {f"{s}/{k}": v for (s, k), v in counts.items()})


def describe_tokenizer(tok):
    from tokenizers import Tokenizer, pre_tokenizers

    bt = tok.backend_tokenizer
    j = json.loads(bt.to_str())
    print("normalizer:", json.dumps(j.get("normalizer")))
    print("pre_tokenizer:", json.dumps(j.get("pre_tokenizer")))
    print("decoder:", json.dumps(j.get("decoder")))
    for t in ["In 2024, 12345 people", "x  2024", "a\n\n3", "\u00b2\u00b3 \u0663\u0664 five"]:
        ids = encode(tok, t)
        print(f"  {t!r}: ids={ids} pieces={tok.convert_ids_to_tokens(ids)}")

    # llama.cpp's 'smollm' pre-tokenizer (and the original HF tokenizer.json) split \p{N}
    # one by one before the GPT-2 regex; transformers' GGUF converter does not. Count where
    # that matters on the data set texts.
    bt2 = Tokenizer.from_str(bt.to_str())
    bt2.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    texts = [t for _, _, _, t in dataset_texts()]
    diff = [t for t in texts if bt.encode(t, add_special_tokens=False).ids != bt2.encode(t, add_special_tokens=False).ids]
    print(f"  texts whose ids change with a Digits(individual_digits) pre-split: {len(diff)} of {len(texts)}")

    out = os.path.join(FIX, "hf_tokenizer_from_gguf.json")
    s = bt.to_str()  # compact JSON (save() pretty-prints by default: ~2.4x larger)
    if len(s.encode()) < 3_000_000:
        bt.save(out, pretty=False)
        print("saved", out, os.path.getsize(out), "bytes")
    else:
        print("tokenizer json is", len(s.encode()), "bytes; not saved")


def log_softmax64(logits):
    return torch.log_softmax(logits.to(torch.float64), dim=-1)


def model_refs(tok, gguf_path, export_hf):
    import transformers
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(gguf_path) or ".",
        gguf_file=os.path.basename(gguf_path),
        dtype=torch.float32,
        attn_implementation="eager",
    )
    model.eval()
    print(model.config)

    with open(os.path.join(FIX, "texts.json")) as f:
        spec = json.load(f)

    out_texts = []
    for entry in spec["texts"]:
        ids = encode(tok, entry["text"])
        if "<|im_start|>" in entry["text"]:
            assert ids.count(1) == entry["text"].count("<|im_start|>"), ids
            assert ids.count(2) == entry["text"].count("<|im_end|>"), ids
            assert ids[0] == 1, ids
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        lp = log_softmax64(logits)
        T = len(ids)
        logprobs = [float(lp[i, ids[i + 1]]) for i in range(T - 1)]
        top1 = [int(x) for x in logits[: T - 1].argmax(dim=-1)]
        out_texts.append({"name": entry["name"], "ids": ids, "logprobs": logprobs, "top1": top1})
        print(f"  {entry['name']}: T={T} sum logprob={sum(logprobs):.4f} mean={np.mean(logprobs):.4f}")

    prompt_ids = encode(tok, spec["greedy_prompt"])
    n_new = int(spec.get("greedy_tokens", 48))
    cur = list(prompt_ids)
    gen = []
    with torch.no_grad():
        for _ in range(n_new):  # full recompute each step: no KV-cache path involved
            logits = model(input_ids=torch.tensor([cur]), use_cache=False).logits[0, -1]
            nxt = int(logits.argmax())
            gen.append(nxt)
            cur.append(nxt)
    text = tok.decode(gen)
    print("  greedy:", repr(text))
    # cross-check with generate() (uses the KV cache)
    with torch.no_grad():
        g2 = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=n_new, do_sample=False, min_new_tokens=n_new,
            pad_token_id=tok.pad_token_id,
        )[0, len(prompt_ids):].tolist()
    if g2 != gen:
        print("  WARNING: generate() differs from step-by-step argmax:", g2)

    res = {
        "model_file_sha256": sha256(gguf_path),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "texts": out_texts,
        "greedy": {"prompt_ids": prompt_ids, "ids": gen, "text": text},
    }
    with open(os.path.join(FIX, "hf_f32_logprobs.json"), "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
    print("wrote", os.path.join(FIX, "hf_f32_logprobs.json"))

    if export_hf:
        export_hf_folder(model, tok)


def export_hf_folder(model, tok):
    from safetensors.torch import save_file

    os.makedirs(HF_OUT, exist_ok=True)
    sd = model.state_dict()
    tied = bool(model.config.tie_word_embeddings)
    if tied and "lm_head.weight" in sd:
        assert torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])
        sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}
    save_file(sd, os.path.join(HF_OUT, "model.safetensors"), metadata={"format": "pt"})

    cfg = model.config.to_dict()
    for k in ["quantization_config", "_name_or_path", "_model_name_or_path", "id2label", "label2id",
              "problem_type", "chunk_size_feed_forward", "is_encoder_decoder", "output_attentions",
              "output_hidden_states", "return_dict"]:
        cfg.pop(k, None)
    # transformers 5 writes rope_parameters; also give the legacy top-level key for other readers
    rp = cfg.get("rope_parameters") or {}
    if "rope_theta" in rp:
        cfg.setdefault("rope_theta", rp["rope_theta"])
    cfg["architectures"] = [type(model).__name__]
    with open(os.path.join(HF_OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)

    tok.backend_tokenizer.save(os.path.join(HF_OUT, "tokenizer.json"))
    tcfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "unk_token": tok.unk_token,
        "pad_token": tok.pad_token,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(model.config.max_position_embeddings),
    }
    if getattr(tok, "chat_template", None):
        tcfg["chat_template"] = tok.chat_template
    with open(os.path.join(HF_OUT, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2, ensure_ascii=False)
    print("exported", HF_OUT, sorted(os.listdir(HF_OUT)))
    verify_export(model)


def verify_export(model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m2 = AutoModelForCausalLM.from_pretrained(HF_OUT, dtype=torch.float32, attn_implementation="eager")
    m2.eval()
    t2 = AutoTokenizer.from_pretrained(HF_OUT)
    with open(os.path.join(FIX, "texts.json")) as f:
        text = json.load(f)["texts"][-1]["text"]
    ids = list(t2(text, add_special_tokens=False).input_ids)
    with torch.no_grad():
        a = model(input_ids=torch.tensor([ids]), use_cache=False).logits
        b = m2(input_ids=torch.tensor([ids]), use_cache=False).logits
    d = float((a - b).abs().max())
    print(f"  export reload: ids[:8]={ids[:8]} max |dlogit| vs GGUF-loaded model = {d:.3e}")
    assert d <= 1e-4, d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf", nargs="?", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--skip-tokenize", action="store_true")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--skip-hf-export", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(2)
    import transformers

    print("torch", torch.__version__, "transformers", transformers.__version__)
    tok = load_tokenizer(args.gguf)
    describe_tokenizer(tok)
    if not args.skip_tokenize:
        tokenize_datasets(tok)
    if not args.skip_model:
        model_refs(tok, args.gguf, not args.skip_hf_export)
    return 0


if __name__ == "__main__":
    sys.exit(main())
