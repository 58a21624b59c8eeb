#!/usr/bin/env bash
# Runs the whole system on one machine with embedded defaults: central with
# its embedded MQTT broker and SQLite, and one edge agent whose simulated
# MT-SICS terminal (on a real pseudo-terminal) weighs demo trucks on its own.
# Ctrl-C stops both. Data lives in ./data/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins --locked
mkdir -p data

./target/debug/valeo-central &
central=$!
trap 'kill $central ${edge:-} 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:8080/health >/dev/null 2>&1 && break
    kill -0 $central 2>/dev/null || { echo "central did not start" >&2; exit 1; }
    sleep 0.2
done

./target/debug/valeo-edge --config config/edge.demo.toml &
edge=$!

cat <<MSG

  Valeo Edge demo running.
    tickets at central:   curl -s http://127.0.0.1:8080/api/v1/weighings
    central health:       curl -s http://127.0.0.1:8080/health
    edge box health:      curl -s http://127.0.0.1:8081/health
  A truck is weighed in and out every few seconds. Ctrl-C stops everything.

MSG
wait
