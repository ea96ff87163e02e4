#!/usr/bin/env bash
# Benchmark (not a test): recovery after losing one of 5 sheep holding DATA_MIB (2 GiB) with
# copies=3 (leave), then the data movement when a new, empty sheep joins (join). SHEEP_ARGS
# passes extra sheep options (e.g. "-R max=4,interval=50"). NO_CLIENT=1 runs the leave and
# the join without the client writes: what recovery moves at full speed, the ceiling its
# paced rate (clients active) is a share of.
# Prints, for the leave and for the join, the rate data moved at against the disk's own
# sequential write rate, and client 4 KiB write latency and IOPS meanwhile against idle,
# all measured in the same run.
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
    "$bin/sheep" -f -p $((base + i)) -z $i -c local:"$work/cluster" --metrics 127.0.0.1:$((base + 50 + i)) ${SHEEP_ARGS:-} "$work/n$i" > "$work/n$i.out" 2>&1 &
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

# during: client 4 KiB writes until $work/settled appears (NO_CLIENT=1: none).
during() {
    if [ -n "${NO_CLIENT:-}" ]; then
        while [ ! -e "$work/settled" ]; do sleep 0.05; done
        echo "writes=0 iops=0 p50_us=0 p99_us=0"
    else
        "$lat" 127.0.0.1:$base rec 60 $((data_mb << 20)) "$work/settled"
    fi
}
p() { sed -E "s/.*$1=([0-9]+).*/\1/" <<<"$2"; }
# settle EPOCH: waits until the cluster is at EPOCH or later and no node recovers.
settle() {
    for _ in $(seq 1 6000); do
        ep=$(dog cluster info -r | awk 'NR==3 {print $2}')
        rows=$(dog node recovery -r | wc -l)
        [ "${ep:-1}" -ge "$1" ] && [ "$rows" = 0 ] && break
        sleep 0.05
    done
}
# waits NODES...: client requests that waited for their object's recovery, over the nodes'
# metrics (cumulative): count and total seconds.
waits() {
    local n=0 sum=0 c s
    for i in "$@"; do
        m=$(curl -sf "http://127.0.0.1:$((base + 50 + i))/metrics" || true)
        c=$(awk '/^sheep_recovery_client_wait_seconds_count/ {s+=$2} END {print s+0}' <<<"$m")
        s=$(awk '/^sheep_recovery_client_wait_seconds_sum/ {s+=$2} END {print s+0}' <<<"$m")
        n=$(py "$n+$c"); sum=$(py "$sum+$s")
    done
    echo "$n $sum"
}
# paced NODES...: seconds the nodes' recovery spent on objects, and rested for clients
# (cumulative, from their metrics).
paced() {
    local o=0 r=0 m
    for i in "$@"; do
        m=$(curl -sf "http://127.0.0.1:$((base + 50 + i))/metrics" || true)
        o=$(py "$o+$(awk '/^sheep_recovery_object_seconds_sum/ {s+=$2} END {print s+0}' <<<"$m")")
        r=$(py "$r+$(awk '/^sheep_recovery_rest_seconds_sum/ {s+=$2} END {print s+0}' <<<"$m")")
    done
    echo "$o $r"
}
# report WHAT MOVED_MIB SECONDS DURING
report() {
    local rate; rate=$(py "round($2/$3,1)")
    echo "$1: moved $(py "round($2,1)") MiB in $(py "round($3,2)") s: $rate MB/s"
    [ -n "${NO_CLIENT:-}" ] && { echo "ratio $1: data movement $(py "round($rate/$disk,2)")x of disk sequential write (no client)"; return; }
    echo "$1: 4 KiB writes meanwhile: $4"
    echo "ratio $1: data movement $(py "round($rate/$disk,2)")x of disk sequential write"
    echo "ratio $1: write latency p50 $(py "round($(p p50_us "$4")/$(p p50_us "$idle"),2)")x, p99 $(py "round($(p p99_us "$4")/$(p p99_us "$idle"),2)")x of idle; IOPS $(py "round($(p iops "$4")/$(p iops "$idle"),2)")x of idle"
}

# Leave: SIGKILL node 4; the others re-replicate its copies.
before=$(bytes_live)
kill -9 "${pids[4]}"
t0=$(now)
rm -f "$work/settled"
during > "$work/during.txt" &
latpid=$!
settle 2
t1=$(now)
touch "$work/settled"
wait $latpid
after=$(bytes_live)
report leave "$(py "($after-$before)/1048576")" "$(py "$t1-$t0")" "$(cat "$work/during.txt")"
read -r wn ws < <(waits 0 1 2 3)
echo "leave: replica requests that waited for their object's recovery: $wn, $(py "round($ws*1000)") ms in all"
read -r lo lr < <(paced 0 1 2 3)
echo "leave: recovery worked $(py "round($lo,1)") s on objects, rested $(py "round($lr,1)") s for clients (all nodes)"

# Join: a new, empty node 5; the ring moves its share of the objects onto it.
"$bin/sheep" -f -p $((base + 5)) -z 5 -c local:"$work/cluster" --metrics 127.0.0.1:$((base + 55)) ${SHEEP_ARGS:-} "$work/n5" > "$work/n5.out" 2>&1 &
pids+=($!)
t0=$(now)
rm -f "$work/settled"
during > "$work/during.txt" &
latpid=$!
for _ in $(seq 1 200); do [ -d "$work/n5/obj" ] && break; sleep 0.05; done
settle 3
t1=$(now)
touch "$work/settled"
wait $latpid
joined=$(find "$work/n5/obj" -maxdepth 1 -type f ! -name '*.tmp*' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
report join "$(py "$joined/1048576")" "$(py "$t1-$t0")" "$(cat "$work/during.txt")"
read -r jn js < <(waits 0 1 2 3 5)
echo "join: replica requests that waited for their object's recovery: $(py "$jn-$wn"), $(py "round(($js-$ws)*1000)") ms in all"
read -r jo jr < <(paced 0 1 2 3 5)
echo "join: recovery worked $(py "round($jo-$lo,1)") s on objects, rested $(py "round($jr-$lr,1)") s for clients (all nodes)"
