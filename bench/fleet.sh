#!/usr/bin/env bash
# A fleet on one small machine (issue 24). N environments (default 1,000) of terraform_data,
# 1-3 resources each, with local state: one in ten drifts (its code asks 4096 MB where the
# state holds 2048), one in two hundred fails (invalid HCL). They are discovered by glob
# ([discovery] include = ["env-*"]); one exporter scans them with max_concurrent_scans = the
# core count. Prints:
#   - the time until every environment has been scanned once, next to `xargs -P <cores>`
#     running the same commands (init, plan, and show after a plan that exits 2, each with
#     its own TF_DATA_DIR): the physical limit, and the exporter's share of it;
#   - the exporter's own peak RSS (VmHWM) and its RSS once the first round is over and no
#     scan runs (terraform is other processes, not counted);
#   - the size of /metrics and /, and the p50/p99 of 200 requests to each, while idle;
#   - the oldest age of a last scan, sampled every 10 s for STEADY seconds (default 300)
#     with interval = INTERVAL (default 5m): how far behind the schedule the fleet gets.
# Needs terraform, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-1000}
steady=${STEADY:-300}
interval=${INTERVAL:-5m}
cores=$(nproc)
source bench/base.sh
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1

# Three templates (1, 2 and 3 resources), applied once; every environment copies one.
code() { # code COUNT MEMORY
  printf 'resource "terraform_data" "vm" {\n  count = %s\n  input = { name = "vm-${count.index}", memory = %s }\n}\n' "$1" "$2"
}
for c in 1 2 3; do
  mkdir -p "$work/template-$c"
  code "$c" 2048 > "$work/template-$c/main.tf"
  (cd "$work/template-$c" && TF_DATA_DIR=.tf terraform init -input=false > /dev/null 2>&1 &&
    TF_DATA_DIR=.tf terraform apply -auto-approve -input=false > /dev/null 2>&1)
done
mkdir -p "$work/fleet"
drifting=0 failing=0
for i in $(seq 0 $((n - 1))); do
  d=$work/fleet/env-$(printf %04d "$i")
  c=$((i % 3 + 1))
  mkdir -p "$d"
  cp "$work/template-$c/terraform.tfstate" "$d/"
  if [ $((i % 200)) -eq 7 ]; then
    printf 'resource "terraform_data" "vm" {\n  count = \n}\n' > "$d/main.tf"
    failing=$((failing + 1))
  elif [ $((i % 10)) -eq 5 ]; then
    code "$c" 4096 > "$d/main.tf"
    drifting=$((drifting + 1))
  else
    cp "$work/template-$c/main.tf" "$d/"
  fi
done
echo "fleet: $n environments ($drifting drifting, $failing failing), $cores cores"

# The physical limit: the same commands, $cores at a time.
cat > "$work/one.sh" <<'EOT'
#!/usr/bin/env bash
d=$1
export TF_DATA_DIR=$XARGS_DATA/$(basename "$d")
mkdir -p "$TF_DATA_DIR"
cd "$d"
terraform init -input=false -no-color -lockfile=readonly > /dev/null 2>&1
terraform plan -input=false -no-color -json -detailed-exitcode -lock-timeout=60s -out="$TF_DATA_DIR/plan.tfplan" > /dev/null 2>&1
if [ $? -eq 2 ]; then terraform show -json "$TF_DATA_DIR/plan.tfplan" > /dev/null 2>&1; fi
exit 0
EOT
chmod +x "$work/one.sh"
now() { date +%s.%N; }
t0=$(now)
find "$work/fleet" -mindepth 1 -maxdepth 1 -type d | sort |
  XARGS_DATA=$work/xargs-data xargs -P "$cores" -n 1 "$work/one.sh"
t_xargs=$(python3 -c "print($(now) - $t0)")
rm -rf "$work/xargs-data"
# The plans' lock files are gone; the states are as they were.
echo "xargs -P $cores: every environment once in $(printf %.1f "$t_xargs") s"

cat > "$work/config.toml" <<EOT
[storage]
path = "state"
[scheduler]
max_concurrent_scans = $cores
[defaults]
interval = "$interval"
jitter = "0s"
timeout = "2m"
kill_grace = "5s"
[discovery]
root = "fleet"
include = ["env-*"]
name = "{dir}"
EOT
cd "$work"
metrics() { curl -s "http://127.0.0.1:$port/metrics"; }
scanned() { metrics | grep -c '^tfdrift_last_scan_timestamp_seconds{' || true; }
t0=$(now)
"$bin" --config config.toml --web.listen-address "127.0.0.1:$port" --log.level warn 2> exporter.log &
exporter=$!
until curl -sf "http://127.0.0.1:$port/-/ready" > /dev/null; do sleep 0.1; done
peak_sampled=0
while [ "$(scanned)" -lt "$n" ]; do
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$exporter/status")
  [ "$rss" -gt "$peak_sampled" ] && peak_sampled=$rss
  sleep 1
done
t_exporter=$(python3 -c "print($(now) - $t0)")
echo "exporter: every environment once in $(printf %.1f "$t_exporter") s, $(python3 -c "print(f'{$t_xargs / $t_exporter:.2f}')") of xargs' throughput"
metrics | awk '/^tfdrift_status\{/ { s[$2]++ } END { printf "statuses: %d conform, %d drift, %d error\n", s[0], s[1], s[2] }'

# Idle: the first round is over, the next is due one interval after each scan.
sleep 2
in_progress=$(metrics | awk '/^tfdrift_scan_in_progress\{/ { s += $2 } END { print s + 0 }')
rss_idle=$(awk '/^VmRSS/ { print $2 }' "/proc/$exporter/status")
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$exporter/status")
echo "exporter RSS: peak $((hwm / 1024)) MiB (VmHWM), idle $((rss_idle / 1024)) MiB ($in_progress scans running)"
python3 - "$port" <<'PY'
import http.client, statistics, sys, time
port = int(sys.argv[1])
for path in ("/metrics", "/"):
    times, size = [], 0
    for _ in range(200):
        c = http.client.HTTPConnection("127.0.0.1", port)
        t = time.perf_counter()
        c.request("GET", path)
        body = c.getresponse().read()
        times.append(time.perf_counter() - t)
        size = len(body)
        c.close()
    times.sort()
    print(f"GET {path:9} {size / 1024:8.1f} KiB   p50 {statistics.median(times) * 1000:6.1f} ms   p99 {times[int(len(times) * 0.99) - 1] * 1000:6.1f} ms")
PY

# Steady state: how old the oldest last scan gets.
oldest=0
end=$(( $(date +%s) + steady ))
while [ "$(date +%s)" -lt "$end" ]; do
  age=$(metrics | awk -v now="$(date +%s)" '/^tfdrift_last_scan_timestamp_seconds\{/ { a = now - $2; if (a > m) m = a } END { printf "%d", m }')
  [ "$age" -gt "$oldest" ] && oldest=$age
  sleep 10
done
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$exporter/status")
echo "steady state over ${steady} s (interval $interval): oldest last scan ${oldest} s old; peak RSS since start $((hwm / 1024)) MiB"
if grep -q '"level":"ERROR"\|ERROR' exporter.log; then
  echo "exporter errors:"; grep 'ERROR' exporter.log | head -5
fi
