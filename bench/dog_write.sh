#!/usr/bin/env bash
# Benchmark (not a test): writes 256 MiB through `dog vdi write` into a single writethrough
# sheep and compares with `dd oflag=dsync` of the same data into a file on the same disk,
# measured in the same run. Prints MB/s and the ratio.
#
# Usage: bench/dog_write.sh [WORK_DIR] [ROUNDS]   (WORK_DIR default: target/bench, on the
# same filesystem as the checkout; ROUNDS default 3, best round is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$PWD/target/bench}
rounds=${2:-3}
size_mb=256
port=${BENCH_PORT:-17900}

cargo build --release --bins -q
bin=$PWD/target/release
rm -rf "$work" && mkdir -p "$work"
src=/dev/shm/sheepdog-bench-src.$$
head -c ${size_mb}M /dev/urandom > "$src"
trap 'rm -f "$src"; [ -n "${pid:-}" ] && kill -9 $pid 2>/dev/null || true' EXIT

"$bin/sheep" -f -p "$port" "$work/sheep" > "$work/sheep.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do "$bin/dog" node list -p "$port" >/dev/null 2>&1 && break; sleep 0.1; done
"$bin/dog" cluster format -p "$port" -c 1 >/dev/null

secs() { python3 -c 'import sys,time; print(f"{time.time():.6f}")'; }
rate() { python3 -c "print(f'{$size_mb/($2-$1):.1f}')"; }

best_dog=0; best_dd=0
for r in $(seq 1 "$rounds"); do
    "$bin/dog" vdi create -p "$port" "bench$r" 1G
    t0=$(secs); "$bin/dog" vdi write -p "$port" "bench$r" < "$src"; t1=$(secs)
    d=$(rate "$t0" "$t1")
    t0=$(secs); dd if="$src" of="$work/dd.out" bs=4M oflag=dsync status=none; t1=$(secs)
    x=$(rate "$t0" "$t1")
    rm -f "$work/dd.out"
    echo "round $r: dog vdi write ${d} MB/s, dd oflag=dsync bs=4M ${x} MB/s"
    best_dog=$(python3 -c "print(max($best_dog, $d))"); best_dd=$(python3 -c "print(max($best_dd, $x))")
done
"$bin/dog" vdi read -p "$port" bench1 0 ${size_mb}M | cmp - "$src" && echo "read-back: identical"
echo "dog vdi write (writethrough, copies=1): ${best_dog} MB/s"
echo "dd oflag=dsync bs=4M, same disk:        ${best_dd} MB/s"
python3 -c "print(f'ratio: {$best_dog/$best_dd:.2f}x of dd oflag=dsync')"
