# Sourced by the experiment scripts: a scratch folder ($work) and an ipu-cp in the background
# on $work/ipu-cp.sock ($socket), both gone when the script exits.
#   start_ipu_cp [ipu-cp flags...]   starts it and waits until its socket is there
work=$(mktemp -d)
socket="$work/ipu-cp.sock"
cleanup() {
    if [[ -n "${cp_pid:-}" ]]; then kill "$cp_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
start_ipu_cp() {
    ./target/release/ipu-cp --socket "$socket" "$@" 2>"$work/ipu-cp.log" &
    cp_pid=$!
    for _ in $(seq 100); do [[ -S $socket ]] && break; sleep 0.05; done
    [[ -S $socket ]] || { cat "$work/ipu-cp.log" >&2; echo "ipu-cp did not start" >&2; exit 1; }
}
