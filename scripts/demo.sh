#!/usr/bin/env bash
# Runs the whole system on one machine with embedded defaults: central with
# its embedded MQTT broker and SQLite, and one edge agent whose simulated
# MT-SICS terminal (on a real pseudo-terminal) weighs demo trucks on its own.
# Ctrl-C stops both. Data lives in ./data/.
#
# Central has no default password: export VALEO_ADMIN_PASSWORD (12+
# characters) before the first run to choose the admin's, or central
# generates one and prints it once on its first start.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins --locked
mkdir -p data

# Provisioning, as an installer does it: the box creates its key on first
# use, and central is told the box's public key. Central accepts records
# only from boxes it knows.
key="$(./target/debug/valeo-edge --config config/edge.demo.toml --print-public-key)"
cat > data/central.demo.toml <<TOML
# Written by scripts/demo.sh: central on embedded defaults, knowing the demo box.
data_dir = "data/central"
master_data_file = "config/master-data.demo.json"
[fiscal]
company_name = "Agrarhandel Musterfeld GmbH"
street = "Feldweg 1"
zip = "49999"
city = "Musterfeld"
tax_number = "12/345/67890"
[[devices]]
id = "demo-weighbridge-01"
public_key = "$key"
TOML

first_start=yes
[ -e data/central/central.db ] && first_start=no
./target/debug/valeo-central --config data/central.demo.toml &
central=$!
trap 'kill $central ${edge:-} 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:8080/health >/dev/null 2>&1 && break
    kill -0 $central 2>/dev/null || { echo "central did not start" >&2; exit 1; }
    sleep 0.2
done

./target/debug/valeo-edge --config config/edge.demo.toml &
edge=$!

if [ -n "${VALEO_ADMIN_PASSWORD:-}" ]; then
    password_hint="the one you exported in VALEO_ADMIN_PASSWORD"
elif [ "$first_start" = yes ]; then
    password_hint="printed by central above: the line 'initial admin password for user \"admin\": ...'"
else
    password_hint="printed by central on its first start. Lost it? Stop the demo and run
                          ./target/debug/valeo-central --config data/central.demo.toml --reset-admin-password"
fi

cat <<MSG

  Valeo Edge demo running.
    central login:        user "admin", password $password_hint
    a token for curl:     TOKEN=\$(curl -s -X POST http://127.0.0.1:8080/api/v1/auth/login \\
                            -H 'content-type: application/json' \\
                            -d '{"username":"admin","password":"PASSWORD"}' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
    tickets at central:   curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:8080/api/v1/weighings
    central health:       curl -s http://127.0.0.1:8080/health
    central metrics:      curl -s http://127.0.0.1:8080/metrics
    operator terminal:    http://127.0.0.1:8081/
    edge box health:      curl -s http://127.0.0.1:8081/health
  A truck is weighed in and out every few seconds. Ctrl-C stops everything.

MSG
wait
