//! What executing a statement produces, before the wire encodes it.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use crate::error::Result;

/// A message for the client beside a statement's result (a Postgres NoticeResponse): what
/// `DROP ... CASCADE` dropped too, a read of a table whose source is in error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `NOTICE` or `WARNING`.
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Notice {
    /// A NOTICE (SQLSTATE 00000).
    pub fn info(message: String) -> Self {
        Notice { severity: "NOTICE", code: "00000", message, detail: None, hint: None }
    }

    /// A WARNING with `code`.
    pub fn warning(code: &'static str, message: String, hint: Option<String>) -> Self {
        Notice { severity: "WARNING", code, message, detail: None, hint }
    }
}

/// The outcome of one statement.
pub enum QueryResult {
    /// Rows, streamed.
    Rows { schema: SchemaRef, stream: SendableRecordBatchStream },
    /// A command and its tag (`CREATE TABLE`, `INSERT 0 3` is tag `INSERT` with `rows`).
    Command { tag: String, rows: Option<usize> },
    /// The rows of a DML statement's `RETURNING`, completed with the statement's tag
    /// (`INSERT 0 2`, `UPDATE 2`).
    Returned { tag: String, batch: RecordBatch },
    /// `BEGIN` and friends: the session is now in a transaction block.
    TransactionStart(String),
    /// `COMMIT` / `ROLLBACK`: the transaction block ended.
    TransactionEnd(String),
    /// `COPY ... TO STDOUT`: rows to write as COPY data.
    CopyOut { format: super::copy::CopyFormat, schema: SchemaRef, stream: SendableRecordBatchStream },
    /// `COPY ... FROM STDIN`: the client sends the data next ([`super::Session::copy_from_client`]).
    CopyIn(super::copy::CopyIn),
}

impl std::fmt::Debug for QueryResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryResult::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            QueryResult::Command { tag, rows } => write!(f, "Command({tag}, {rows:?})"),
            QueryResult::Returned { tag, batch } => write!(f, "Returned({tag}, {} rows)", batch.num_rows()),
            QueryResult::TransactionStart(t) | QueryResult::TransactionEnd(t) => {
                write!(f, "Transaction({t})")
            }
            QueryResult::CopyOut { schema, .. } => write!(f, "CopyOut({schema:?})"),
            QueryResult::CopyIn(c) => write!(f, "CopyIn({c:?})"),
        }
    }
}

impl QueryResult {
    /// A command without a row count.
    pub fn command(tag: &str) -> Self {
        QueryResult::Command { tag: tag.to_string(), rows: None }
    }

    /// Rows already in memory.
    pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        let stream = futures::stream::iter(batches.into_iter().map(Ok));
        QueryResult::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)) }
    }

    /// A text table with the given column names, for SHOW statements.
    pub fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> Result<Self> {
        let schema = text_schema(columns);
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|c| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[c].as_str()))) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        Ok(Self::from_batches(schema, vec![batch]))
    }
}

/// A schema of non-null text columns.
pub fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, false)).collect::<Vec<_>>()))
}
