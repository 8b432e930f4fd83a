#!/usr/bin/env bash
# Real drift in a minute: starts the simulated Proxmox VE API (tests/pvesim), applies a small
# homelab through the Rust test provider (prod, lab, monitoring), then raises the memory of
# lab's VM "by hand" through the API, as the Proxmox UI would, creates a VM outside
# Terraform, and runs the exporter on it.
# Open http://127.0.0.1:9848/ ; Ctrl-C stops everything. Needs cargo, terraform, protoc
# (Debian: protobuf-compiler libprotobuf-dev) and curl. Everything listens on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$here/.work
token='tfdrift@pve!demo=demo-secret-0001'

cd "$repo"
cargo build --release --quiet --bin tfdrift-exporter
cargo build --quiet -p pvesim --features provider     # debug: builds in under a minute
rm -rf "$work"; mkdir -p "$work"
cleanup() { kill "${sim:-}" "${exporter:-}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/debug/pvesim --listen 127.0.0.1:0 --token "$token" --ca-out "$work/pve-root-ca.pem" > "$work/pvesim.out" &
sim=$!
until grep -q listening "$work/pvesim.out" 2>/dev/null; do sleep 0.1; done
api=$(sed -n 's/^listening //p' "$work/pvesim.out")
echo "simulated Proxmox VE API at $api"

cat > "$work/terraform.rc" <<EOT
provider_installation {
  dev_overrides { "example.local/test/pvesim" = "$repo/target/debug" }
  direct {}
}
EOT
export TF_CLI_CONFIG_FILE=$work/terraform.rc

vmid=100
for env in prod lab monitoring; do
  mkdir -p "$work/$env"
  cat > "$work/$env/main.tf" <<EOT
terraform {
  required_providers {
    pvesim = { source = "example.local/test/pvesim" }
  }
}
provider "pvesim" {
  api_url = "$api"
  token   = "$token"
  ca_file = "$work/pve-root-ca.pem"
}
resource "pvesim_vm" "app" {
  vmid   = $vmid
  node   = "pve1"
  name   = "$env-app"
  memory = 2048
  cores  = 2
  tags   = "$env"
}
resource "pvesim_lxc" "dns" {
  vmid   = $((vmid + 1))
  node   = "pve1"
  name   = "$env-dns"
  memory = 512
  cores  = 1
}
EOT
  (cd "$work/$env" && terraform apply -auto-approve -input=false -no-color > /dev/null)
  echo "applied $env"
  vmid=$((vmid + 10))
done

echo "raising lab-app's memory to 3072 MB by hand, through the API:"
curl -sS --cacert "$work/pve-root-ca.pem" -X PUT -H "Authorization: PVEAPIToken=$token" \
  -d '{"memory": 3072}' "$api/api2/json/nodes/pve1/qemu/110/config"
echo
echo "creating VM 150 'web2' by hand, outside Terraform:"
curl -sS --cacert "$work/pve-root-ca.pem" -X POST -H "Authorization: PVEAPIToken=$token" \
  -d '{"vmid": 150, "name": "web2"}' "$api/api2/json/nodes/pve1/qemu"
echo
printf '%s' "${token#*=}" > "$work/pve-token"

cat > "$work/config.toml" <<EOT
[web]
listen_address = "127.0.0.1:9848"
[storage]
path = "state"
[defaults]
interval = "1m"
jitter = "0s"
init = "never"          # dev_overrides: the provider is not installed by init
env = { TF_CLI_CONFIG_FILE = "$work/terraform.rc" }
[proxmox]
api_url = "$api"
token_id = "${token%%=*}"
token_secret_file = "pve-token"
ca_file = "pve-root-ca.pem"
interval = "30s"
[environments.prod]
dir = "prod"
[environments.lab]
dir = "lab"
[environments.monitoring]
dir = "monitoring"
EOT
echo "exporter on http://127.0.0.1:9848/ (Ctrl-C stops)"
target/release/tfdrift-exporter --config "$work/config.toml" &
exporter=$!
sleep 5
curl -s http://127.0.0.1:9848/metrics | grep -E '^tfdrift_(status|outside_changes|unmanaged_resource)'
echo "import blocks for the VM made by hand:"
target/release/tfdrift-exporter reconcile --config "$work/config.toml" lab | sed -n '/^Guests created/,$p'
wait "$exporter"
