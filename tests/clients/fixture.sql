-- The data every client test reads: one table with each column type Headwater stores, a
-- view and a materialized view over it. Loaded with psql by scripts/clients.sh.
CREATE TABLE items (
  id BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  price NUMERIC(10,2),
  qty INT,
  small SMALLINT,
  weight DOUBLE PRECISION,
  ratio REAL,
  active BOOLEAN,
  born DATE,
  at_time TIME,
  created TIMESTAMP,
  updated TIMESTAMPTZ,
  payload BYTEA
);
INSERT INTO items VALUES
  (1, 'pen', 1.20, 10, 1, 0.5, 0.25, true, '2024-02-29', '12:34:56', '2024-01-02 03:04:05.123456',
   '2024-01-02 03:04:05+00', '\xdeadbeef'::bytea),
  (2, 'book', 12.00, NULL, NULL, 'NaN', 'Infinity', false, NULL, NULL, NULL, NULL, NULL),
  (3, 'ünïcödé ✓', 99999999.99, -7, -32768, '-Infinity', -1.5, true, '1999-12-31', '23:59:59.999999',
   '1999-12-31 23:59:59', '1999-12-31 23:59:59.5+00', ''::bytea);
CREATE VIEW cheap AS SELECT id, name, price FROM items WHERE price < 5;
CREATE MATERIALIZED VIEW totals AS SELECT active, count(*) AS n, sum(price) AS total FROM items GROUP BY active;
