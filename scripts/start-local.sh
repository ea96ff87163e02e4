#!/usr/bin/env bash
# Builds sheepdog-rs and starts a local 3-sheep cluster (copies=3) on 127.0.0.1 with a VDI
# exported over NBD, then says what to run next.
# Usage: scripts/start-local.sh [BASE_DIR]   (default /tmp/sheepdog-rs)
# Stop it with: target/release/dog cluster shutdown
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-/tmp/sheepdog-rs}
port=${SHEEP_PORT:-7000}
nbd=${NBD_PORT:-10809}
vdi=${VDI_NAME:-vdi0}
size=${VDI_SIZE:-10G}

cargo build --release --bins
bin=$PWD/target/release

if "$bin/dog" node list -p "$port" >/dev/null 2>&1; then
    echo "a sheep already answers on port $port; stop it with: $bin/dog cluster shutdown -p $port" >&2
    exit 1
fi
# Three sheep in three zones sharing one cluster directory; the first exports NBD.
# Without -f each daemon detaches, logging to its DIR/sheep.log.
for i in 0 1 2; do
    mkdir -p "$base/$i"
    nbd_opt=off
    [ "$i" = 0 ] && nbd_opt=127.0.0.1:$nbd
    "$bin/sheep" -p $((port + i)) -z "$i" -c local:"$base/cluster" --nbd "$nbd_opt" \
        -P "$base/$i/sheep.pid" "$base/$i"
done
for _ in $(seq 1 100); do
    [ "$("$bin/dog" node list -r -p "$port" 2>/dev/null | wc -l)" = 3 ] && break
    sleep 0.1
done

"$bin/dog" cluster format -p "$port" -c 3
"$bin/dog" vdi create -p "$port" "$vdi" "$size"
"$bin/dog" node list -p "$port"
"$bin/dog" vdi list -p "$port"
cat <<MSG

3 sheep run on 127.0.0.1:$port-$((port + 2)) (stores in $base/0..2), copies=3.
VDI '$vdi' ($size) is exported over NBD at nbd://127.0.0.1:$nbd/$vdi
Try:
  qemu-img info nbd://127.0.0.1:$nbd/$vdi
  nbdinfo nbd://127.0.0.1:$nbd/$vdi
  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' nbd://127.0.0.1:$nbd/$vdi
  qemu-system-x86_64 -drive file=nbd://127.0.0.1:$nbd/$vdi,format=raw,cache=none ...
  $bin/dog vdi read -p $port $vdi 0 1M | od -An -tx1 | head -2
Stop:
  $bin/dog cluster shutdown -p $port
MSG
