//! Discovering upstream tables: which tables a source captures and their columns and keys.

use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use super::types::{Charset, Kind};
use crate::error::{Error, Result};
use crate::sql::quote_ident;

/// One entry of `FOR TABLES (...)` / `ALTER SOURCE ... ADD TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRef {
    pub database: String,
    /// A table name, or a regular expression matching the names of shards to merge
    /// (`orders_[0-9]+`; it must match whole names).
    pub table: String,
    /// The local table's name (required for a pattern).
    pub alias: Option<String>,
    /// `INCLUDE TABLE NAME AS col`: a column with the upstream table name, part of the key.
    pub table_name_column: Option<String>,
}

impl TableRef {
    /// A plain `db.table`.
    pub fn new(database: &str, table: &str, alias: Option<&str>) -> Self {
        TableRef {
            database: database.into(),
            table: table.into(),
            alias: alias.map(Into::into),
            table_name_column: None,
        }
    }

    /// Whether `table` is a pattern rather than a name.
    pub fn is_pattern(&self) -> bool {
        self.table.contains(|c: char| "[]()*+?|^$\\{}".contains(c))
    }
}

/// Which upstream tables a source captures.
#[derive(Debug, Clone, PartialEq)]
pub enum TableSelection {
    /// `FOR TABLES (db.t [AS name] [INCLUDE TABLE NAME AS col], ...)`
    Tables(Vec<TableRef>),
    /// `FOR SCHEMAS (db, ...)`
    Schemas(Vec<String>),
    /// `FOR ALL TABLES` (every base table outside the system schemas)
    All,
}

/// One captured column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: Kind,
    pub nullable: bool,
    /// The upstream `COLUMN_TYPE`, for messages and docs.
    pub mysql_type: String,
}

/// One captured table: where it comes from and what it looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub database: String,
    pub table: String,
    /// The local table's name.
    pub name: String,
    pub columns: Vec<ColumnSpec>,
    /// Primary-key column indexes; empty for a table captured as a multiset.
    pub key: Vec<usize>,
    /// Upstream tables merged into this one (sharding); empty means just `table`.
    #[serde(default)]
    pub shards: Vec<String>,
    /// The last column holds the upstream table's name (`INCLUDE TABLE NAME AS col`).
    #[serde(default)]
    pub table_name_column: bool,
}

impl TableSpec {
    /// The upstream tables whose rows this table holds.
    pub fn upstream_tables(&self) -> Vec<String> {
        if self.shards.is_empty() {
            vec![self.table.clone()]
        } else {
            self.shards.clone()
        }
    }

    /// The columns read from upstream (all but the table-name column).
    pub fn upstream_columns(&self) -> &[ColumnSpec] {
        let n = self.columns.len() - usize::from(self.table_name_column);
        &self.columns[..n]
    }

    /// The local table as SQL, for `SHOW CREATE TABLE`.
    pub fn create_sql(&self) -> String {
        let mut cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                format!("{} {}{}", quote_ident(&c.name), c.kind.sql_type(), if c.nullable { "" } else { " NOT NULL" })
            })
            .collect();
        if !self.key.is_empty() {
            let key: Vec<String> = self.key.iter().map(|&i| quote_ident(&self.columns[i].name)).collect();
            cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
        }
        format!("CREATE TABLE {} ({})", quote_ident(&self.name), cols.join(", "))
    }
}

/// `` `db`.`table` ``
pub fn quote_upstream(db: &str, table: &str) -> String {
    format!("`{}`.`{}`", db.replace('`', "``"), table.replace('`', "``"))
}

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
    for (db, table, name) in wanted {
        if specs.iter().any(|s: &TableSpec| s.name == name) {
            return Err(Error::InvalidParameterValue(format!(
                "two upstream tables would both be called \"{name}\"; give one an alias with AS"
            )));
        }
        specs.push(describe(conn, &db, &table, &name).await?);
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

fn add_table_name_column(spec: &mut TableSpec, col: &str) -> Result<()> {
    if spec.columns.iter().any(|c| c.name == col) {
        return Err(Error::duplicate("column", col));
    }
    spec.columns.push(ColumnSpec {
        name: col.to_string(),
        kind: Kind::Text { latin1: false, charset: None },
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

/// Reads one table's columns and primary key.
pub async fn describe(conn: &mut mysql_async::Conn, db: &str, table: &str, name: &str) -> Result<TableSpec> {
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, \
             CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(upstream)?;
    let columns: Vec<ColumnSpec> = rows
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
    let key_names: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(upstream)?;
    let key = key_names.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
    Ok(TableSpec {
        database: db.to_string(),
        table: table.to_string(),
        name: name.to_string(),
        columns,
        key,
        shards: vec![],
        table_name_column: false,
    })
}

/// An error talking to the upstream server, worded for the user.
pub fn upstream(e: mysql_async::Error) -> Error {
    Error::DataException { sqlstate: "08000", message: format!("upstream MySQL error: {e}") }
}
