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
