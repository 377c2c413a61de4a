#!/usr/bin/env bash
# Every test of the project: unit, property, split-invariance, golden, CLI and the corpus
# graded against tshark's reading (which needs ../shared/corpus beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || bash scripts/setup.sh
cargo test --workspace --locked
