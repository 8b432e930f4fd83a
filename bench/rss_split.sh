#!/usr/bin/env bash
# Where an idle exporter's resident memory is: anonymous (heap) against the binary's
# file-backed pages, from /proc/<pid>/smaps_rollup, 15 s after start with the demo's conform
# and drift environments scanned. Usage: bash bench/rss_split.sh [BINARY]
# (default: the release build of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$PWD/target/release/tfdrift-exporter
fi
work=$(mktemp -d)
cp -r examples/demo/conform examples/demo/drift "$work/"
cat > "$work/config.toml" <<EOT
[storage]
path = "state"
[defaults]
interval = "1h"
jitter = "0s"
[environments.prod]
dir = "conform"
[environments.lab]
dir = "drift"
EOT
"$bin" --config "$work/config.toml" --web.listen-address 127.0.0.1:0 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
sleep 15
grep -E "^(Rss|Anonymous|Shared_Clean|Private_Clean)" "/proc/$pid/smaps_rollup" | tr -s ' ' | tr '\n' ' '
echo
