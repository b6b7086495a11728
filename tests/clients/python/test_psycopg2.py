"""psycopg2: client-side parameter binding (text protocol), every type, bytea, errors."""
import datetime as dt
import math
from decimal import Decimal

import psycopg2
import psycopg2.errors
import pytest


def test_types_and_parameters(dsn):
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT * FROM items ORDER BY id")
        pen, book, odd = cur.fetchall()
        assert pen[:4] == (1, "pen", Decimal("1.20"), 10)
        assert pen[8:11] == (dt.date(2024, 2, 29), dt.time(12, 34, 56), dt.datetime(2024, 1, 2, 3, 4, 5, 123456))
        assert pen[11] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        assert bytes(pen[12]) == b"\xde\xad\xbe\xef"
        assert math.isnan(book[5]) and book[6] == math.inf and odd[5] == -math.inf
        assert odd[1] == "ünïcödé ✓"
        cur.execute("SELECT name FROM items WHERE id = %s AND name <> %s", (1, "it's"))
        assert cur.fetchone() == ("pen",)
        cur.execute("SELECT interval '90 minutes', ARRAY[1, 2], NULL")
        assert cur.fetchone() == (dt.timedelta(minutes=90), [1, 2], None)
        cur.execute("SELECT id, name FROM cheap")
        assert cur.fetchall() == [(1, "pen")]
        conn.rollback()
    finally:
        conn.close()


def test_bytea_round_trip_and_errors(dsn):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS py2_scratch (id INT PRIMARY KEY, data BYTEA)")
        cur.execute("DELETE FROM py2_scratch")
        cur.execute("INSERT INTO py2_scratch VALUES (%s, %s)", (1, psycopg2.Binary(b"\x00\xffab")))
        cur.execute("SELECT data FROM py2_scratch WHERE id = 1")
        assert bytes(cur.fetchone()[0]) == b"\x00\xffab"
        with pytest.raises(psycopg2.errors.UndefinedTable):
            cur.execute("SELECT * FROM nope")
        with pytest.raises(psycopg2.errors.SyntaxError):
            cur.execute("SELEC 1")
        cur.execute("DROP TABLE py2_scratch")
    finally:
        conn.close()
