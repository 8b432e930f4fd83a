#!/usr/bin/env bash
# Seeds the cargo-fuzz corpora from tests/fixtures, then runs
# each target for SECONDS (default 600) one after the other:
#   bash fuzz/seed.sh            # needs cargo-fuzz (cargo install cargo-fuzz)
# The project's toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo fuzz use its nightly flags.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../tests/fixtures
seconds=${SECONDS_PER_TARGET:-600}
for target in plan stream state; do
  mkdir -p "corpus/$target"
done
find "$fixtures" -type f \( -name '*.json' -o -name '*.jsonl' -o -name '*.txt' \) -size -4M |
  while read -r f; do
    sum=$(sha1sum "$f" | cut -c1-16)
    cp "$f" "corpus/plan/$sum"; cp "$f" "corpus/stream/$sum"
  done
printf '%s' '{"version":4,"resources":[{"mode":"managed","type":"proxmox_vm_qemu","name":"a","instances":[{"attributes":{"id":"pve1/qemu/101","vmid":101}}]}]}' > corpus/state/telmate
printf '%s' '{"data":[{"id":"qemu/100","vmid":100,"type":"qemu","node":"pve1","name":"web","template":0,"tags":"a;b"}]}' > corpus/state/inventory
for target in plan stream state; do
  echo "== $target: $(ls "corpus/$target" | wc -l) seeds, ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 |
    grep -E '^#[0-9]+.*(DONE|pulse)|Done [0-9]+ runs|ERROR|SUMMARY|crash-' | tail -3
done
