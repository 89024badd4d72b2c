"""Writes the fuzz targets' seed corpora (tests/fuzz/seeds/TARGET/) from the project's fixtures
and small files made here: a tiny Llama GGUF with a byte-level BPE tokenizer and a chat template,
a tiny HF folder, a control vector. Needs numpy, gguf and safetensors (tests/ref's venv).

    python tests/fuzz/make_seeds.py
"""

import csv
import io
import json
import pathlib
import struct

import gguf
import numpy as np
from safetensors.numpy import save as st_save

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
DATA = ROOT / "crates" / "evals" / "data"
OUT = ROOT / "tests" / "fuzz" / "seeds"
SEP = b"\n--8<--\n"
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
rng = np.random.default_rng(0)


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def tiny_gguf(path, tokenizer="gpt2", template=True):
    """A one-layer Llama: hidden 8, 2 heads of 4, one KV head, MLP 16, vocab 16."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(16)
    if tokenizer == "gpt2":
        tokens = ["<s>", "</s>", "H", "e", "l", "o", "Ġ", "He", "ll", "llo", "Hello", ",", "!", "1", "2", "3"]
        w.add_tokenizer_model("gpt2")
        w.add_token_list(tokens)
        w.add_token_types([3, 3] + [1] * 14)
        w.add_token_merges(["H e", "l l", "ll o", "He llo"])
    else:
        tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(10)] + ["▁", "▁H", "e"]
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores([0.0] * 3 + [-1.0] * 10 + [-2.0, -3.0, -4.0])
        w.add_token_types([2, 3, 3] + [6] * 10 + [1, 1, 1])
    w.add_bos_token_id(0 if tokenizer == "gpt2" else 1)
    w.add_eos_token_id(1 if tokenizer == "gpt2" else 2)
    if template:
        w.add_chat_template(CHATML)
    t = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.1
    w.add_tensor("token_embd.weight", t(16, 8))
    w.add_tensor("output_norm.weight", np.ones(8, np.float32))
    w.add_tensor("output.weight", t(16, 8))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(8, np.float32))
    w.add_tensor("blk.0.attn_q.weight", t(8, 8))
    w.add_tensor("blk.0.attn_k.weight", t(4, 8))
    w.add_tensor("blk.0.attn_v.weight", t(4, 8))
    w.add_tensor("blk.0.attn_output.weight", t(8, 8))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(8, np.float32))
    w.add_tensor("blk.0.ffn_gate.weight", t(16, 8))
    w.add_tensor("blk.0.ffn_up.weight", t(16, 8))
    w.add_tensor("blk.0.ffn_down.weight", t(8, 16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def control_vector(path, n_layers=3, dim=8):
    w = gguf.GGUFWriter(str(path), "controlvector")
    w.add_string("controlvector.model_hint", "llama")
    w.add_uint32("controlvector.layer_count", n_layers)
    for i in range(1, n_layers + 1):
        w.add_tensor(f"direction.{i}", rng.standard_normal(dim).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def head_rows(path, n):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[: n + 1]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def main():
    tmp = OUT / "_tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for kind in ["gpt2", "llama"]:
        p = tmp / f"tiny-{kind}.gguf"
        tiny_gguf(p, kind)
        put("gguf_model", f"tiny-{kind}.gguf", p.read_bytes())
        put("gguf_tokenizer", f"tiny-{kind}.gguf", p.read_bytes())
    cv = tmp / "cv.gguf"
    control_vector(cv)
    put("control_vector", "tiny.gguf", cv.read_bytes())
    put("control_vector", "smollm2_cv.gguf", (FIX / "control" / "smollm2_cv.gguf").read_bytes())

    tok = (FIX / "tiny" / "llama_classifier" / "tokenizer.json").read_bytes()
    put("hf_tokenizer", "llama_classifier.json", tok)
    cfg = json.loads((FIX / "tiny" / "llama" / "config.json").read_text())
    cfg.update(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_key_value_heads=1,
               head_dim=4, num_hidden_layers=1, max_position_embeddings=64)
    vocab = cfg["vocab_size"]
    t = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.1
    weights = {
        "model.embed_tokens.weight": t(vocab, 8),
        "model.norm.weight": np.ones(8, np.float32),
        "lm_head.weight": t(vocab, 8),
        "model.layers.0.input_layernorm.weight": np.ones(8, np.float32),
        "model.layers.0.post_attention_layernorm.weight": np.ones(8, np.float32),
        "model.layers.0.self_attn.q_proj.weight": t(8, 8),
        "model.layers.0.self_attn.k_proj.weight": t(4, 8),
        "model.layers.0.self_attn.v_proj.weight": t(4, 8),
        "model.layers.0.self_attn.o_proj.weight": t(8, 8),
        "model.layers.0.mlp.gate_proj.weight": t(16, 8),
        "model.layers.0.mlp.up_proj.weight": t(16, 8),
        "model.layers.0.mlp.down_proj.weight": t(8, 16),
    }
    tcfg = json.dumps({"chat_template": CHATML, "bos_token": "<s>", "eos_token": "</s>"})
    folder = SEP.join([json.dumps(cfg, indent=1).encode(), tok, st_save(weights), tcfg.encode()])
    put("hf_folder", "tiny-llama", folder)
    index = json.dumps({"metadata": {"total_size": 0},
                        "weight_map": {k: "model.safetensors" for k in weights}})
    put("hf_folder", "tiny-llama-indexed", folder + SEP + index.encode())

    put("chat_template", "chatml", CHATML + "\0system\x1fBe brief.\x1euser\x1fHi\x1eassistant\x1fHello")
    put("chat_template", "python-methods",
        "{{ bos_token }}{% for m in messages %}{{ m['content'].strip().upper() }}"
        "{% if m.role not in ['user', 'assistant', 'system'] %}{{ raise_exception('role') }}{% endif %}"
        "{% endfor %}{{ messages|tojson }}\0user\x1f  hi  ")
    put("chat_template", "loops",
        "{% set ns = namespace(s='') %}{% for i in range(10) %}{% set ns.s = ns.s ~ i %}{% endfor %}"
        "{{ ns.s|indent(2) }}{{ 'ab' * 3 }}{{ '%s-%d'|format('x', 3) }}\0user\x1fx")

    put("score_requests", "two-lines",
        '{"context": "Hello", "continuations": [" world", "!"], "id": 1}\n'
        '\n{"context": "Q: 1+1=", "continuations": [" 2"]}\r\n')

    put("serve_request", "completion-echo",
        b"\x00" + json.dumps({"prompt": ["The capital of France is", "Hi"], "max_tokens": 1, "echo": True,
                               "logprobs": 2, "temperature": 0, "stop": ["\n"], "n": 2, "seed": 3,
                               "logit_bias": {"5": -1.5}}).encode())
    put("serve_request", "completion-ids",
        b"\x00" + json.dumps({"prompt": [[1, 2, 3], [4]], "prompt_logprobs": 1,
                               "control_vectors": [{"name": "v.gguf", "scale": 0.5, "layers": [1, 3]}],
                               "steering_report": True}).encode())
    put("serve_request", "chat",
        b"\x01" + json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                               "stream": True, "logprobs": True, "top_logprobs": 3, "max_tokens": 8,
                               "top_p": 0.9, "top_k": 40, "min_p": 0.05, "presence_penalty": 0.5}).encode())

    easy = DATA / "culturalbench" / "CulturalBench-Easy.csv"
    hard = DATA / "culturalbench" / "CulturalBench-Hard.csv"
    if easy.exists():
        put("eval_data", "culturalbench-easy", b"\x00" + head_rows(easy, 12))
        put("eval_data", "culturalbench-both", b"\x01" + head_rows(easy, 6) + SEP + head_rows(hard, 12))
    put("eval_data", "normad", b"\x02" + head_rows(DATA / "normad" / "normad_eti_reconstructed.csv", 12))
    civ = json.loads((DATA / "civics" / "civics_dataset.json").read_text())[:6]
    put("eval_data", "civics", b"\x03" + json.dumps(civ, ensure_ascii=False).encode())
    put("eval_data", "civics-jsonl", b"\x03" + "\n".join(json.dumps(r, ensure_ascii=False) for r in civ).encode())
    util = DATA / "utility" / "options_testing.json"
    if util.exists():
        put("eval_data", "utility", b"\x04" + util.read_bytes()[:4000])

    palette = ('[[value]]\nname = "polite"\ntarget = "q70"\n[[value]]\nname = "brief"\ntarget = 0.5\n'
               '[[reward]]\nname = "polite"\nkind = "lexicon"\nfile = "l.csv"\n'
               '[[reward]]\nname = "brief"\nkind = "length"\n')
    put("palette_toml", "lexicon", palette)
    put("lambda_json", "lexicon",
        json.dumps({"lambda": {"polite": 0.5, "brief": 0.0}, "palette": "palette.toml",
                    "targets": {"polite": 1.0}}).encode() + SEP + palette.encode())

    for f in sorted((FIX / "map").glob("*.csv")):
        put("reward_csv", f.stem, head_rows(f, 40))
    put("reward_csv", "grouped", "prompt,a,b\np1,0.1,1\np1,0.5,2\np2,0.9,0\np2,0.2,1\n")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
