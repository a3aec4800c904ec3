#!/usr/bin/env bash
# Installs everything Wave needs on a fresh Debian 12 machine. Idempotent: packages already
# present are not reinstalled, and `apt-get update` runs only when something is missing.
# Used by the README's two commands and by .ci/run.
set -euo pipefail

# System packages, with what needs them:
#   pkg-config, build-essential: building crates with C parts (the DPDK shim)
#   libdpdk-dev: DPDK 22.11 headers, libraries and PMDs (bindings/, host-dp's dpdk feature)
#   libclang-dev: bindgen, which generates the DPDK bindings at build time
#   iproute2: network-namespace tests (veth, TAP)
#   ethtool: the interop tests turn off a veth's checksum offload
#   python3, curl: the kernel-side programs of the interop tests (Python's socket module, curl)
#   tcpdump: reads back the pcap files netstack's capture writes (a test of their format)
#   libmemcached-tools: memccapable and memcaslap, the clients rpc-server's tests run
#   memcached: the baseline server loadgen runs against (tests, and the rpc-server experiment)
#   librocksdb-dev: RocksDB 7.8 for rocksdb-server (linked, not built: .cargo/config.toml)
#   wrk, nghttp2-client (h2load): the HTTP/1.1 and HTTP/2 load clients hyper-server's tests run
PACKAGES=(pkg-config build-essential libdpdk-dev libclang-dev iproute2 ethtool python3 curl
    tcpdump libmemcached-tools memcached librocksdb-dev wrk nghttp2-client)
# With --plots, also what the experiment scripts draw their PNGs with:
#   gnuplot-nox: scripts/sched-plot.py
if [[ ${1:-} == --plots ]]; then
    PACKAGES+=(gnuplot-nox)
fi

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} > 0)); then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Rust toolchain pinned in rust-toolchain.toml (rustup installs it on first use; this
# makes that happen here, with a clear failure if rustup is missing).
if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found; install rustup (https://rustup.rs) first" >&2
    exit 1
fi
cd "$(dirname "$0")/.."
cargo --version >/dev/null
