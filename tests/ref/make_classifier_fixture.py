#!/usr/bin/env python3
"""A tiny random sequence-classification reward model (`LlamaForSequenceClassification`,
one label, as reward models are) with a word-level tokenizer, and transformers' scores.

    /work/pyref/bin/python tests/ref/make_classifier_fixture.py

Writes `tests/fixtures/tiny/llama_classifier/`: config.json, model.safetensors (HF
save_pretrained, f32), tokenizer.json (a WordLevel vocabulary of 320 words, whitespace and
punctuation split), and reference.json: texts, their ids, and the score transformers gives
each alone, plus the scores of a right-padded batch of all of them (transformers pools the
last non-pad token).
"""

import json
import os

import numpy as np
import torch

OUT = "tests/fixtures/tiny/llama_classifier"
WORDS = """the a an and or but if then so of to in on at by for with from as is are was were be
been it this that these those he she they we you i me him her them us my your our their his its
what which who when where why how all any each every some no not yes do does did done have has
had will would can could should may might must shall good bad kind rude polite respect help
helpful harm harmful thank thanks please sorry welcome friend family elder neighbour teacher
guest host gift dinner music night home school work city people person child children parent
mother father brother sister music loud quiet noise talk ask answer say said tell told greet
bring give take make go come see look know think feel want need like love hate keep let put
call try use find leave stay wait listen speak shout smile laugh cry help hurt share care time
day year way thing man woman life world hand part place case week point number group problem
fact very really just also only even still too more most less much many few little big small
new old great high long right left young important different same early late hard easy best
better worse first last next other own sure true false wrong fine nice calm angry happy sad
thank-you always never often sometimes again here there now today tomorrow yesterday soon
before after while because although until since about into over under between through during
without against among around up down out off away back""".split()


def vocab():
    words = []
    for w in WORDS:
        if w not in words:
            words.append(w)
    words = ["[UNK]", "[PAD]"] + words + list(".,!?;:'\"()-")
    while len(words) < 320:
        words.append(f"w{len(words)}")
    return {w: i for i, w in enumerate(words[:320])}


def tokenizer(folder):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    t = Tokenizer(models.WordLevel(vocab=vocab(), unk_token="[UNK]"))
    t.normalizer = normalizers.Lowercase()
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    t.save(os.path.join(folder, "tokenizer.json"))
    return t


TEXTS = [
    "Thank you, please come to dinner with your family.",
    "Shut up and leave, nobody wants your rude music!",
    "How should I greet an elder? Smile, and say thank you.",
    "The neighbour plays loud music at night.",
    "Sorry.",
]


def main():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    os.makedirs(OUT, exist_ok=True)
    tok = tokenizer(OUT)
    cfg = LlamaConfig(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-5, num_labels=1, pad_token_id=1, bos_token_id=None, eos_token_id=None,
                      tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    cfg._attn_implementation = "eager"
    torch.manual_seed(99)
    model = LlamaForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for n, p in sorted(model.named_parameters()):
            scale = 0.5 if ("embed" in n or "score" in n) else 0.1
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if "norm" in n else
                    scale * torch.randn(p.shape, generator=g))
    model.save_pretrained(OUT, safe_serialization=True)
    ids = [tok.encode(t).ids for t in TEXTS]
    alone = []
    with torch.no_grad():
        for x in ids:
            alone.append(float(model(input_ids=torch.tensor([x])).logits[0, 0]))
        n = max(map(len, ids))
        batch = torch.tensor([x + [1] * (n - len(x)) for x in ids])
        mask = (batch != 1).long()
        batched = model(input_ids=batch, attention_mask=mask).logits[:, 0].tolist()
    ref = {"texts": TEXTS, "ids": ids, "scores": alone, "batched_scores": batched}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(alone, batched)


if __name__ == "__main__":
    main()
