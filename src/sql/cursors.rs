//! Session-scoped names: SQL prepared statements (`PREPARE` / `EXECUTE` / `DEALLOCATE`) and
//! cursors (`DECLARE` / `FETCH` / `CLOSE`), as Postgres has them.
//!
//! - A prepared statement keeps its parsed statement and declared parameter types; `EXECUTE
//!   name(args)` evaluates the arguments (cast to the declared types) and runs the statement
//!   with them bound to `$1..$n`, exactly as the extended protocol binds parameters.
//! - A cursor keeps its query's result stream and reads it forward as `FETCH` asks: rows are
//!   computed as they are fetched (psycopg2's named cursors and `DECLARE ... FETCH 1000` loops
//!   over big tables hold one batch, not the result). The stream reads the snapshot taken at
//!   `DECLARE`. Without `WITH HOLD` a cursor lives until its transaction block ends, and needs
//!   one (25P01), as in Postgres. Only forward fetches: `SCROLL`, `BACKWARD`, `PRIOR`,
//!   `ABSOLUTE` are refused with 0A000.

use std::collections::HashMap;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CloseCursor, DataType as SqlType, Expr, FetchDirection, Ident, Query, Statement, Value,
};
use futures::StreamExt;

use super::{QueryResult, Session};
use crate::error::{Error, Result};

/// A `PREPARE`d statement.
#[derive(Debug, Clone)]
struct Prepared {
    statement: Statement,
    param_types: Vec<SqlType>,
}

/// An open cursor: the rest of its result.
struct Cursor {
    schema: SchemaRef,
    stream: Option<SendableRecordBatchStream>,
    /// Rows read from the stream and not yet fetched.
    pending: Option<RecordBatch>,
    /// Declared `WITH HOLD`: outlives its transaction block.
    hold: bool,
}

/// The session's prepared statements and cursors.
#[derive(Default)]
pub struct Named {
    prepared: std::sync::Mutex<HashMap<String, Prepared>>,
    cursors: tokio::sync::Mutex<HashMap<String, Cursor>>,
}

fn name_of(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

impl Named {
    /// The transaction block ended: cursors without `WITH HOLD` close.
    pub fn end_block(&self) {
        if let Ok(mut cursors) = self.cursors.try_lock() {
            cursors.retain(|_, c| c.hold);
        }
    }

    /// The schema `FETCH` from `name` returns (for Describe).
    pub async fn cursor_schema(&self, name: &Ident) -> Option<SchemaRef> {
        self.cursors.lock().await.get(&name_of(name)).map(|c| c.schema.clone())
    }
}

/// `PREPARE`, `EXECUTE`, `DEALLOCATE`.
pub(super) async fn prepared(s: &Session, stmt: &Statement) -> Result<QueryResult> {
    let named = s.named();
    match stmt {
        Statement::Prepare { name, data_types, statement } => {
            let key = name_of(name);
            let mut all = named.prepared.lock().map_err(|_| Error::Internal("prepared statements lock".into()))?;
            if all.contains_key(&key) {
                return Err(Error::DuplicateObject { kind: "prepared statement", name: key });
            }
            // Parsed again on its own, so it gets every rewrite a statement sent alone gets.
            let statement = match s.engine().parser().parse(&statement.to_string())?.pop() {
                Some(super::parser::HwStatement::Sql(inner)) => *inner,
                _ => return Err(Error::FeatureNotSupported(format!("PREPARE of {}", first_words(statement)))),
            };
            all.insert(key, Prepared { statement, param_types: data_types.clone() });
            Ok(QueryResult::command("PREPARE"))
        }
        Statement::Execute { name: Some(name), parameters, using, into, .. } => {
            if !using.is_empty() || !into.is_empty() {
                return Err(Error::FeatureNotSupported("EXECUTE ... USING / INTO".into()));
            }
            let key = name.to_string().to_lowercase();
            let prepared = named
                .prepared
                .lock()
                .map_err(|_| Error::Internal("prepared statements lock".into()))?
                .get(&key)
                .cloned()
                .ok_or_else(|| Error::UndefinedObject { kind: "prepared statement", name: key.clone() })?;
            if !prepared.param_types.is_empty() && prepared.param_types.len() != parameters.len() {
                return Err(Error::Syntax(format!(
                    "wrong number of parameters for prepared statement \"{key}\": expected {}, got {}",
                    prepared.param_types.len(),
                    parameters.len()
                )));
            }
            let values = evaluate(s, parameters, &prepared.param_types).await?;
            let params = (!values.is_empty()).then(|| ParamValues::List(values.into_iter().map(Into::into).collect()));
            Box::pin(s.execute_prepared(&prepared.statement, params.as_ref())).await
        }
        Statement::Deallocate { name, .. } => {
            let key = name_of(name);
            let mut all = named.prepared.lock().map_err(|_| Error::Internal("prepared statements lock".into()))?;
            if key == "all" && name.quote_style.is_none() {
                all.clear();
            } else {
                // A name only the extended protocol knows (psycopg 3 and some poolers
                // deallocate theirs with SQL) is not an error here.
                all.remove(&key);
            }
            Ok(QueryResult::command("DEALLOCATE"))
        }
        other => Err(Error::Internal(format!("not a prepared-statement command: {other}"))),
    }
}

fn first_words(stmt: &Statement) -> String {
    stmt.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// `EXECUTE`'s arguments as values, each cast to its declared type.
async fn evaluate(s: &Session, args: &[Expr], types: &[SqlType]) -> Result<Vec<ScalarValue>> {
    if args.is_empty() {
        return Ok(vec![]);
    }
    let items: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, e)| match types.get(i) {
            Some(t) => format!("CAST({e} AS {t}) AS p{i}"),
            None => format!("{e} AS p{i}"),
        })
        .collect();
    let sql = format!("SELECT {}", items.join(", "));
    let stmt = match s.engine().parser().parse(&sql)?.pop() {
        Some(super::parser::HwStatement::Sql(inner)) => *inner,
        _ => return Err(Error::Internal("EXECUTE arguments did not parse".into())),
    };
    let QueryResult::Rows { schema, stream } = Box::pin(s.execute_prepared(&stmt, None)).await? else {
        return Err(Error::Internal("EXECUTE arguments did not evaluate to a row".into()));
    };
    let batches: Vec<RecordBatch> =
        stream.collect::<Vec<_>>().await.into_iter().collect::<std::result::Result<_, _>>()?;
    let row = concat_batches(&schema, &batches)?;
    (0..row.num_columns()).map(|c| ScalarValue::try_from_array(row.column(c), 0).map_err(Error::from)).collect()
}

/// `DECLARE`, `FETCH`, `CLOSE`.
pub(super) async fn cursor(
    s: &Session,
    stmt: &Statement,
    params: Option<&ParamValues>,
    in_block: bool,
) -> Result<QueryResult> {
    let named = s.named();
    match stmt {
        Statement::Declare { stmts } => {
            let [declare] = stmts.as_slice() else {
                return Err(Error::FeatureNotSupported("DECLARE of several names".into()));
            };
            let (Some(query), [name]) = (&declare.for_query, declare.names.as_slice()) else {
                return Err(Error::FeatureNotSupported("DECLARE without CURSOR FOR query".into()));
            };
            if declare.scroll == Some(true) {
                return Err(Error::FeatureNotSupported("SCROLL cursors (fetch forward only)".into()));
            }
            let hold = declare.hold == Some(true);
            if !hold && !in_block {
                return Err(Error::NoActiveTransaction("DECLARE CURSOR can only be used in transaction blocks".into()));
            }
            let key = name_of(name);
            if named.cursors.lock().await.contains_key(&key) {
                return Err(Error::DuplicateObject { kind: "cursor", name: key });
            }
            let (schema, stream) = open(s, query, params).await?;
            let cursor = Cursor { schema, stream: Some(stream), pending: None, hold };
            named.cursors.lock().await.insert(key, cursor);
            Ok(QueryResult::command("DECLARE CURSOR"))
        }
        Statement::Fetch { name, direction, into, .. } => {
            if into.is_some() {
                return Err(Error::FeatureNotSupported("FETCH ... INTO".into()));
            }
            let count = forward_count(direction)?;
            let key = name_of(name);
            let mut cursors = named.cursors.lock().await;
            let cursor =
                cursors.get_mut(&key).ok_or_else(|| Error::UndefinedObject { kind: "cursor", name: key.clone() })?;
            let batch = cursor.next(count).await?;
            Ok(QueryResult::Returned { tag: "FETCH".into(), batch })
        }
        Statement::Close { cursor } => {
            let mut cursors = named.cursors.lock().await;
            match cursor {
                CloseCursor::All => cursors.clear(),
                CloseCursor::Specific { name } => {
                    let key = name_of(name);
                    cursors.remove(&key).ok_or(Error::UndefinedObject { kind: "cursor", name: key })?;
                }
            }
            Ok(QueryResult::command("CLOSE CURSOR"))
        }
        other => Err(Error::Internal(format!("not a cursor command: {other}"))),
    }
}

async fn open(
    s: &Session,
    query: &Query,
    params: Option<&ParamValues>,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let stmt = Statement::Query(Box::new(query.clone()));
    match Box::pin(s.execute_prepared(&stmt, params)).await? {
        QueryResult::Rows { schema, stream } => Ok((schema, stream)),
        _ => Err(Error::Internal("a cursor's query gave no rows".into())),
    }
}

/// How many rows a forward `FETCH` reads (`None`: all).
fn forward_count(direction: &FetchDirection) -> Result<Option<usize>> {
    let number = |v: &datafusion::sql::sqlparser::ast::ValueWithSpan| -> Result<i64> {
        match &v.value {
            Value::Number(n, _) => n.parse::<i64>().map_err(|_| Error::Syntax(format!("bad FETCH count {n}"))),
            other => Err(Error::Syntax(format!("bad FETCH count {other}"))),
        }
    };
    let forward = |n: i64| -> Result<Option<usize>> {
        if n < 0 {
            Err(Error::FeatureNotSupported("FETCH with a negative count (cursors fetch forward only)".into()))
        } else {
            Ok(Some(n as usize))
        }
    };
    match direction {
        FetchDirection::Next | FetchDirection::Forward { limit: None } => Ok(Some(1)),
        FetchDirection::Count { limit } | FetchDirection::Forward { limit: Some(limit) } => forward(number(limit)?),
        FetchDirection::All | FetchDirection::ForwardAll => Ok(None),
        FetchDirection::Relative { limit } => forward(number(limit)?),
        other => Err(Error::FeatureNotSupported(format!("FETCH {other} (cursors fetch forward only)"))),
    }
}

impl Cursor {
    /// The next `count` rows (all the rest for `None`).
    async fn next(&mut self, count: Option<usize>) -> Result<RecordBatch> {
        let want = count.unwrap_or(usize::MAX);
        let mut parts: Vec<RecordBatch> = Vec::new();
        let mut have = 0usize;
        while have < want {
            let batch = match self.pending.take() {
                Some(b) => b,
                None => match self.stream.as_mut() {
                    None => break,
                    Some(stream) => match stream.next().await {
                        Some(b) => b?,
                        None => {
                            self.stream = None;
                            break;
                        }
                    },
                },
            };
            let take = (want - have).min(batch.num_rows());
            if take < batch.num_rows() {
                self.pending = Some(batch.slice(take, batch.num_rows() - take));
            }
            have += take;
            parts.push(batch.slice(0, take));
        }
        Ok(concat_batches(&self.schema, &parts)?)
    }
}
