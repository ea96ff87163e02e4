#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for MINUTES in total (split evenly, at least 10 s
# each) and exits non-zero if any target found a crash, a timeout or an oversized
# allocation. Corpora accumulate in fuzz/corpus/<target>, crashes in
# fuzz/artifacts/<target>/ (both git-ignored); see fuzz/README.md to reproduce one.
# Usage: scripts/fuzz.sh [MINUTES]   (default 10)
#        FUZZ_TARGETS="nbd_option cluster_log" scripts/fuzz.sh 2   (a subset)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
if ! [[ $minutes =~ ^[0-9]+$ ]] || [ "$minutes" -eq 0 ]; then
    echo "usage: $0 [MINUTES]  (a whole number of minutes > 0)" >&2
    exit 2
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the stable
# toolchain accept them.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing; installing it from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir fuzz | tr '\n' ' ')}"
if [ "${#targets[@]}" -eq 0 ]; then
    echo "no fuzz targets found" >&2
    exit 2
fi
secs=$((minutes * 60 / ${#targets[@]}))
secs=$((secs < 10 ? 10 : secs))
echo "fuzzing ${#targets[@]} targets for ${secs}s each: ${targets[*]}"

cargo fuzz build --fuzz-dir fuzz

# -timeout: one input running longer than 10 s is reported (a hang or an endless loop).
# -malloc_limit_mb: one allocation of 256 MiB or more is reported: decoders reserve at most
# a capped frame (32 MiB for NBD WRITE), never what a length field merely claims.
failed=()
crashes=()
for t in "${targets[@]}"; do
    echo "=== $t (${secs}s)"
    log=$(mktemp)
    if cargo fuzz run --fuzz-dir fuzz "$t" -- \
        -max_total_time="$secs" -timeout=10 -malloc_limit_mb=256 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb' "$log" || true
    else
        failed+=("$t")
        # The report: the panic message or sanitizer summary and the saved input.
        grep -E -A12 "panicked|ERROR: libFuzzer|ERROR: AddressSanitizer|^SUMMARY" "$log" | head -60 || true
        artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | cut -d' ' -f5 || true)
        crashes+=("$t ${artifact:-(no input saved)}")
        echo "--- $t FAILED: input ${artifact:-not saved} (full log: $log)"
        continue
    fi
    rm -f "$log"
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz targets that failed: ${failed[*]}; reproduce with" >&2
    for c in "${crashes[@]}"; do
        echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz $c" >&2
    done
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs}s each without a failure"
