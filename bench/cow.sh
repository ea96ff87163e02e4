#!/usr/bin/env bash
# Benchmark (not a test): the cost of copy-on-write and snapshots
# (crates/client/examples/cow_cost.rs), on 3 sheep with copies=3, writethrough and
# writeback (-W), in the same run:
#   - first write into an object a snapshot owns (CREATE_AND_WRITE with COW + the 4-byte
#     index write, as QEMU's driver does it) against an ordinary overwrite, 4 KiB and 4 MiB;
#   - snapshot creation time of a 100 GiB sparse VDI against creating a fresh one.
#
# Usage: bench/cow.sh [WORK_DIR]      (default target/bench-cow)
# Env: OBJECTS (32) ROUNDS (5) MODES ("wt wb") BENCH_PORT (19500) SHEEP_ARGS
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$PWD/target/bench-cow}
OBJECTS=${OBJECTS:-32}
ROUNDS=${ROUNDS:-5}
MODES=${MODES:-"wt wb"}
base=${BENCH_PORT:-19500}

cargo build --release -q -p sheep -p dog --bins
cargo build --release -q -p sd-client --example cow_cost
bin=$PWD/target/release
rm -rf "$work"; mkdir -p "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    pids=()
}
trap cleanup EXIT

k=0
for m in $MODES; do
    k=$((k + 1))
    port0=$((base + 10 * k))
    wb=""; [ "$m" = wb ] && wb=-W
    for i in 0 1 2; do
        # shellcheck disable=SC2086
        "$bin/sheep" -f -p $((port0 + i)) -z "$i" -c local:"$work/$m/cluster" --nbd off $wb \
            ${SHEEP_ARGS:-} "$work/$m/n$i" > "$work/$m.n$i.out" 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 1 200); do
        [ "$("$bin/dog" node list -r -p "$port0" 2>/dev/null | wc -l)" = 3 ] && break
        sleep 0.05
    done
    "$bin/dog" cluster format -c 3 -p "$port0" > /dev/null
    echo "== $m (3 sheep, copies=3${wb:+, $wb})"
    "$bin/examples/cow_cost" "127.0.0.1:$port0" "$OBJECTS" "$ROUNDS"
    cleanup
    rm -rf "$work/$m"
done
