//! Discovering upstream tables: which tables a selection captures, with their columns and keys.

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::Queryable;

use super::*;

const SYSTEM_SCHEMAS: &str = "('mysql','information_schema','performance_schema','sys')";

/// Resolves the selection to tables and reads their columns and primary keys.
pub async fn discover(conn: &mut mysql_async::Conn, selection: &TableSelection) -> Result<Vec<TableSpec>> {
    let wanted: Vec<(String, String, String)> = match selection {
        TableSelection::Tables(list) => {
            let mut specs = Vec::new();
            for r in list {
                let spec = if r.is_pattern() { discover_shards(conn, r).await? } else { discover_one(conn, r).await? };
                if specs.iter().any(|s: &TableSpec| s.name == spec.name) {
                    return Err(Error::InvalidParameterValue(format!(
                        "two upstream tables would both be called \"{}\"; give one an alias with AS",
                        spec.name
                    )));
                }
                specs.push(spec);
            }
            return Ok(specs);
        }
        TableSelection::Schemas(schemas) => {
            let mut out = Vec::new();
            for s in schemas {
                let rows: Vec<(String, String)> = conn
                    .exec(
                        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                        (s,),
                    )
                    .await
                    .map_err(upstream)?;
                if rows.is_empty() {
                    return Err(Error::undefined("upstream schema (or it has no tables)", s.clone()));
                }
                out.extend(rows.into_iter().map(|(d, t)| {
                    let n = t.to_lowercase();
                    (d, t, n)
                }));
            }
            out
        }
        TableSelection::All => {
            let rows: Vec<(String, String)> = conn
                .query(format!(
                    "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
                     WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN {SYSTEM_SCHEMAS} \
                     ORDER BY TABLE_SCHEMA, TABLE_NAME"
                ))
                .await
                .map_err(upstream)?;
            rows.into_iter()
                .map(|(d, t)| {
                    let n = t.to_lowercase();
                    (d, t, n)
                })
                .collect()
        }
    };
    let mut specs = Vec::with_capacity(wanted.len());
    let mut names = HashSet::new();
    let mut schemas: HashMap<String, SchemaFacts> = HashMap::new();
    for (db, table, name) in wanted {
        if !names.insert(name.clone()) {
            return Err(Error::InvalidParameterValue(format!(
                "two upstream tables would both be called \"{name}\"; give one an alias with AS"
            )));
        }
        if !schemas.contains_key(&db) {
            let facts = SchemaFacts::read(conn, &db, None).await?;
            schemas.insert(db.clone(), facts);
        }
        specs.push(schemas[&db].spec(&db, &table, &name)?);
    }
    Ok(specs)
}

async fn discover_one(conn: &mut mysql_async::Conn, r: &TableRef) -> Result<TableSpec> {
    let found: Option<(String, String)> = conn
        .exec_first(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND TABLE_TYPE = 'BASE TABLE'",
            (&r.database, &r.table),
        )
        .await
        .map_err(upstream)?;
    let Some((db, t)) = found else {
        return Err(Error::UndefinedTable(format!(
            "{}.{} (upstream; check the name and the SELECT privilege)",
            r.database, r.table
        )));
    };
    let name = r.alias.clone().unwrap_or_else(|| t.to_lowercase());
    let mut spec = describe(conn, &db, &t, &name).await?;
    if let Some(col) = &r.table_name_column {
        add_table_name_column(&mut spec, col)?;
    }
    Ok(spec)
}

/// A pattern: every matching table, which must all have the same columns, into one table.
async fn discover_shards(conn: &mut mysql_async::Conn, r: &TableRef) -> Result<TableSpec> {
    let re = regex::Regex::new(&format!("^(?:{})$", r.table))
        .map_err(|e| Error::InvalidParameterValue(format!("bad table pattern {}: {e}", r.table)))?;
    let Some(name) = r.alias.clone() else {
        return Err(Error::InvalidParameterValue(format!(
            "the table pattern {}.{} needs a local name: add AS name",
            r.database, r.table
        )));
    };
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' \
             ORDER BY TABLE_NAME",
            (&r.database,),
        )
        .await
        .map_err(upstream)?;
    let shards: Vec<String> = tables.into_iter().filter(|t| re.is_match(t)).collect();
    let Some(first) = shards.first() else {
        return Err(Error::UndefinedTable(format!(
            "{}.{} (no upstream table matches the pattern)",
            r.database, r.table
        )));
    };
    let mut spec = describe(conn, &r.database, first, &name).await?;
    for shard in &shards[1..] {
        let other = describe(conn, &r.database, shard, &name).await?;
        if other.columns != spec.columns || other.key != spec.key {
            return Err(Error::InvalidParameterValue(format!(
                "shards {first} and {shard} of {}.{} have different columns or keys; they must be identical to be merged",
                r.database, r.table
            )));
        }
    }
    spec.table = r.table.clone();
    spec.shards = shards;
    if let Some(col) = &r.table_name_column {
        add_table_name_column(&mut spec, col)?;
    }
    Ok(spec)
}

pub(super) fn add_table_name_column(spec: &mut TableSpec, col: &str) -> Result<()> {
    if spec.columns.iter().any(|c| c.name == col) {
        return Err(Error::duplicate("column", col));
    }
    spec.columns.push(ColumnSpec {
        name: col.to_string(),
        kind: Kind::Text { latin1: false, charset: None, json: false },
        nullable: false,
        mysql_type: "upstream table name".into(),
    });
    if !spec.key.is_empty() {
        spec.key.push(spec.columns.len() - 1);
    }
    spec.table_name_column = true;
    Ok(())
}

type ColumnRow = (String, String, String, String, Option<u64>, Option<u64>, Option<String>);
/// A [`ColumnRow`] with its table's name first.
type TableColumnRow = (String, String, String, String, String, Option<u64>, Option<u64>, Option<String>);

/// Reads one table's columns and primary key.
pub async fn describe(conn: &mut mysql_async::Conn, db: &str, table: &str, name: &str) -> Result<TableSpec> {
    SchemaFacts::read(conn, db, Some(table)).await?.spec(db, table, name)
}

/// What `information_schema` says of one table or of a whole schema: columns, JSON checks and
/// primary keys by table, each read with one query — so capturing a schema of 10,000 tables
/// costs three queries, not 30,000 round trips.
#[derive(Default)]
struct SchemaFacts {
    columns: HashMap<String, Vec<ColumnRow>>,
    checks: HashMap<String, Vec<String>>,
    keys: HashMap<String, Vec<String>>,
}

impl SchemaFacts {
    async fn read(conn: &mut mysql_async::Conn, db: &str, table: Option<&str>) -> Result<SchemaFacts> {
        let which = |schema_column: &str| match table {
            Some(_) => format!("{schema_column} = ? AND TABLE_NAME = ?"),
            None => format!("{schema_column} = ?"),
        };
        let params = || match table {
            Some(t) => mysql_async::Params::Positional(vec![db.into(), t.into()]),
            None => mysql_async::Params::Positional(vec![db.into()]),
        };
        let mut facts = SchemaFacts::default();
        let rows: Vec<mysql_async::Row> = conn
            .exec(
                format!(
                    "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, \
                     NUMERIC_SCALE, CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE {} \
                     ORDER BY TABLE_NAME, ORDINAL_POSITION",
                    which("TABLE_SCHEMA")
                ),
                params(),
            )
            .await
            .map_err(upstream)?;
        for row in rows {
            let (t, c, dt, ct, nullable, precision, scale, charset): TableColumnRow = mysql_async::from_row_opt(row)
                .map_err(|e| Error::Internal(format!("information_schema.COLUMNS: {e}")))?;
            facts.columns.entry(t).or_default().push((c, dt, ct, nullable, precision, scale, charset));
        }
        // MariaDB's JSON is LONGTEXT with a `json_valid(col)` check named after the column.
        // MySQL's CHECK_CONSTRAINTS has no TABLE_NAME (its JSON columns say so in DATA_TYPE): an
        // error here only means there is nothing to find.
        let checks: Vec<(String, String)> = conn
            .exec(
                format!(
                    "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE {}",
                    which("CONSTRAINT_SCHEMA")
                ),
                params(),
            )
            .await
            .unwrap_or_default();
        for (t, clause) in checks {
            facts.checks.entry(t).or_default().push(clause.to_ascii_lowercase().replace(' ', ""));
        }
        let keys: Vec<(String, String)> = conn
            .exec(
                format!(
                    "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE {} AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION",
                    which("TABLE_SCHEMA")
                ),
                params(),
            )
            .await
            .map_err(upstream)?;
        for (t, c) in keys {
            facts.keys.entry(t).or_default().push(c);
        }
        Ok(facts)
    }

    /// Table `db.table`'s description, captured as `name`.
    fn spec(&self, db: &str, table: &str, name: &str) -> Result<TableSpec> {
        let rows = self.columns.get(table).cloned().unwrap_or_default();
        let mut columns: Vec<ColumnSpec> = rows
            .into_iter()
            .map(|(col, data_type, column_type, nullable, precision, scale, charset)| ColumnSpec {
                kind: Kind::from_column(
                    &data_type.to_lowercase(),
                    &column_type.to_lowercase(),
                    precision,
                    scale,
                    charset.as_deref(),
                ),
                name: col,
                nullable: nullable == "YES",
                mysql_type: column_type,
            })
            .collect();
        let checks = self.checks.get(table).map(Vec::as_slice).unwrap_or_default();
        for c in columns.iter_mut() {
            let checked =
                checks.iter().any(|clause| *clause == format!("json_valid(`{}`)", c.name.to_ascii_lowercase()));
            if let Kind::Text { json, .. } = &mut c.kind {
                *json |= checked;
            }
        }
        for c in &columns {
            if let Kind::Text { charset: Some(cs), .. } = &c.kind {
                if !Charset::supported(cs) {
                    return Err(Error::FeatureNotSupported(format!(
                        "column {}.{}.{} uses character set {cs}, whose binlog bytes Headwater cannot decode; \
                         convert it upstream (ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4) or leave the table out",
                        db, table, c.name
                    )));
                }
            }
        }
        let key_names = self.keys.get(table).map(Vec::as_slice).unwrap_or_default();
        let key = key_names.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
        Ok(TableSpec::new(db, table, name, columns, key))
    }
}
