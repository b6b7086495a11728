#!/usr/bin/env bash
# One-command demo: a MariaDB with a shop schema and a live workload, captured by Headwater,
# queried with psql. Needs mariadb-server, postgresql-client and Rust (apt-get install
# mariadb-server postgresql-client). Usage: bash examples/shop/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
my_port=$(free_port); hw_port=$(free_port)

echo "== MariaDB on port $my_port (binlog on)"
mkdir -p "$work"/{data,run,binlog}
cat > "$work/my.cnf" <<CNF
[mariadbd]
user=root
datadir=$work/data
socket=$work/run/mysqld.sock
port=$my_port
bind-address=127.0.0.1
server_id=1
log_bin=$work/binlog/mariadb-bin
binlog_format=ROW
binlog_row_image=FULL
binlog_row_metadata=FULL
character-set-server=utf8mb4
skip-name-resolve
CNF
mariadb-install-db --defaults-file="$work/my.cnf" --auth-root-authentication-method=normal --skip-test-db >/dev/null
/usr/sbin/mariadbd --defaults-file="$work/my.cnf" >"$work/mariadb.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do mariadb -h 127.0.0.1 -P "$my_port" -u root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
mariadb -h 127.0.0.1 -P "$my_port" -u root -e "CREATE USER 'cdc'@'%' IDENTIFIED BY 'pw'; GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'cdc'@'%'"
mariadb -h 127.0.0.1 -P "$my_port" -u root < examples/shop/schema.sql

echo "== Headwater on port $hw_port"
cargo build --quiet
target/debug/headwater serve --listen "127.0.0.1:$hw_port" --data-dir "$work/headwater" >"$work/headwater.log" 2>&1 & pids+=($!)
q() { psql -h 127.0.0.1 -p "$hw_port" -U demo -d headwater -X -v ON_ERROR_STOP=1 "$@"; }
for _ in $(seq 1 100); do q -Atc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

bash examples/shop/workload.sh "$my_port" "$seconds" & pids+=($!)
q -c "CREATE CONNECTION shop_db TO MYSQL (HOST '127.0.0.1', PORT $my_port, USER 'cdc', PASSWORD 'pw')" \
  -c "CREATE SOURCE shop FROM MYSQL CONNECTION shop_db FOR SCHEMAS (shop) WITH (SERVER_ID = 5401)" \
  -c "SELECT table_name, state, rows_copied FROM hw_catalog.source_tables ORDER BY 1" \
  -c "CREATE MATERIALIZED VIEW revenue_by_channel AS
        SELECT e.channel, count(*) AS orders, sum(o.amount) AS revenue
        FROM orders o JOIN order_ext e ON e.order_id = o.id WHERE o.status <> 'cancelled' GROUP BY e.channel" \
  -c "CREATE MATERIALIZED VIEW top_products AS
        SELECT sku, sum(amount) AS revenue FROM orders GROUP BY sku ORDER BY revenue DESC, sku LIMIT 5" \
  -c "CREATE MATERIALIZED VIEW latest_order_per_city AS
        SELECT city, id, amount FROM (SELECT c.city, o.id, o.amount,
          row_number() OVER (PARTITION BY c.city ORDER BY o.created_at DESC, o.id DESC) AS rn
          FROM orders o JOIN customers c ON c.id = o.customer_id) t WHERE rn = 1"
sleep 2
q -c "SET real_time_recency = on" \
  -c "SELECT name, state, binlog_file, binlog_position, lag_seconds FROM hw_catalog.sources" \
  -c "SELECT table_name, state, rows_copied, rows_per_second::bigint FROM hw_catalog.source_tables ORDER BY 1" \
  -c "SELECT o.status, count(*) AS orders, sum(o.amount) AS revenue FROM orders o GROUP BY o.status ORDER BY 1" \
  -c "SELECT e.channel, count(*) AS orders, sum(o.amount) AS revenue FROM orders o JOIN order_ext e ON e.order_id = o.id GROUP BY e.channel ORDER BY 2 DESC" \
  -c "SELECT c.city, count(*) AS active_subscriptions FROM subscriptions s JOIN customers c ON c.id = s.customer_id WHERE s.active = 1 GROUP BY c.city ORDER BY 1" \
  -c "SELECT * FROM revenue_by_channel ORDER BY revenue DESC" \
  -c "SELECT * FROM top_products ORDER BY revenue DESC, sku" \
  -c "SELECT * FROM latest_order_per_city ORDER BY city" \
  -c "EXPLAIN MATERIALIZED VIEW top_products"
wait "${pids[2]}"
echo "== after the workload: Headwater and MariaDB agree?"
hw=$(q -Atc "SET real_time_recency = on; SELECT count(*), sum(amount) FROM orders" | tail -1)
my=$(mariadb -h 127.0.0.1 -P "$my_port" -u root -N -e "SELECT CONCAT(COUNT(*), '|', SUM(amount)) FROM shop.orders")
echo "Headwater: $hw   MariaDB: $my"
[ "$hw" = "$my" ] && echo "== identical" || { echo "== DIFFERENT"; exit 1; }
echo "== the views, kept up to date incrementally, equal their queries run from scratch?"
view=$(q -Atc "SET real_time_recency = on; SELECT channel, orders, revenue FROM revenue_by_channel ORDER BY 1" | tail -n +2)
adhoc=$(mariadb -h 127.0.0.1 -P "$my_port" -u root -N -B -e "SELECT e.channel, COUNT(*), SUM(o.amount) FROM shop.orders o
  JOIN shop.order_ext e ON e.order_id = o.id WHERE o.status <> 'cancelled' GROUP BY e.channel ORDER BY 1" | tr '\t' '|')
echo "$view"
[ "$view" = "$adhoc" ] && echo "== identical" || { echo "== DIFFERENT from MariaDB:"; echo "$adhoc"; exit 1; }
top=$(q -Atc "SELECT sku, revenue FROM top_products ORDER BY revenue DESC, sku")
top_adhoc=$(mariadb -h 127.0.0.1 -P "$my_port" -u root -N -B -e "SELECT sku, SUM(amount) AS r FROM shop.orders GROUP BY sku
  ORDER BY r DESC, sku LIMIT 5" | tr '\t' '|')
[ "$top" = "$top_adhoc" ] && echo "== top_products identical" || { echo "== top_products DIFFERENT:"; echo "$top"; echo "$top_adhoc"; exit 1; }
