"""asyncpg: binary protocol throughout, named prepared statements, executemany, type codecs."""
import asyncio
import datetime as dt
import math
from decimal import Decimal

import asyncpg
import pytest


def run(coro):
    return asyncio.run(coro)


def test_binary_types_and_prepared(url):
    async def main():
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT * FROM items ORDER BY id")
            pen, book, odd = rows
            assert (pen["id"], pen["name"], pen["price"], pen["qty"], pen["small"]) == (1, "pen", Decimal("1.20"), 10, 1)
            assert pen["born"] == dt.date(2024, 2, 29) and pen["at_time"] == dt.time(12, 34, 56)
            assert pen["created"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
            assert pen["updated"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
            assert pen["payload"] == b"\xde\xad\xbe\xef" and book["payload"] is None
            assert math.isnan(book["weight"]) and book["ratio"] == math.inf and odd["weight"] == -math.inf
            assert odd["price"] == Decimal("99999999.99") and odd["name"] == "ünïcödé ✓"
            stmt = await conn.prepare("SELECT name, price FROM items WHERE id = $1")
            assert (await stmt.fetchrow(2))["name"] == "book"
            assert await stmt.fetchval(1) == "pen"
            assert [a.name for a in stmt.get_attributes()] == ["name", "price"]
            row = await conn.fetchrow("SELECT interval '1 day 2 hours' AS iv, ARRAY[1, 2, 3] AS ints, ARRAY['a', 'b'] AS texts")
            assert row["iv"] == dt.timedelta(days=1, hours=2) and row["ints"] == [1, 2, 3] and row["texts"] == ["a", "b"]
            assert await conn.fetchval("SELECT $1::bigint * 2", 21) == 42
            assert await conn.fetchval("SELECT count(*) FROM items WHERE price > $1", Decimal("5")) == 2
        finally:
            await conn.close()

    run(main())


def test_writes_transactions_and_errors(url):
    async def main():
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS apg_scratch (id INT PRIMARY KEY, name TEXT, at TIMESTAMP)")
            await conn.execute("DELETE FROM apg_scratch")
            at = dt.datetime(2022, 5, 6, 7, 8, 9)
            await conn.executemany("INSERT INTO apg_scratch VALUES ($1, $2, $3)", [(1, "a", at), (2, None, None)])
            async with conn.transaction():
                assert await conn.fetchval("SELECT at FROM apg_scratch WHERE id = 1") == at
            with pytest.raises(asyncpg.exceptions.UniqueViolationError):
                await conn.execute("INSERT INTO apg_scratch VALUES (1, 'dup', NULL)")
            with pytest.raises(asyncpg.exceptions.UndefinedTableError):
                await conn.fetch("SELECT * FROM nowhere")
            await conn.execute("DROP TABLE apg_scratch")
        finally:
            await conn.close()

    run(main())
