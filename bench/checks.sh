#!/usr/bin/env bash
# What continuous validation costs a conform scan (issue 23). Two conform workspaces of
# terraform_data, the same but for a `check` block in one: with it, a plan that changes
# nothing is followed by `show -json` (for its checks); without, nothing more runs than
# before. ROUNDS rounds (default 20), alternating `tfdrift-exporter scan plain` and
# `scan checked`; prints the median and mean wall time of each and the difference.
# Needs terraform and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-20}
source bench/base.sh
mkdir -p "$work/plain" "$work/checked"
resources='resource "terraform_data" "vm" {
  count = 10
  input = { name = "vm-${count.index}", memory = 2048 }
}
'
printf '%s' "$resources" > "$work/plain/main.tf"
printf '%s\ncheck "memory_sane" {\n  assert {\n    condition     = alltrue([for vm in terraform_data.vm : vm.input.memory >= 1024])\n    error_message = "a VM has less than 1 GB."\n  }\n}\n' "$resources" > "$work/checked/main.tf"
for ws in plain checked; do
  (cd "$work/$ws" && terraform init -input=false > /dev/null && terraform apply -auto-approve -input=false > /dev/null)
done
cat > "$work/config.toml" <<EOT
[storage]
path = "state"
[environments.plain]
dir = "plain"
[environments.checked]
dir = "checked"
EOT
cd "$work"
# The first scans run init; every later one finds the fingerprint unchanged.
"$bin" scan --config config.toml > /dev/null
now() { date +%s.%N; }
: > times.csv
for _ in $(seq "$rounds"); do
  t0=$(now)
  "$bin" scan --config config.toml plain > /dev/null
  t1=$(now)
  "$bin" scan --config config.toml checked > /dev/null
  t2=$(now)
  echo "$t0,$t1,$t2" >> times.csv
done
"$bin" scan --config config.toml --format json checked | python3 -c 'import json,sys; r=json.load(sys.stdin)[0]; print("checked:", r["status"], [(c["address"], c["status"]) for c in r["checks"]])'
python3 - times.csv <<'PY'
import csv, statistics, sys
rows = [[float(x) for x in r] for r in csv.reader(open(sys.argv[1]))]
plain = [b - a for a, b, _ in rows]
checked = [c - b for _, b, c in rows]
for name, xs in (("scan, no checks", plain), ("scan, one check", checked)):
    print(f"{name:18} median {statistics.median(xs)*1000:7.0f} ms   mean {statistics.mean(xs)*1000:7.0f} ms   (n={len(xs)})")
print(f"show -json for the checks: +{(statistics.median(checked) - statistics.median(plain))*1000:.0f} ms (median)")
PY
