#!/usr/bin/env python3
"""SmolLM2's HF tokenizer folder (tokenizer.json, tokenizer_config.json), built from the GGUF
as the lm-eval references were (`refdata.smollm_tokenizer`: transformers' converter with
SmolLM's digit-splitting pre-tokenizer put back), for clients that split text with an HF
tokenizer and cannot read a GGUF without PyTorch: lm-evaluation-harness' `local-completions`
in `tests/clients/lmeval_local_completions.py`.

    python tests/ref/make_smollm2_hf_tokenizer.py   # (the venv needs torch, transformers, gguf)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import smollm_tokenizer  # noqa: E402

OUT = "tests/fixtures/smollm2/hf_tokenizer"
tok = smollm_tokenizer("models", "SmolLM2-135M-Instruct.Q4_1.gguf")
tok.save_pretrained(OUT)
for f in sorted(os.listdir(OUT)):
    if f not in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(os.path.join(OUT, f))
print(OUT, sorted(os.listdir(OUT)))
