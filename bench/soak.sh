#!/usr/bin/env bash
# Soak benchmark (issue: hardening): SCANS scans (default 2,000) at a 1 s interval against
# real terraform, three environments (the demo's conform, drift and unreachable S3 backend),
# three at a time. Every 10 s it samples the exporter's resident memory, its open file
# descriptors and its threads, and the number of terraform processes left; at the end it
# prints the samples' first and last quarter side by side. Needs terraform, curl, python3.
# Output: a CSV (OUT, default bench/soak.csv) and a summary on stdout. RETENTION (default
# 90d, the exporter's default) is storage.retention: the history index in memory holds one
# summary per kept scan, so with 90d it grows by about 1 KiB a scan; RETENTION=2m bounds
# it and shows whether anything else grows.
set -euo pipefail
cd "$(dirname "$0")/.."
scans=${SCANS:-2000}
out=${OUT:-bench/soak.csv}
source bench/common.sh
exporter=
cleanup() { [ -n "$exporter" ] && kill "$exporter" 2>/dev/null; sleep 1; rm -rf "$work"; }
trap cleanup EXIT
demo_config 1s "${RETENTION:-90d}"

"$bin" --config "$work/config.toml" --web.listen-address "127.0.0.1:$port" 2> "$work/log" &
exporter=$!
start=$(date +%s)
echo "seconds,scans,rss_kib,fds,threads,terraform_processes,history_files" > "$out"
while :; do
  n=$(total)
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$exporter/status")
  threads=$(awk '/Threads/ { print $2 }' "/proc/$exporter/status")
  fds=$(ls "/proc/$exporter/fd" | wc -l)
  tf=$(pgrep -c -f "^terraform .*$work" || true)
  files=$(find "$work/state" -name '*.json' -path '*history*' | wc -l)
  echo "$(( $(date +%s) - start )),$n,$rss,$fds,$threads,$tf,$files" >> "$out"
  [ "$n" -ge "$scans" ] && break
  sleep 10
done
kill -TERM "$exporter"; wait "$exporter" || true
exporter=
left=$(pgrep -c -f "terraform.*$work" || true)
echo "scans: $(tail -1 "$out" | cut -d, -f2) in $(tail -1 "$out" | cut -d, -f1) s; terraform processes left after stop: $left"
echo "errors logged: $(grep -c 'level=error' "$work/log" || true)"
python3 - "$out" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
q = max(1, len(rows) // 4)
for key in ("rss_kib", "fds", "threads"):
    first = [int(r[key]) for r in rows[1:q + 1]] or [int(rows[0][key])]
    last = [int(r[key]) for r in rows[-q:]]
    print(f"{key}: first quarter {min(first)}..{max(first)}, last quarter {min(last)}..{max(last)}, overall max {max(int(r[key]) for r in rows)}")
PY
