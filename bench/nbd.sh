#!/usr/bin/env bash
# Benchmark (not a test): fio over NBD (ioengine=nbd, one connection per job) against
# qemu-nbd on a preallocated raw file and against our sheep's NBD export, all in the same run.
#
# Targets:
#   qemu     qemu-nbd -f raw -t -e 8 --cache=writeback on a 1 GiB raw file under target/
#   c1_wt    1 sheep, copies=1, writethrough
#   c1_wb    1 sheep, copies=1, writeback (-W)
#   c3_wt    3 sheep, copies=3, writethrough (NBD on the first sheep)
#   c3_wb    3 sheep, copies=3, writeback (-W)
# Every sheep VDI is created preallocated (`dog vdi create -P`), and each target is prefilled
# with one sequential 1 MiB pass over the region before the jobs so reads hit written data.
# Jobs (RUNTIME s each): rw4k_qd1, rw4k_qd32, rr4k_qd32, sw1m_qd4.
# Prints IOPS, MB/s, latency p50/p99 (fio total `lat`), the ratio to qemu-nbd, and checks the
# targets: copies=1 >= 0.5x and copies=3 >= 0.3x qemu-nbd IOPS at 4 KiB QD32 randwrite.
#
# Usage: bench/nbd.sh [WORK_DIR]     (default target/bench-nbd)
# Env: RUNTIME (10) SIZE_MB (1024) TARGETS ("qemu c1_wt c1_wb c3_wt c3_wb") BENCH_PORT (19000)
#      SHEEP_ARGS (extra options for every sheep) REPORT_ONLY=FILE (re-print a results file)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$PWD/target/bench-nbd}
RUNTIME=${RUNTIME:-10}
SIZE_MB=${SIZE_MB:-1024}
TARGETS=${TARGETS:-"qemu c1_wt c1_wb c3_wt c3_wb"}
base=${BENCH_PORT:-19000}
JOBS="rw4k_qd1 rw4k_qd32 rr4k_qd32 sw1m_qd4"

report() { # report RESULTS_FILE
    python3 - "$1" <<'PY'
import sys
res, order = {}, []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 3:
        continue
    t, job = f[0], f[1]
    if t not in order:
        order.append(t)
    res[(t, job)] = {k: float(v) for k, v in (x.split("=", 1) for x in f[2:])}
jobs = ["rw4k_qd1", "rw4k_qd32", "rr4k_qd32", "sw1m_qd4"]
print()
print(f"{'target':8} {'job':10} {'IOPS':>9} {'MB/s':>8} {'p50 us':>9} {'p99 us':>9} {'IOPS/qemu':>10} {'p50/qemu':>9}")
for t in order:
    for j in jobs:
        r = res.get((t, j))
        if r is None:
            continue
        q = res.get(("qemu", j))
        ri = f"{r['iops'] / q['iops']:.2f}x" if q and q["iops"] else "-"
        rl = f"{r['p50'] / q['p50']:.2f}x" if q and q["p50"] else "-"
        print(f"{t:8} {j:10} {r['iops']:9.0f} {r['mbs']:8.1f} {r['p50']:9.1f} {r['p99']:9.1f} {ri:>10} {rl:>9}")
print()
q = res.get(("qemu", "rw4k_qd32"))
for t, want in (("c1_wt", 0.5), ("c1_wb", 0.5), ("c3_wt", 0.3), ("c3_wb", 0.3)):
    r = res.get((t, "rw4k_qd32"))
    if r is None or q is None:
        continue
    x = r["iops"] / q["iops"]
    print(f"target {t}: 4 KiB QD32 randwrite {r['iops']:.0f} IOPS = {x:.2f}x qemu-nbd "
          f"(want >= {want}x): {'MET' if x >= want else 'MISSED'}")
PY
}

if [ -n "${REPORT_ONLY:-}" ]; then report "$REPORT_ONLY"; exit 0; fi

cargo build --release --bins -q
bin=$PWD/target/release
rm -rf "$work" && mkdir -p "$work"
results=$work/results.txt
: > "$results"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    pids=()
}
trap cleanup EXIT

wait_port() { # wait_port PORT
    for _ in $(seq 1 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 did not open" >&2; return 1
}

# run_fio TARGET JOB URI: appends "TARGET JOB iops= mbs= p50= p99=" to the results
run_fio() {
    local t=$1 job=$2 uri=$3 args
    case $job in
        rw4k_qd1)  args="--rw=randwrite --bs=4k --iodepth=1" ;;
        rw4k_qd32) args="--rw=randwrite --bs=4k --iodepth=32" ;;
        rr4k_qd32) args="--rw=randread --bs=4k --iodepth=32" ;;
        sw1m_qd4)  args="--rw=write --bs=1M --iodepth=4" ;;
    esac
    # shellcheck disable=SC2086
    fio --name="$job" $args --ioengine=nbd --uri="$uri" --runtime="$RUNTIME" --time_based \
        --output-format=json --randrepeat=0 --size="${SIZE_MB}M" --lat_percentiles=1 \
        > "$work/$t.$job.json" 2> "$work/$t.$job.err"
    python3 - "$work/$t.$job.json" "$t" "$job" >> "$results" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])["jobs"][0]  # the nbd engine prints a line before the JSON
s = d["read"] if d["read"]["io_bytes"] > 0 else d["write"]
p = s["lat_ns"].get("percentile", {})
print(sys.argv[2], sys.argv[3], f"iops={s['iops']:.1f}", f"mbs={s['bw_bytes'] / 1e6:.2f}",
      f"p50={p.get('50.000000', 0) / 1000:.1f}", f"p99={p.get('99.000000', 0) / 1000:.1f}",
      f"err={d['error']}")
PY
    tail -n1 "$results"
}

bench_target() { # bench_target TARGET URI
    local t=$1 uri=$2
    echo "[$t] prefill ${SIZE_MB} MiB"
    fio --name=prefill --rw=write --bs=1M --iodepth=4 --ioengine=nbd --uri="$uri" \
        --size="${SIZE_MB}M" --output-format=terse > /dev/null 2> "$work/$t.prefill.err"
    for job in $JOBS; do run_fio "$t" "$job" "$uri"; done
}

start_sheep() { # start_sheep TAG N COPIES [-W]
    local t=$1 n=$2 copies=$3 wb=${4:-} i nbd port0
    port0=$((base + 100 + 10 * $(echo "$TARGETS" | tr ' ' '\n' | grep -n "^$t\$" | cut -d: -f1)))
    local nbdport=$((port0 + 9))
    for i in $(seq 0 $((n - 1))); do
        if [ "$i" = 0 ]; then nbd="127.0.0.1:$nbdport"; else nbd=off; fi
        # shellcheck disable=SC2086
        "$bin/sheep" -f -p $((port0 + i)) -z "$i" -c local:"$work/$t/cluster" --nbd "$nbd" $wb \
            ${SHEEP_ARGS:-} "$work/$t/n$i" > "$work/$t.n$i.out" 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 1 200); do
        [ "$("$bin/dog" node list -r -p "$port0" 2>/dev/null | wc -l)" = "$n" ] && break
        sleep 0.05
    done
    "$bin/dog" cluster format -c "$copies" -p "$port0" > /dev/null
    local t0=$(date +%s.%N)
    "$bin/dog" vdi create -P "$t" "${SIZE_MB}M" -p "$port0"
    echo "[$t] vdi create -P ${SIZE_MB}M took $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"
    wait_port "$nbdport"
    SHEEP_URI="nbd://127.0.0.1:$nbdport/$t"
}

for t in $TARGETS; do
    mkdir -p "$work/$t"
    case $t in
        qemu)
            dd if=/dev/zero of="$work/qemu/disk.img" bs=1M count="$SIZE_MB" conv=fsync status=none
            qemu-nbd -f raw -t -e 8 -x disk -b 127.0.0.1 -p $((base + 9)) --cache=writeback \
                "$work/qemu/disk.img" > "$work/qemu.out" 2>&1 &
            pids+=($!)
            wait_port $((base + 9))
            bench_target qemu "nbd://127.0.0.1:$((base + 9))/disk"
            ;;
        c1_wt) start_sheep "$t" 1 1; bench_target "$t" "$SHEEP_URI" ;;
        c1_wb) start_sheep "$t" 1 1 -W; bench_target "$t" "$SHEEP_URI" ;;
        c3_wt) start_sheep "$t" 3 3; bench_target "$t" "$SHEEP_URI" ;;
        c3_wb) start_sheep "$t" 3 3 -W; bench_target "$t" "$SHEEP_URI" ;;
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    cleanup
    rm -rf "$work/$t/n"* "$work/qemu/disk.img"
done

report "$results"
echo "(results: $results; fio json: $work/*.json)"
