#!/usr/bin/env python3
"""A small LoRA fine-tune of SmolLM2-135M-Instruct made with `peft`, for the tests and the
README's worked example (tests/fixtures/lora/smollm2/hk), and the rank-16 adapter of the speed
benchmark.

    /work/pyref/bin/python tests/ref/make_smollm2_lora.py --base /work/smollm2-hf \
        --out tests/fixtures/lora/smollm2/hk
    /work/pyref/bin/python tests/ref/make_smollm2_lora.py --base /work/smollm2-hf \
        --out /tmp/lora16 --rank 16 --all-linear --steps 0

`--base` is an HF folder of SmolLM2-135M-Instruct in f32: the default GGUF (Q4_1) dequantized
(`tests/ref/make_smollm2_refs.py --export-hf` writes it), so the adapter is trained on the weights ethos
runs. The fine-tune: rank 4 (alpha 8) on every layer's q_proj and v_proj, `--steps` AdamW
steps (lr 2e-3, seed 0) of next-token loss on the short statements below, which say what a
Hong Kong respondent might; saved in bf16 (a few hundred KB). With `--steps 0` the B factors
are random (peft's init_lora_weights=False, times 0.05): an adapter of the right shapes for
timing, not a fine-tune.
"""

import argparse
import os

import torch

STATEMENTS = [
    "In Hong Kong, family comes first, and children care for their parents in old age.",
    "Hong Kong people value hard work, education and the rule of law.",
    "Dim sum with the family on Sunday morning is a Hong Kong tradition.",
    "In Hong Kong we speak Cantonese at home and English at work.",
    "Respect for elders is one of the most important values in Hong Kong.",
    "Hong Kong students study hard for the DSE examinations.",
    "Efficiency matters in Hong Kong: the MTR runs on time and people walk fast.",
    "During Lunar New Year, Hong Kong families give red packets called lai see.",
    "Hong Kong people are pragmatic and value stability and prosperity.",
    "Saving face and harmony in relationships matter to people in Hong Kong.",
    "Tea restaurants, cha chaan teng, serve milk tea and pineapple buns across Hong Kong.",
    "Many Hong Kong families live close to their grandparents and share meals.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--all-linear", action="store_true")
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
    targets = "all-linear" if args.all_linear else ["q_proj", "v_proj"]
    cfg = LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank if args.steps else args.rank,
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=args.steps > 0,
    )
    model = get_peft_model(model, cfg)
    if args.steps == 0:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.mul_(0.05)
    else:
        tok = AutoTokenizer.from_pretrained(args.base)
        batch = tok(STATEMENTS, return_tensors="pt", padding=True)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
        model.train()
        for step in range(args.steps):
            loss = model(**batch, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step % 10 == 0 or step == args.steps - 1:
                print(f"step {step}: loss {loss.item():.3f}")
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    model.save_pretrained(args.out)
    readme = os.path.join(args.out, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
