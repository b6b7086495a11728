//! Statement results and errors → pgwire responses.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use crate::error::Error;
use crate::sql::QueryResult;

/// Encodes a result; rows stream to the client as DataFusion produces them.
pub fn response(result: QueryResult, format: &Format, options: Arc<FormatOptions>) -> PgWireResult<Response> {
    Ok(match result {
        QueryResult::Rows { schema, stream } => {
            let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, Some(options))?);
            let row_fields = fields.clone();
            let rows = stream
                .map(move |batch| {
                    let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                        Ok(b) => encode_recordbatch(row_fields.clone(), b),
                        Err(e) => Box::new(std::iter::once(Err(error(Error::Query(e))))),
                    };
                    futures::stream::iter(rows)
                })
                .flatten();
            Response::Query(QueryResponse::new(fields, rows))
        }
        QueryResult::Command { tag, rows } => {
            let mut t = Tag::new(&tag);
            if tag == "INSERT" {
                t = t.with_oid(0);
            }
            if let Some(n) = rows {
                t = t.with_rows(n);
            }
            Response::Execution(t)
        }
        QueryResult::TransactionStart(tag) => Response::TransactionStart(Tag::new(&tag)),
        QueryResult::TransactionEnd(tag) => Response::TransactionEnd(Tag::new(&tag)),
    })
}

/// An [`Error`] as a Postgres `ErrorResponse`.
pub fn error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

/// The fields of the `ErrorResponse` for `e`.
pub fn error_info(e: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.to_string());
    info.hint = e.hint();
    if e.sqlstate() == "XX000" {
        tracing::warn!("internal error: {e}");
    }
    info
}
