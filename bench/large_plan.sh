#!/usr/bin/env bash
# Benchmark of a very large plan (figures go to BENCHMARKS.md): a `show -json` of N
# (default 200,000) changed resources, about 83 MB, served by a stand-in terraform (its
# plan stream says "changes", its show prints the file), scanned 5 times by the release
# exporter. Prints the report's size, the exporter's peak and idle RSS after scan 1 and
# scan 5, the sizes of /, /detail and /detail/<env>, and the peak RSS while 40 clients
# fetch /history/<env>/<id> at once. Needs python3 and curl; 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
source bench/base.sh
python3 - "$N" > "$work/show.json" <<'PY'
import json, sys
n = int(sys.argv[1])
out = sys.stdout
out.write('{"format_version":"1.2","terraform_version":"1.11.4","resource_changes":[')
for i in range(n):
    if i:
        out.write(",")
    out.write(json.dumps({
        "address": f"terraform_data.vm[{i}]", "mode": "managed", "type": "terraform_data",
        "name": "vm", "index": i, "provider_name": "terraform.io/builtin/terraform",
        "change": {"actions": ["update"],
                   "before": {"input": {"memory": 3072, "name": f"vm-{i}"}, "id": f"id-{i:08d}"},
                   "after": {"input": {"memory": 2048, "name": f"vm-{i}"}, "id": f"id-{i:08d}"},
                   "after_unknown": {}, "before_sensitive": {}, "after_sensitive": {}}}))
out.write('],"prior_state":{"values":{"root_module":{"resources":[')
for i in range(n):
    if i:
        out.write(",")
    out.write(json.dumps({"address": f"terraform_data.vm[{i}]", "values": {"input": {"memory": 3072}}}))
out.write(']}}}}\n')
PY
cat > "$work/terraform" <<EOT
#!/bin/sh
case "\$1" in
  plan)
    for a in "\$@"; do case "\$a" in -out=*) : > "\${a#-out=}";; esac; done
    echo '{"type":"version","terraform":"1.11.4"}'
    echo '{"type":"planned_change","change":{"action":"update"}}'
    echo '{"type":"change_summary","changes":{"add":0,"change":$N,"remove":0}}'
    exit 2;;
  show) cat "$work/show.json";;
esac
EOT
chmod +x "$work/terraform"
mkdir -p "$work/ws"
cat > "$work/config.toml" <<EOT
[storage]
path = "state"
[defaults]
run_on_start = false
interval = "24h"
timeout = "10m"
init = "never"
[environments.lab]
dir = "ws"
binary = "$work/terraform"
EOT
echo "show -json: $(( $(stat -c %s "$work/show.json") / 1000000 )) MB, $N changed resources"
"$bin" --config "$work/config.toml" --web.listen-address "127.0.0.1:$port" 2> "$work/log" &
exporter=$!
until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do sleep 0.05; done
rss() { awk "/$1/ { print int(\$2 / 1024) }" "/proc/$exporter/status"; }
scans() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^tfdrift_scans_total/ { s += $2 } END { print s + 0 }'; }
echo "idle before any scan: RSS $(rss VmRSS) MiB"
for i in 1 2 3 4 5; do
  start=$(date +%s.%N)
  curl -s -o /dev/null -X POST "http://127.0.0.1:$port/scan/lab"
  until [ "$(scans)" -ge "$i" ]; do sleep 0.2; done
  end=$(date +%s.%N)
  sleep 2
  report=$(ls -t "$work/state/envs/lab/history/"lab-*.json | head -1)
  printf 'scan %d: %.1f s, report %d MB; peak RSS so far %d MiB, idle RSS %d MiB\n' "$i" "$(echo "$end - $start" | bc)" "$(( $(stat -c %s "$report") / 1000000 ))" "$(rss VmHWM)" "$(rss VmRSS)"
done
sleep 15
echo "idle 15 s later: RSS $(rss VmRSS) MiB"
for path in / /detail /detail/lab "/history?environment=lab"; do
  curl -s -o /dev/null -w "GET $path: %{size_download} bytes in %{time_total} s\n" "http://127.0.0.1:$port$path"
done
echo "after the pages: RSS $(rss VmRSS) MiB, peak $(rss VmHWM) MiB"
id=$(basename "$report" .json)
for _ in $(seq 40); do curl -s -o /dev/null "http://127.0.0.1:$port/history/lab/$id" & done
wait $(jobs -p | grep -v "^$exporter$") 2>/dev/null || true
echo "40 concurrent GET /history/lab/<id>: peak RSS $(rss VmHWM) MiB, RSS after $(rss VmRSS) MiB"
