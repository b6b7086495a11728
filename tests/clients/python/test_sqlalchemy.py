"""SQLAlchemy 2 (psycopg 3 dialect): engine, inspector, pandas.read_sql."""
import pandas as pd
import pytest
import sqlalchemy as sa


@pytest.fixture(scope="module")
def engine(url):
    e = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    yield e
    e.dispose()


def test_engine_queries(engine):
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM items WHERE id = :id"), {"id": 2}).scalar() == "book"
        assert conn.dialect.server_version_info[0] == 16


def test_inspector(engine):
    insp = sa.inspect(engine)
    assert "public" in insp.get_schema_names()
    assert "items" in insp.get_table_names()
    assert "totals" not in insp.get_table_names()
    assert insp.get_view_names() == ["cheap"]
    assert insp.get_materialized_view_names() == ["totals"]
    columns = {c["name"]: c for c in insp.get_columns("items")}
    assert list(columns)[:3] == ["id", "name", "price"]
    assert isinstance(columns["price"]["type"], sa.Numeric)
    assert (columns["price"]["type"].precision, columns["price"]["type"].scale) == (10, 2)
    assert isinstance(columns["updated"]["type"], sa.TIMESTAMP) and columns["updated"]["type"].timezone
    assert columns["id"]["nullable"] is False and columns["qty"]["nullable"] is True
    pk = insp.get_pk_constraint("items")
    assert (pk["constrained_columns"], pk["name"]) == (["id"], "items_pkey")
    assert insp.get_indexes("items") == []  # the primary key's index is not reported as an index
    assert [c["name"] for c in insp.get_columns("totals")] == ["active", "n", "total"]
    assert "SELECT" in insp.get_view_definition("cheap").upper()


def test_pandas_read_sql(engine):
    frame = pd.read_sql("SELECT id, name, price, updated FROM items ORDER BY id", engine)
    assert frame.shape == (3, 4)
    assert list(frame["name"]) == ["pen", "book", "ünïcödé ✓"]
    totals = pd.read_sql_table("totals", engine)
    assert sorted(totals["n"].tolist()) == [1, 2]
