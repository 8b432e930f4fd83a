#!/usr/bin/env bash
# Benchmark: `explain --format json` on a generated plan of 5,000 resources with 20 changed
# attributes each, side by side with jq computing only the per-action counts of the same
# file. The two commands alternate, RUNS times each (default 9), so that a busy moment of a
# shared machine falls on both; prints the median wall time and the peak RSS of each.
# Needs python3, jq, bc and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
resources=${1:-5000}
attributes=${2:-20}
runs=${RUNS:-9}
mkdir -p bench-data
plan=bench-data/plan-$resources-$attributes.json
[ -f "$plan" ] || python3 bench/gen_plan.py "$resources" "$attributes" > "$plan"
cargo build --release --quiet
size=$(stat -c %s "$plan")
echo "plan: $plan, $((size / 1024 / 1024)) MiB ($size bytes), $resources resources x $attributes changed attributes"

explain=(target/release/tfdrift-exporter explain --format json "$plan")
counts=(jq '[.resource_changes[].change.actions | join(",")] | group_by(.) | map({key: .[0], value: length}) | from_entries' "$plan")

once() { # file for "seconds KiB" lines, command...
  local into=$1; shift
  /usr/bin/time -f "%e %M" -o bench-data/time.txt "$@" > /dev/null || [ $? -eq 2 ] # explain exits 2: drift
  tail -n 1 bench-data/time.txt >> "$into"
}
: > bench-data/explain.txt; : > bench-data/jq.txt
for _ in $(seq "$runs"); do
  once bench-data/explain.txt "${explain[@]}"
  once bench-data/jq.txt "${counts[@]}"
done

report() { # name, file -> prints, sets median
  local median rss
  median=$(cut -d' ' -f1 "$2" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  rss=$(cut -d' ' -f2 "$2" | sort -n | tail -n 1)
  printf '%-26s median %5.2f s   peak RSS %7d KiB (%.2fx the file)\n' "$1" "$median" "$rss" "$(echo "$rss * 1024 / $size" | bc -l)"
  echo "$median" > "$2.median"
}
report "tfdrift-exporter explain" bench-data/explain.txt
report "jq per-action counts" bench-data/jq.txt
echo "explain is $(echo "$(cat bench-data/jq.txt.median) / $(cat bench-data/explain.txt.median)" | bc -l | cut -c1-4)x faster than jq ($runs runs each, alternating)"

# Instruction counts do not depend on what else the machine is doing (valgrind's callgrind).
if [ "${CALLGRIND:-0}" = 1 ]; then
  instructions() {
    { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null || true; } | sed -n "s/.*Collected : //p"
  }
  ie=$(instructions "${explain[@]}")
  ij=$(instructions "${counts[@]}")
  printf 'instructions: explain %d, jq %d: %.2fx fewer\n' "$ie" "$ij" "$(echo "$ij / $ie" | bc -l)"
fi
