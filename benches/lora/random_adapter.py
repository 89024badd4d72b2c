#!/usr/bin/env python3
"""A PEFT LoRA adapter folder of random f32 factors for SmolLM2-135M, for speed measurements
(`ethos bench speed --lora DIR`): rank R (alpha R, so scale 1) on every projection of every
layer, or on q_proj and v_proj only. Python's standard library only (no PyTorch, no numpy),
so that the benchmark's adapter can be made on any machine; the values are those of a seeded
generator and mean nothing.

    python3 benches/lora/random_adapter.py --out /tmp/lora16 --rank 16 [--qv-only] [--bf16]
"""
import argparse
import array
import json
import os
import random
import struct

# SmolLM2-135M: 30 layers, hidden 576, 3 key/value heads of 64, MLP 1536.
LAYERS, HIDDEN, KV, MLP = 30, 576, 192, 1536
SHAPES = {  # module: (in, out)
    "self_attn.q_proj": (HIDDEN, HIDDEN),
    "self_attn.k_proj": (HIDDEN, KV),
    "self_attn.v_proj": (HIDDEN, KV),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (HIDDEN, MLP),
    "mlp.up_proj": (HIDDEN, MLP),
    "mlp.down_proj": (MLP, HIDDEN),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--qv-only", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="store the factors as bf16")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    modules = [m for m in SHAPES if not args.qv_only or m.endswith(("q_proj", "v_proj"))]
    r = args.rank
    tensors = []  # (name, shape, little-endian bytes)
    for layer in range(LAYERS):
        for m in modules:
            inp, out = SHAPES[m]
            prefix = f"base_model.model.model.layers.{layer}.{m}"
            for kind, shape, bound in (("lora_A", (r, inp), inp**-0.5), ("lora_B", (out, r), 0.05)):
                values = array.array("f", (rng.uniform(-bound, bound) for _ in range(shape[0] * shape[1])))
                if args.bf16:
                    words = array.array("I", values.tobytes())
                    # Round to nearest even on the upper 16 bits.
                    data = array.array(
                        "H", (((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words)
                    ).tobytes()
                else:
                    data = values.tobytes()
                tensors.append((f"{prefix}.{kind}.weight", shape, data))
    dtype = "BF16" if args.bf16 else "F32"
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for _, _, data in tensors:
            f.write(data)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "r": r,
        "lora_alpha": r,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": sorted({m.split(".")[1] for m in modules}),
        "use_rslora": False,
        "use_dora": False,
    }
    with open(os.path.join(args.out, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(f"{args.out}: rank {r}, {len(tensors) // 2} modules, {dtype}")


if __name__ == "__main__":
    main()
