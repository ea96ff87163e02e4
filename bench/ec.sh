#!/usr/bin/env bash
# Benchmark (not a test): erasure-coded 4:2 VDI against a copies=3 VDI, in the same run.
#
# ONE cluster, TWO VDIs: 6 writethrough sheep in zones 0..5 (local cluster driver), NBD on
# the first sheep; VDI `rep` (`dog vdi create -c 3`) and VDI `ec` (`-c 4:2`), both SIZE_MB,
# not preallocated. Every step runs on `rep` and then at once on `ec`, so the pair of figures
# of one step is taken under the same machine load (STYLE rule 10: the copies=3 VDI is the
# same-run reference; each row prints ec/rep).
#
# Steps (fio, ioengine=nbd, one connection):
#   fill     FILL_BS (1 MiB) sequential writes, QD4, over the whole VDI once. With 1 MiB
#            writes the first write of each 4 MiB object creates it and, for ec, the other
#            three are logged overwrites (prepare/complete); FILL_BS=4M creates every object
#            whole (no log records).
#   space    after the fill, over all sheep: the apparent size (st_size) and the allocated
#            bytes (st_blocks*512, what `du -B1` counts) of the VDI's data-object files,
#            i.e. obj/00<vid>* (inode objects 80... excluded); for ec the strip files
#            <oid>_<i> AND their logs <oid>_<i>.log. Divided by the bytes written.
#            Target: ec <= 1.55 (copies=3: ~3.0). Measured again after the overwrite steps
#            (`space2`: logs not yet checkpointed show up there).
#   sw1m     1 MiB sequential overwrites, QD4, RUNTIME s (whole VDI, wrapping). Target:
#            ec >= 0.8x rep.
#   rw4k     4 KiB random overwrites, QD32, RUNTIME s; IOPS and p99 of fio's total latency.
#            EC 4:2 encodes in blocks of 512 data bytes: 4 KiB-aligned writes cover whole
#            blocks and need no read (no read-modify-write in this job).
#   read     1 MiB sequential reads, QD4, of the whole VDI (capped at READ_CAP s), healthy;
#            then sheep KILL (default 5; NOT the NBD server, sheep 0) is SIGKILLed, the
#            script waits until `dog node list` shows 5 nodes and reads rep then ec again
#            (degraded: ec decodes the missing strip from parity). Background recovery
#            starts at the kill and competes for the disk and CPU during the degraded
#            reads: the degraded figures include it (the script prints how many nodes
#            were recovering as each read started and ended). Then, once no node
#            recovers, both are read again (`after recovery`: the strips and copies
#            re-placed on 5 sheep). All data was just written, so most reads are served
#            from the page cache on both sides.
# CPU/IO: utime+stime (/proc/PID/stat 14+15) summed over all live sheep, sampled before and
# after each fio job, divided by fio's I/O count: the steadiest figure on a noisy machine.
# EC writes are durable in both modes (prepare is O_DSYNC), hence writethrough for both.
#
# Usage: bench/ec.sh [WORK_DIR]      (default target/bench-ec)
# Env: SIZE_MB (1024) RUNTIME (10) FILL_BS (1M) READ_CAP (60) KILL (5) BENCH_PORT (19700)
#      SHEEP_ARGS (extra options for every sheep) KEEP=1 (keep the stores at exit)
#      REPORT_ONLY=FILE (re-print a results file)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$PWD/target/bench-ec}
SIZE_MB=${SIZE_MB:-1024}
RUNTIME=${RUNTIME:-10}
FILL_BS=${FILL_BS:-1M}
READ_CAP=${READ_CAP:-60}
KILL=${KILL:-5}
base=${BENCH_PORT:-19700}
nbdport=$((base + 9))
tick=$(getconf CLK_TCK)

report() { # report RESULTS_FILE
    python3 - "$1" "$SIZE_MB" <<'PY'
import sys
res = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 2:
        continue
    d = res.setdefault((f[0], f[1]), {})
    for x in f[2:]:
        k, v = x.split("=", 1)
        try:
            d[k] = float(v)
        except ValueError:
            d[k] = v
size = int(sys.argv[2]) << 20

def g(v, step, key):
    return res.get((v, step), {}).get(key)

rows = []  # (label, rep, ec, fmt, ratio?)
def row(label, step, key, fmt="{:.1f}", scale=1.0):
    r, e = g("rep", step, key), g("ec", step, key)
    r = r * scale if isinstance(r, float) else r
    e = e * scale if isinstance(e, float) else e
    rows.append((label, r, e, fmt))

row("raw/written, apparent (after fill)", "space", "app", "{:.3f}", 1 / size)
row("raw/written, allocated (after fill)", "space", "alloc", "{:.3f}", 1 / size)
row("  of which .log files, apparent", "space", "log", "{:.3f}", 1 / size)
row("  without .log files, apparent", "space", "data", "{:.3f}", 1 / size)
row("raw/written, apparent (after sw1m+rw4k)", "space2", "app", "{:.3f}", 1 / size)
row("raw/written, allocated (after sw1m+rw4k)", "space2", "alloc", "{:.3f}", 1 / size)
row("  of which .log files, apparent", "space2", "log", "{:.3f}", 1 / size)
row("  without .log files, apparent", "space2", "data", "{:.3f}", 1 / size)
row("fill QD4 MB/s", "fill", "mbs")
row("fill sheep CPU us/IO", "fill", "cpu")
row("sw1m QD4 overwrite MB/s", "sw1m", "mbs")
row("sw1m p99 lat us", "sw1m", "p99", "{:.0f}")
row("sw1m sheep CPU us/IO", "sw1m", "cpu")
row("rw4k QD32 IOPS", "rw4k", "iops", "{:.0f}")
row("rw4k p50 lat us", "rw4k", "p50", "{:.0f}")
row("rw4k p99 lat us", "rw4k", "p99", "{:.0f}")
row("rw4k sheep CPU us/IO", "rw4k", "cpu")
row("read 1M healthy MB/s", "read", "mbs")
row("read healthy sheep CPU us/IO", "read", "cpu")
row("read 1M degraded MB/s (+recovery)", "dread", "mbs")
row("read degraded sheep CPU us/IO", "dread", "cpu")
row("read 1M after recovery (5 sheep) MB/s", "rread", "mbs")
row("read after recovery sheep CPU us/IO", "rread", "cpu")

print()
print(f"{'metric':42} {'rep c=3':>10} {'ec 4:2':>10} {'ec/rep':>8}")
for label, r, e, fmt in rows:
    fr = fmt.format(r) if isinstance(r, float) else "-"
    fe = fmt.format(e) if isinstance(e, float) else "-"
    q = f"{e / r:.2f}x" if isinstance(r, float) and isinstance(e, float) and r else "-"
    print(f"{label:42} {fr:>10} {fe:>10} {q:>8}")
for v in ("rep", "ec"):
    h, d = g(v, "read", "mbs"), g(v, "dread", "mbs")
    if h and d is not None:
        print(f"read {v}: degraded/healthy = {d / h:.2f}x (degraded includes background recovery)")
errs = [(k, d["err"]) for k, d in res.items() if d.get("err") not in (None, 0.0)]
for (v, step), e in errs:
    print(f"fio ERROR: {v} {step}: error={e}")
print()
e, r = g("ec", "space", "app"), g("rep", "space", "app")
if e is not None:
    x = e / size
    print(f"target: ec raw bytes per byte written {x:.3f} (apparent) <= 1.55: {'MET' if x <= 1.55 else 'MISSED'}"
          + (f"; copies=3 {r / size:.3f}" if r is not None else ""))
e, r = g("ec", "sw1m", "mbs"), g("rep", "sw1m", "mbs")
if e is not None and r:
    print(f"target: ec 1 MiB seq write {e / r:.2f}x of copies=3 >= 0.8x: {'MET' if e / r >= 0.8 else 'MISSED'}")
PY
}

if [ -n "${REPORT_ONLY:-}" ]; then report "$REPORT_ONLY"; exit 0; fi

t_start=$(date +%s.%N)
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
    # The stores hold SIZE_MB x (3 + 1.5) of data: removed (KEEP=1 keeps them). The sheep
    # logs stay in $work/n*.out.
    [ -n "${KEEP:-}" ] || rm -rf "$work"/n[0-9] "$work"/cluster
}
trap cleanup EXIT

dog() { "$bin/dog" "$@" -p "$base"; }
now() { date +%s.%N; }
py() { python3 -c "print($1)"; }
nodes() { dog node list -r 2>/dev/null | wc -l; }

wait_port() { # wait_port PORT
    for _ in $(seq 1 200); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 did not open" >&2; return 1
}

live=(0 1 2 3 4 5) # indexes of the sheep still running
cpu_ticks() { # utime+stime of the live sheep, in ticks
    local t=0 i s
    for i in "${live[@]}"; do
        s=$(cut -d')' -f2- "/proc/${pids[$i]}/stat" 2>/dev/null || true)
        [ -n "$s" ] && t=$((t + $(awk '{print $12 + $13}' <<<"$s")))
    done
    echo $t
}

# run_fio VDI STEP FIO_ARGS...: appends "VDI STEP iops= mbs= p50= p99= ios= err= cpu=".
run_fio() {
    local v=$1 step=$2 c0 c1 rc=0
    shift 2
    c0=$(cpu_ticks)
    fio --name="$v-$step" "$@" --ioengine=nbd --uri="nbd://127.0.0.1:$nbdport/$v" \
        --size="${SIZE_MB}M" --output-format=json --randrepeat=0 --lat_percentiles=1 \
        > "$work/$v.$step.json" 2> "$work/$v.$step.err" || rc=$?
    c1=$(cpu_ticks)
    python3 - "$work/$v.$step.json" "$v" "$step" "$rc" "$(py "($c1-$c0)/$tick")" >> "$results" <<'PY' || echo "$v $step err=fio_rc_$rc" >> "$results"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])["jobs"][0]  # the nbd engine prints a line before the JSON
s = d["read"] if d["read"]["io_bytes"] > 0 else d["write"]
p = s["lat_ns"].get("percentile", {})
ios = s["total_ios"]
cpu_us = float(sys.argv[5]) * 1e6 / ios if ios else 0
err = d["error"] or (0 if sys.argv[4] == "0" else f"rc{sys.argv[4]}")
print(sys.argv[2], sys.argv[3], f"iops={s['iops']:.1f}", f"mbs={s['bw_bytes'] / 1e6:.2f}",
      f"p50={p.get('50.000000', 0) / 1000:.1f}", f"p99={p.get('99.000000', 0) / 1000:.1f}",
      f"ios={ios}", f"secs={s['runtime'] / 1000:.2f}", f"err={err}", f"cpu={cpu_us:.1f}")
PY
    echo "  $(tail -n1 "$results")"
    [ "$rc" = 0 ] || { echo "  fio exit $rc; stderr:"; sed 's/^/    /' "$work/$v.$step.err" | tail -n5; }
}

# space VDI VID STEP: data-object files of VID on all sheep (strips and logs for ec).
space() {
    local v=$1 vid=$2 step=$3
    find "$work"/n[0-9]/obj -maxdepth 1 -type f -name "00${vid}*" ! -name '*.tmp.*' \
        -printf '%f %s %b\n' 2>/dev/null | awk -v v="$v" -v st="$step" '
        { n++; app += $2; alloc += $3 * 512; if ($1 ~ /\.log$/) { log_ += $2; nl++ } }
        END { printf "%s %s app=%.0f alloc=%.0f log=%.0f data=%.0f files=%d logfiles=%d\n", v, st, app, alloc, log_, app - log_, n, nl }' \
        >> "$results"
    echo "  $(tail -n1 "$results")"
}

echo "starting 6 sheep (zones 0..5, writethrough), NBD on sheep 0 at 127.0.0.1:$nbdport"
for i in 0 1 2 3 4 5; do
    if [ "$i" = 0 ]; then nbd="127.0.0.1:$nbdport"; else nbd=off; fi
    # shellcheck disable=SC2086
    "$bin/sheep" -f -p $((base + i)) -z "$i" -c local:"$work/cluster" --nbd "$nbd" \
        ${SHEEP_ARGS:-} "$work/n$i" > "$work/n$i.out" 2>&1 &
    pids+=($!)
    disown $! # no "Killed" job notice at the SIGKILL
done
for _ in $(seq 1 200); do [ "$(nodes)" = 6 ] && break; sleep 0.05; done
[ "$(nodes)" = 6 ] || { echo "the 6 sheep did not all join" >&2; exit 1; }
dog cluster format -c 3 > /dev/null
dog vdi create -c 3 rep "${SIZE_MB}M"
dog vdi create -c 4:2 ec "${SIZE_MB}M"
wait_port "$nbdport"
# vdi list -r: "= NAME SNAPID SIZE USED SHARED CTIME VID(hex) COPIES ..."; the VDI's data
# objects are named 00<vid as 6 hex digits><index>.
vid_of() { printf '%06x' "0x$(dog vdi list -r | awk -v n="$1" '$1 == "=" && $2 == n {print $8}')"; }
vid_rep=$(vid_of rep); vid_ec=$(vid_of ec)
[ "$vid_rep" != 000000 ] && [ "$vid_ec" != 000000 ] || { echo "no VDI ids from dog vdi list -r" >&2; exit 1; }
echo "vids: rep=$vid_rep ec=$vid_ec"
dog vdi list

VDIS="rep ec"
vid() { if [ "$1" = rep ]; then echo "$vid_rep"; else echo "$vid_ec"; fi; }

echo "[fill] $FILL_BS sequential writes, QD4, over the whole ${SIZE_MB} MiB"
for v in $VDIS; do run_fio "$v" fill --rw=write --bs="$FILL_BS" --iodepth=4; done
sleep 1
for v in $VDIS; do space "$v" "$(vid "$v")" space; done

echo "[sw1m] 1 MiB sequential overwrites, QD4, ${RUNTIME} s"
for v in $VDIS; do run_fio "$v" sw1m --rw=write --bs=1M --iodepth=4 --runtime="$RUNTIME" --time_based; done
echo "[rw4k] 4 KiB random overwrites, QD32, ${RUNTIME} s"
for v in $VDIS; do run_fio "$v" rw4k --rw=randwrite --bs=4k --iodepth=32 --runtime="$RUNTIME" --time_based; done
sleep 1
for v in $VDIS; do space "$v" "$(vid "$v")" space2; done

echo "[read] 1 MiB sequential reads of the whole VDI, healthy (6 sheep)"
for v in $VDIS; do run_fio "$v" read --rw=read --bs=1M --iodepth=4 --runtime="$READ_CAP"; done

strips=$(find "$work/n$KILL/obj" -maxdepth 1 -type f -name "00${vid_ec}*_[0-9]*" ! -name '*.log' ! -name '*.tmp.*' | wc -l)
copies=$(find "$work/n$KILL/obj" -maxdepth 1 -type f -name "00${vid_rep}*" ! -name '*.tmp.*' | wc -l)
echo "[kill] SIGKILL sheep $KILL (pid ${pids[$KILL]}): holds $strips ec strips, $copies rep copies"
kill -9 "${pids[$KILL]}"
t_kill=$(now)
live=()
for i in 0 1 2 3 4 5; do [ "$i" = "$KILL" ] || live+=("$i"); done
for _ in $(seq 1 1200); do [ "$(nodes)" = 5 ] && break; sleep 0.05; done
echo "  membership: $(nodes) nodes after $(py "round($(now)-$t_kill,2)") s"
recovering() { dog node recovery -r 2>/dev/null | wc -l; } # nodes still recovering
# rep first: its read is short, so both reads fall inside recovery (about 8 s for 1 GiB).
echo "[read] degraded (5 sheep; background recovery running), rep first"
for v in $VDIS; do
    echo "  $v: starts $(py "round($(now)-$t_kill,1)") s after the kill, $(recovering) nodes recovering"
    run_fio "$v" dread --rw=read --bs=1M --iodepth=4 --runtime="$READ_CAP"
    echo "  $v: ends $(py "round($(now)-$t_kill,1)") s after the kill, $(recovering) nodes recovering"
done
for _ in $(seq 1 2400); do [ "$(recovering)" = 0 ] && break; sleep 0.05; done
echo "[read] after recovery ($(recovering) nodes recovering, $(py "round($(now)-$t_kill,1)") s after the kill)"
for v in $VDIS; do run_fio "$v" rread --rw=read --bs=1M --iodepth=4 --runtime="$READ_CAP"; done

report "$results"

echo
echo "sheep logs ($work/n*.out): ERROR/WARN lines"
for i in 0 1 2 3 4 5; do
    ne=$(grep -c 'ERROR' "$work/n$i.out" || true); nw=$(grep -c 'WARN' "$work/n$i.out" || true)
    echo "  sheep $i: ERROR $ne, WARN $nw"
    grep -E 'ERROR|WARN' "$work/n$i.out" | sed 's/^/    /' | head -n 5 || true
done
echo "(results: $results; fio json: $work/*.json; total $(py "round($(now)-$t_start)") s incl. build)"
