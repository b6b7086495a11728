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


def test_named_cursor_and_json(dsn):
    """A named (server-side) cursor reads in chunks through DECLARE/FETCH; json and jsonb
    come back as Python objects; SQL PREPARE/EXECUTE work."""
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS py2_docs (id INT PRIMARY KEY, doc JSONB, raw JSON, code CHAR(4))")
        cur.execute("DELETE FROM py2_docs")
        cur.execute(
            "INSERT INTO py2_docs SELECT x, jsonb_build_object('n', x, 'tags', jsonb_build_array('a', x)), "
            "'{\"k\": 1}', 'c' FROM generate_series(1, 250) g(x)"
        )
        conn.commit()
        named = conn.cursor(name="big_read")
        named.itersize = 100
        named.execute("SELECT id, doc, raw, code FROM py2_docs ORDER BY id")
        seen = [row for row in named]
        assert len(seen) == 250
        assert seen[0] == (1, {"n": 1, "tags": ["a", 1]}, {"k": 1}, "c   ")
        named.close()
        conn.commit()
        cur.execute("SELECT doc -> 'tags' ->> 1, doc @> %s FROM py2_docs WHERE id = %s", ('{"n": 7}', 7))
        assert cur.fetchone() == ("7", True)
        cur.execute("PREPARE by_id (int) AS SELECT doc ->> 'n' FROM py2_docs WHERE id = $1")
        cur.execute("EXECUTE by_id (42)")
        assert cur.fetchone() == ("42",)
        cur.execute("DEALLOCATE by_id")
        with pytest.raises(psycopg2.errors.StringDataRightTruncation):
            cur.execute("INSERT INTO py2_docs (id, code) VALUES (999, 'toolong')")
        conn.rollback()
    finally:
        conn.close()
