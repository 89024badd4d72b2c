#!/usr/bin/env python3
"""References for the rewards in `crates/steer/src/rewards`.

    /work/pyref/bin/python tests/ref/make_reward_refs.py [GGUF]

Writes `tests/fixtures/rewards/`:

  diversity.json   NLTK 3.10's NLTKWordTokenizer (the tokenizer behind word_tokenize; applied to
                   the whole text, as word_tokenize(preserve_line=True)) tokens of NormAd stories,
                   CIVICS statements and hand-picked hard cases, and MAP's diversity of each:
                   prod_{n=2,3,4} distinct n-grams / (n-grams + 1).
  smollm2.json     SmolLM2-135M-Instruct (GGUF, dequantized to f32 by transformers) on a few
                   prompt/response pairs: `perplexity` (mean log-prob of every token of
                   prompt + response after the first) and `lm-judge` (log P(Yes) - log P(No)
                   after the judge prompt in the model's chat template), with the ids used.
"""

import json
import os
import sys

import numpy as np
import torch

from refdata import dataset_texts

FIX = "tests/fixtures/rewards"

HARD = [
    '"I can\'t go," she said -- cannot!',
    "He said 'hello' and left... Then (quietly) returned [again] {twice} <now>.",
    "Prices: $3.88, 3,36 euros; 50% off & more @ #1 shop.",
    "“Smart quotes” and ‘single ones’ — with an em dash – and en dash.",
    "Gimme the thing, gonna wanna gotta lemme know; 'tis fine, 'twas good.",
    "They're here, we've gone, you'll see, I'm sure, he'd know, it's done.",
    "Mr. Smith went to Washington. He arrived at 5 p.m. on Jan. 3rd.",
    "What?! No way!! Really?",
    "Values: respect, harmony, and filial piety; family first.",
    "",
    "one",
    "a b a b",
]

PAIRS = [
    ("What should I bring to a dinner at a friend's home?",
     " A small gift such as fruit or flowers is a kind way to thank your host."),
    ("What should I bring to a dinner at a friend's home?",
     " Nothing. They invited you, so it is their job to feed you."),
    ("How do I greet an older relative?",
     " Greet them first, politely, and use the proper family title."),
    ("How do I greet an older relative?",
     " Just wave from across the room; titles are old-fashioned."),
]

QUESTION = "Is the response respectful and polite?"


def diversity_refs():
    from nltk.tokenize import NLTKWordTokenizer

    tok = NLTKWordTokenizer()
    texts = []
    seen = set()
    for source, _, field, text in dataset_texts():
        key = (source, field)
        n = sum(1 for s in seen if s[0] == key)
        if n < 150 and (key, text) not in seen and (field == "Story" or field == "Statement"):
            seen.add((key, text))
            texts.append(text)
    texts += HARD
    out = []
    for t in texts:
        words = tok.tokenize(t)
        d = 1.0
        for n in (2, 3, 4):
            grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
            d *= len(set(grams)) / (len(grams) + 1)
        out.append({"text": t, "tokens": words, "diversity": d})
    import nltk
    with open(os.path.join(FIX, "diversity.json"), "w", encoding="utf-8") as f:
        json.dump({"nltk": nltk.__version__, "cases": out}, f, ensure_ascii=False, separators=(",", ":"))
    print("diversity.json:", len(out), "texts")


def smollm2_refs(gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.dirname(gguf) or ".", os.path.basename(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()

    def logprobs(ids):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        return [float(lp[i - 1, ids[i]]) for i in range(1, len(ids))]

    def enc(text):
        return list(tok(text, add_special_tokens=False).input_ids)

    cases = []
    for prompt, response in PAIRS:
        ids = enc(prompt + response)
        ppl = float(np.mean(logprobs(ids)))
        ask = f"{QUESTION}\n\nPrompt: {prompt}\nResponse: {response}\n\nAnswer with Yes or No."
        text = tok.apply_chat_template([{"role": "user", "content": ask}], tokenize=False,
                                       add_generation_prompt=True)
        ctx = enc(text)
        answers = {}
        for a in ("Yes", "No"):
            whole = enc(text + a)
            cont = whole[len(ctx):] if whole[:len(ctx)] == ctx and len(whole) > len(ctx) else enc(a)
            answers[a] = (cont, float(sum(logprobs(ctx + cont)[len(ctx) - 1:])))
        cases.append({"prompt": prompt, "response": response, "perplexity_ids": ids, "perplexity": ppl,
                      "judge_text": text, "judge_ids": ctx, "yes_ids": answers["Yes"][0],
                      "no_ids": answers["No"][0], "judge": answers["Yes"][1] - answers["No"][1]})
        print(f"ppl {ppl:.4f} judge {cases[-1]['judge']:.4f}")
    import transformers
    with open(os.path.join(FIX, "smollm2.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "question": QUESTION, "cases": cases}, f,
                  ensure_ascii=False, indent=1)


def main():
    os.makedirs(FIX, exist_ok=True)
    diversity_refs()
    gguf = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    smollm2_refs(gguf)


if __name__ == "__main__":
    main()
