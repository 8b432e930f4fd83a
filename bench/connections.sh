#!/usr/bin/env bash
# Benchmark of connection exhaustion (figures go to BENCHMARKS.md): one client holds 1,000
# connections that never send a request and 1,000 that send one byte a second, while
# /metrics is scraped 20 times (one new connection each, as Prometheus does): the scrape
# latencies and the exporter's resident memory. Needs python3 and curl; 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/base.sh
mkdir -p "$work/ws"
printf '[storage]\npath = "state"\n[defaults]\nrun_on_start = false\n[environments.lab]\ndir = "ws"\n' > "$work/config.toml"
"$bin" --config "$work/config.toml" --web.listen-address "127.0.0.1:$port" 2> "$work/log" &
exporter=$!; pids+=($exporter)
until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do sleep 0.05; done
echo "idle exporter: RSS $(awk '/VmRSS/ { print $2 }' /proc/$exporter/status) KiB"

python3 - "$port" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
for i in range(40):
    for s in slow:
        try:
            s.send(request[i % len(request):][:1])
        except OSError:
            pass
    time.sleep(1)
PY
pids+=($!)
sleep 3
for i in $(seq 20); do
  curl -s -o /dev/null -w '%{time_total}\n' --max-time 20 "http://127.0.0.1:$port/metrics"
  sleep 0.5
done | sort -n | awk '{ t[NR] = $1 } END { printf "20 scrapes under 2,000 idle/trickling connections: min %.4f s, median %.4f s, max %.4f s\n", t[1], t[10], t[20] }'
echo "exporter during the attack: RSS $(awk '/VmRSS/ { print $2 }' /proc/$exporter/status) KiB, peak $(awk '/VmHWM/ { print $2 }' /proc/$exporter/status) KiB"
