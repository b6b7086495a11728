-- pgbench custom script: a point SELECT by primary key (scripts/clients.sh runs it with
-- -c 8 -M prepared and checks that every transaction succeeded).
\set id random(1, 3)
SELECT name, price FROM items WHERE id = :id;
