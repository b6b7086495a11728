"""psycopg 3: text and binary results, parameters, prepared statements, sessions, cancel, auth, TLS."""
import datetime as dt
import math
import threading
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

UTC = dt.timezone.utc


def check_items(rows):
    assert [r[0] for r in rows] == [1, 2, 3]
    pen, book, odd = rows
    assert pen[1:5] == ("pen", Decimal("1.20"), 10, 1)
    assert pen[5:8] == (0.5, 0.25, True)
    assert pen[8] == dt.date(2024, 2, 29)
    assert pen[9] == dt.time(12, 34, 56)
    assert pen[10] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert pen[11] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert bytes(pen[12]) == b"\xde\xad\xbe\xef"
    assert book[3] is None and book[4] is None and book[12] is None
    assert math.isnan(book[5]) and book[6] == math.inf
    assert odd[1] == "ünïcödé ✓" and odd[2] == Decimal("99999999.99")
    assert odd[4] == -32768 and odd[5] == -math.inf
    assert odd[9] == dt.time(23, 59, 59, 999999)
    assert odd[11] == dt.datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    assert bytes(odd[12]) == b""


@pytest.mark.parametrize("binary", [False, True])
def test_every_type_text_and_binary(dsn, binary):
    with psycopg.connect(dsn) as conn:
        rows = conn.cursor(binary=binary).execute("SELECT * FROM items ORDER BY id").fetchall()
        check_items(rows)
        row = conn.cursor(binary=binary).execute(
            "SELECT interval '1 day 2 hours' AS iv, ARRAY[1, 2, 3] AS ints, ARRAY['a', 'b'] AS texts, NULL::int AS n"
        ).fetchone()
        assert row == (dt.timedelta(days=1, hours=2), [1, 2, 3], ["a", "b"], None)


def test_parameters_and_prepared_statements(dsn):
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT name FROM items WHERE id = %s", (1,)).fetchone() == ("pen",)
        cheap = conn.execute("SELECT id FROM items WHERE price < %s ORDER BY id", (Decimal("20"),)).fetchall()
        assert cheap == [(1,), (2,)]
        # prepare=True: a named server-side statement, executed again with new parameters.
        for i, name in [(1, "pen"), (2, "book"), (1, "pen")]:
            got = conn.execute("SELECT name, price FROM items WHERE id = %s", (i,), prepare=True).fetchone()
            assert got[0] == name
        typed = conn.execute("SELECT %s::bigint + 1, %s::text || '!', %s::date", (41, "hi", dt.date(2020, 1, 1))).fetchone()
        assert typed == (42, "hi!", dt.date(2020, 1, 1))


def test_views_and_materialized_views(dsn):
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT id, name FROM cheap").fetchall() == [(1, "pen")]
        totals = dict(conn.execute("SELECT active, n FROM totals").fetchall())
        assert totals == {True: 2, False: 1}


def test_writes_and_errors(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS py3_scratch (id INT PRIMARY KEY, data BYTEA, at TIMESTAMPTZ)")
        conn.execute("DELETE FROM py3_scratch")
        at = dt.datetime(2021, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO py3_scratch VALUES (%s, %s, %s)", [(1, b"\x00\x01", at), (2, None, None)])
        got = conn.execute("SELECT data, at FROM py3_scratch WHERE id = 1").fetchone()
        assert bytes(got[0]) == b"\x00\x01" and got[1] == at
        with pytest.raises(errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO py3_scratch VALUES (1, NULL, NULL)")
        conn.execute("DROP TABLE py3_scratch")


def test_python_numbers_write_and_compare_money(dsn):
    """Issue 31: psycopg sends 12.34 as float8 and 5 as int8; Postgres converts them to the
    NUMERIC column's type (rounding 12.345 to 12.35, as float8_numeric does)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS py3_money")
        conn.execute("CREATE TABLE py3_money (id INT PRIMARY KEY, amt NUMERIC(12,2))")
        conn.execute("INSERT INTO py3_money VALUES (%s, %s)", (1, 12.34))
        conn.execute("INSERT INTO py3_money VALUES (%s, %s)", (2, 5))
        conn.execute("INSERT INTO py3_money VALUES (%s, %s)", (3, 12.345))
        conn.execute("UPDATE py3_money SET amt = %s WHERE id = %s", (7.25, 2))
        rows = conn.execute("SELECT id, amt FROM py3_money WHERE amt > %s ORDER BY id", (1.5,)).fetchall()
        assert rows == [(1, Decimal("12.34")), (2, Decimal("7.25")), (3, Decimal("12.35"))]
        assert conn.execute("SELECT id FROM py3_money WHERE amt = %s", (Decimal("7.25"),)).fetchall() == [(2,)]
        assert conn.execute("SELECT %s::text", (5,)).fetchone()[0] == "5"
        # A float compared with numeric(12,2) that the column's scale would round: refused
        # (Postgres compares as floats), never answered differently.
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("SELECT id FROM py3_money WHERE amt > %s", (1.555,))
        conn.execute("DROP TABLE py3_money")


def test_session_settings_and_transactions(dsn):
    with psycopg.connect(dsn) as conn:  # not autocommit: psycopg wraps statements in BEGIN
        conn.execute("SET TIME ZONE 'Asia/Shanghai'")
        assert conn.info.parameter_status("TimeZone") == "Asia/Shanghai"
        (at,) = conn.execute("SELECT updated FROM items WHERE id = 1").fetchone()
        assert at.utcoffset() == dt.timedelta(hours=8)
        assert at == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert conn.execute("SHOW timezone").fetchone() == ("Asia/Shanghai",)
        conn.execute("RESET TimeZone")
        assert conn.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
        conn.execute("SET application_name = 'client-test'")
        assert conn.execute("SHOW application_name").fetchone() == ("client-test",)
        conn.rollback()
        with conn.transaction():
            conn.execute("SAVEPOINT s1")
            conn.execute("RELEASE SAVEPOINT s1")
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("BEGIN READ ONLY")
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (3,)
        conn.execute("COMMIT")
        conn.execute("SET extra_float_digits = 3")
        conn.execute("DISCARD ALL")
        assert conn.execute("SHOW extra_float_digits").fetchone() == ("1",)
        assert conn.execute("SELECT current_user").fetchone() == ("tester",)
        assert conn.execute("SELECT version()").fetchone()[0].startswith("PostgreSQL 16")


def test_cancel_stops_a_running_query(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        outcome = {}

        def run():
            try:
                conn.execute("SELECT count(*) FROM generate_series(1, 100000000000)").fetchone()
                outcome["result"] = "finished"
            except errors.QueryCanceled as e:
                outcome["result"] = e.sqlstate

        worker = threading.Thread(target=run)
        worker.start()
        # A cancel that arrives before the query starts is lost (as in Postgres): repeat it
        # until the query stops, with a deadline.
        deadline = 60
        while worker.is_alive() and deadline > 0:
            conn.cancel_safe(timeout=5)
            worker.join(0.2)
            deadline -= 0.2
        assert outcome.get("result") == "57014"
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_password_auth_and_tls(secure):
    base = f"host=127.0.0.1 port={secure['port']} dbname=headwater user={secure['user']}"
    with pytest.raises(psycopg.OperationalError) as wrong:
        psycopg.connect(base + " password=wrong sslmode=disable")
    assert "password authentication failed" in str(wrong.value)
    with psycopg.connect(base + f" password={secure['password']} sslmode=require") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == (secure["user"],)
        conn.execute("CREATE USER IF NOT EXISTS py_reader PASSWORD 'r3ader'")
        conn.commit()
    with psycopg.connect(f"host=127.0.0.1 port={secure['port']} dbname=headwater user=py_reader password=r3ader") as conn:
        assert conn.execute("SELECT session_user").fetchone() == ("py_reader",)


@pytest.mark.parametrize("binary", [False, True])
def test_jsonb_in_both_formats_and_as_parameters(dsn, binary):
    """jsonb in both formats (binary has a version byte) and Jsonb parameters (oid 3802)."""
    from psycopg.types.json import Jsonb

    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS py3_docs (id INT PRIMARY KEY, doc JSONB)")
        conn.execute("DELETE FROM py3_docs")
        conn.execute("INSERT INTO py3_docs VALUES (%s, %s), (%s, %s)", (1, Jsonb({"b": [1, 2.5], "a": None}), 2, Jsonb([1, "x"])))
        rows = conn.cursor(binary=binary).execute("SELECT id, doc, doc -> 'b' FROM py3_docs ORDER BY id").fetchall()
        assert rows == [(1, {"a": None, "b": [1, 2.5]}, [1, 2.5]), (2, [1, "x"], None)]
        hit = conn.execute("SELECT id FROM py3_docs WHERE doc @> %s", (Jsonb({"b": [2.5]}),)).fetchall()
        assert hit == [(1,)]
        conn.commit()
