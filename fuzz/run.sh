#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 60), growing the committed
# corpora in fuzz/corpus/TARGET, then minimise each corpus (cargo fuzz cmin)
# so what is committed stays small. A crash, hang (over 10 s per input) or
# out-of-memory (over 2 GB) stops that target and leaves the input in
# fuzz/artifacts/TARGET; the script goes on with the next target and exits
# non-zero at the end if any target failed.
#
#   fuzz/run.sh 600             # ten minutes per target
#   fuzz/run.sh 60 wsm run      # one minute each for two targets
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# CI does not run this: tests/fuzz_corpora.rs replays the corpora on stable.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wsm wafer bundle run machine llama2c tokenizer hf ir stats)
fi
cargo +nightly fuzz build -O
failed=()
for t in "${targets[@]}"; do
    echo "== $t: ${seconds} s"
    mkdir -p "fuzz/corpus/$t"
    if ! cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 2>&1 | tail -n 25; then
        failed+=("$t")
    fi
    if [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
        failed+=("$t")
    fi
    cargo +nightly fuzz cmin -O "$t" "fuzz/corpus/$t" >/dev/null 2>&1 || true
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "no crash, hang or out-of-memory in: ${targets[*]}"
