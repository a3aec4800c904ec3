#!/usr/bin/env bash
# The link round-trip demo: set-up, build, then the host–control-plane round trip measured
# on-host (agent thread in the app) and offloaded (ipu-cp in its own process), with and without
# an emulated 1 µs PCIe delay.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== building (release)"
cargo build --release -q -p ipu-cp -p link-ping
socket="$(mktemp -d)/ipu-cp.sock"
cleanup() {
    if [[ -n "${cp_pid:-}" ]] && kill -0 "$cp_pid" 2>/dev/null; then kill -TERM "$cp_pid"; wait "$cp_pid" || true; fi
    rm -rf "$(dirname "$socket")"
}
trap cleanup EXIT
cpus=$(nproc)
host_cpu=0
agent_cpu=$((cpus > 1 ? 1 : 0))
count=${DEMO_COUNT:-200000}
for delay in 0 1000; do
    echo
    echo "== emulated one-way PCIe delay: ${delay} ns  (host on CPU $host_cpu, agent on CPU $agent_cpu)"
    # On-host first, with no ipu-cp process competing for the agent's CPU.
    ./target/release/link-ping --mode on-host --count "$count" --delay-ns "$delay" \
        --cpu "$host_cpu" --agent-cpu "$agent_cpu" 2>/dev/null
    ./target/release/ipu-cp --socket "$socket" --cpu "$agent_cpu" 2>"$socket.log" &
    cp_pid=$!
    for _ in $(seq 100); do [[ -S "$socket" ]] && break; sleep 0.05; done
    ./target/release/link-ping --mode offloaded --socket "$socket" --count "$count" \
        --delay-ns "$delay" --cpu "$host_cpu" | tail -n 1
    kill -TERM "$cp_pid"; wait "$cp_pid"; cp_pid=""
    echo "   ipu-cp: $(grep -o 'stopped;.*' "$socket.log" | cut -c 10-)"
done
echo
echo "rtt = event (Ping) up + decision (Pong) down through the agent and its echo policy."
