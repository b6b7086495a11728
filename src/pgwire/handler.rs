//! One connection's handlers: simple and extended query protocol over one [`Session`].

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::StartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use super::encode::{error, error_info, response};
use super::startup::TrustStartup;
use crate::error::Error;
use crate::sql::{HwStatement, Session};

/// A statement prepared with Parse: parsed once, described once.
#[derive(Clone, Debug)]
pub struct Prepared {
    statement: HwStatement,
    param_types: Vec<Option<datafusion::arrow::datatypes::DataType>>,
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
}

/// Everything pgwire needs for one client connection.
pub struct Connection {
    parser: Arc<StatementParser>,
}

impl Connection {
    /// Handlers over a fresh session.
    pub fn new(session: Session) -> Self {
        Connection { parser: Arc::new(StatementParser { session: Arc::new(session) }) }
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
        Arc::new(TrustStartup)
    }
}

/// Parses for the extended protocol and executes for both protocols.
pub struct StatementParser {
    session: Arc<Session>,
}

fn format_options<C: ClientInfo>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
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
        let statements = self.session.parse(query).map_err(error)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(statements.len());
        for stmt in statements {
            match self.session.execute(&stmt, None).await {
                Ok(result) => out.push(response(result, &Format::UnifiedText, format_options(client))?),
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
        let mut statements = self.session.parse(sql).map_err(error)?;
        if statements.len() > 1 {
            return Err(error(Error::Syntax("cannot insert multiple commands into a prepared statement".into())));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        let described = self.session.describe(&statement).await.map_err(error)?;
        Ok(Some(Prepared { statement, param_types: described.param_types, schema: described.schema }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        // An untyped parameter is text, as in Postgres (`SELECT $1`).
        stmt.param_types.iter().map(|t| t.as_ref().map_or(Ok(Type::TEXT), into_pg_type)).collect()
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.schema {
            Some(schema) => arrow_schema_to_pg_fields(schema, format.unwrap_or(&Format::UnifiedText), None),
            None => Ok(vec![]),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for StatementParser {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(StatementParser { session: self.session.clone() })
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
        let params = if portal.parameter_len() == 0 { None } else { Some(deserialize_parameters(portal, &types)?) };
        let result = self.session.execute(&prepared.statement, params.as_ref()).await.map_err(error)?;
        response(result, &portal.result_column_format, format_options(client))
    }
}
