#!/usr/bin/env bash
# The GPU checks of ethos in one run (a few minutes on an H100/H200):
#   1. the kernel tests (ethos-kernels' CUDA kernels against their CPU reference);
#   2. log-probs of SmolLM2 on CUDA against the CPU (f32, bf16, and the quantized Q4_1 path);
#   3. `ethos bench speed` on the GPU: random weights in Llama-3-8B's and SmolLM2's shapes
#      (bf16, with and without the fused kernels) and the real SmolLM2, GPU against CPU.
# Writes $OUT/gpu-results.json (everything, with the device and date) and $OUT/log.txt.
#
# From a checkout built with `cargo build --release --features cuda -p ethos-cli` and
# `cargo test --release --features cuda -p ethos-kernels --no-run`:
#   OUT=benches/results/gpu-run benches/gpu/run.sh
# ETHOS_BIN, KERNELS_TEST and MODEL override the binaries and the GGUF file.
set -uo pipefail # no -e: every step runs and reports; failures are recorded in the results
cd "$(dirname "$0")/../.."
out=${OUT:-benches/results/gpu-run}
mkdir -p "$out"
work=$(mktemp -d)
exec > >(tee "$out/log.txt") 2>&1
ethos=${ETHOS_BIN:-target/release/ethos}
kernels_test=${KERNELS_TEST:-$(ls target/release/deps/kernels-* 2>/dev/null | grep -v '\.d$' | head -1)}
model=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
cpu_threads=$(nproc)

# CUDA libraries the binary links (cuBLAS, cuRAND, the runtime, the driver): where the loader
# does not find them, look for them (a PyTorch install carries them).
for lib in $(ldd "$ethos" | awk '/not found/ {print $1}'); do
  found=$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$found" ] && export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
ldd "$ethos" | grep -E 'cuda|cublas|curand' || true

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$work/device.txt"
date -u +%Y-%m-%dT%H:%M:%SZ | tee "$work/date.txt"

echo "== 1. kernel tests"
if [ -n "$kernels_test" ]; then
  "$kernels_test" --nocapture --test-threads=1 2>&1 | tee "$work/kernels.txt"
  echo "${PIPESTATUS[0]}" > "$work/kernels.rc"
else
  echo "no kernels test binary (cargo test --release --features cuda -p ethos-kernels --no-run)"
fi

echo "== 2. SmolLM2 log-probs, CUDA against CPU"
score() { # name device [dtype]
  local name=$1 device=$2 dtype=${3:-}
  local t0=$(date +%s%N)
  "$ethos" score -m "$model" --device "$device" ${dtype:+--dtype $dtype} --threads "$cpu_threads" \
    -i benches/gpu/requests.jsonl > "$work/score-$name.jsonl" || echo "score $name failed"
  echo "score $name: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}
score cpu-f32 cpu f32
score cuda-f32 cuda f32
score cuda-bf16 cuda bf16
score cpu-q4_1 cpu
score cuda-q4_1 cuda
python3 benches/gpu/compare_logprobs.py "$work/score-cpu-f32.jsonl" cuda-f32="$work/score-cuda-f32.jsonl" \
  cuda-bf16="$work/score-cuda-bf16.jsonl" | tee "$work/logprobs.jsonl"
python3 benches/gpu/compare_logprobs.py "$work/score-cpu-q4_1.jsonl" cuda-q4_1="$work/score-cuda-q4_1.jsonl" |
  tee -a "$work/logprobs.jsonl"

echo "== 3. speed"
bench() { # name env... -- args
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" "$ethos" bench speed --json -r 3 "$@" > "$work/speed-$name.json" 2> "$work/speed-$name.err" ||
    echo "bench $name failed: $(tail -1 "$work/speed-$name.err")"
  cat "$work/speed-$name.json"
}
bench llama-3-8b-bf16 ETHOS_FUSED_KERNELS=1 -- --device cuda --load-format dummy --arch llama-3-8b --dtype bf16
bench llama-3-8b-bf16-unfused ETHOS_FUSED_KERNELS=0 -- --device cuda --load-format dummy --arch llama-3-8b --dtype bf16
bench deepseek-v2-lite-bf16 ETHOS_FUSED_KERNELS=1 -- --device cuda --load-format dummy --arch deepseek-v2-lite --dtype bf16
bench smollm2-dummy-bf16 ETHOS_FUSED_KERNELS=1 -- --device cuda --load-format dummy --arch smollm2-135m --dtype bf16
bench smollm2-cuda-bf16 ETHOS_FUSED_KERNELS=1 -- --device cuda -m "$model" --dtype bf16
bench smollm2-cuda-q4_1 ETHOS_FUSED_KERNELS=1 -- --device cuda -m "$model"
bench smollm2-cpu-q4_1 ETHOS_FUSED_KERNELS=1 -- --device cpu -m "$model" --threads "$cpu_threads"

python3 - "$work" "$out/gpu-results.json" <<'PY'
import json, pathlib, sys
work, dest = pathlib.Path(sys.argv[1]), sys.argv[2]
def read_json(p):
    try:
        return json.loads(p.read_text())
    except Exception as e:
        err = p.with_suffix(".err")
        return {"error": err.read_text().strip().splitlines()[-1] if err.exists() and err.read_text().strip() else str(e)}
res = {
    "device": (work / "device.txt").read_text().strip(),
    "date": (work / "date.txt").read_text().strip(),
    "kernel_tests": {
        "exit_code": int((work / "kernels.rc").read_text()) if (work / "kernels.rc").exists() else None,
        "lines": [l for l in (work / "kernels.txt").read_text().splitlines() if l.startswith(("cuda ", "test ", "test result"))] if (work / "kernels.txt").exists() else [],
    },
    "logprobs": [json.loads(l) for l in (work / "logprobs.jsonl").read_text().splitlines() if l.strip()] if (work / "logprobs.jsonl").exists() else [],
    "speed": {p.stem.removeprefix("speed-"): read_json(p) for p in sorted(work.glob("speed-*.json"))},
}
pathlib.Path(dest).write_text(json.dumps(res, indent=1) + "\n")
print(json.dumps(res, indent=1))
PY
