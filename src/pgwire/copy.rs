//! COPY on the wire: `TO STDOUT` as CopyData lines built from the text values a query would
//! send (so every type reads as in a SELECT); `FROM STDIN` as the data collected from the
//! client's CopyData messages and handed to the session at CopyDone.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::DataRow;
use pgwire::messages::PgWireBackendMessage;

use super::encode::{error, response};
use super::handler::StatementParser;
use crate::error::Error;
use crate::sql::{CopyFormat, CopyIn, QueryResult, Session};

/// The most COPY data one statement takes: it is read whole before the rows are written
/// (one atomic write, as INSERT), so the bound is memory. Larger loads: several COPYs.
pub const MAX_COPY_BYTES: usize = 256 << 20;

/// A `COPY ... FROM STDIN` receiving data.
pub struct Receiving {
    copy: CopyIn,
    data: Vec<u8>,
    /// Past [`MAX_COPY_BYTES`]: the rest is read and dropped, and CopyDone answers 54000.
    too_large: bool,
}

impl Receiving {
    pub fn new(copy: CopyIn) -> Self {
        Receiving { copy, data: Vec::new(), too_large: false }
    }
}

/// The values of one text-format data row (`None`: NULL).
fn row_values(row: &DataRow) -> Vec<Option<&[u8]>> {
    let mut out = Vec::with_capacity(row.field_count.max(0) as usize);
    let data = &row.data[..];
    let mut at = 0;
    for _ in 0..row.field_count {
        let Some(len) = data.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else { break };
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            let end = (at + len as usize).min(data.len());
            out.push(Some(&data[at..end]));
            at = end;
        }
    }
    out
}

/// `COPY ... TO STDOUT`: the rows as COPY data.
pub fn copy_out(
    format: CopyFormat,
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    session: &Session,
) -> PgWireResult<Response> {
    let columns = schema.fields().len();
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let Response::Query(mut rows) = response(QueryResult::Rows { schema, stream }, &Format::UnifiedText, session)?
    else {
        return Err(error(Error::Internal("COPY rows did not encode as rows".into())));
    };
    let data_rows = std::mem::replace(rows.data_rows(), Box::pin(futures::stream::empty()));
    let header = format.header_line(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let lines = data_rows.map(move |row| row.map(|r| CopyData::new(Bytes::from(format.line(&row_values(&r))))));
    let header = futures::stream::iter(header.map(|h| Ok(CopyData::new(Bytes::from(h)))));
    Ok(Response::CopyOut(CopyResponse::new(0, columns, header.chain(lines))))
}

/// `COPY ... FROM STDIN`: ask the client for the data (text format, every column).
pub fn copy_in_response(copy: &CopyIn) -> Response {
    Response::CopyIn(CopyResponse::new(0, copy.columns.len(), futures::stream::empty()))
}

fn no_copy() -> PgWireError {
    error(Error::Internal("COPY data without a COPY FROM STDIN".into()))
}

#[async_trait]
impl CopyHandler for StatementParser {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut slot = self.copy_in.lock().unwrap_or_else(|p| p.into_inner());
        let receiving = slot.as_mut().ok_or_else(no_copy)?;
        if receiving.data.len() + copy_data.data.len() > MAX_COPY_BYTES {
            receiving.too_large = true;
            receiving.data = Vec::new();
        }
        if !receiving.too_large {
            receiving.data.extend_from_slice(&copy_data.data);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let receiving = self.copy_in.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or_else(no_copy)?;
        if receiving.too_large {
            return Err(error(Error::ProgramLimitExceeded(format!(
                "COPY data larger than {} MiB: split it into several COPY statements",
                MAX_COPY_BYTES >> 20
            ))));
        }
        let n = self.session().copy_from_client(&receiving.copy, &receiving.data).await.map_err(error)?;
        let tag = Tag::new("COPY").with_rows(n);
        client.send(PgWireBackendMessage::CommandComplete(tag.into())).await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.copy_in.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.session().fail_block();
        error(Error::OperatorIntervention(format!("COPY from stdin failed: {}", fail.message)))
    }
}
