#!/usr/bin/env bash
# Builds sheepdog-rs and starts a local 3-sheep cluster (copies=3) on 127.0.0.1 with a VDI
# exported over NBD, then says what to run next. On a fresh Debian 12 machine with cargo
# it installs the one other thing the build needs, a C linker (gcc), if there is none.
#
# Running it again is safe: if the three sheep run, it says so and exits 0; sheep of the
# cluster that are stopped (scripts/stop-local.sh) start again on their stores, and the
# cluster comes back with its data; it formats the cluster and creates the VDI only when
# they do not exist yet. The cluster state is private to BASE_DIR (-c local:BASE_DIR/cluster).
#
# Usage: scripts/start-local.sh [BASE_DIR]   (default /tmp/sheepdog-rs)
#   SHEEP_PORT (7000: the sheep listen on it and the next two ports), NBD_PORT (10809),
#   VDI_NAME (vdi0), VDI_SIZE (10G)
# Stop it with: scripts/stop-local.sh [BASE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
base=${1:-/tmp/sheepdog-rs}
port=${SHEEP_PORT:-7000}
nbd=${NBD_PORT:-10809}
vdi=${VDI_NAME:-vdi0}
size=${VDI_SIZE:-10G}
mkdir -p "$base"
base=$(cd "$base" && pwd)
stop_hint="scripts/stop-local.sh${1:+ $base}"

nodes=(0 1 2)
stopped=()
for i in "${nodes[@]}"; do
    [ -n "$(local_sheep_pid "$base/$i")" ] || stopped+=("$i")
done
if [ "${#stopped[@]}" -eq 0 ]; then
    echo "the 3 sheep of $base already run on 127.0.0.1:$port-$((port + 2)); stop them with: $stop_hint"
    exit 0
fi

ensure_linker
cargo build --release -p sheep -p dog --bins
bin=$PWD/target/release
dog() { "$bin/dog" "$@" -p "$port"; }

for i in "${stopped[@]}"; do
    if "$bin/dog" node list -p $((port + i)) >/dev/null 2>&1; then
        echo "a sheep that is not one of $base already answers on port $((port + i))" >&2
        exit 1
    fi
done
trap 'echo "start-local.sh failed; $stop_hint stops the sheep it started" >&2' ERR

# Three sheep in three zones sharing one cluster directory; the first exports NBD.
# Without -f each daemon detaches, logging to its DIR/sheep.log. A sheep whose store holds
# a formatted cluster rejoins it with its data.
for i in "${stopped[@]}"; do
    mkdir -p "$base/$i"
    nbd_opt=off
    [ "$i" = 0 ] && nbd_opt=127.0.0.1:$nbd
    "$bin/sheep" -p $((port + i)) -z "$i" -c local:"$base/cluster" --nbd "$nbd_opt" \
        -P "$base/$i/sheep.pid" "$base/$i"
done
echo "started sheep ${stopped[*]} of $base"

# Wait until all three are members and the cluster either runs or waits for its format.
status=""
deadline=$((SECONDS + 60))
while :; do
    members=$(dog node list -r 2>/dev/null | wc -l || true)
    status=$(dog cluster info 2>/dev/null | head -1 || true)
    if [ "$members" = 3 ] && [[ "$status" == "Cluster status: running"* ||
        "$status" == "Cluster status: Waiting for cluster to be formatted" ]]; then
        break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "the cluster did not come up within 60 s ($members of 3 members):" >&2
        dog cluster info >&2 || true
        echo "logs: $base/0/sheep.log $base/1/sheep.log $base/2/sheep.log" >&2
        false
    fi
    sleep 0.1
done

if [ "$status" = "Cluster status: Waiting for cluster to be formatted" ]; then
    dog cluster format -c 3
else
    echo "the cluster is formatted already: its data is kept"
fi
# A working VDI or clone named $vdi (raw rows: "= NAME ..." or "c NAME ..."; "s" is a snapshot).
if dog vdi list -r "$vdi" | awk -v n="$vdi" '$1 != "s" && $2 == n { found = 1 } END { exit !found }'; then
    echo "VDI '$vdi' exists already: kept"
else
    dog vdi create "$vdi" "$size"
fi
dog node list
dog vdi list
cat <<MSG

3 sheep run on 127.0.0.1:$port-$((port + 2)) (stores in $base/0..2), copies=3.
VDI '$vdi' is exported over NBD at nbd://127.0.0.1:$nbd/$vdi
Try:
  qemu-img info nbd://127.0.0.1:$nbd/$vdi
  nbdinfo nbd://127.0.0.1:$nbd/$vdi
  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' nbd://127.0.0.1:$nbd/$vdi
  qemu-system-x86_64 -drive file=nbd://127.0.0.1:$nbd/$vdi,format=raw,cache=none ...
  $bin/dog vdi read -p $port $vdi 0 1M | od -An -tx1 | head -2
Stop (the data stays; this script starts the cluster again):
  $stop_hint
MSG
