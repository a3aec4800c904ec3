#!/usr/bin/env bash
# Enforces the dependency direction of the workspace (design.md §2):
#   link, netstack, memmgr and dpdk-sys depend on no workspace crate (netstack does not know link:
#   host-dp translates); ipu-cp depends only on link; only host-dp may depend on dpdk-sys.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
deps_of() { # workspace members that crate $1 depends on (normal and dev)
    cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
members = {p["name"] for p in meta["packages"]}
for p in meta["packages"]:
    if p["name"] == sys.argv[1]:
        print(" ".join(sorted({d["name"] for d in p["dependencies"]} & members)))
' "$1"
}
check() { # crate, allowed workspace deps...
    local crate=$1; shift
    for dep in $(deps_of "$crate"); do
        if [[ " $* " != *" $dep "* ]]; then
            echo "dependency direction violated: $crate depends on $dep" >&2
            fail=1
        fi
    done
}
check link
check netstack
check memmgr
check dpdk-sys
check ipu-cp link
for crate in $(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
print(" ".join(p["name"] for p in json.load(sys.stdin)["packages"]))'); do
    if [[ $crate != host-dp && $crate != dpdk-sys ]] && deps_of "$crate" | grep -qw dpdk-sys; then
        echo "dependency direction violated: $crate depends on dpdk-sys (only host-dp may)" >&2
        fail=1
    fi
done
exit $fail
