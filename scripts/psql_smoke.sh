#!/usr/bin/env bash
# Starts the real `headwater serve` binary on a free port and drives it with psql:
# the meta-commands \dt \dv \dm \d \l \dn, a table survives a SIGTERM restart.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --tests  # the features `cargo test` resolves: no second build of the dependencies
bin=target/debug/headwater
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$dir/server.log"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

start_server() {
  HEADWATER_DATA_DIR="$dir/data" "$bin" serve --listen "127.0.0.1:$port" --log-level info >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    if psql -h 127.0.0.1 -p "$port" -U anyone -d headwater -Atqc 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "server died" >&2; exit 1; }
    sleep 0.1
  done
  cat "$log"; echo "server did not accept connections in 10s" >&2; exit 1
}
stop_server() {
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || { pid=""; return 0; }; sleep 0.1; done
  echo "server did not stop on SIGTERM in 10s" >&2; exit 1
}
q() { psql -h 127.0.0.1 -p "$port" -U anyone -d headwater -X -v ON_ERROR_STOP=1 "$@"; }
fail=0
expect() { # expect NAME PATTERN OUTPUT
  if grep -qE -- "$2" <<<"$3"; then echo "ok     $1"; else echo "FAILED $1: no '$2' in:"; echo "$3"; fail=1; fi
}

start_server
q -q -c "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, price NUMERIC(10,2))" \
     -c "INSERT INTO items VALUES (1, 'pen', 1.20), (2, 'book', 12.00)" \
     -c "CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 5" \
     -c "CREATE MATERIALIZED VIEW item_count AS SELECT count(*) AS n FROM items"
expect '\dt lists the table' 'items +\| table' "$(q -c '\dt')"
expect '\dt hides system schemas' '^\(1 row\)' "$(q -c '\dt')"
expect '\dv lists the view' 'cheap +\| view' "$(q -c '\dv')"
expect '\dm lists the materialized view' 'item_count +\| materialized view' "$(q -c '\dm')"
expect '\dt does not list materialized views' '^\(1 row\)' "$(q -c '\dt')"
expect '\d describes columns' 'price' "$(q -c '\d items')"
expect '\d shows numeric typmods' 'numeric\(10,2\)' "$(q -c '\d items')"
expect '\d shows the primary key' '"items_pkey" PRIMARY KEY, btree \(id\)' "$(q -c '\d items')"
expect '\d+ shows a view definition' 'SELECT id, name FROM items WHERE price < 5' "$(q -c '\d+ cheap')"
expect '\d+ shows a materialized view' 'Materialized view "public.item_count"' "$(q -c '\d+ item_count')"
expect '\df runs' 'List of functions' "$(q -c '\df')"
expect '\du lists roles' 'headwater' "$(q -c '\du')"
expect '\di lists the primary key index' 'items_pkey' "$(q -c '\di')"
# Ctrl-C: psql sends a CancelRequest on SIGINT; the endless query stops with 57014.
cancelled=$(timeout -k 10 -s INT 3 psql -h 127.0.0.1 -p "$port" -U anyone -d headwater -X \
  -c 'SELECT count(*) FROM generate_series(1, 100000000000)' 2>&1 || true)
expect 'Ctrl-C cancels a running query' 'canceling statement due to user request' "$cancelled"
expect '\l lists the database' 'headwater' "$(q -c '\l')"
expect '\dn lists public' 'public' "$(q -c '\dn')"
expect 'version() is Postgres-shaped' 'PostgreSQL 16' "$(q -Atc 'SELECT version()')"
expect 'errors carry SQLSTATE' '42P01' "$(q -c '\set VERBOSITY verbose' -c 'SELECT * FROM nope' 2>&1 || true)"
stop_server
expect 'SIGTERM shuts down cleanly' 'Headwater stopped' "$(cat "$log")"
start_server
expect 'rows survive a restart' 'book' "$(q -Atc 'SELECT name FROM items WHERE id = 2')"
expect 'views survive a restart' 'pen' "$(q -Atc 'SELECT name FROM cheap')"
expect 'materialized views survive a restart' '^2$' "$(q -Atc 'SELECT n FROM item_count')"
stop_server
if [ "$fail" != 0 ]; then echo "psql smoke: some checks failed"; exit 1; fi
echo "psql smoke: all checks passed"
