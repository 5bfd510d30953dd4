#!/usr/bin/env bash
# Fuzz every target for SECONDS each (default 60), growing the committed
# corpora in fuzz/corpus/TARGET, then minimise each corpus (libFuzzer's
# -merge, as `cargo fuzz cmin` does) so what is committed stays small. A
# crash, a hang (an input over 10 s) or running out of memory (over 2 GB)
# stops that target and leaves the input in fuzz/artifacts/TARGET; the
# script goes on with the next target and exits non-zero at the end if any
# target failed.
#
#   fuzz/run.sh 600             # ten minutes per target
#   fuzz/run.sh 60 wsm run      # one minute each for two targets
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# The targets are built once, first, so editing the code while it runs
# changes nothing. CI does not run this: tests/fuzz_corpora.rs replays the
# corpora on stable.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wsm wafer bundle run machine llama2c tokenizer hf ir stats kernel)
fi
cargo +nightly fuzz build -O || exit 1
bin="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
failed=()
for t in "${targets[@]}"; do
    echo "== $t: ${seconds} s"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    "$bin/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        "fuzz/corpus/$t" > "fuzz/artifacts/$t.log" 2>&1
    status=$?
    grep -aE '^Done|stat::number_of_executed_units|SUMMARY' "fuzz/artifacts/$t.log"
    if [ $status -ne 0 ] || [ -n "$(ls -A "fuzz/artifacts/$t" 2>/dev/null)" ]; then
        failed+=("$t")
        continue
    fi
    # Keep only inputs that add coverage.
    rm -rf "fuzz/corpus/$t.min" && mkdir "fuzz/corpus/$t.min"
    if "$bin/$t" -merge=1 -timeout=10 -rss_limit_mb=2048 "fuzz/corpus/$t.min" "fuzz/corpus/$t" \
        > "fuzz/artifacts/$t.merge.log" 2>&1; then
        # The seeds stay whatever coverage they add (the replay test checks
        # them), and so do the inputs that once crashed (regression-*).
        cp "fuzz/corpus/$t"/seed-* "fuzz/corpus/$t"/regression-* "fuzz/corpus/$t.min/" 2>/dev/null
        rm -rf "fuzz/corpus/$t" && mv "fuzz/corpus/$t.min" "fuzz/corpus/$t"
    else
        rm -rf "fuzz/corpus/$t.min"
    fi
    echo "   corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (inputs in fuzz/artifacts/TARGET, logs in fuzz/artifacts/TARGET.log)"
    exit 1
fi
echo "no crash, hang or out-of-memory in: ${targets[*]}"
