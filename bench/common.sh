# Sourced by the exporter benchmarks (run from the repository root): builds the release
# binary, copies the demo's three workspaces (conform, drift, unreachable S3 backend) into
# a temporary $work, picks a free $port, and defines demo_config and total.
cargo build --release --quiet
bin=$PWD/target/release/tfdrift-exporter
work=$(mktemp -d)
cp -r examples/demo/conform examples/demo/drift examples/demo/unreachable "$work/"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)

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
