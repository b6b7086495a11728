#!/usr/bin/env bash
# The client compatibility suite: real Postgres clients against a real `headwater` binary.
#
#   - two servers on free ports: one in trust mode with tests/clients/fixture.sql loaded, one
#     with --auth password (a --users-file) and TLS (a self-signed certificate made here);
#   - psycopg 3, psycopg2, asyncpg, SQLAlchemy 2 + pandas (pytest, tests/clients/python),
#     node-postgres (node --test, tests/clients/node), pgjdbc (Debian's
#     libpostgresql-jdbc-java, tests/clients/java), pgbench with a custom script;
#   - every test asserts results, not only that nothing failed.
#
# Installs what is missing (Python packages into a venv under target/, npm, apt when root);
# fails with what to install otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
root=$(pwd)

need_apt=()
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v pgbench >/dev/null 2>&1 || need_apt+=(postgresql-client)
[ -f /usr/share/java/postgresql.jar ] || need_apt+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
apt_install "${need_apt[@]}"
echo "== python client packages (a venv under target/, so a system Python stays untouched)"
venv=$root/target/clients-venv
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; apt_install python3-venv && python3 -m venv "$venv"; }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/clients/python/requirements.txt
echo "== node-postgres"
(cd tests/clients/node && npm install --silent --no-audit --no-fund)

cargo build --quiet --tests  # the features `cargo test` resolves: no second build of the dependencies
bin=$root/target/debug/headwater
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # wait_ready PORT LOG PID
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$3" 2>/dev/null || { cat "$2"; echo "server on port $1 died" >&2; exit 1; }
    sleep 0.05
  done
  cat "$2"; echo "server on port $1 did not listen within 10 s" >&2; exit 1
}

port=$(free_port)
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/trust" >"$work/trust.log" 2>&1 &
pids+=($!)
wait_ready "$port" "$work/trust.log" "${pids[-1]}"
psql -h 127.0.0.1 -p "$port" -U loader -d headwater -X -q -v ON_ERROR_STOP=1 -f tests/clients/fixture.sql

secure_port=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 \
  -subj "/CN=localhost" >/dev/null 2>&1
user=admin
password="pw-$RANDOM-$RANDOM"
printf '# test users\n%s:%s\n' "$user" "$password" >"$work/users"
"$bin" serve --listen "127.0.0.1:$secure_port" --data-dir "$work/secure" --auth password \
  --users-file "$work/users" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >"$work/secure.log" 2>&1 &
pids+=($!)
wait_ready "$secure_port" "$work/secure.log" "${pids[-1]}"

export HW_PORT=$port HW_SECURE_PORT=$secure_port HW_USER=$user HW_PASSWORD=$password
fail=0
run() { # run NAME COMMAND...
  echo "== $1"
  if ! "${@:2}"; then echo "FAILED: $1"; fail=1; fi
}
run "python: psycopg 3, psycopg2, asyncpg, SQLAlchemy + pandas, BI catalog queries" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/clients/python
run "node-postgres" bash -c "cd tests/clients/node && node --test"
run "pgjdbc" bash -c "javac -d '$work/java' -cp /usr/share/java/postgresql.jar tests/clients/java/JdbcTest.java &&
  java -cp '$work/java:/usr/share/java/postgresql.jar' JdbcTest"
pgbench_check() {
  out=$(pgbench -h 127.0.0.1 -p "$port" -U bench -n -f tests/clients/pgbench/point.sql -c 8 -T 3 -M prepared headwater 2>&1)
  echo "$out" | grep -E "processed|failed|tps"
  grep -qE "number of failed transactions: 0 " <<<"$out" && grep -qE "processed: [1-9]" <<<"$out"
}
run "pgbench -c 8 -M prepared" pgbench_check
if [ "$fail" != 0 ]; then
  echo "server logs: $work (trust.log, secure.log)"
  tail -20 "$work/trust.log" "$work/secure.log"
  exit 1
fi
echo "client suite: all clients passed"
