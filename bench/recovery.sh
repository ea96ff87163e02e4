#!/usr/bin/env bash
# Benchmark (not a test): recovery after losing one of 5 sheep holding DATA_MIB (2 GiB) with
# copies=3. SHEEP_ARGS passes extra sheep options (e.g. "-R max=4,interval=50").
# Prints the re-replication rate against the disk's own sequential write rate, and client
# 4 KiB write latency during recovery against idle, all measured in the same run.
# Usage: bench/recovery.sh [WORK_DIR] [DATA_MIB]   (default target/bench-recovery, 2048)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$PWD/target/bench-recovery}
data_mb=${2:-2048}
base=${BENCH_PORT:-17910}

cargo build --release --bins -q
cargo build --release -q -p sd-client --example write_latency
bin=$PWD/target/release
lat=$PWD/target/release/examples/write_latency
rm -rf "$work" && mkdir -p "$work"
pids=()
# The stores hold DATA_MIB x copies of data: removed at exit (KEEP=1 keeps them).
trap 'for p in "${pids[@]}"; do kill -9 $p 2>/dev/null || true; done
      [ -n "${KEEP:-}" ] || rm -rf "$work"/n* "$work"/cluster' EXIT

for i in 0 1 2 3 4; do
    "$bin/sheep" -f -p $((base + i)) -z $i -c local:"$work/cluster" ${SHEEP_ARGS:-} "$work/n$i" > "$work/n$i.out" 2>&1 &
    pids+=($!)
done
dog() { "$bin/dog" "$@" -p $base; }
for _ in $(seq 1 100); do [ "$(dog node list -r 2>/dev/null | wc -l)" = 5 ] && break; sleep 0.1; done
dog cluster format -c 3 >/dev/null
dog vdi create rec $((data_mb * 2))M

bytes_live() { # apparent bytes of objects on nodes 0..3
    local t=0
    for i in 0 1 2 3; do t=$((t + $(find "$work/n$i/obj" -maxdepth 1 -type f ! -name '*.tmp*' -printf '%s\n' | awk '{s+=$1} END {print s+0}'))); done
    echo $t
}
now() { date +%s.%N; }
py() { python3 -c "print($1)"; }

echo "writing ${data_mb} MiB with copies=3 ..."
t0=$(now); head -c ${data_mb}M /dev/urandom | "$bin/dog" vdi write rec -p $base; t1=$(now)
echo "replicated write: $(py "round($data_mb/($t1-$t0),1)") MB/s"

t0=$(now); dd if=/dev/zero of="$work/dd.out" bs=4M count=256 conv=fsync status=none; t1=$(now)
disk=$(py "round(1024/($t1-$t0),1)"); rm -f "$work/dd.out"
echo "disk sequential write (dd 1 GiB, conv=fsync): $disk MB/s"

idle=$("$lat" 127.0.0.1:$base rec 5 $((data_mb << 20)))
echo "idle 4 KiB writes: $idle"

before=$(bytes_live)
kill -9 "${pids[4]}"
t0=$(now)
rm -f "$work/settled"
"$lat" 127.0.0.1:$base rec 60 $((data_mb << 20)) "$work/settled" > "$work/during.txt" &
latpid=$!
# Recovery is over when the epoch moved and no node reports recovery in progress.
for _ in $(seq 1 6000); do
    ep=$(dog cluster info -r | awk 'NR==3 {print $2}')
    rows=$(dog node recovery -r | wc -l)
    [ "${ep:-1}" -ge 2 ] && [ "$rows" = 0 ] && break
    sleep 0.05
done
t1=$(now)
touch "$work/settled"
wait $latpid
after=$(bytes_live)
moved=$(py "($after-$before)/1048576")
rate=$(py "round($moved/($t1-$t0),1)")
during=$(cat "$work/during.txt")
echo "re-replicated $(py "round($moved,1)") MiB in $(py "round($t1-$t0,2)") s: $rate MB/s"
echo "4 KiB writes during recovery: $during"
p() { sed -E "s/.*$1=([0-9]+).*/\1/" <<<"$2"; }
echo "ratio: re-replication $(py "round($rate/$disk,2)")x of disk sequential write"
echo "ratio: write latency during recovery p50 $(py "round($(p p50_us "$during")/$(p p50_us "$idle"),2)")x, p99 $(py "round($(p p99_us "$during")/$(p p99_us "$idle"),2)")x of idle"
