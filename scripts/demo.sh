#!/usr/bin/env bash
# The README's first command, the main demo: set-up, build, then ipu-cp (the control plane, its
# own process), rpc-server (a memcached-protocol server on Wave's runtime and network stack)
# and loadgen (an open-loop client on our stack over a shared-memory wire), with rpc-server's
# connection control on-host and then offloaded to ipu-cp. Prints a table of throughput and
# latency. About 30 s on the 2-vCPU VM. Needs no root. Extra arguments go to `loadgen demo`
# (see `./target/release/loadgen demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== building (release)"
cargo build --release -q -p ipu-cp -p rpc-server -p loadgen
echo
./target/release/loadgen demo "$@"
