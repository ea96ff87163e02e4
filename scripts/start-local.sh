#!/usr/bin/env bash
# Builds sheepdog-rs and starts a local cluster on 127.0.0.1 with a VDI, then says what to run next.
# Usage: scripts/start-local.sh [BASE_DIR]   (default /tmp/sheepdog-rs)
# Stop it with: target/release/dog cluster shutdown
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-/tmp/sheepdog-rs}
port=${SHEEP_PORT:-7000}
vdi=${VDI_NAME:-vdi0}
size=${VDI_SIZE:-10G}

cargo build --release --bins
bin=$PWD/target/release
mkdir -p "$base/0"

if "$bin/dog" node list -p "$port" >/dev/null 2>&1; then
    echo "a sheep already answers on port $port; stop it with: $bin/dog cluster shutdown -p $port" >&2
    exit 1
fi
# Without -f the daemon detaches, logging to $base/0/sheep.log.
"$bin/sheep" -p "$port" -P "$base/0/sheep.pid" "$base/0"

# Wait for it to answer (the daemon binds before it detaches, so this is quick).
for _ in $(seq 1 100); do
    "$bin/dog" node list -p "$port" >/dev/null 2>&1 && break
    sleep 0.1
done

# A cluster of one node keeps one copy of every object.
"$bin/dog" cluster format -p "$port" -c 1
"$bin/dog" vdi create -p "$port" "$vdi" "$size"
"$bin/dog" cluster info -p "$port"
"$bin/dog" vdi list -p "$port"
cat <<MSG

sheep is running on 127.0.0.1:$port with store $base/0 and VDI '$vdi' ($size).
Try:
  head -c 16M /dev/urandom > /tmp/data && $bin/dog vdi write -p $port $vdi < /tmp/data
  $bin/dog vdi read -p $port $vdi 0 16M | cmp - /tmp/data && echo identical
  $bin/dog node info -p $port
Stop:
  $bin/dog cluster shutdown -p $port
MSG
