#!/usr/bin/env bash
# The README's test command: set-up, then every check CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (all features: the DPDK backend included)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== dependency direction"
./scripts/check-deps.sh
echo "== tidy (line and file length limits)"
./scripts/tidy.sh
echo "== cargo test (all features)"
cargo test --workspace --all-features
