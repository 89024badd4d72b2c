"""An HF folder (f32 safetensors, config, tokenizer) dequantized from a GGUF, for peers that
read HF folders only (vLLM). transformers reads the GGUF; it refuses `save_pretrained` on a
GGUF-loaded model, so the state dict is written with safetensors, and `architectures` is set
(the converter leaves it empty and vLLM needs it), and the GGUF's `quantization_config` is
dropped (the weights written are plain f32; vLLM refuses a `gguf` quantization method).

    python benches/peers/gguf_to_hf.py models/SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR
"""
import json
import os
import sys

import gguf as gguf_py
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/ref"))
from refdata import smollm_tokenizer  # noqa: E402

gguf, out = sys.argv[1], sys.argv[2]
d, f = os.path.split(os.path.abspath(gguf))
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
field = gguf_py.GGUFReader(gguf).fields.get("tokenizer.ggml.pre")
pre = bytes(field.parts[field.data[0]]).decode() if field else None
# transformers' converter drops SmolLM's digit-splitting pre-tokenizer; refdata puts it back.
tok = smollm_tokenizer(d, f) if pre == "smollm" else AutoTokenizer.from_pretrained(d, gguf_file=f)
os.makedirs(out, exist_ok=True)
state = {k: v.contiguous() for k, v in model.state_dict().items()}
if model.config.tie_word_embeddings:
    state.pop("lm_head.weight", None)
save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
cfg = model.config.to_dict()
cfg["architectures"] = [type(model).__name__]
# The weights written are plain f32: nothing of the GGUF's quantization remains.
cfg.pop("quantization_config", None)
cfg["torch_dtype"] = "float32"
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
tok.save_pretrained(out)
print(out)
