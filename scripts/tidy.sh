#!/usr/bin/env bash
# The style guide's mechanical limits (shared/docs/style.md G): Rust lines of at most 100
# characters and files of at most 450 lines ("roughly 400"). Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files '*.rs' | python3 -c '
import sys
bad = 0
for path in sys.stdin.read().split():
    lines = open(path, encoding="utf-8").read().split("\n")
    if len(lines) > 450:
        print(f"{path}: {len(lines)} lines (limit 450): split it"); bad += 1
    for number, line in enumerate(lines, 1):
        if len(line) > 100:
            print(f"{path}:{number}: {len(line)} characters (limit 100)"); bad += 1
sys.exit(1 if bad else 0)
'
