#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, then runs every
# check: formatting, lints, and the whole test suite (unit, property, and
# cross-process tests against the embedded broker and Mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: Mosquitto for the broker-agnostic tests, a C compiler
# for the bundled SQLite, Chromium and Node.js for the operator-terminal
# browser test, mbpoll and Python's venv for the Modbus peer tests.
missing=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v mbpoll >/dev/null || missing+=(mbpoll)
# Debian ships venv's ensurepip in python3-venv (which pulls in python3).
[ -x .venv/bin/python ] || python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Rust components used by the checks.
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# Playwright's browser driver for the terminal test, pinned by the lock
# file; it drives the system Chromium, nothing is downloaded besides npm.
echo "==> npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# pymodbus for the Modbus peer test and dsfinvk for the DSFinV-K check,
# pinned by tests/peers/requirements.txt,
# in a venv at the workspace root (.venv, ignored by git).
echo "==> python venv (tests/peers)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/peers/requirements.txt

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo build --bins (the cross-process tests start these binaries)"
cargo build --workspace --bins --locked
echo "==> cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$log"
