//! One connection's handlers: simple and extended query protocol over one [`Session`].

use std::fmt::Debug;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use futures::{Sink, SinkExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::DEFAULT_NAME;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler, PgWireServerHandlers, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::extendedquery::{Bind, BindComplete, Execute};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use super::batched::Batched;
use super::cancel::{CancelToken, Cancels};
use super::encode::{error, error_info, response};
use super::startup::{AuthMode, Startup};
use crate::error::{Error, Result};
use crate::sql::activity::Backend;
use crate::sql::{HwStatement, QueryResult, Session};

/// A statement prepared with Parse: parsed once, described once.
#[derive(Clone, Debug)]
pub struct Prepared {
    statement: HwStatement,
    param_types: Vec<Option<datafusion::arrow::datatypes::DataType>>,
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
    /// A point lookup by key, answered without the general planner (`sql::point`).
    point: Option<Arc<crate::sql::PointQuery>>,
}

/// What the accept loop and the handlers share about one connection.
#[derive(Default)]
pub struct Lifecycle {
    /// The client has logged in (`--authentication-timeout` no longer applies).
    pub authenticated: AtomicBool,
    /// `pg_terminate_backend`: the accept loop closes the connection.
    pub terminate: tokio::sync::Notify,
    /// The session as `pg_stat_activity` lists it, once logged in.
    pub backend: OnceLock<Arc<Backend>>,
    /// A second handle on the client's socket, to notice while a statement runs that the
    /// client went away ([`super::peer`]).
    pub peer: OnceLock<super::peer::Peer>,
}

/// Everything pgwire needs for one client connection.
pub struct Connection {
    pub(super) parser: Arc<StatementParser>,
    pub(super) startup: Arc<Startup>,
    pub(super) cancels: Arc<Cancels>,
}

impl Connection {
    /// Handlers over a fresh session, authenticating with `auth`; `life` is shared with the
    /// accept loop.
    pub fn new(session: Session, auth: AuthMode, cancels: Arc<Cancels>, life: Arc<Lifecycle>) -> Self {
        let session = Arc::new(session);
        let token = Arc::new(CancelToken::default());
        let startup = Arc::new(Startup::new(auth, session.clone(), cancels.clone(), token.clone(), life.clone()));
        let parser = StatementParser { session, token, life, copy_in: Default::default() };
        Connection { parser: Arc::new(parser), startup, cancels }
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.parser.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.parser.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancels.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LoginErrors)
    }
}

/// Words a failed login like Postgres, naming the user from the startup packet (SCRAM's own
/// message carries an empty user name).
struct LoginErrors;

impl ErrorHandler for LoginErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        if let PgWireError::InvalidPassword(_) = error {
            let user = client.metadata().get(pgwire::api::METADATA_USER).cloned().unwrap_or_default();
            tracing::info!(user, peer = %client.socket_addr(), "password authentication failed");
            super::throttle::THROTTLE.failed(&client.socket_addr().ip().to_string());
            let info = pgwire::error::ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!("password authentication failed for user \"{user}\""),
            );
            *error = PgWireError::UserError(Box::new(info));
        }
    }
}

/// `INSERT ... VALUES`: its parameters are only stored (Postgres's assignment casts apply).
fn only_stores(statement: &HwStatement) -> bool {
    use datafusion::sql::sqlparser::ast::{SetExpr, Statement};
    let HwStatement::Sql(stmt) = statement else { return false };
    let Statement::Insert(insert) = stmt.as_ref() else { return false };
    insert.source.as_ref().is_some_and(|q| matches!(q.body.as_ref(), SetExpr::Values(_)))
}

/// A statement whose text was not UTF-8 (`framing` rewrote it): 22021, as Postgres.
fn invalid_encoding(message: &str) -> PgWireError {
    let info = pgwire::error::ErrorInfo::new("ERROR".into(), "22021".into(), message.to_owned());
    PgWireError::UserError(Box::new(info))
}

/// Parses for the extended protocol and executes for both protocols.
pub struct StatementParser {
    session: Arc<Session>,
    token: Arc<CancelToken>,
    life: Arc<Lifecycle>,
    /// A `COPY ... FROM STDIN` receiving its data ([`super::copy`]).
    pub(super) copy_in: std::sync::Mutex<Option<super::copy::Receiving>>,
}

/// The `oid[]` parameter of a [`HwStatement::ClientQuery`], as a list of BIGINT.
fn oid_array_parameter(portal: &Portal<Prepared>) -> PgWireResult<ParamValues> {
    let oids = portal.parameter::<Vec<Option<u32>>>(0, &Type::OID_ARRAY)?.unwrap_or_default();
    let values: Vec<ScalarValue> = oids.into_iter().map(|o| ScalarValue::Int64(o.map(i64::from))).collect();
    let list =
        ScalarValue::List(ScalarValue::new_list_nullable(&values, &datafusion::arrow::datatypes::DataType::Int64));
    Ok(ParamValues::List(vec![list.into()]))
}

/// The settings Postgres reports to the client (ParameterStatus) whenever they change.
const REPORTED: &[(&str, &str)] = &[
    ("TimeZone", "timezone"),
    ("DateStyle", "datestyle"),
    ("IntervalStyle", "intervalstyle"),
    ("application_name", "application_name"),
    ("client_encoding", "client_encoding"),
    ("standard_conforming_strings", "standard_conforming_strings"),
    ("search_path", "search_path"),
];

impl StatementParser {
    /// Executes one statement; a cancel request or the session's `statement_timeout` stops it
    /// with 57014, also while its rows stream.
    /// The response to a statement's result; a `COPY ... FROM STDIN` starts receiving.
    fn respond(&self, result: QueryResult, format: &Format) -> PgWireResult<Response> {
        if let QueryResult::CopyIn(copy) = &result {
            *self.copy_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(super::copy::Receiving::new(copy.clone()));
        }
        response(result, format, &self.session)
    }

    /// The session, for the COPY handler.
    pub(super) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    async fn run<C>(&self, client: &mut C, stmt: &HwStatement, params: Option<&ParamValues>) -> Result<QueryResult>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(backend) = self.life.backend.get().cloned() else {
            return self.run_statement(client, stmt, params).await;
        };
        backend.started(activity_text(stmt));
        match self.run_statement(client, stmt, params).await {
            // Active until its rows are sent: that is where a query does most of its work.
            Ok(QueryResult::Rows { schema, stream }) => {
                Ok(QueryResult::Rows { schema, stream: Box::pin(Tracked { inner: stream, backend }) })
            }
            other => {
                backend.finished();
                other
            }
        }
    }

    async fn run_statement<C>(
        &self,
        client: &mut C,
        stmt: &HwStatement,
        params: Option<&ParamValues>,
    ) -> Result<QueryResult>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let start = self.token.epoch();
        let deadline = self.session.statement_timeout().map(|d| tokio::time::Instant::now() + d);
        let reported = matches!(stmt, HwStatement::Sql(s) if changes_settings(s)).then(|| self.reported());
        let result = tokio::select! {
            r = self.session.execute(stmt, params) => r,
            _ = self.token.clone().cancelled_since(start) => Err(Error::Canceled),
            _ = super::cancel::expires(deadline) => Err(Error::StatementTimeout),
            // The client is gone: the statement stops (its future is dropped) instead of
            // running on for no one.
            _ = super::peer::closed(self.life.peer.get()) => {
                tracing::info!("client disconnected; its running statement was stopped");
                Err(Error::Canceled)
            }
        };
        // Notices go first, as Postgres sends them while the statement runs (also when it
        // then fails: a warning about stale input explains the error that follows).
        for notice in self.session.take_notices() {
            let mut info =
                pgwire::error::ErrorInfo::new(notice.severity.to_string(), notice.code.to_string(), notice.message);
            info.detail = notice.detail;
            info.hint = notice.hint;
            client
                .feed(PgWireBackendMessage::NoticeResponse(info.into()))
                .await
                .map_err(|e| Error::Internal(format!("cannot send a notice: {}", PgWireError::from(e))))?;
        }
        let result = result?;
        if let Some(before) = reported {
            for ((name, value), (_, old)) in self.reported().into_iter().zip(before) {
                if value != old {
                    let status = ParameterStatus::new(name.to_string(), value);
                    client
                        .feed(PgWireBackendMessage::ParameterStatus(status))
                        .await
                        .map_err(|e| Error::Internal(format!("cannot report a setting: {}", PgWireError::from(e))))?;
                }
            }
        }
        Ok(match result {
            QueryResult::Rows { schema, stream } => {
                let life = self.life.clone();
                let gone = Box::pin(async move { super::peer::closed(life.peer.get()).await });
                let stream = super::cancel::cancellable(stream, self.token.clone(), start, deadline, gone);
                QueryResult::Rows { schema, stream }
            }
            other => other,
        })
    }

    fn reported(&self) -> Vec<(&'static str, String)> {
        REPORTED.iter().map(|(wire, name)| (*wire, self.session.setting(name).unwrap_or_default())).collect()
    }
}

/// A statement's rows, marking the session idle in `pg_stat_activity` once they are all sent
/// (or abandoned).
struct Tracked {
    inner: datafusion::execution::SendableRecordBatchStream,
    backend: Arc<Backend>,
}

impl futures::Stream for Tracked {
    type Item = datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl datafusion::execution::RecordBatchStream for Tracked {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.backend.finished();
    }
}

/// A statement as `pg_stat_activity` shows it: its text, cut at 1,024 bytes (Postgres's
/// `track_activity_query_size`), with no password in it.
fn activity_text(stmt: &HwStatement) -> String {
    use datafusion::sql::sqlparser::ast::Statement;
    let mut text = match stmt {
        HwStatement::Sql(s) => match s.as_ref() {
            Statement::CreateRole { .. } => "CREATE ROLE ... (options hidden)".to_string(),
            Statement::AlterRole { .. } => "ALTER ROLE ... (options hidden)".to_string(),
            other => other.to_string(),
        },
        HwStatement::CreateConnection { name, .. } => format!("CREATE CONNECTION {name} ... (options hidden)"),
        _ => "(a Headwater statement)".to_string(),
    };
    if text.len() > 1024 {
        let mut cut = 1024;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn changes_settings(stmt: &datafusion::sql::sqlparser::ast::Statement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement;
    matches!(stmt, Statement::Set(_) | Statement::Reset(_) | Statement::Discard { .. })
}

#[async_trait]
impl SimpleQueryHandler for StatementParser {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(message) = super::framing::invalid_encoding(query) {
            return Err(invalid_encoding(message));
        }
        let statements = self.session.parse(query).map_err(error)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(statements.len());
        for stmt in statements {
            match self.run(client, &stmt, None).await {
                Ok(result) => out.push(self.respond(result, &Format::UnifiedText)?),
                Err(e) => {
                    // Postgres runs the statements before the failing one and stops there.
                    out.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if let Some(message) = super::framing::invalid_encoding(sql) {
            return Err(invalid_encoding(message));
        }
        let mut statements = self.session.parse(sql).map_err(error)?;
        if statements.len() > 1 {
            return Err(error(Error::Syntax("cannot insert multiple commands into a prepared statement".into())));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let described = self.session.describe(&statement).await.map_err(error)?;
        Ok(Some(Prepared {
            statement,
            param_types: described.param_types,
            schema: described.schema,
            point: described.point,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        if let HwStatement::ClientQuery(_) = stmt.statement {
            // asyncpg's `$1::oid[]`: it encodes the parameter as the type reported here.
            return Ok(vec![Type::OID_ARRAY]);
        }
        // An untyped parameter is text, as in Postgres (`SELECT $1`).
        stmt.param_types.iter().map(|t| t.as_ref().map_or(Ok(Type::TEXT), into_pg_type)).collect()
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.schema {
            Some(schema) => super::encode::pg_fields(schema, format.unwrap_or(&Format::UnifiedText), None),
            None => Ok(vec![]),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for StatementParser {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(StatementParser {
            session: self.session.clone(),
            token: self.token.clone(),
            life: self.life.clone(),
            copy_in: Default::default(),
        })
    }

    /// Binds a portal like pgwire's default, but leaves BindComplete in the write buffer
    /// until Sync (`pgwire::batched`).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) if message.parameters.is_empty() => client.portal_store().put_empty_portal(portal_name),
            Some(Entry::Empty) => {
                let message = format!(
                    "bind message supplies {} parameters, but prepared statement {statement_name:?} requires 0",
                    message.parameters.len()
                );
                let info = pgwire::error::ErrorInfo::new("ERROR".into(), "08P01".into(), message);
                return Err(PgWireError::UserError(Box::new(info)));
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client.feed(PgWireBackendMessage::BindComplete(BindComplete::new())).await?;
        Ok(())
    }

    /// pgwire's Execute, with its flushes deferred to Sync (`pgwire::batched`).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self._on_execute(&mut Batched(client), message).await
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let types: Vec<Option<&datafusion::arrow::datatypes::DataType>> =
            prepared.param_types.iter().map(|t| t.as_ref()).collect();
        let params = if portal.parameter_len() == 0 {
            None
        } else if let HwStatement::ClientQuery(_) = prepared.statement {
            Some(oid_array_parameter(portal)?)
        } else {
            Some(super::params::parameters(portal, &types, only_stores(&prepared.statement))?)
        };
        if let Some(point) = &prepared.point {
            if let Some(rows) = self.session.execute_point(point, params.as_ref()).await.map_err(error)? {
                return response(rows, &portal.result_column_format, &self.session);
            }
        }
        let result = self.run(client, &prepared.statement, params.as_ref()).await.map_err(error)?;
        self.respond(result, &portal.result_column_format)
    }
}
