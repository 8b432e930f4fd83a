#!/usr/bin/env bash
# The overhead of a conform scan over a bare `terraform plan` (issue 20). The demo's conform
# workspace, ROUNDS rounds (default 20), alternating: `terraform plan` as a person would
# type it (same TF_DATA_DIR, already initialised, -input=false -detailed-exitcode -out), then
# one `tfdrift-exporter scan prod` (process start, configuration, scan lock, plan, its
# reading, the commit of the report and the index line). Prints the median and mean wall
# time of each and the difference. Needs terraform and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-20}
source bench/base.sh
cp -r examples/demo/conform "$work/"
cat > "$work/config.toml" <<EOT
[storage]
path = "state"
[environments.prod]
dir = "conform"
EOT
cd "$work"
# The first scan runs init; every later one finds the fingerprint unchanged.
"$bin" scan --config config.toml prod > /dev/null
export TF_DATA_DIR=$work/state/envs/prod/tf-data
now() { date +%s.%N; }
: > times.csv
for _ in $(seq "$rounds"); do
  t0=$(now)
  (cd conform && terraform plan -input=false -no-color -detailed-exitcode -out="$work/bare.tfplan" > /dev/null)
  t1=$(now)
  "$bin" scan --config config.toml prod > /dev/null
  t2=$(now)
  echo "$t0,$t1,$t2" >> times.csv
done
python3 - times.csv <<'PY'
import csv, statistics, sys
rows = [[float(x) for x in r] for r in csv.reader(open(sys.argv[1]))]
bare = [b - a for a, b, _ in rows]
scan = [c - b for _, b, c in rows]
for name, xs in (("terraform plan", bare), ("tfdrift-exporter scan", scan)):
    print(f"{name:24} median {statistics.median(xs)*1000:7.0f} ms   mean {statistics.mean(xs)*1000:7.0f} ms   (n={len(xs)})")
d = statistics.median(scan) - statistics.median(bare)
print(f"{'overhead (medians)':24} {d*1000:+7.0f} ms   {d/statistics.median(bare)*100:+.1f} %")
PY
