#!/usr/bin/env bash
# Benchmarks of the running exporter (figures go to BENCHMARKS.md):
#  1. resident memory of the idle exporter after 10 scans of each of 3 environments
#     (the demo's: conform, drift, unreachable S3 backend);
#  2. /metrics under 50 concurrent connections for 10 s (wrk) while a scan runs (a fourth
#     environment whose S3 endpoint accepts connections and never answers keeps one running).
# Needs terraform, wrk, python3 and curl. Everything listens on 127.0.0.1 and is stopped at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$work"; }
trap cleanup EXIT

hang=$(free_port)
python3 - "$hang" <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64); held = []
s.settimeout(1)
end = time.time() + 600
while time.time() < end:
    try: held.append(s.accept()[0])
    except OSError: pass
PY
pids+=($!)
mkdir -p "$work/hanging"
sed "s/127.0.0.1:1\"/127.0.0.1:$hang\"/" examples/demo/unreachable/main.tf > "$work/hanging/main.tf"

demo_config 2s 90d

running() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^tfdrift_scan_in_progress/ { s += $2 } END { print s + 0 }'; }

"$bin" --config "$work/config.toml" --web.listen-address "127.0.0.1:$port" 2> "$work/log" &
pids+=($!)
exporter=$!
until [ "$(total)" -ge 30 ]; do sleep 0.5; done
# Idle: no scan running (the next ones are 2 s away).
until [ "$(running)" = 0 ]; do sleep 0.05; done
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$exporter/status")
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$exporter/status")
echo "idle exporter after $(total) scans of 3 environments: RSS $rss KiB ($((rss / 1024)) MiB), peak $hwm KiB"
kill -TERM "$exporter"; wait "$exporter" || true

cat >> "$work/config.toml" <<EOT
[environments.hanging]
dir = "hanging"
interval = "1h"
EOT
"$bin" --config "$work/config.toml" --web.listen-address "127.0.0.1:$port" 2>> "$work/log" &
pids+=($!)
exporter=$!
until curl -s "http://127.0.0.1:$port/metrics" | grep -q 'tfdrift_scan_in_progress{environment="hanging"} 1'; do sleep 0.2; done
echo "wrk: 50 connections, 10 s, GET /metrics while the 'hanging' scan runs"
wrk -t2 -c50 -d10s --latency "http://127.0.0.1:$port/metrics" | grep -E "Latency|50%|90%|99%|Requests/sec|requests in|Non-2xx|Socket errors"
curl -s "http://127.0.0.1:$port/metrics" | grep 'tfdrift_scan_in_progress{environment="hanging"}'
kill -TERM "$exporter"; wait "$exporter" || true
