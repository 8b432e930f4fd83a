#!/usr/bin/env bash
# Where the idle exporter's memory is, right after its 30th scan and 12 s later: VmRSS,
# live threads, anonymous and file-backed pages (/proc/<pid>/smaps_rollup). The demo's
# three workspaces at a 2 s interval, as bench/service.sh. Needs terraform, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
demo_config 2s 90d
cd "$work"
"$bin" --config config.toml --web.listen-address "127.0.0.1:$port" 2> log &
exporter=$!
running() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^tfdrift_scan_in_progress/ { s += $2 } END { print s + 0 }'; }
until [ "$(total)" -ge 30 ]; do sleep 0.5; done
until [ "$(running)" = 0 ]; do sleep 0.05; done
sample() {
  local rss anon
  rss=$(awk '/^Rss/ { print $2 }' "/proc/$exporter/smaps_rollup")
  anon=$(awk '/^Anonymous/ { print $2 }' "/proc/$exporter/smaps_rollup")
  echo "$1: VmRSS $(awk '/VmRSS/ { print $2 }' "/proc/$exporter/status") KiB, threads $(awk '/Threads/ { print $2 }' "/proc/$exporter/status"), anonymous $anon KiB, file-backed $((rss - anon)) KiB"
}
sample "after $(total) scans"
sleep 12
sample "12 s later"
