//! What a captured table looks like upstream ([`TableSpec`]): found by [`discovery`], changed
//! by upstream `ALTER TABLE` through [`evolution`].

use serde::{Deserialize, Serialize};

use super::position::BinlogPosition;
use super::types::{cell_from_text, Cell, Charset, Kind};
use crate::error::{Error, Result};
use crate::ident::quote_ident;
pub use crate::source::selection::{TableRef, TableSelection};

mod discovery;
mod evolution;

pub use discovery::{describe, discover};
pub use evolution::{added_values, evolve, merge_shard_change, Evolution};

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
    /// A column holds the upstream table's name (`INCLUDE TABLE NAME AS col`): the last one,
    /// or the one at `table_name_at` once the table has gained columns after it.
    #[serde(default)]
    pub table_name_column: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_name_at: Option<usize>,
    /// For each upstream column (in local order), its position in the upstream table, when
    /// the two orders differ: a column added upstream with `FIRST`/`AFTER` is appended
    /// locally. Empty: the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_positions: Vec<usize>,
    /// The binlog position of the upstream `ALTER TABLE` that gave the table these columns:
    /// row events before it have the older shape (and are already applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<BinlogPosition>,
    /// Each time the table gained columns: the first catalog id given out after it, and the
    /// column count before it. Views are restored against the width they were created with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widened: Vec<(u64, usize)>,
    /// In one shard's description: the local columns (by index) this shard does not have
    /// upstream yet — another shard gained them with `ALTER TABLE` — and the value its rows
    /// get there (the value that ALTER gave existing rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<(usize, Cell)>,
    /// Merged shards whose upstream description differs from this one (they lag an ALTER
    /// TABLE another shard has had, or followed one with columns in another place), by
    /// upstream table name; every other shard is described by this spec.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub shard_specs: std::collections::BTreeMap<String, TableSpec>,
}

impl TableSpec {
    /// Upstream table `db.table` captured as local table `name`, as described upstream.
    pub fn new(db: &str, table: &str, name: &str, columns: Vec<ColumnSpec>, key: Vec<usize>) -> Self {
        TableSpec {
            database: db.to_string(),
            table: table.to_string(),
            name: name.to_string(),
            columns,
            key,
            shards: vec![],
            table_name_column: false,
            table_name_at: None,
            upstream_positions: vec![],
            since: None,
            widened: vec![],
            absent: vec![],
            shard_specs: Default::default(),
        }
    }

    /// The upstream tables whose rows this table holds.
    pub fn upstream_tables(&self) -> Vec<String> {
        if self.shards.is_empty() {
            vec![self.table.clone()]
        } else {
            self.shards.clone()
        }
    }

    /// The local index of the table-name column (`INCLUDE TABLE NAME`).
    pub fn table_name_index(&self) -> Option<usize> {
        self.table_name_column.then(|| self.table_name_at.unwrap_or(self.columns.len() - 1))
    }

    /// Whether local column `i` is read from upstream (not the table-name column, not a
    /// column this shard lacks).
    pub fn is_upstream(&self, i: usize) -> bool {
        Some(i) != self.table_name_index() && !self.absent.iter().any(|(a, _)| *a == i)
    }

    /// The local indexes of the columns read from upstream, in local order. "Upstream column
    /// `i`" elsewhere means the `i`-th of these.
    pub fn upstream_indexes(&self) -> Vec<usize> {
        (0..self.columns.len()).filter(|&i| self.is_upstream(i)).collect()
    }

    /// How many columns are read from upstream (checked against every table map).
    pub fn upstream_count(&self) -> usize {
        self.columns.len() - usize::from(self.table_name_column) - self.absent.len()
    }

    /// The columns read from upstream, in local order.
    pub fn upstream_columns(&self) -> Vec<&ColumnSpec> {
        self.upstream_indexes().into_iter().map(|i| &self.columns[i]).collect()
    }

    /// The local columns every row of `upstream_table` gets without reading them: the
    /// table name, and the columns this shard lacks.
    pub fn fixed_cells(&self, upstream_table: &str) -> Vec<(usize, Cell)> {
        let name = self.table_name_index().map(|i| (i, Cell::Text(upstream_table.to_string())));
        name.into_iter().chain(self.absent.iter().cloned()).collect()
    }

    /// The description of upstream table `upstream_table`, one of this table's shards.
    pub fn for_shard(&self, upstream_table: &str) -> Option<&TableSpec> {
        self.shard_specs.get(upstream_table)
    }

    /// Where upstream column `i` (local order) is in the binlog's row images.
    pub fn upstream_position(&self, i: usize) -> usize {
        self.upstream_positions.get(i).copied().unwrap_or(i)
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

/// One MySQL identifier in backticks.
pub fn backticked(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `` `db`.`table` ``
pub fn quote_upstream(db: &str, table: &str) -> String {
    format!("{}.{}", backticked(db), backticked(table))
}

/// An error talking to the upstream server, worded for the user.
pub fn upstream(e: mysql_async::Error) -> Error {
    Error::ConnectionException { sqlstate: "08000", message: format!("upstream MySQL error: {e}") }
}
