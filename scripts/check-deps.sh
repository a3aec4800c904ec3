#!/usr/bin/env bash
# Enforces the dependency direction of the workspace (design.md §2):
#   link depends on no workspace crate; ipu-cp depends only on link.
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
check ipu-cp link
exit $fail
