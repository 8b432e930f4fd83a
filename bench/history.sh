#!/usr/bin/env bash
# Benchmark of a large history (figures go to BENCHMARKS.md): 100,000 stored reports of one
# environment (N to change), then the release exporter started on them: time until it
# answers /-/ready, its resident memory then, and the size and time of GET /history.
# Twice: with the history index as the exporter writes it, and once without it (storage
# from before the index: the first start rebuilds it from the report files).
# Needs python3 and curl; listens on 127.0.0.1 only and stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
source bench/base.sh
mkdir -p "$work/ws"
cat > "$work/config.toml" <<EOT
[storage]
path = "state"
retention = "3660d"
[defaults]
run_on_start = false
interval = "24h"
[environments.lab]
dir = "ws"
EOT

python3 - "$work/state/envs/lab/history" "$N" <<'PY'
import datetime, json, os, sys
dir, n = sys.argv[1], int(sys.argv[2])
os.makedirs(dir, exist_ok=True)
t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
with open(os.path.join(dir, "index.jsonl"), "w") as index:
    for i in range(n):
        start = t0 + datetime.timedelta(minutes=5 * i)
        stamp = start.strftime("%Y%m%dT%H%M%SZ")
        fin = (start + datetime.timedelta(seconds=41)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = ["conform", "drift", "error"][i % 3]
        rid = f"lab-{stamp}"
        report = {
            "id": rid, "environment": "lab", "status": status,
            "started_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "finished_at": fin,
            "duration_seconds": 41.2, "tool": {"binary": "terraform", "version": "1.11.4"},
            "summary": {"create": 0, "update": int(status == "drift"), "delete": 0, "replace": 0,
                        "outside_terraform": int(status == "drift"), "ignored": 0},
            "changes": [{"address": "proxmox_vm_qemu.web", "module": None, "type": "proxmox_vm_qemu",
                         "name": "web", "index": None, "action": "update", "outside_terraform": True,
                         "reason": None,
                         "attributes": [{"path": "memory", "actual": 4096, "expected": 2048}]}]
                       if status == "drift" else [],
            "ignored": [],
            "error": {"reason": "state_backend", "summary": "error loading state", "detail": ""}
                     if status == "error" else None,
        }
        with open(os.path.join(dir, rid + ".json"), "w") as f:
            json.dump(report, f, indent=2)
        index.write(json.dumps({"id": rid, "finished_at": fin, "status": status}) + "\n")
PY
echo "$N stored reports: $(du -sh "$work/state" | cut -f1)"

measure() {
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  local start=$(date +%s.%N)
  "$bin" --config "$work/config.toml" --web.listen-address "127.0.0.1:$port" 2> "$work/log" &
  exporter=$!
  until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do sleep 0.02; done
  local ready=$(date +%s.%N)
  local rss=$(awk '/VmRSS/ { print $2 }' "/proc/$exporter/status")
  local hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$exporter/status")
  printf '%s: ready after %.2f s (cold page cache), RSS %d KiB, peak %d KiB\n' "$1" "$(echo "$ready - $start" | bc)" "$rss" "$hwm"
  curl -s -o "$work/page" -w 'GET /history?since=3650d: %{http_code}, %{size_download} bytes in %{time_total} s\n' "http://127.0.0.1:$port/history?since=3650d"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('  scans on the page:', len(d['scans']), ' next:', d['next'])" "$work/page"
  curl -s -o /dev/null -w 'GET /history?since=3650d&limit=5000: %{size_download} bytes in %{time_total} s\n' "http://127.0.0.1:$port/history?since=3650d&limit=5000"
  local rss=$(awk '/VmRSS/ { print $2 }' "/proc/$exporter/status")
  echo "  RSS after the pages: $rss KiB"
  kill -TERM "$exporter"; wait "$exporter" || true; exporter=
}
measure "with the index"
rm "$work/state/envs/lab/history/index.jsonl"
measure "without the index (rebuilt at this start)"
measure "the next start"
