#!/usr/bin/env bash
# How soon a change made in Proxmox is found, with the defaults and a daily schedule:
# 50 memory edits (25 VMs, 25 containers) at random times over 10 minutes (EDIT_WINDOW
# seconds) against the simulator; p50/p95 seconds from the edit to drift in /detail and to
# the Telegram message (shipped rules and Alertmanager file, Prometheus every 15 s), and the
# terraform plans used next to what a fixed schedule of the same p95 would need.
# Needs terraform, protoc, prometheus and prometheus-alertmanager; everything listens on
# 127.0.0.1 and is stopped at the end. About 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo build --release --quiet -p pvesim --bin pvesim --target-dir target/pvesim
cargo build --quiet -p pvesim --features provider --bin terraform-provider-pvesim --target-dir target/pvesim
python3 bench/detection.py target/release/tfdrift-exporter target/pvesim/release/pvesim "$PWD/target/pvesim/debug"
