# Sourced by every exporter benchmark (run from the repository root): builds the release
# binary ($bin), makes a temporary $work removed at exit, picks a free $port on 127.0.0.1,
# and stops at exit the exporter in $exporter and every pid in $pids.
cargo build --release --quiet
bin=$PWD/target/release/tfdrift-exporter
work=$(mktemp -d)
exporter=
pids=()
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
