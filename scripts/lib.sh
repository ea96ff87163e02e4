# shellcheck shell=bash
# Shell functions of the scripts in scripts/ (sourced, not run).

# Runs "$@" as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "need root to run: $* (and there is no sudo)" >&2
        return 1
    fi
}

# Installs the Debian packages named in "$@" that are not installed yet. Runs apt only
# when one is missing, so that on a prepared machine this costs one dpkg-query each. On a
# system without apt it names what it could not check and goes on.
ensure_apt_packages() {
    local p missing=()
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        echo "no apt here: make sure these (Debian names) are installed: $*" >&2
        return 0
    fi
    for p in "$@"; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == *" installed" ]] || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing missing packages: ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Rust links through the C compiler driver `cc`; a toolchain installed with rustup alone
# has none.
ensure_linker() {
    command -v cc >/dev/null || ensure_apt_packages gcc libc6-dev
}

# The pid of the sheep of a start-local.sh cluster whose base directory is "$1" (as
# given to that sheep), if it runs; nothing otherwise. The pid file is checked against
# the process's command line, so a stale file whose pid was reused is not taken for it.
local_sheep_pid() {
    local dir=$1 pid
    [ -r "$dir/sheep.pid" ] || return 0
    read -r pid <"$dir/sheep.pid" || return 0
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    [ -r "/proc/$pid/cmdline" ] || return 0
    # The arguments, NUL-separated; our sheep has the directory as its last argument.
    if tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "$dir"; then
        echo "$pid"
    fi
}
