#!/usr/bin/env bash
# Every test of the project: unit, property, split-invariance, golden, CLI, the corpus
# graded against tshark's reading (which needs ../shared/corpus beside the checkout), and
# the real-peer tests (nghttp2, Python grpcio, tcpdump on lo: root, as CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
# installs what is missing (Debian packages, the grpcio venv); quick when all is there
bash scripts/setup.sh
cargo test --workspace --locked
