#!/usr/bin/env bash
# The cost of unmerged LoRA adapters on the default model, each configuration measured with and
# without its adapters alternately, rep by rep (`ethos bench speed --lora`), into one JSON file
# that records the CPU (vendor, family, model, flags).
#
#   benches/lora/run.sh OUT.json [REPS]      (after cargo build --release -p ethos-cli)
#
# R16: rank 16 (alpha 16) on every projection of every layer, random f32 factors
# (benches/lora/random_adapter.py); R16-bf16: the same shapes stored in bf16; hk: the committed
# rank-4 q/v fine-tune (bf16).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: benches/lora/run.sh OUT.json [REPS]}
reps=${2:-7}
ethos=target/release/ethos
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 benches/lora/random_adapter.py --out "$tmp/r16" --rank 16 > /dev/null
python3 benches/lora/random_adapter.py --out "$tmp/r16-bf16" --rank 16 --bf16 > /dev/null
run() { # name, then bench speed's arguments
  local name=$1
  shift
  echo "== $name: ethos bench speed $*" >&2
  "$ethos" bench speed "$@" -r "$reps" --json > "$tmp/$name.json"
}
run r16 --lora "$tmp/r16"
run r16-bf16 --lora "$tmp/r16-bf16"
run hk --lora tests/fixtures/lora/smollm2/hk
run r16-f32 --dtype f32 --lora "$tmp/r16"
python3 - "$tmp" "$out" "$reps" "$(git rev-parse --short HEAD)" <<'EOF'
import json, sys
tmp, out, reps, commit = sys.argv[1:]
cpu = {}
for line in open("/proc/cpuinfo"):
    key, _, value = line.partition(":")
    key, value = key.strip(), value.strip()
    if key in ("vendor_id", "cpu family", "model", "model name") and key not in cpu:
        cpu[key] = value
    if key == "flags" and "flags" not in cpu:
        cpu["flags"] = [f for f in value.split() if f.startswith(("avx", "fma", "f16c", "amx"))]
import os
cpu["cores"] = os.cpu_count()
runs = {}
for name in ("r16", "r16-bf16", "hk", "r16-f32"):
    runs[name] = json.load(open(f"{tmp}/{name}.json"))
json.dump({
    "cpu": cpu,
    "what": "The cost of LoRA adapters on SmolLM2-135M-Instruct: ethos bench speed --lora loads the "
            "model with and without the adapters and measures prefill (512-token prompt), decode "
            "(128 tokens) and scoring (16 x 128 tokens) alternately, rep by rep; ratio_median is the "
            f"median of the per-rep ratios (with / without), {reps} reps. Made by benches/lora/run.sh "
            f"at commit {commit}.",
    "runs": runs,
}, open(out, "w"), indent=1)
print(out)
EOF
