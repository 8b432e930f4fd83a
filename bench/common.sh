# Sourced by the exporter benchmarks that scan the demo (run from the repository root): on
# top of bench/base.sh, copies the demo's three workspaces (conform, drift, unreachable S3
# backend) into $work, and defines demo_config and total.
source bench/base.sh
cp -r examples/demo/conform examples/demo/drift examples/demo/unreachable "$work/"


# demo_config INTERVAL RETENTION: $work/config.toml scanning the three workspaces, three at a time.
demo_config() {
  cat > "$work/config.toml" <<EOT
[storage]
path = "state"
retention = "$2"
[defaults]
interval = "$1"
jitter = "0s"
timeout = "2m"
kill_grace = "2s"
[scheduler]
max_concurrent_scans = 3
[environments.prod]
dir = "conform"
[environments.lab]
dir = "drift"
[environments.monitoring]
dir = "unreachable"
EOT
}

# Scans ended so far, from /metrics.
total() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^tfdrift_scans_total/ { s += $2 } END { print s + 0 }'; }
