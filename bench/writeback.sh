#!/usr/bin/env bash
# Benchmark (not a test): writeback (-W) against writethrough the way QEMU's sheepdog driver
# used a cluster (crates/client/examples/qemu_like.rs: one connection, one request in
# flight, sequential writes into a preallocated VDI), all measured in the same run.
#
# Clusters: 3 and 10 sheep, copies=3, each in four configurations:
#   wt      writethrough, stores on disk (target/, same file system as the checkout)
#   wb      writeback -W, targeted flush (ours), on disk
#   syncfs  writeback -W --flush=syncfs (the 2012 design), on disk
#   tmpfs   writethrough with the stores on /dev/shm: the no-disk limit
# Rows (every row writes into its own freshly preallocated VDI, `dog vdi create -P`):
#   1m      1 MiB x BIG_COUNT writes, no flush          (the seed's dd oflag=direct)
#   1m+fl   the same with FLUSH_VDI after every write    (oflag=direct,sync)
#   4k      4 KiB x SMALL_COUNT writes, no flush
#   4k+fl   the same with FLUSH_VDI after every write
#   cN      N concurrent clients (own connection, own VDI) doing 4 KiB write+flush, CONC_SECS
# Prints the table with ratios (writeback/writethrough, writeback/tmpfs, ours vs syncfs,
# flush latency 10/3 sheep, aggregate 8 clients / 1 client) and checks the issue's targets.
#
# Usage: bench/writeback.sh [WORK_DIR]        (default target/bench-writeback)
# Env: SIZES ("3 10") CONFIGS ("wt wb syncfs tmpfs") BIG_COUNT (100) SMALL_COUNT (25600)
#      ROW_SECS (cap on one 4 KiB row, 25; rates stay exact, the writes column says how many
#      were done) CLIENTS ("1 4 8") CONC_SECS (4) CONC_MB (32) BENCH_PORT (18000)
#      SHEEP_ARGS (extra sheep options for every sheep) REPORT_ONLY=FILE (re-print a run)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$PWD/target/bench-writeback}
SIZES=${SIZES:-"3 10"}
CONFIGS=${CONFIGS:-"wt wb syncfs tmpfs"}
BIG_COUNT=${BIG_COUNT:-100}
SMALL_COUNT=${SMALL_COUNT:-25600}
ROW_SECS=${ROW_SECS:-25}
CLIENTS=${CLIENTS:-"1 4 8"}
CONC_SECS=${CONC_SECS:-4}
CONC_MB=${CONC_MB:-32}
base=${BENCH_PORT:-18000}

report() { # report RESULTS_FILE
    python3 - "$1" <<'PY'
import sys, collections
res = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 4:
        continue
    cfg, n, row = f[0], int(f[1]), f[2]
    res[(cfg, n, row)] = {k: float(v) for k, v in (x.split("=", 1) for x in f[3:])}

def g(cfg, n, row, key):
    r = res.get((cfg, n, row))
    return None if r is None else r.get(key)

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b

def fx(v, fmt="{:.2f}x"):
    return "-" if v is None else fmt.format(v)

def fv(v, fmt="{:.0f}"):
    return "-" if v is None else fmt.format(v)

sizes = sorted({k[1] for k in res})
rows = [("1m", "1 MiB x %d, direct", "mbps"), ("4k", "4 KiB x %d, direct", "iops"),
        ("1m+fl", "1 MiB x %d, direct,sync", "mbps"), ("4k+fl", "4 KiB x %d, direct,sync", "iops")]
for n in sizes:
    print(f"\n== {n} sheep, copies=3 (MB/s = 10^6 B/s; IOPS = writes/s; +fl = FLUSH_VDI after every write)")
    hdr = ("row", "wt disk", "wb (ours)", "wb/wt", "syncfs", "syncfs/wt", "ours/syncfs",
           "tmpfs wt", "tmpfs/wt", "wb/tmpfs", "writes wt/wb/syncfs/tmpfs")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for row, label, key in rows:
        vals = {c: g(c, n, row, key) for c in ("wt", "wb", "syncfs", "tmpfs")}
        cnt = max((g(c, n, row, "writes") or 0) for c in vals)
        unit = " MB/s" if key == "mbps" else " IOPS"
        def cell(c):
            v = vals[c]
            if v is None:
                return "-"
            return (f"{v:.1f}" if key == "mbps" else f"{v:.0f}") + ("" if key == "mbps" else
                    f" ({g(c, n, row, 'mbps'):.1f} MB/s)")
        writes = "/".join(fv(g(c, n, row, "writes")) for c in vals)
        print(f"| {label % cnt}{unit} | {cell('wt')} | {cell('wb')} | {fx(ratio(vals['wb'], vals['wt']))} | "
              f"{cell('syncfs')} | {fx(ratio(vals['syncfs'], vals['wt']))} | {fx(ratio(vals['wb'], vals['syncfs']))} | "
              f"{cell('tmpfs')} | {fx(ratio(vals['tmpfs'], vals['wt']))} | {fx(ratio(vals['wb'], vals['tmpfs']))} | {writes} |")
    print("\nsheep CPU per write (all sheep, user+sys, us; with +fl it includes the flush):")
    for row, label, key in rows + [("c1", "", ""), ("c8", "", "")]:
        def cpu(c):
            r = res.get((c, n, row))
            return None if r is None or not r.get("writes") or "sheep_cpu_ms" not in r else r["sheep_cpu_ms"] * 1000 / r["writes"]
        print(f"  {row:6}" + "".join(f"  {c}={fv(cpu(c))}" for c in ("wt", "wb", "syncfs", "tmpfs")))
    print("\nwrite latency p50/p99 (us) per row:")
    for row, label, key in rows:
        print(f"  {row:6}" + "".join(
            f"  {c}={fv(g(c, n, row, 'wr_p50_us'))}/{fv(g(c, n, row, 'wr_p99_us'))}" for c in ("wt", "wb", "syncfs", "tmpfs")))

print("\n== flush latency (FLUSH_VDI after one write of the row's size; p50/p99 us), 10 sheep / 3 sheep")
print("| row | config | 3 sheep p50/p99 | 10 sheep p50/p99 | 10/3 p50 | 10/3 mean |")
print("|---|---|---|---|---|---|")
for row in ("4k+fl", "1m+fl"):
    for c in ("wt", "wb", "syncfs", "tmpfs"):
        a = [g(c, n, row, "fl_p50_us") for n in (3, 10)]
        b = [g(c, n, row, "fl_p99_us") for n in (3, 10)]
        m = [g(c, n, row, "fl_mean_us") for n in (3, 10)]
        if a == [None, None]:
            continue
        print(f"| {row} | {c} | {fv(a[0])}/{fv(b[0])} | {fv(a[1])}/{fv(b[1])} | {fx(ratio(a[1], a[0]))} | {fx(ratio(m[1], m[0]))} |")

clients = sorted({int(k[2][1:]) for k in res if k[2].startswith("c")})
if clients:
    print("\n== concurrent clients, 4 KiB write+flush, each on its own VDI: aggregate IOPS (per-client mean, min..max)")
    hdr = ["sheep", "config"] + [f"{c} client(s)" for c in clients] + [f"agg {clients[-1]}/{clients[0]}", f"per-client {clients[-1]}/{clients[0]}"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for n in sizes:
        for c in ("wt", "wb", "syncfs", "tmpfs"):
            cells = []
            for k in clients:
                r = res.get((c, n, f"c{k}"))
                cells.append("-" if r is None else
                             f"{r['iops']:.0f} ({r['cl_iops_mean']:.0f}, {r['cl_iops_min']:.0f}..{r['cl_iops_max']:.0f})")
            if all(x == "-" for x in cells):
                continue
            a1, a8 = g(c, n, f"c{clients[0]}", "iops"), g(c, n, f"c{clients[-1]}", "iops")
            p1, p8 = g(c, n, f"c{clients[0]}", "cl_iops_mean"), g(c, n, f"c{clients[-1]}", "cl_iops_mean")
            print(f"| {n} | {c} | " + " | ".join(cells) + f" | {fx(ratio(a8, a1))} | {fx(ratio(p8, p1))} |")

print("\n== targets")
def verdict(ok):
    return "-" if ok is None else ("MET" if ok else "MISSED")
for n in sizes:
    wt, wb, tm = (g(c, n, "4k", "iops") for c in ("wt", "wb", "tmpfs"))
    r, lim = ratio(wb, wt), ratio(tm, wt)
    need = None if lim is None else min(18.0, lim / 2)
    print(f"{n} sheep: 4 KiB no-flush wb/wt = {fx(r)} (need >= min(18x, tmpfs/disk {fx(lim)} / 2) = {fx(need)}): "
          f"{verdict(None if r is None or need is None else r >= need)}")
    rt = ratio(wb, tm)
    print(f"{n} sheep: 4 KiB no-flush wb/tmpfs = {fx(rt)} (need >= 0.60x): {verdict(None if rt is None else rt >= 0.6)}")
    for row in ("4k+fl", "1m+fl"):
        key = "iops" if row == "4k+fl" else "mbps"
        rr = ratio(g("wb", n, row, key), g("wt", n, row, key))
        print(f"{n} sheep: {row} wb/wt = {fx(rr)} (need >= 1.00x): {verdict(None if rr is None else rr >= 1.0)}")
    if clients:
        a = ratio(g("wb", n, f"c{clients[-1]}", "iops"), g("wb", n, f"c{clients[0]}", "iops"))
        print(f"{n} sheep: wb aggregate {clients[-1]} clients / {clients[0]} = {fx(a)} (need >= 4.00x): "
              f"{verdict(None if a is None else a >= 4.0)}")
for row in ("4k+fl", "1m+fl"):
    f = ratio(g("wb", 10, row, "fl_p50_us"), g("wb", 3, row, "fl_p50_us"))
    print(f"wb flush latency p50 10/3 sheep ({row}) = {fx(f)} (need <= 1.20x): {verdict(None if f is None else f <= 1.2)}")
PY
}

if [ -n "${REPORT_ONLY:-}" ]; then
    report "$REPORT_ONLY"
    exit 0
fi

cargo build --release --bins -q
cargo build --release -q -p sd-client --examples
bin=$PWD/target/release
q=$bin/examples/qemu_like
shm=/dev/shm/sheepdog-bench-writeback.$$
rm -rf "$work" && mkdir -p "$work"
results=$work/results.txt
: > "$results"
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$shm"' EXIT
now() { date +%s.%N; }
t_start=$(now)
hz=$(getconf CLK_TCK)
sheep_cpu() { # CPU time (user+system, clock ticks) of the running sheep
    local t=0 p
    for p in "${pids[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}

port=$base
run_cluster() { # run_cluster CONFIG N
    local cfg=$1 n=$2 dir args=""
    case $cfg in
        wt) dir=$work/$cfg-$n ;;
        wb) dir=$work/$cfg-$n; args="-W" ;;
        syncfs) dir=$work/$cfg-$n; args="-W --flush=syncfs" ;;
        tmpfs) dir=$shm/$cfg-$n ;;
        *) echo "unknown config $cfg" >&2; exit 2 ;;
    esac
    rm -rf "$dir" && mkdir -p "$dir"
    local p0=$port
    port=$((port + n + 1))
    for i in $(seq 0 $((n - 1))); do
        # shellcheck disable=SC2086
        "$bin/sheep" -f -p $((p0 + i)) -z "$i" -c local:"$dir/cluster" $args ${SHEEP_ARGS:-} \
            "$dir/n$i" > "$dir/n$i.out" 2>&1 &
        pids+=($!)
    done
    local dog="$bin/dog"
    for _ in $(seq 1 200); do
        [ "$("$dog" node list -r -p "$p0" 2>/dev/null | wc -l)" = "$n" ] && break
        sleep 0.1
    done
    "$dog" cluster format -c 3 -p "$p0" > /dev/null
    local addr=127.0.0.1:$p0
    echo "== $cfg, $n sheep ($(python3 -c "print(round($(now)-$t_start))") s into the run)"
    # row NAME VDI SIZE BS COUNT [ARGS...]: a fresh preallocated VDI, one qemu_like run.
    row() {
        local name=$1 vdi=$2 size=$3 out
        shift 3
        "$dog" vdi create -P "$vdi" "$size" -p "$p0"
        sync # no other row's dirty pages in the way
        local c0 c1
        c0=$(sheep_cpu)
        out=$("$q" "$addr" "$vdi" "$@")
        c1=$(sheep_cpu)
        out="$out sheep_cpu_ms=$(( (c1 - c0) * 1000 / hz ))"
        echo "$cfg $n $name $out" >> "$results"
        echo "  $cfg n=$n $name: $out"
    }
    local small_mb=$(( (SMALL_COUNT * 4096 + 1048575) / 1048576 ))
    row 1m v1 "${BIG_COUNT}M" 1m "$BIG_COUNT"
    row 1m+fl v2 "${BIG_COUNT}M" 1m "$BIG_COUNT" flush
    row 4k v3 "${small_mb}M" 4k "$SMALL_COUNT" secs="$ROW_SECS"
    row 4k+fl v4 "${small_mb}M" 4k "$SMALL_COUNT" flush secs="$ROW_SECS"
    local c i out c0 c1
    for c in $CLIENTS; do
        for i in $(seq 0 $((c - 1))); do "$dog" vdi create -P "c${c}_$i" "${CONC_MB}M" -p "$p0"; done
        sync
        c0=$(sheep_cpu)
        out=$("$q" "$addr" "c${c}_" 4k 100000000 flush clients="$c" secs="$CONC_SECS")
        c1=$(sheep_cpu)
        out="$out sheep_cpu_ms=$(( (c1 - c0) * 1000 / hz ))"
        echo "$cfg $n c$c $out" >> "$results"
        echo "  $cfg n=$n c$c: $out"
    done
    stop_all
    rm -rf "$dir"
    sync
}

for n in $SIZES; do
    for cfg in $CONFIGS; do
        run_cluster "$cfg" "$n"
    done
done
echo "total $(python3 -c "print(round($(now)-$t_start))") s; raw results in $results"
report "$results"
