"""BI tools' catalog traffic: the table, column and primary-key discovery queries of Grafana,
Metabase, DBeaver and Superset (SQLAlchemy 1.4, which Superset pins), copied from their sources
or captured from the tools against PostgreSQL (tests/clients/python/bi_queries.md says which).
Each must run and return what the tool needs to show the fixture's tables, views,
materialized view, columns and primary key.
"""
import re

import psycopg
import pytest

QUERIES = {
    'grafana_tables_in_search_path': ('none', 'SELECT\n    CASE WHEN \n          quote_ident(table_schema) IN (\n          SELECT\n            CASE WHEN trim(s[i]) = \'"$user"\' THEN user ELSE trim(s[i]) END\n          FROM\n            generate_series(\n              array_lower(string_to_array(current_setting(\'search_path\'),\',\'),1),\n              array_upper(string_to_array(current_setting(\'search_path\'),\',\'),1)\n            ) as i,\n            string_to_array(current_setting(\'search_path\'),\',\') s\n          )\n      THEN quote_ident(table_name)\n      ELSE quote_ident(table_schema) || \'.\' || quote_ident(table_name)\n    END AS "table"\n    FROM information_schema.tables\n    WHERE quote_ident(table_schema) NOT IN (\'information_schema\',\n                             \'pg_catalog\',\n                             \'_timescaledb_cache\',\n                             \'_timescaledb_catalog\',\n                             \'_timescaledb_internal\',\n                             \'_timescaledb_config\',\n                             \'timescaledb_information\',\n                             \'timescaledb_experimental\')\n    ORDER BY CASE WHEN \n          quote_ident(table_schema) IN (\n          SELECT\n            CASE WHEN trim(s[i]) = \'"$user"\' THEN user ELSE trim(s[i]) END\n          FROM\n            generate_series(\n              array_lower(string_to_array(current_setting(\'search_path\'),\',\'),1),\n              array_upper(string_to_array(current_setting(\'search_path\'),\',\'),1)\n            ) as i,\n            string_to_array(current_setting(\'search_path\'),\',\') s\n          ) THEN 0 ELSE 1 END, 1'),
    'grafana_columns_of_table': ('none', 'SELECT quote_ident(column_name) AS "column", data_type AS "type"\n    FROM information_schema.columns\n    WHERE\n      CASE WHEN array_length(parse_ident(\'items\'),1) = 2\n        THEN quote_ident(table_schema) = (parse_ident(\'items\'))[1]\n          AND quote_ident(table_name) = (parse_ident(\'items\'))[2]\n        ELSE quote_ident(table_name) = \'items\'\n          AND \n          quote_ident(table_schema) IN (\n          SELECT\n            CASE WHEN trim(s[i]) = \'"$user"\' THEN user ELSE trim(s[i]) END\n          FROM\n            generate_series(\n              array_lower(string_to_array(current_setting(\'search_path\'),\',\'),1),\n              array_upper(string_to_array(current_setting(\'search_path\'),\',\'),1)\n            ) as i,\n            string_to_array(current_setting(\'search_path\'),\',\') s\n          )\n      END'),
    'grafana_backend_tables': ('schema', "SELECT table_name FROM information_schema.tables\n\t\t WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW')\n\t\t ORDER BY table_name"),
    'grafana_backend_columns': ('schema_table', 'SELECT column_name, data_type, udt_name, numeric_precision, numeric_scale\n\t\t FROM information_schema.columns\n\t\t WHERE table_schema = $1 AND table_name = $2\n\t\t ORDER BY ordinal_position'),
    'metabase_privileges': ('none', 'with table_privileges as (\n select\n   NULL as role,\n   t.schemaname as schema,\n   t.objectname as table,\n   pg_catalog.has_any_column_privilege(current_user, \'"\' || replace(t.schemaname, \'"\', \'""\') || \'"\' || \'.\' || \'"\' || replace(t.objectname, \'"\', \'""\') || \'"\',  \'update\') as update,\n   pg_catalog.has_any_column_privilege(current_user, \'"\' || replace(t.schemaname, \'"\', \'""\') || \'"\' || \'.\' || \'"\' || replace(t.objectname, \'"\', \'""\') || \'"\',  \'select\') as select,\n   pg_catalog.has_any_column_privilege(current_user, \'"\' || replace(t.schemaname, \'"\', \'""\') || \'"\' || \'.\' || \'"\' || replace(t.objectname, \'"\', \'""\') || \'"\',  \'insert\') as insert,\n   pg_catalog.has_table_privilege(     current_user, \'"\' || replace(t.schemaname, \'"\', \'""\') || \'"\' || \'.\' || \'"\' || replace(t.objectname, \'"\', \'""\') || \'"\',  \'delete\') as delete\n from (\n   select schemaname, tablename as objectname from pg_catalog.pg_tables\n   union\n   select schemaname, viewname as objectname from pg_catalog.pg_views\n   union\n   select schemaname, matviewname as objectname from pg_catalog.pg_matviews\n ) t\n where t.schemaname !~ \'^pg_\'\n   and t.schemaname <> \'information_schema\'\n   and pg_catalog.has_schema_privilege(current_user, t.schemaname, \'usage\')\n)\nselect t.*\nfrom table_privileges t'),
    'metabase_tables': ('metabase_tables', 'SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN \'r\' THEN \'TABLE\' WHEN \'p\' THEN \'PARTITIONED TABLE\' WHEN \'v\' THEN \'VIEW\' WHEN \'f\' THEN \'FOREIGN TABLE\' WHEN \'m\' THEN \'MATERIALIZED VIEW\' ELSE NULL END AS "type", "d"."description" AS "description", NULLIF("stat"."n_live_tup", $1) AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = $2) AND ("d"."classoid" = \'pg_class\'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ $3) AND ("n"."nspname" <> $4) AND c.relkind in (\'r\', \'p\', \'v\', \'f\', \'m\') AND ("n"."nspname" IN ($5)) ORDER BY "type" ASC, "schema" ASC, "name" ASC'),
    'metabase_fields_and_pk': ('metabase_fields', 'SELECT "c"."column_name" AS "name", CASE WHEN "c"."udt_schema" IN (\'public\', \'pg_catalog\') THEN FORMAT(\'%s\', "c"."udt_name") ELSE FORMAT(\'"%s"."%s"\', "c"."udt_schema", "c"."udt_name") END AS "database-type", "c"."ordinal_position" - 1 AS "database-position", "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name", "pk"."column_name" IS NOT NULL AS "pk?", COL_DESCRIPTION(CAST(CAST(FORMAT(\'%I.%I\', CAST("c"."table_schema" AS TEXT), CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position") AS "field-comment", (("column_default" IS NULL) OR (LOWER("column_default") = \'null\')) AND ("is_nullable" = \'NO\') AND NOT ((("column_default" IS NOT NULL) AND ("column_default" LIKE \'%nextval(%\')) OR ("is_identity" <> \'NO\')) AS "database-required", "column_default" AS "database-default", (("column_default" IS NOT NULL) AND ("column_default" LIKE \'%nextval(%\')) OR ("is_identity" <> \'NO\') AS "database-is-auto-increment", "is_generated" = $1 AS "database-is-generated", "is_nullable" = \'YES\' AS "database-is-nullable" FROM "information_schema"."columns" AS "c" LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name" FROM "information_schema"."table_constraints" AS "tc" INNER JOIN "information_schema"."key_column_usage" AS "kc" ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema") AND ("tc"."table_name" = "kc"."table_name") WHERE "tc"."constraint_type" = \'PRIMARY KEY\') AS "pk" ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name") AND ("c"."column_name" = "pk"."column_name") WHERE c.table_schema !~ \'^information_schema|catalog_history|pg_\' AND ("c"."table_schema" IN ($2)) UNION ALL SELECT "pa"."attname" AS "name", CASE WHEN "ptn"."nspname" IN (\'public\', \'pg_catalog\') THEN FORMAT(\'%s\', "pt"."typname") ELSE FORMAT(\'"%s"."%s"\', "ptn"."nspname", "pt"."typname") END AS "database-type", "pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name", FALSE AS "pk?", NULL AS "field-comment", FALSE AS "database-required", NULL AS "database-default", FALSE AS "database-is-auto-increment", FALSE AS "database-is-generated", FALSE AS "database-is-nullable" FROM "pg_catalog"."pg_class" AS "pc" INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace" INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid" INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid" INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace" WHERE ("pc"."relkind" = \'m\') AND ("pa"."attnum" >= 1) AND ("pn"."nspname" IN ($3)) ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC'),
    'metabase_foreign_keys': ('schema', 'SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name", "fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema", "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name" FROM "pg_constraint" AS "c" INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid" INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid" INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid" INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid" INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid" INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid" WHERE fk_ns.nspname !~ \'^information_schema|catalog_history|pg_\' AND ("c"."contype" = \'f\'::char) AND ("fk_column"."attnum" = ANY(c.conkey)) AND ("pk_column"."attnum" = ANY(c.confkey)) AND ("fk_ns"."nspname" IN ($1)) ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC'),
    'dbeaver_schemas': ('none', "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n\nLEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass\n ORDER BY nspname"),
    'dbeaver_tables': ('namespace', "SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key \nFROM pg_catalog.pg_class c\nLEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass\nWHERE c.relnamespace=? AND c.relkind not in ('i','I','c')"),
    'dbeaver_columns': ('table_oid', "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid\nFROM pg_catalog.pg_attribute a\nINNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)\nLEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)\nLEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)\nLEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid\nWHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=?\nORDER BY a.attnum"),
    'dbeaver_constraints': ('table_oid', 'SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description, case when c.contype=\'c\' then "substring"(pg_get_constraintdef(c.oid), 7) else null end consrc_copy\nFROM pg_catalog.pg_constraint c\nINNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid\nLEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid\nLEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid=\'pg_constraint\'::regclass\nWHERE c.conrelid=?\nORDER BY c.oid'),
    'superset_databases': ('none', 'SELECT datname FROM pg_database\nWHERE datistemplate = false;'),
    'superset_search_path': ('none', 'set search_path = "public"'),
    'superset_backend_pid': ('none', 'SELECT pg_backend_pid()'),
    'superset_sqlalchemy14_01': ('oid_inline', "SELECT t.oid, typarray\nFROM pg_type t JOIN pg_namespace ns\n    ON typnamespace = ns.oid\nWHERE typname = 'hstore';"),
    'superset_sqlalchemy14_02': ('oid_inline', 'select pg_catalog.version()'),
    'superset_sqlalchemy14_03': ('oid_inline', 'select current_schema()'),
    'superset_sqlalchemy14_04': ('oid_inline', 'show transaction isolation level'),
    'superset_sqlalchemy14_05': ('oid_inline', 'show standard_conforming_strings'),
    'superset_sqlalchemy14_06': ('oid_inline', "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' ORDER BY nspname"),
    'superset_sqlalchemy14_07': ('oid_inline', "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind in ('r', 'p')"),
    'superset_sqlalchemy14_08': ('oid_inline', "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'f'"),
    'superset_sqlalchemy14_09': ('oid_inline', "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm')"),
    'superset_sqlalchemy14_10': ('oid_inline', "            SELECT c.oid\n            FROM pg_catalog.pg_class c\n            LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n            WHERE (n.nspname = 'public')\n            AND c.relname = 'items' AND c.relkind in\n            ('r', 'v', 'm', 'f', 'p')"),
    'superset_sqlalchemy14_11': ('oid_inline', '            SELECT a.attname,\n              pg_catalog.format_type(a.atttypid, a.atttypmod),\n              (\n                SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid)\n                FROM pg_catalog.pg_attrdef d\n                WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum\n                AND a.atthasdef\n              ) AS DEFAULT,\n              a.attnotnull,\n              a.attrelid as table_oid,\n              pgd.description as comment,\n              a.attgenerated as generated,\n                              (SELECT json_build_object(\n                    \'always\', a.attidentity = \'a\',\n                    \'start\', s.seqstart,\n                    \'increment\', s.seqincrement,\n                    \'minvalue\', s.seqmin,\n                    \'maxvalue\', s.seqmax,\n                    \'cache\', s.seqcache,\n                    \'cycle\', s.seqcycle)\n                FROM pg_catalog.pg_sequence s\n                JOIN pg_catalog.pg_class c on s.seqrelid = c."oid"\n                WHERE c.relkind = \'S\'\n                AND a.attidentity != \'\'\n                AND s.seqrelid = pg_catalog.pg_get_serial_sequence(\n                    a.attrelid::regclass::text, a.attname\n                )::regclass::oid\n                ) as identity_options                \n            FROM pg_catalog.pg_attribute a\n            LEFT JOIN pg_catalog.pg_description pgd ON (\n                pgd.objoid = a.attrelid AND pgd.objsubid = a.attnum)\n            WHERE a.attrelid = {ITEMS_OID}\n            AND a.attnum > 0 AND NOT a.attisdropped\n            ORDER BY a.attnum'),
    'superset_sqlalchemy14_12': ('oid_inline', '            SELECT t.typname as "name",\n               pg_catalog.format_type(t.typbasetype, t.typtypmod) as "attype",\n               not t.typnotnull as "nullable",\n               t.typdefault as "default",\n               pg_catalog.pg_type_is_visible(t.oid) as "visible",\n               n.nspname as "schema"\n            FROM pg_catalog.pg_type t\n               LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace\n            WHERE t.typtype = \'d\''),
    'superset_sqlalchemy14_13': ('oid_inline', '            SELECT t.typname as "name",\n               -- no enum defaults in 8.4 at least\n               -- t.typdefault as "default",\n               pg_catalog.pg_type_is_visible(t.oid) as "visible",\n               n.nspname as "schema",\n               e.enumlabel as "label"\n            FROM pg_catalog.pg_type t\n                 LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace\n                 LEFT JOIN pg_catalog.pg_enum e ON t.oid = e.enumtypid\n            WHERE t.typtype = \'e\'\n        ORDER BY "schema", "name", e.oid'),
    'superset_sqlalchemy14_14': ('oid_inline', '                SELECT a.attname\n                FROM pg_attribute a JOIN (\n                    SELECT unnest(ix.indkey) attnum,\n                           generate_subscripts(ix.indkey, 1) ord\n                    FROM pg_index ix\n                    WHERE ix.indrelid = {ITEMS_OID} AND ix.indisprimary\n                    ) k ON a.attnum=k.attnum\n                WHERE a.attrelid = {ITEMS_OID}\n                ORDER BY k.ord'),
    'superset_sqlalchemy14_15': ('oid_inline', "        SELECT conname\n           FROM  pg_catalog.pg_constraint r\n           WHERE r.conrelid = {ITEMS_OID} AND r.contype = 'p'\n           ORDER BY 1"),
    'superset_sqlalchemy14_16': ('oid_inline', "          SELECT r.conname,\n                pg_catalog.pg_get_constraintdef(r.oid, true) as condef,\n                n.nspname as conschema\n          FROM  pg_catalog.pg_constraint r,\n                pg_namespace n,\n                pg_class c\n\n          WHERE r.conrelid = {ITEMS_OID} AND\n                r.contype = 'f' AND\n                c.oid = confrelid AND\n                n.oid = c.relnamespace\n          ORDER BY 1"),
    'superset_sqlalchemy14_17': ('oid_inline', "              SELECT\n                  i.relname as relname,\n                  ix.indisunique, ix.indexprs,\n                  a.attname, a.attnum, c.conrelid, ix.indkey::varchar,\n                  ix.indoption::varchar, i.reloptions, am.amname,\n                  pg_get_expr(ix.indpred, ix.indrelid),\n                  ix.indnkeyatts as indnkeyatts\n              FROM\n                  pg_class t\n                        join pg_index ix on t.oid = ix.indrelid\n                        join pg_class i on i.oid = ix.indexrelid\n                        left outer join\n                            pg_attribute a\n                            on t.oid = a.attrelid and a.attnum = ANY(ix.indkey)\n                        left outer join\n                            pg_constraint c\n                            on (ix.indrelid = c.conrelid and\n                                ix.indexrelid = c.conindid and\n                                c.contype in ('p', 'u', 'x'))\n                        left outer join\n                            pg_am am\n                            on i.relam = am.oid\n              WHERE\n                  t.relkind IN ('r', 'v', 'f', 'm', 'p')\n                  and t.oid = {ITEMS_OID}\n                  and ix.indisprimary = 'f'\n              ORDER BY\n                  t.relname,\n                  i.relname"),
    'superset_sqlalchemy14_18': ('oid_inline', "            SELECT c.oid\n            FROM pg_catalog.pg_class c\n            LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n            WHERE (n.nspname = 'public')\n            AND c.relname = 'items' AND c.relkind in\n            ('r', 'v', 'm', 'f', 'p')"),
    'superset_sqlalchemy14_19': ('oid_inline', '            SELECT\n                pgd.description as table_comment\n            FROM\n                pg_catalog.pg_description pgd\n            WHERE\n                pgd.objsubid = 0 AND\n                pgd.objoid = {ITEMS_OID}'),
}


@pytest.fixture(scope="module")
def conn(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


def run(conn, name):
    """Runs a query as the tool sends it: $n parameters bound as text, `?` (JDBC) as $n."""
    kind, sql = QUERIES[name]
    ns = conn.execute("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public'").fetchone()[0]
    items = conn.execute("SELECT oid FROM pg_catalog.pg_class WHERE relname = 'items'").fetchone()[0]
    params = {
        "none": [],
        "oid_inline": [],
        "schema": ["public"],
        "schema_table": ["public", "items"],
        "metabase_tables": ["0", "0", "^pg_", "information_schema", "public"],
        "metabase_fields": ["ALWAYS", "public", "public"],
        "namespace": [str(ns)],
        "table_oid": [str(items)],
    }[kind]
    sql = sql.replace("{ITEMS_OID}", str(items))
    counter = iter(range(1, 100))
    sql = re.sub(r"\?", lambda _: f"${next(counter)}", sql) if kind in ("namespace", "table_oid") else sql
    result = conn.pgconn.exec_params(sql.encode(), [p.encode() for p in params])
    error = result.error_message.decode()
    assert not error, f"{name}: {error}"
    names = [result.fname(i).decode() for i in range(result.nfields)]
    rows = [
        {names[c]: (None if (v := result.get_value(r, c)) is None else v.decode()) for c in range(result.nfields)}
        for r in range(result.ntuples)
    ]
    return rows


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_query_runs(conn, name):
    run(conn, name)


def test_grafana_lists_tables_and_columns(conn):
    tables = {list(r.values())[0] for r in run(conn, "grafana_tables_in_search_path")}
    assert {"items", "cheap"} <= tables
    columns = {r["column"]: r["type"] for r in run(conn, "grafana_columns_of_table")}
    assert columns["id"] == "bigint" and columns["price"] == "numeric" and columns["updated"] == "timestamp with time zone"
    backend = {r["column_name"]: r for r in run(conn, "grafana_backend_columns")}
    assert backend["price"]["udt_name"] == "numeric"
    assert (backend["price"]["numeric_precision"], backend["price"]["numeric_scale"]) == ("10", "2")


def test_metabase_sees_tables_views_and_the_primary_key(conn):
    tables = {(r["name"], r["type"]) for r in run(conn, "metabase_tables")}
    assert tables == {("items", "TABLE"), ("cheap", "VIEW"), ("totals", "MATERIALIZED VIEW")}
    privileges = {r["table"]: r for r in run(conn, "metabase_privileges")}
    assert {"items", "cheap", "totals"} <= set(privileges)
    fields = {(r["table-name"], r["name"]): r for r in run(conn, "metabase_fields_and_pk")}
    assert fields[("items", "id")]["pk?"] == "t" and fields[("items", "name")]["pk?"] == "f"
    assert fields[("items", "price")]["database-type"] == "numeric"
    assert fields[("totals", "n")]["database-type"] == "int8"


def test_dbeaver_sees_relations_columns_and_constraints(conn):
    kinds = {r["relname"]: r["relkind"] for r in run(conn, "dbeaver_tables")}
    assert kinds == {"items": "r", "cheap": "v", "totals": "m"}
    columns = [r["attname"] for r in run(conn, "dbeaver_columns")]
    assert columns[:3] == ["id", "name", "price"]
    constraints = run(conn, "dbeaver_constraints")
    assert [(c["conname"], c["contype"], c["conkey"]) for c in constraints] == [("items_pkey", "p", "{1}")]


def test_superset_sqlalchemy14_reflection(conn):
    assert [r["relname"] for r in run(conn, "superset_sqlalchemy14_07")] == ["items"]
    assert sorted(r["relname"] for r in run(conn, "superset_sqlalchemy14_09")) == ["cheap", "totals"]
    columns = {r["attname"]: r for r in run(conn, "superset_sqlalchemy14_11")}
    assert columns["price"]["format_type"] == "numeric(10,2)"
    assert [r["attname"] for r in run(conn, "superset_sqlalchemy14_14")] == ["id"]
