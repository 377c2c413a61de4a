#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 60 s each): fuzz/run.sh [SECONDS]
# cargo-fuzz needs nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks
# them for this build only. Findings land in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
SECS="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in raw_frame tcp_stream http2_conn filter l7_redis l7_postgresql l7_mysql l7_kafka l7_amqp l7_mongodb l7_mqtt l7_websocket; do
  echo "fuzz: $t for ${SECS}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" --sanitizer none -- -max_total_time="$SECS" -rss_limit_mb=2048
done
