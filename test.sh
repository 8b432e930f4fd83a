#!/usr/bin/env bash
# Every test, set up first. Checks each tool the suite needs and installs what is missing
# where it can (Debian or Ubuntu as root: apt-get; moto into a virtualenv under target/),
# otherwise prints the exact command to run and stops. Then builds the test provider and
# runs the whole suite (or the cargo test command given as arguments) with CI=true: a test
# whose tool is missing fails instead of skipping, and any SKIP: line fails the run.
set -euo pipefail
cd "$(dirname "$0")"
export CI=true

say() { printf 'test.sh: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install Rust (https://rustup.rs)"; exit 1
fi
if ! command -v terraform >/dev/null 2>&1; then
  say "terraform is missing: the real-terraform tests need it on PATH (https://developer.hashicorp.com/terraform/install)"
  exit 1
fi
terraform version | sed -n 1p

# Debian packages: Prometheus, promtool, Alertmanager and amtool run the alerting chain and
# check the shipped files; lintian and systemd-analyze check the Debian package; protoc and the well-known .proto files build the test provider
# (tests/pvesim); Chromium renders the pages; libfaketime moves the exporter's clock;
# python3-venv holds moto.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/empty.proto ] || missing+=(libprotobuf-dev)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || missing+=(faketime)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  install="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $install >/dev/null
  else
    say "missing: ${missing[*]}. Install them (as root on Debian or Ubuntu):"
    say "  $install"
    exit 1
  fi
fi

# moto's S3 server stands in for MinIO (tests/suite/s3.rs), from PyPI, in target/venv.
venv=$PWD/target/venv
# prometheus-client's OpenMetrics parser checks the exporter's OpenMetrics output;
# kubernetes-validate (its schemas inside it: offline) the manifests of examples/kubernetes.
# pip mostly waits on the network and the disk: it installs while cargo builds below.
venv_log=$(mktemp)
installing=
if ! "$venv/bin/python3" -c 'import moto.server, boto3, prometheus_client.openmetrics.parser, kubernetes_validate' 2>/dev/null; then
  say "installing moto[server], prometheus-client and kubernetes-validate into $venv (beside the build)"
  ( python3 -m venv "$venv" &&
    "$venv/bin/python3" -m pip install --quiet 'moto[server]>=5.2,<5.3' 'prometheus-client>=0.21,<1' 'kubernetes-validate>=1.37,<2' ) > "$venv_log" 2>&1 &
  installing=$!
fi
export MOTO_PYTHON=$venv/bin/python3
promtool --version 2>&1 | sed -n 1p
prometheus-alertmanager --version 2>&1 | sed -n 1p
chromium --version 2>/dev/null | sed -n 1p

# The test provider (tests/pvesim, a Terraform provider in Rust), built once here; the
# tests find it through PVESIM_PROVIDER_DIR.
cargo build --locked --quiet -p pvesim --features provider --bin terraform-provider-pvesim --target-dir target/pvesim
export PVESIM_PROVIDER_DIR=$PWD/target/pvesim/debug

# The Debian package, built by cargo-deb (from crates.io, into ~/.cargo/bin once) from the
# tests' own build of the binary (profile dev: a release build would double the run); the
# tests in tests/suite/package.rs unpack, lint and run it.
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb (cargo install --locked cargo-deb --version ^3)"
  cargo install --locked --quiet cargo-deb --version '^3'
fi
cargo build --locked --quiet
# cargo deb prints the package's path.
PACKAGE_DEB=$(cargo deb --profile dev --no-build --fast --quiet --output target/debian/)
export PACKAGE_DEB
say "package: $PACKAGE_DEB"

if [ -n "$installing" ] && ! wait "$installing"; then
  cat "$venv_log" >&2
  say "installing the Python tools into $venv failed (above); run: python3 -m venv $venv && $venv/bin/python3 -m pip install 'moto[server]>=5.2,<5.3' 'prometheus-client>=0.21,<1' 'kubernetes-validate>=1.37,<2'"
  exit 1
fi
rm -f "$venv_log"
"$MOTO_PYTHON" -c 'import moto; print("moto", moto.__version__)'
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The tests: `cargo test --locked -- --test-threads 4` unless a command is given
# (`./test.sh cargo test --test tests -- checks::` runs a part with the same setup). Four
# test threads on two cores: many tests mostly wait (on schedules, polls, a minute of edits);
# the integration tests took 382 s with four, 427 s with three.
if [ $# -eq 0 ]; then
  set -- cargo test --locked -- --test-threads 4
fi
"$@" 2>&1 | tee "$log"
# cargo's last summary is the (empty) doc-test run: close with the totals of every suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
if grep -q '^SKIP:' "$log"; then
  say "a test skipped, and the suite does not skip:"
  grep '^SKIP:' "$log" >&2
  exit 1
fi
