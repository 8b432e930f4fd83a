#!/usr/bin/env bash
# Benchmark: `explain --format json` on a generated plan of 5,000 resources with 20 changed
# attributes each, side by side with jq computing only the per-action counts of the same
# file. Prints the median wall time of 5 runs and the peak RSS of each. Needs python3, jq and
# GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
resources=${1:-5000}
attributes=${2:-20}
runs=${RUNS:-5}
mkdir -p bench-data
plan=bench-data/plan-$resources-$attributes.json
[ -f "$plan" ] || python3 bench/gen_plan.py "$resources" "$attributes" > "$plan"
cargo build --release --quiet
bin=target/release/tfdrift-exporter
size=$(stat -c %s "$plan")
echo "plan: $plan, $((size / 1024 / 1024)) MiB ($size bytes), $resources resources x $attributes changed attributes"

measure() { # name, command...
  local name=$1; shift
  local times=() rss=0
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o bench-data/time.txt "$@" > /dev/null || [ $? -eq 2 ]
    read -r t m < <(tail -n 1 bench-data/time.txt)
    times+=("$t"); [ "$m" -gt "$rss" ] && rss=$m
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  printf '%-28s median %6.2f s   peak RSS %7d KiB (%.2fx the file)\n' "$name" "$median" "$rss" "$(echo "$rss * 1024 / $size" | bc -l)"
  eval "${name//[^a-z]/_}_time=$median"
}

measure "tfdrift-exporter explain" "$bin" explain --format json "$plan"
measure "jq per-action counts" jq '[.resource_changes[].change.actions | join(",")] | group_by(.) | map({key: .[0], value: length}) | from_entries' "$plan"
echo "speed-up over jq: $(echo "$jq_per_action_counts_time / $tfdrift_exporter_explain_time" | bc -l | cut -c1-5)x"
