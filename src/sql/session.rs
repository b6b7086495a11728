//! One client's session: its settings, its DataFusion context, and statement dispatch.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ParamValues};
use datafusion::datasource::ViewTable;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Ident, Reset, Statement};

mod variables;

use variables::show_schema;

use super::point::PointQuery;
use super::provider::{LocalTable, CREATED_WIDTHS, PINNED};
use super::result::{text_schema, QueryResult};
use super::settings::Settings;
use super::{ddl, dml, functions, sinks, sources, users, Engine, HwStatement};
use crate::catalog::CatalogEntry;
use crate::change::ChangeBatch;
use crate::error::{Error, Result};
use crate::state::table::PinnedRows;
use crate::state::TableState;

use super::transaction::Transaction;
use crate::sync::{Unpoisoned, UnpoisonedRw};

/// What Describe reports about a statement before it runs.
#[derive(Debug, Default)]
pub struct Described {
    /// The type of each `$n` parameter, when it can be inferred.
    pub param_types: Vec<Option<DataType>>,
    /// The columns of the rows the statement returns, `None` for commands.
    pub schema: Option<SchemaRef>,
    /// Set when the statement is a point lookup by key (`sql::point`): executing it then
    /// skips the general planner ([`Session::execute_point`]).
    pub point: Option<Arc<PointQuery>>,
}

/// A client's session.
pub struct Session {
    engine: Arc<Engine>,
    ctx: SessionContext,
    settings: Arc<RwLock<Settings>>,
    /// The open transaction block (`BEGIN` ... `COMMIT`), see [`super::transaction`].
    tx: std::sync::Mutex<Option<Transaction>>,
    /// The process id the client was given at login (`pg_backend_pid()`; 0 in-process).
    pid: Arc<std::sync::atomic::AtomicI32>,
    /// Whether the user was a role when the session logged in (`access::identity`).
    login_role: Arc<std::sync::atomic::AtomicBool>,
    /// Notices the running statement produced, for the wire to send before its result.
    notices: std::sync::Mutex<Vec<super::Notice>>,
    /// `PREPARE`d statements and open cursors.
    named: super::cursors::Named,
}

impl Session {
    pub(super) fn new(engine: Arc<Engine>, state: SessionState) -> Self {
        let ctx = match engine.memory_limits() {
            Some(limits) => with_memory_pool(state, limits.session_pool()),
            None => SessionContext::new_with_state(state),
        };
        let settings = Arc::new(RwLock::new(Settings::default()));
        ctx.register_udf(functions::current_setting(settings.clone()));
        ctx.register_udf(functions::session_user(settings.clone()));
        ctx.register_udf(functions::set_config(settings.clone()));
        let pid = Arc::new(std::sync::atomic::AtomicI32::new(0));
        ctx.register_udf(super::activity::backend_pid(pid.clone()));
        let login_role = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asker = super::pg_catalog::privileges::Asker {
            users: Arc::downgrade(engine.users()),
            catalog: Arc::downgrade(engine.catalog()),
            oids: engine.oids().clone(),
            settings: settings.clone(),
            login_role: login_role.clone(),
        };
        let signals: super::activity::MaySignal = {
            let (users, settings, login_role) = (Arc::downgrade(engine.users()), settings.clone(), login_role.clone());
            Arc::new(move |target: &str| {
                let Some(users) = users.upgrade() else { return false };
                let me = settings.read_locked().get("session_authorization").ok();
                let who = super::access::identity_of(&users, me, login_role.load(std::sync::atomic::Ordering::Relaxed));
                who.superuser || who.roles.iter().any(|r| r == target)
            })
        };
        for f in super::activity::functions(engine.activity(), signals.clone()) {
            ctx.register_udf(f);
        }
        ctx.state_ref().write().config_mut().set_extension(Arc::new(super::pg_catalog::stat_activity::Viewer(signals)));
        for f in super::pg_catalog::privileges::functions(asker) {
            ctx.register_udf(f);
        }
        Session {
            engine,
            ctx,
            settings,
            tx: Default::default(),
            pid,
            login_role,
            notices: Default::default(),
            named: Default::default(),
        }
    }

    /// Records the process id the client was given at login.
    pub fn set_pid(&self, pid: i32) {
        self.pid.store(pid, std::sync::atomic::Ordering::Relaxed);
    }

    /// This session's prepared statements and cursors.
    pub(super) fn named(&self) -> &super::cursors::Named {
        &self.named
    }

    /// A statement `EXECUTE`, `DECLARE` or a cursor runs on the session's behalf: checked
    /// for privileges as if the user had sent it.
    pub(super) async fn execute_prepared(&self, stmt: &Statement, params: Option<&ParamValues>) -> Result<QueryResult> {
        let wrapped = HwStatement::Sql(Box::new(stmt.clone()));
        super::access::check_statement(self, &wrapped)?;
        self.execute_standard(stmt, params).await
    }

    /// Writes the data of a `COPY ... FROM STDIN` (sent after the statement), as
    /// [`Session::execute`] runs a statement: refused in a failed block, failing the block on
    /// an error, durable when it returns outside a block.
    pub async fn copy_from_client(&self, copy: &super::CopyIn, data: &[u8]) -> Result<usize> {
        let block = self.transaction(|tx| tx.map(|t| t.failed));
        if block == Some(true) {
            return Err(Error::InFailedTransaction);
        }
        match super::copy::copy_in(self, copy, data).await {
            Ok(n) => {
                if block.is_none() && self.settings.read_locked().synchronous_commit() {
                    self.engine.make_durable().await?;
                }
                Ok(n)
            }
            Err(e) => {
                self.fail_block();
                Err(e)
            }
        }
    }

    /// An error outside a statement (a failed COPY) fails the open block, as in Postgres.
    pub fn fail_block(&self) {
        self.transaction(|tx| tx.map(|t| t.failed = true));
    }

    /// The engine this session belongs to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The user this session logged in as.
    pub fn user(&self) -> Option<String> {
        self.read_settings().get("session_authorization").ok()
    }

    /// Queues a notice for the client (sent before the statement's result).
    pub fn notice(&self, notice: super::Notice) {
        self.notices.locked().push(notice);
    }

    /// The notices queued since the last call.
    pub fn take_notices(&self) -> Vec<super::Notice> {
        std::mem::take(&mut *self.notices.locked())
    }

    /// Whether the session's user was a role when it logged in (one dropped since keeps no
    /// privileges; a trust-mode name that never was a role has a superuser's).
    pub fn logged_in_as_role(&self) -> bool {
        self.login_role.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A setting's current value (`TimeZone`, `DateStyle`, ...), for the wire encoder.
    pub fn setting(&self, name: &str) -> Option<String> {
        self.read_settings().get(name).ok()
    }

    /// The session's `statement_timeout` (`None`: no limit).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.read_settings().statement_timeout()
    }

    fn read_settings(&self) -> std::sync::RwLockReadGuard<'_, Settings> {
        self.settings.read_locked()
    }

    /// This session's DataFusion context.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Parses SQL text.
    pub fn parse(&self, sql: &str) -> Result<Vec<HwStatement>> {
        self.engine.parser().parse(sql)
    }

    /// Parses and executes every statement of `sql`, stopping at the first error.
    pub async fn execute_sql(&self, sql: &str) -> Result<Vec<QueryResult>> {
        let mut out = Vec::new();
        for stmt in self.parse(sql)? {
            out.push(self.execute(&stmt, None).await?);
        }
        Ok(out)
    }

    /// Plans a standard statement with DataFusion (against the current catalog).
    pub(super) async fn plan(&self, stmt: &Statement) -> Result<LogicalPlan> {
        let state = self.ctx.state();
        let mut stmt = stmt.clone();
        // RETURNING and ON CONFLICT are Headwater's to run (`dml_clauses`).
        super::dml_clauses::take_clauses(&mut stmt)?;
        super::using_joins::rewrite(&mut stmt, &self.ctx).await;
        super::naming::name_output_columns(&mut stmt);
        Ok(state.statement_to_plan(DfStatement::Statement(Box::new(stmt))).await?)
    }

    /// Executes one statement; `params` binds `$n` placeholders (extended protocol). A
    /// statement that changes tables or the catalog is durable when this returns (it ends
    /// with a checkpoint; concurrent ones share it).
    pub async fn execute(&self, stmt: &HwStatement, params: Option<&ParamValues>) -> Result<QueryResult> {
        let block = self.transaction(|tx| tx.map(|t| t.failed));
        if block == Some(true) && !ends_failed_block(stmt) {
            return Err(Error::InFailedTransaction);
        }
        let first_new_id = self.engine.catalog().next_id();
        let result = match self.checked(stmt, params).await {
            Ok(result) => result,
            Err(e) => {
                // As in Postgres, an error fails the whole block.
                self.transaction(|tx| tx.map(|t| t.failed = true));
                return Err(e);
            }
        };
        let durable_now = match writes_state(stmt) {
            Durability::Ddl => true,
            // Inside a block, DML is durable with its COMMIT.
            Durability::Dml if block.is_some() => false,
            Durability::Dml | Durability::Commit => self.settings.read_locked().synchronous_commit(),
            Durability::None => false,
        };
        super::access::record_owner(self, stmt, first_new_id)?;
        if durable_now {
            self.engine.make_durable().await?;
        }
        Ok(result)
    }

    async fn checked(&self, stmt: &HwStatement, params: Option<&ParamValues>) -> Result<QueryResult> {
        super::access::check_statement(self, stmt)?;
        // (Not at parse time: a plain view stored before the check came must still restore.)
        if let HwStatement::Sql(s) = stmt {
            super::null_in::check(s)?;
        }
        self.execute_inner(stmt, params).await
    }

    async fn execute_inner(&self, stmt: &HwStatement, params: Option<&ParamValues>) -> Result<QueryResult> {
        match stmt {
            HwStatement::Sql(s) => self.execute_standard(s, params).await,
            HwStatement::CreateConnection { name, if_not_exists, kind, options } => {
                ddl::create_connection(self, name, *if_not_exists, *kind, options, None)
            }
            HwStatement::DropObjects { object_type, names, if_exists, cascade } => {
                ddl::drop_objects(self, *object_type, names, *if_exists, *cascade).await
            }
            HwStatement::CreateSource(source) => sources::create_source(self, source).await,
            HwStatement::AlterSource { name, action } => sources::alter_source(self, name, action).await,
            HwStatement::CreateSink(stmt) => sinks::create_sink(self, stmt, None),
            HwStatement::ShowObjects(t) => ddl::show_objects(self, *t),
            HwStatement::ShowCreate { object_type, name } => ddl::show_create(self, *object_type, name),
            HwStatement::ExplainView(name) => super::views::explain_view(self, name),
            HwStatement::CreateUser { name, if_not_exists, password, login, attributes } => {
                users::create_user(self, name, *if_not_exists, password.as_ref(), *login, attributes)
            }
            HwStatement::AlterUser { name, password, attributes } => {
                users::alter_user(self, name, password.as_ref().map(|p| p.as_ref()), attributes)
            }
            HwStatement::CreateSecret { name, if_not_exists, value } => {
                super::secrets::create_secret(self, name, *if_not_exists, value, None)
            }
            HwStatement::AlterSecret { name, value } => super::secrets::alter_secret(self, name, value),
            HwStatement::Grant(g) => super::access::grant(self, g),
            HwStatement::GrantRoles { roles, members, revoke } => {
                super::access::grant_roles(self, roles, members, *revoke)
            }
            HwStatement::AlterOwner { object_type, name, owner } => {
                super::access::alter_owner(self, *object_type, name, owner)
            }
            HwStatement::DropUsers { names, if_exists } => users::drop_users(self, names, *if_exists),
            HwStatement::ClientQuery(q) => q.execute(params),
            HwStatement::Unsupported(what) => {
                Err(Error::FeatureNotSupported(format!("{what} (not built yet in this version of Headwater)")))
            }
        }
    }

    async fn execute_standard(&self, stmt: &Statement, params: Option<&ParamValues>) -> Result<QueryResult> {
        match stmt {
            Statement::Query(_) | Statement::Explain { .. } => self.query(stmt, params).await,
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                dml::execute(self, stmt, params).await
            }
            Statement::CreateTable(ct) => ddl::create_table(self, ct, None).await,
            Statement::CreateView(cv) => ddl::create_view(self, cv, None).await,
            Statement::Drop { object_type, if_exists, names, cascade, .. } => {
                ddl::drop_relations(self, *object_type, names, *if_exists, *cascade).await
            }
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(variable),
            Statement::Reset(r) => {
                let mut s = self.settings.write_locked();
                match &r.reset {
                    Reset::ALL => s.reset(None)?,
                    Reset::ConfigurationParameter(name) => s.reset(Some(&name.to_string()))?,
                }
                Ok(QueryResult::command("RESET"))
            }
            Statement::StartTransaction { .. } => {
                self.transaction_slot(|tx| {
                    tx.get_or_insert_with(Transaction::default);
                });
                Ok(QueryResult::TransactionStart("BEGIN".into()))
            }
            Statement::Commit { .. } => self.commit(),
            Statement::Rollback { savepoint: Some(name), .. } => {
                self.in_block("ROLLBACK TO SAVEPOINT", |tx| tx.rollback_to(&savepoint_name(name)))?;
                Ok(QueryResult::command("ROLLBACK"))
            }
            Statement::Rollback { .. } => {
                self.transaction_slot(Option::take);
                self.named.end_block();
                Ok(QueryResult::TransactionEnd("ROLLBACK".into()))
            }
            Statement::Savepoint { name } => {
                self.in_block("SAVEPOINT", |tx| {
                    tx.savepoint(&savepoint_name(name));
                    Ok(())
                })?;
                Ok(QueryResult::command("SAVEPOINT"))
            }
            Statement::ReleaseSavepoint { name } => {
                self.in_block("RELEASE SAVEPOINT", |tx| tx.release(&savepoint_name(name)))?;
                Ok(QueryResult::command("RELEASE"))
            }
            Statement::Discard { object_type } => {
                use datafusion::sql::sqlparser::ast::DiscardObject;
                if matches!(object_type, DiscardObject::ALL) {
                    self.settings.write_locked().reset(None)?;
                }
                Ok(QueryResult::command(&format!("DISCARD {object_type}")))
            }
            Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate { .. } => {
                super::cursors::prepared(self, stmt).await
            }
            Statement::Copy { .. } => super::copy::copy(self, stmt).await,
            Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => {
                let in_block = self.transaction(|tx| tx.is_some());
                super::cursors::cursor(self, stmt, params, in_block).await
            }
            other => {
                let text = other.to_string();
                let words: Vec<&str> = text.split_whitespace().take(2).collect();
                Err(Error::FeatureNotSupported(words.join(" ")))
            }
        }
    }

    /// Restores a catalog entry at start-up.
    pub(super) async fn restore(&self, entry: &CatalogEntry, stmt: HwStatement) -> Result<()> {
        let id = Some(entry.id);
        if let Some(details) = &entry.details {
            return sources::restore_captured_table(self, entry, details);
        }
        match stmt {
            HwStatement::Sql(s) => match *s {
                Statement::CreateTable(ct) => ddl::create_table(self, &ct, id).await.map(drop),
                Statement::CreateView(cv) => {
                    let widths = sources::widths_before(self, entry.id);
                    CREATED_WIDTHS.scope(widths, ddl::create_view(self, &cv, id)).await.map(drop)
                }
                other => Err(Error::Storage(format!("unexpected catalog statement {other}"))),
            },
            HwStatement::CreateConnection { name, kind, options, .. } => {
                ddl::create_connection(self, &name, false, kind, &options, id).map(drop)
            }
            HwStatement::CreateSource(source) => sources::restore_source(self, entry, &source),
            HwStatement::CreateSink(stmt) => sinks::create_sink(self, &stmt, id).map(drop),
            HwStatement::CreateSecret { name, value, .. } => {
                super::secrets::create_secret(self, &name, false, &value, id).map(drop)
            }
            other => Err(Error::Storage(format!("unexpected catalog statement {other:?}"))),
        }
    }

    /// Answers a recognized point query directly, or `None` when the general path must:
    /// the relation was dropped or replaced since, `real_time_recency` has to wait for
    /// sources first, or a parameter does not fit the key exactly.
    pub async fn execute_point(&self, point: &PointQuery, params: Option<&ParamValues>) -> Result<Option<QueryResult>> {
        let block_wrote = self.transaction(|tx| tx.is_some_and(|t| t.has_writes()));
        if block_wrote
            || self.read_settings().real_time_recency()
            || !point.is_current(self.engine.catalog())
            || !self.engine.sources().stale_tables().is_empty()
        {
            return Ok(None);
        }
        super::access::require_select(self, point.relation())?;
        point.execute(params)
    }

    async fn query(&self, stmt: &Statement, params: Option<&ParamValues>) -> Result<QueryResult> {
        let recency = {
            let s = self.settings.read_locked();
            s.real_time_recency().then(|| s.get("real_time_recency_timeout"))
        };
        let recency = match recency {
            Some(t) => Some(
                super::settings::parse_duration(&t?, super::settings::DurationUnit::Milliseconds)
                    .unwrap_or(std::time::Duration::from_secs(10)),
            ),
            None => None,
        };
        let mut plan = match self.plan(stmt).await {
            // Under real_time_recency a column or table the query names may come with an
            // upstream ALTER/CREATE that a source has not applied yet: wait for every source,
            // then plan again.
            Err(e) if recency.is_some() && matches!(e.sqlstate(), "42703" | "42P01") => {
                let all: Vec<String> = self.engine.sources().statuses().into_iter().map(|s| s.name).collect();
                let timeout = recency.unwrap_or_default();
                if all.is_empty() || self.engine.sources().wait_caught_up(&all, timeout).await.is_err() {
                    return Err(e);
                }
                self.plan(stmt).await?
            }
            other => other?,
        };
        self.warn_stale(&plan, recency.is_some())?;
        if let Some(point) = PointQuery::recognize(&plan) {
            if let Some(result) = self.execute_point(&point, params).await? {
                return Ok(result);
            }
        }
        if matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_)) {
            return Err(Error::FeatureNotSupported(format!("{} inside a query", plan.display())));
        }
        // real_time_recency: wait for the sources this query reads before its tables are
        // snapshotted (that happens when the physical plan is built, below). A table that
        // gained columns meanwhile (upstream ADD COLUMN) gets the query planned again, so
        // `SELECT *` shows them.
        if let Some(timeout) = recency {
            let sources = self.sources_read(&plan)?;
            if !sources.is_empty() {
                let widths = |plan: &LogicalPlan| -> Result<Vec<usize>> {
                    let mut tables = Vec::new();
                    tables_read(plan, &mut tables)?;
                    Ok(tables.iter().map(|t| t.schema().fields().len()).collect())
                };
                let before = widths(&plan)?;
                self.engine.sources().wait_caught_up(&sources, timeout).await?;
                if widths(&plan)? != before {
                    plan = self.plan(stmt).await?;
                }
            }
        }
        if let Some(p) = params {
            plan = plan.with_param_values(p.clone())?;
        }
        let pinned = self.pin_read(&plan)?;
        let df = self.ctx.execute_logical_plan(plan).await?;
        let stream = PINNED.scope(pinned, df.execute_stream()).await?;
        // The executed plan's schema: the unanalyzed one's types can differ (a CASE of an
        // int and a numeric is typed by its first branch until coercion).
        let planned = stream.schema();
        let stream = super::naming::shown_stream(&planned, stream);
        Ok(QueryResult::Rows { schema: stream.schema(), stream })
    }

    /// Pins every table and view `plan` reads at once — one consistent point for all — with
    /// the open block's own rows for the tables it wrote.
    pub(super) fn pin_read(&self, plan: &LogicalPlan) -> Result<Arc<HashMap<u64, PinnedRows>>> {
        let mut tables = Vec::new();
        tables_read(plan, &mut tables)?;
        let mut pinned = self.engine.dataflow().pin(&tables);
        self.transaction(|tx| tx.map(|t| t.overlay(&mut pinned)));
        Ok(Arc::new(pinned))
    }

    /// The rows of `table` as this session sees them now (with its open block's writes).
    pub(super) fn pin_table(&self, table: &Arc<TableState>) -> PinnedRows {
        let mut pinned = self.engine.dataflow().pin(std::slice::from_ref(table));
        self.transaction(|tx| tx.map(|t| t.overlay(&mut pinned)));
        pinned.remove(&table.id()).unwrap_or_else(|| table.pin())
    }

    /// Runs `f` on the open transaction block, if any.
    pub(super) fn transaction<R>(&self, f: impl FnOnce(Option<&mut Transaction>) -> R) -> R {
        f(self.tx.locked().as_mut())
    }

    fn transaction_slot<R>(&self, f: impl FnOnce(&mut Option<Transaction>) -> R) -> R {
        f(&mut self.tx.locked())
    }

    /// Runs `f` on the open block; `what` outside one is an error, as in Postgres (25P01).
    fn in_block(&self, what: &str, f: impl FnOnce(&mut Transaction) -> Result<()>) -> Result<()> {
        self.transaction(|tx| match tx {
            Some(t) => f(t),
            None => Err(Error::NoActiveTransaction(format!("{what} can only be used in transaction blocks"))),
        })
    }

    /// `COMMIT`: the block's changes to every table it wrote, in one atomic commit (a failed
    /// block rolls back, as in Postgres, and says so in its tag).
    fn commit(&self) -> Result<QueryResult> {
        self.named.end_block();
        let Some(tx) = self.transaction_slot(Option::take) else {
            return Ok(QueryResult::TransactionEnd("COMMIT".into()));
        };
        if tx.failed {
            return Ok(QueryResult::TransactionEnd("ROLLBACK".into()));
        }
        let changes = tx.net_changes()?;
        for (table, _) in &changes {
            let current = self.engine.catalog().get(crate::catalog::Namespace::Relation, table.name());
            let same = matches!(current.and_then(|o| o.relation), Some(crate::catalog::Relation::Table { state, .. }) if state.id() == table.id());
            if !same {
                return Err(Error::SerializationFailure(format!(
                    "could not commit: table \"{}\" was dropped or replaced during the transaction",
                    table.name()
                )));
            }
        }
        if !changes.is_empty() {
            let refs: Vec<(&TableState, &ChangeBatch)> = changes.iter().map(|(t, c)| (t.as_ref(), c)).collect();
            self.engine.dataflow().commit(&refs, crate::state::WriteBatch::default())?;
        }
        Ok(QueryResult::TransactionEnd("COMMIT".into()))
    }

    /// Parameter types and result columns of a statement, for the extended protocol.
    pub async fn describe(&self, stmt: &HwStatement) -> Result<Described> {
        let sql = match stmt {
            HwStatement::Sql(s) => s.as_ref(),
            HwStatement::ShowObjects(t) => return Ok(rows(ddl::show_objects_schema(*t))),
            HwStatement::ShowCreate { .. } => return Ok(rows(text_schema(&["name", "create_sql"]))),
            HwStatement::ExplainView(_) => return Ok(rows(text_schema(&["dataflow"]))),
            HwStatement::ClientQuery(q) => {
                return Ok(Described { param_types: q.parameters(), schema: Some(q.schema()), point: None })
            }
            _ => return Ok(Described::default()),
        };
        match sql {
            Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_) => {
                let filled = super::insert_defaults::fill(self, sql)?;
                let sql = filled.as_ref().unwrap_or(sql);
                let plan = self.plan(sql).await?;
                let param_types = parameter_types(&plan)?;
                let point = PointQuery::recognize(&plan).map(Arc::new);
                let schema = match plan {
                    LogicalPlan::Dml(_) => dml::returning_schema(self, sql, &plan)?,
                    // The types the rows will have: after the analyzer's type coercion (a
                    // UNION of INT and BIGINT columns is BIGINT), as execution sees them.
                    p => {
                        let state = self.ctx.state();
                        let analyzed = state.analyzer().execute_and_check(p.clone(), state.config_options(), |_, _| {});
                        Some(super::naming::output_schema(analyzed.as_ref().unwrap_or(&p)))
                    }
                };
                Ok(Described { param_types, schema, point })
            }
            Statement::ShowVariable { variable } => Ok(rows(show_schema(variable))),
            Statement::Fetch { name, .. } => {
                Ok(Described { schema: self.named.cursor_schema(name).await, ..Described::default() })
            }
            _ => Ok(Described::default()),
        }
    }
}

/// The stored relations a plan reads, looking into the plain views it names.
fn tables_read(plan: &LogicalPlan, out: &mut Vec<Arc<TableState>>) -> Result<()> {
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Ok(provider) = source_as_provider(&scan.source) {
                if let Some(local) = provider.downcast_ref::<LocalTable>() {
                    if !out.iter().any(|t| t.id() == local.state().id()) {
                        out.push(local.state().clone());
                    }
                } else if let Some(view) = provider.downcast_ref::<ViewTable>() {
                    tables_read(view.logical_plan(), out).map_err(|e| DataFusionError::External(Box::new(e)))?;
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

/// A context over `state` whose statements draw on `pool`. The builder that swaps the runtime
/// re-registers functions from the state's map, where a built-in's alias (`date_format`) still
/// names the built-in we replaced (`to_char`); registering each function under its own name
/// again restores ours.
fn with_memory_pool(
    state: SessionState,
    pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool>,
) -> SessionContext {
    let mut runtime = state.runtime_env().as_ref().clone();
    runtime.memory_pool = pool;
    let own = |map: &HashMap<String, Arc<datafusion::logical_expr::ScalarUDF>>| {
        map.iter().filter(|(k, f)| k.as_str() == f.name()).map(|(_, f)| f.clone()).collect::<Vec<_>>()
    };
    let scalars = own(state.scalar_functions());
    let aggregates: Vec<_> =
        state.aggregate_functions().iter().filter(|(k, f)| k.as_str() == f.name()).map(|(_, f)| f.clone()).collect();
    let windows: Vec<_> =
        state.window_functions().iter().filter(|(k, f)| k.as_str() == f.name()).map(|(_, f)| f.clone()).collect();
    let rebuilt = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(Arc::new(runtime))
        .build();
    let ctx = SessionContext::new_with_state(rebuilt);
    for f in scalars {
        ctx.register_udf(f.as_ref().clone());
    }
    for f in aggregates {
        ctx.register_udaf(f.as_ref().clone());
    }
    for f in windows {
        ctx.register_udwf(f.as_ref().clone());
    }
    ctx
}

fn rows(schema: SchemaRef) -> Described {
    Described { param_types: vec![], schema: Some(schema), point: None }
}

/// `$n` types in order: DataFusion's inference, completed by explicit casts (`$1::int`).
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut types: HashMap<String, Option<DataType>> = plan.get_parameter_types()?;
    plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            expr.apply(|e| {
                if let Expr::Cast(c) = e {
                    if let Expr::Placeholder(p) = c.expr.as_ref() {
                        let slot = types.entry(p.id.clone()).or_insert(None);
                        if slot.is_none() {
                            *slot = Some(c.field.data_type().clone());
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut ordered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, v)| k.trim_start_matches('$').parse::<usize>().ok().map(|n| (n, v)))
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    let len = ordered.last().map_or(0, |(n, _)| *n);
    let mut out = vec![None; len];
    for (n, t) in ordered {
        out[n - 1] = t;
    }
    Ok(out)
}

/// What must be durable when a statement returns.
enum Durability {
    /// Nothing written.
    None,
    /// Rows: durable on return unless `synchronous_commit = off`.
    Dml,
    /// The catalog (and rows it drops or creates): always durable on return.
    Ddl,
    /// `COMMIT` of a block: durable on return under `synchronous_commit`.
    Commit,
}

/// What a failed block still accepts: the statements that end it or return to a savepoint.
fn ends_failed_block(stmt: &HwStatement) -> bool {
    matches!(stmt, HwStatement::Sql(s) if matches!(s.as_ref(), Statement::Rollback { .. } | Statement::Commit { .. }))
}

/// A savepoint's name as Postgres compares it (unquoted names fold to lower case).
fn savepoint_name(name: &Ident) -> String {
    if name.quote_style.is_some() {
        name.value.clone()
    } else {
        name.value.to_lowercase()
    }
}

fn writes_state(stmt: &HwStatement) -> Durability {
    match stmt {
        HwStatement::Sql(s) => match s.as_ref() {
            // An EXECUTE may run a prepared INSERT.
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Execute { .. } => {
                Durability::Dml
            }
            Statement::Commit { .. } => Durability::Commit,
            Statement::CreateTable(_) | Statement::CreateView(_) | Statement::Drop { .. } => Durability::Ddl,
            _ => Durability::None,
        },
        HwStatement::ShowObjects(_)
        | HwStatement::ShowCreate { .. }
        | HwStatement::ExplainView(_)
        | HwStatement::ClientQuery(_)
        | HwStatement::Unsupported(_) => Durability::None,
        _ => Durability::Ddl,
    }
}
