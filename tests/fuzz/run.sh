#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, from its committed seeds plus the
# corpus it has grown (tests/fuzz/corpus, not committed), under the limits SECURITY.md states:
# no crash, no input over 1 s, no allocation over 1 GiB, no more than 2 GiB resident.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      (CI: 15 s each)
# A failure leaves the input in tests/fuzz/artifacts/TARGET/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/../.."
# The nightly these targets were built and run with; another one is used with a warning
# (toolchains cannot be fetched on the project's machines, so the pin is checked, not installed).
PINNED="rustc 1.97.0-nightly (e50aa6fba 2026-05-19)"
have=$(rustc +nightly --version)
[ "$have" = "$PINNED" ] || echo "fuzz: warning: $have, pinned $PINNED" >&2
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir tests/fuzz)
cargo +nightly fuzz build --fuzz-dir tests/fuzz
for t in "${targets[@]}"; do
  dict=()
  case "$t" in
    gguf_*|control_vector) dict=(-dict=tests/fuzz/gguf.dict) ;;
    chat_template) dict=(-dict=tests/fuzz/jinja.dict) ;;
  esac
  # Targets that render chat templates: a rendering stopped at its budget keeps its memory
  # on purpose (SECURITY.md), which LeakSanitizer would report as a leak.
  case "$t" in
    chat_template|gguf_model|hf_folder) dict+=(-detect_leaks=0) ;;
  esac
  # Those stopped renderings add up over a long run in one process; fork mode runs the
  # inputs in short-lived child processes, so that they never reach the resident limit.
  [ "$t" != chat_template ] || dict+=(-fork=1)
  # reward_csv runs the MAP solver six times per input (Newton, Adam and the nearest-feasible
  # bisection, each on both objectives): on a 40-row table with an extreme column that is
  # 3.3 s in this instrumented build and 0.1 s per objective in a release build, not a hang.
  timeout=1
  [ "$t" != reward_csv ] || timeout=5
  mkdir -p "tests/fuzz/corpus/$t"
  echo "== fuzz $t (${secs} s)"
  log="tests/fuzz/corpus/$t.log"
  status=0
  leaks=1
  case "$t" in chat_template|gguf_model|hf_folder) leaks=0 ;; esac
  ASAN_OPTIONS="detect_leaks=$leaks" cargo +nightly fuzz run --fuzz-dir tests/fuzz "$t" "tests/fuzz/corpus/$t" "tests/fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout="$timeout" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -max_len=65536 -print_final_stats=1 "${dict[@]}" > "$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY)|panicked|deadly signal|ERROR: libFuzzer' "$log" || true
  [ "$status" -eq 0 ] || { tail -40 "$log" >&2; echo "fuzz: $t failed; the input is in tests/fuzz/artifacts/$t/" >&2; exit 1; }
done
