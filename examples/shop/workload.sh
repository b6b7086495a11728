#!/usr/bin/env bash
# Writes to the demo shop: new orders (order + extension in one transaction), payments,
# cancellations, price changes, subscription flips. Usage: workload.sh PORT SECONDS
set -euo pipefail
port=$1; seconds=${2:-30}
end=$(( $(date +%s) + seconds ))
next_id=$(mariadb -h 127.0.0.1 -P "$port" -u root -N -e "SELECT COALESCE(MAX(id), 0) + 1 FROM shop.orders")
n=0
while [ "$(date +%s)" -lt "$end" ]; do
  sql=""
  for _ in $(seq 1 20); do
    c=$(( RANDOM % 200 + 1 )); p=$(( RANDOM % 50 + 1 )); q=$(( RANDOM % 3 + 1 ))
    channel=$(printf 'web\napp\nstore' | shuf -n 1)
    sql+="START TRANSACTION;
      INSERT INTO shop.orders SELECT $next_id, $c, sku, $q, $q * price, 'new', NOW(3) FROM shop.products WHERE sku = 'sku-$p';
      INSERT INTO shop.order_ext VALUES ($next_id, '$channel', NULL);
      UPDATE shop.products SET stock = stock - $q WHERE sku = 'sku-$p';
      COMMIT;
      UPDATE shop.orders SET status = 'paid' WHERE id = $(( next_id - RANDOM % 50 )) AND status = 'new';
      UPDATE shop.subscriptions SET active = 1 - active WHERE customer_id = $c;"
    if [ $(( RANDOM % 10 )) = 0 ]; then
      sql+="UPDATE shop.products SET price = price + 0.10 WHERE sku = 'sku-$p';
        UPDATE shop.orders SET status = 'cancelled' WHERE id = $(( next_id - RANDOM % 500 ));"
    fi
    next_id=$(( next_id + 1 )); n=$(( n + 1 ))
  done
  mariadb -h 127.0.0.1 -P "$port" -u root -e "$sql"
done
echo "workload: $n orders in ${seconds}s"
