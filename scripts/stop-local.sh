#!/usr/bin/env bash
# Stops the local cluster of scripts/start-local.sh cleanly: SIGTERM to each of its sheep
# (a sheep then refuses new client requests, lets those in flight finish, flushes, leaves
# the cluster and exits), then waits until every one has exited. The stores stay, and
# scripts/start-local.sh starts the same cluster again with its data.
# Usage: scripts/stop-local.sh [BASE_DIR]   (default /tmp/sheepdog-rs, as start-local.sh)
#   STOP_TIMEOUT: seconds to wait for the sheep to exit (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
base=${1:-/tmp/sheepdog-rs}
timeout=${STOP_TIMEOUT:-60}
if [ ! -d "$base" ]; then
    echo "no local cluster in $base"
    exit 0
fi
base=$(cd "$base" && pwd)

pids=()
for i in 0 1 2; do
    pid=$(local_sheep_pid "$base/$i")
    [ -n "$pid" ] && pids+=("$pid")
done
if [ "${#pids[@]}" -eq 0 ]; then
    echo "no sheep of $base runs"
    exit 0
fi

echo "stopping the sheep of $base (pids ${pids[*]})"
kill -TERM "${pids[@]}"
deadline=$((SECONDS + timeout))
while :; do
    left=()
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && left+=("$pid")
    done
    [ "${#left[@]}" -eq 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "sheep ${left[*]} did not stop within ${timeout} s (see $base/*/sheep.log);" \
            "kill -9 stops them at once, like a power cut" >&2
        exit 1
    fi
    sleep 0.1
done
echo "stopped; the stores stay in $base/0..2 (scripts/start-local.sh starts them again)"
