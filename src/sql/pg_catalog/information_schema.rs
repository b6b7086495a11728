//! `information_schema` as Postgres shapes it, for BI tools (Grafana, Metabase) and JDBC.
//!
//! DataFusion's own `information_schema` names types the Arrow way (`Int64`) and lacks the
//! columns and tables Postgres clients read (`udt_name`, `is_identity`, `table_constraints`,
//! `key_column_usage`), so it is turned off and this schema takes its place: each table is a
//! view over `pg_catalog` (and so over the overlay: primary keys, typmods), defined by the SQL
//! below and planned once at start-up. Like Postgres, `tables` and `columns` leave out
//! materialized views.

use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::ViewTable;
use datafusion::prelude::SessionContext;

use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// The Postgres type name `information_schema.columns.data_type` shows for a `pg_type.typname`.
const DATA_TYPE: &str = "CASE t.typname \
    WHEN 'int2' THEN 'smallint' WHEN 'int4' THEN 'integer' WHEN 'int8' THEN 'bigint' \
    WHEN 'float4' THEN 'real' WHEN 'float8' THEN 'double precision' WHEN 'numeric' THEN 'numeric' \
    WHEN 'bool' THEN 'boolean' WHEN 'varchar' THEN 'character varying' WHEN 'bpchar' THEN 'character' \
    WHEN 'timestamp' THEN 'timestamp without time zone' WHEN 'timestamptz' THEN 'timestamp with time zone' \
    WHEN 'time' THEN 'time without time zone' WHEN 'timetz' THEN 'time with time zone' \
    ELSE CASE WHEN t.typcategory = 'A' THEN 'ARRAY' ELSE t.typname END END";

const VIEWS: &[(&str, &str)] = &[
    (
        "schemata",
        "SELECT current_database() AS catalog_name, n.nspname AS schema_name, 'headwater' AS schema_owner, \
         CAST(NULL AS TEXT) AS default_character_set_catalog, CAST(NULL AS TEXT) AS default_character_set_schema, \
         CAST(NULL AS TEXT) AS default_character_set_name, CAST(NULL AS TEXT) AS sql_path \
         FROM pg_catalog.pg_namespace n",
    ),
    (
        "tables",
        "SELECT current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
         CASE WHEN n.nspname IN ('pg_catalog', 'information_schema') THEN 'SYSTEM VIEW' \
              WHEN c.relkind = 'v' THEN 'VIEW' ELSE 'BASE TABLE' END AS table_type, \
         CAST(NULL AS TEXT) AS self_referencing_column_name, CAST(NULL AS TEXT) AS reference_generation, \
         CAST(NULL AS TEXT) AS user_defined_type_catalog, CAST(NULL AS TEXT) AS user_defined_type_schema, \
         CAST(NULL AS TEXT) AS user_defined_type_name, \
         CASE WHEN c.relkind = 'r' AND n.nspname = 'public' THEN 'YES' ELSE 'NO' END AS is_insertable_into, \
         'NO' AS is_typed, CAST(NULL AS TEXT) AS commit_action \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
         WHERE c.relkind IN ('r', 'v', 'p', 'f')",
    ),
    (
        "views",
        "SELECT current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
         pg_get_viewdef(c.oid) AS view_definition, 'NONE' AS check_option, 'NO' AS is_updatable, \
         'NO' AS is_insertable_into, 'NO' AS is_trigger_updatable, 'NO' AS is_trigger_deletable, \
         'NO' AS is_trigger_insertable_into \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
         WHERE c.relkind = 'v'",
    ),
    (
        "columns",
        "SELECT current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
         a.attname AS column_name, CAST(a.attnum AS INT) AS ordinal_position, CAST(NULL AS TEXT) AS column_default, \
         CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable, {DATA_TYPE} AS data_type, \
         CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 0 THEN CAST(a.atttypmod - 4 AS INT) END \
              AS character_maximum_length, \
         CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 0 THEN CAST((a.atttypmod - 4) * 4 AS INT) \
              WHEN t.typname IN ('text', 'varchar', 'bpchar') THEN 1073741824 END AS character_octet_length, \
         CASE t.typname WHEN 'int2' THEN 16 WHEN 'int4' THEN 32 WHEN 'int8' THEN 64 WHEN 'float4' THEN 24 \
              WHEN 'float8' THEN 53 WHEN 'numeric' THEN CASE WHEN a.atttypmod > 0 \
              THEN CAST((a.atttypmod - 4) / 65536 AS INT) END END AS numeric_precision, \
         CASE WHEN t.typname IN ('int2', 'int4', 'int8', 'numeric') THEN 10 \
              WHEN t.typname IN ('float4', 'float8') THEN 2 END AS numeric_precision_radix, \
         CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN 0 WHEN t.typname = 'numeric' AND a.atttypmod > 0 \
              THEN CAST((a.atttypmod - 4) % 65536 AS INT) END AS numeric_scale, \
         CASE WHEN t.typname IN ('time', 'timetz', 'timestamp', 'timestamptz') THEN 6 \
              WHEN t.typname = 'date' THEN 0 END AS datetime_precision, \
         CAST(NULL AS TEXT) AS interval_type, CAST(NULL AS INT) AS interval_precision, \
         CAST(NULL AS TEXT) AS character_set_catalog, CAST(NULL AS TEXT) AS character_set_schema, \
         CAST(NULL AS TEXT) AS character_set_name, CAST(NULL AS TEXT) AS collation_catalog, \
         CAST(NULL AS TEXT) AS collation_schema, CAST(NULL AS TEXT) AS collation_name, \
         current_database() AS domain_catalog, CAST(NULL AS TEXT) AS domain_schema, CAST(NULL AS TEXT) AS domain_name, \
         current_database() AS udt_catalog, 'pg_catalog' AS udt_schema, t.typname AS udt_name, \
         CAST(NULL AS TEXT) AS scope_catalog, CAST(NULL AS TEXT) AS scope_schema, CAST(NULL AS TEXT) AS scope_name, \
         CAST(NULL AS INT) AS maximum_cardinality, CAST(a.attnum AS TEXT) AS dtd_identifier, \
         'NO' AS is_self_referencing, 'NO' AS is_identity, CAST(NULL AS TEXT) AS identity_generation, \
         CAST(NULL AS TEXT) AS identity_start, CAST(NULL AS TEXT) AS identity_increment, \
         CAST(NULL AS TEXT) AS identity_maximum, CAST(NULL AS TEXT) AS identity_minimum, \
         CAST(NULL AS TEXT) AS identity_cycle, 'NEVER' AS is_generated, CAST(NULL AS TEXT) AS generation_expression, \
         CASE WHEN c.relkind = 'r' AND n.nspname = 'public' THEN 'YES' ELSE 'NO' END AS is_updatable \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON a.attrelid = c.oid \
         JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid JOIN pg_catalog.pg_type t ON a.atttypid = t.oid \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'p', 'f')",
    ),
    (
        "table_constraints",
        "SELECT current_database() AS constraint_catalog, n.nspname AS constraint_schema, con.conname AS constraint_name, \
         current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
         CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' WHEN 'f' THEN 'FOREIGN KEY' \
              WHEN 'c' THEN 'CHECK' END AS constraint_type, \
         'NO' AS is_deferrable, 'NO' AS initially_deferred, 'YES' AS enforced, CAST(NULL AS TEXT) AS nulls_distinct \
         FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON con.conrelid = c.oid \
         JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid",
    ),
    (
        "key_column_usage",
        "SELECT current_database() AS constraint_catalog, n.nspname AS constraint_schema, con.conname AS constraint_name, \
         current_database() AS table_catalog, n.nspname AS table_schema, c.relname AS table_name, \
         a.attname AS column_name, CAST(array_position(con.conkey, a.attnum) AS INT) AS ordinal_position, \
         CAST(NULL AS INT) AS position_in_unique_constraint \
         FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON con.conrelid = c.oid \
         JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND array_has(con.conkey, a.attnum) \
         WHERE con.contype IN ('p', 'u', 'f')",
    ),
];

/// Plans the views and returns the schema that holds them.
pub async fn schema(ctx: &SessionContext, catalog: &Arc<Catalog>) -> Result<Arc<dyn SchemaProvider>> {
    let schema = Arc::new(MemorySchemaProvider::new());
    for name in ["table_privileges", "role_table_grants"] {
        let grants = super::privileges::TablePrivileges::new(Arc::downgrade(catalog));
        schema.register_table(name.to_string(), Arc::new(grants))?;
    }
    for (name, sql) in VIEWS {
        let sql = sql.replace("{DATA_TYPE}", DATA_TYPE);
        let plan = ctx
            .state()
            .create_logical_plan(&sql)
            .await
            .map_err(|e| Error::Internal(format!("information_schema.{name}: {e}")))?;
        let view = ViewTable::new(plan, Some(sql));
        schema.register_table(name.to_string(), Arc::new(view))?;
    }
    Ok(schema)
}
