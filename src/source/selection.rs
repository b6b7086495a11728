//! Which upstream tables a source captures: the `FOR ...` clause of `CREATE SOURCE` and the
//! tables of `ALTER SOURCE ... ADD TABLE`, as every source kind receives them.

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
