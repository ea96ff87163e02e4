#!/usr/bin/env bash
# The README's test command: runs the whole test suite on a fresh Debian 12 machine with
# cargo, installing first what the suite needs and the machine lacks (nothing is installed,
# and apt does not run, when everything is there; sudo is used only when not root):
#   - zookeeper + default-jre-headless: a real ZooKeeper for the `-c zookeeper:` tests
#     (they start the server class themselves, with a private config);
#   - qemu-utils, libnbd-bin, fio: real NBD clients (qemu-img/qemu-io, nbdinfo, fio);
#   - fuse3: fusermount3 for crates/faultfs, the power-loss tests' file system (as root it
#     mounts with the mount syscall and needs only /dev/fuse);
#   - iproute2, nftables: the partition tests make network namespaces and cut links in
#     them (they need root);
#   - curl, util-linux (flock), coreutils, procps: commands of docs/operations.md, which
#     tests/it/docs.rs runs;
#   - gcc, if there is no C linker; cargo-nextest (cargo install), if absent.
# Then it builds the binaries the process tests start (with the failpoints feature, which
# compiles the test hooks into those sheep; a production build never has them) and runs
# every test under cargo-nextest.
# Usage: scripts/test.sh [NEXTEST ARGS...]   e.g. scripts/test.sh -E 'test(dog_cli)'
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_linker
ensure_apt_packages coreutils procps zookeeper default-jre-headless qemu-utils libnbd-bin \
    fio fuse3 iproute2 nftables curl util-linux
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "warning: not root: the partition tests (network namespaces) need root" >&2
fi

cargo build --workspace --bins --features sheep/failpoints
exec cargo nextest run --workspace --features sheep/failpoints --no-fail-fast "$@"
