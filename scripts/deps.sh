#!/usr/bin/env bash
# deps.sh - install the Debian packages flr needs to build, test and run, if missing.
# Sourced by demo.sh and check.sh; also runnable on its own.  Needs root or sudo when
# something is missing.
set -euo pipefail

FLR_PACKAGES=(
    build-essential autoconf automake pkg-config
    libzookeeper-mt-dev libnng-dev libmsgpack-dev libcmocka-dev libjansson-dev zlib1g-dev
    zookeeper default-jre-headless dataset-fashion-mnist procps
    curl jq prometheus chromium
)

flr_install_deps() {
    local missing=() p
    for p in "${FLR_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    # A JRE of another version satisfies ZooKeeper as well as the default one does.
    if [ ${#missing[@]} -gt 0 ] && command -v java >/dev/null 2>&1; then
        local m2=()
        for p in "${missing[@]}"; do [ "$p" = default-jre-headless ] || m2+=("$p"); done
        missing=("${m2[@]+"${m2[@]}"}")
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "flr: installing Debian packages: ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "flr: need root (or sudo) to install: ${missing[*]}" >&2
            return 1
        }
        sudo="sudo"
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# flr_build ROOT BUILDDIR: autoreconf (when needed), configure (when needed) and make.
flr_build() {
    local root=$1 build=$2 jobs
    jobs=$(nproc 2>/dev/null || echo 2)
    if [ ! -x "$root/configure" ] || [ "$root/configure.ac" -nt "$root/configure" ] ||
        [ "$root/Makefile.am" -nt "$root/Makefile.in" ]; then
        (cd "$root" && autoreconf -fi >/dev/null 2>&1) || (cd "$root" && autoreconf -fi)
    fi
    mkdir -p "$build"
    if [ ! -f "$build/Makefile" ]; then
        (cd "$build" && "$root/configure" -q)
    fi
    make -C "$build" -s -j"$jobs" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    flr_install_deps "$@"
fi
