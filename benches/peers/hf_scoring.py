"""Peer benchmark: CulturalBench-Easy scoring with HF transformers on PyTorch CPU, the way
lm-evaluation-harness scores multiple choice (every context + option pair run in full,
batched, continuation log-probs gathered), next to `ethos score` on the same requests.

Usage (repo root; the venv needs torch, transformers, gguf):
  python benches/peers/hf_scoring.py --data PATH/culturalbench_easy.jsonl --questions 300 \
      --model models/SmolLM2-135M-Instruct.Q4_1.gguf --ethos target/release/ethos
Writes benches/results/culturalbench_scoring.json and prints the ratio.
"""
import argparse, json, os, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--questions", type=int, default=300)
ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
ap.add_argument("--ethos", default="target/release/ethos")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--out", default="benches/results/culturalbench_scoring.json")
a = ap.parse_args()

items = [json.loads(l) for l in open(a.data)][: a.questions]
requests = []
for it in items:
    o = it["options"]
    # lm-evaluation-harness cultural_bench Easy doc_to_text, verbatim
    ctx = f"{it['prompt_question'].strip()}\nA. {o[0]}\nB. {o[1]}\nC. {o[2]}\nD. {o[3]}\nAnswer:"
    requests.append({"id": it["question_idx"], "context": ctx, "continuations": [" A", " B", " C", " D"]})
os.makedirs("benches/results", exist_ok=True)
req_path = "benches/results/culturalbench_easy_requests.jsonl"
with open(req_path, "w") as f:
    for r in requests:
        f.write(json.dumps(r) + "\n")

# ethos: the whole command, model load included (reported apart by ethos itself).
t = time.time()
out = subprocess.run([a.ethos, "score", "--model", a.model, "--input", req_path, "--threads", str(a.threads)],
                     capture_output=True, text=True, check=True)
ethos_wall = time.time() - t
ethos = [json.loads(l) for l in out.stdout.splitlines()]
ethos_info = json.loads(subprocess.run([a.ethos, "info", "--json", "--model", a.model], capture_output=True, text=True, check=True).stdout)
ethos_score_s = ethos_wall - ethos_info["load_seconds"]

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(a.threads)
d, f = os.path.split(a.model)
tok = AutoTokenizer.from_pretrained(d or ".", gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d or ".", gguf_file=f, dtype=torch.float32).eval()

pairs = []  # (request index, option index, context ids, continuation ids)
for i, r in enumerate(requests):
    ctx = tok(r["context"], add_special_tokens=False).input_ids
    for j, c in enumerate(r["continuations"]):
        whole = tok(r["context"] + c, add_special_tokens=False).input_ids
        pairs.append((i, j, ctx, whole[len(ctx):]))
order = sorted(range(len(pairs)), key=lambda k: -(len(pairs[k][2]) + len(pairs[k][3])))
hf = {}
tokens = 0
t = time.time()
with torch.inference_mode():
    for s in range(0, len(order), a.batch):
        chunk = [pairs[k] for k in order[s : s + a.batch]]
        seqs = [(c + x)[:-1] for _, _, c, x in chunk]
        T = max(len(q) for q in seqs)
        ids = torch.zeros((len(seqs), T), dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for b, q in enumerate(seqs):
            ids[b, : len(q)] = torch.tensor(q)
            mask[b, : len(q)] = 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for b, (i, j, c, x) in enumerate(chunk):
            pos = torch.arange(len(c) - 1, len(c) - 1 + len(x))
            hf[(i, j)] = logp[b, pos, torch.tensor(x)].sum().item()
            tokens += len(seqs[b])
hf_s = time.time() - t

diffs = [abs(ethos[i]["continuations"][j]["logprob"] - hf[(i, j)]) for (i, j) in hf]
agree = sum(
    max(range(4), key=lambda j: ethos[i]["continuations"][j]["logprob"]) == max(range(4), key=lambda j: hf[(i, j)])
    for i in range(len(requests))
)
res = {
    "questions": len(requests), "pairs": len(pairs), "threads": a.threads,
    "hf": {"seconds": hf_s, "forward_tokens": tokens, "questions_per_second": len(requests) / hf_s,
           "torch": torch.__version__, "batch": a.batch},
    "ethos": {"seconds_scoring": ethos_score_s, "seconds_wall_with_load": ethos_wall,
              "questions_per_second": len(requests) / ethos_score_s},
    "ratio_ethos_over_hf": hf_s / ethos_score_s,
    "logprob_abs_diff_max": max(diffs), "logprob_abs_diff_mean": sum(diffs) / len(diffs),
    "argmax_agreement": agree / len(requests),
}
json.dump(res, open(a.out, "w"), indent=1)
print(json.dumps(res, indent=1))
