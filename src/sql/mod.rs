//! The SQL layer: life of a query.
//!
//! 1. The pgwire edge (`crate::pgwire`) hands SQL text to [`SqlParser::parse`]
//!    ([`parser`]), which yields [`HwStatement`]s: standard SQL (sqlparser's AST, rewritten for
//!    DataFusion by datafusion-pg-catalog) or Headwater's own statements.
//! 2. The connection's [`Session`] executes each statement:
//!    - queries are planned and run by DataFusion over a `SessionContext` whose `headwater`
//!      catalog has `public` ([`provider::PublicSchema`], our tables and views),
//!      `pg_catalog` (datafusion-pg-catalog with our overlay) and `information_schema` (views
//!      over it, shaped like Postgres's);
//!    - DDL goes to the [`Catalog`] (`ddl`);
//!    - DML is planned by DataFusion into the rows it adds and removes, which become one
//!      [`ChangeBatch`](crate::change::ChangeBatch) per statement and are committed by
//!      [`crate::dataflow::Dataflow::commit`] (`dml`; RETURNING and ON CONFLICT, which
//!      DataFusion does not plan, in `dml_clauses`) — or, inside `BEGIN ... COMMIT`, kept in
//!      the session's transaction block until COMMIT commits them all at once
//!      (`transaction`);
//!    - SET/SHOW touch only the session ([`settings`]).
//! 3. A [`QueryResult`] goes back to the edge, which encodes Arrow batches with arrow-pg.
//!
//! [`Engine`] is what all sessions share: the catalog, the parser and a template DataFusion
//! state with every function registered once.

pub mod access;
pub mod activity;
mod aggregate_types;
mod client_queries;
mod compat;
mod copy;
mod cursors;
mod ddl;
mod dml;
mod dml_clauses;
mod freshness;
pub mod functions;
pub mod hw_catalog;
mod insert_defaults;
mod json;
mod limits;
mod literals;
pub mod memory;
mod naming;
mod null_in;
mod numeric_division;
mod overflow;
pub mod parser;
mod pg_catalog;
mod point;
pub mod provider;
mod result;
mod rewrites;
mod secrets;
mod session;
pub mod settings;
mod sinks;
mod sources;
mod to_char;
mod transaction;
pub mod users;
mod using_joins;
mod views;

use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider};
use datafusion::execution::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use copy::{CopyFormat, CopyIn};
pub use limits::{MAX_NESTING, STACK_BYTES};
pub use parser::{HwStatement, SqlParser};
pub use point::PointQuery;
pub use result::{Notice, QueryResult};
pub use session::Session;

use crate::catalog::secrets::SecretKey;
use crate::catalog::users::Users;
use crate::catalog::Catalog;
use crate::dataflow::Dataflow;
use crate::error::{Error, Result};
use crate::sink::SinkRegistry;
use crate::source::SourceRegistry;
use crate::state::checkpoint::ImageCut;
use crate::state::table::PinnedRows;
use crate::state::{CheckpointedStore, StateStore, TableState};

/// The name of the one database (DataFusion catalog) Headwater serves.
pub const DATABASE: &str = "headwater";

pub use crate::ident::quote_ident;

/// What every session shares.
pub struct Engine {
    catalog: Arc<Catalog>,
    /// What every client session is doing (`pg_stat_activity`).
    activity: Arc<activity::Activity>,
    sources: Arc<SourceRegistry>,
    sinks: Arc<SinkRegistry>,
    dataflow: Arc<Dataflow>,
    checkpoints: Arc<CheckpointedStore>,
    users: Arc<Users>,
    parser: SqlParser,
    base: SessionState,
    oids: Arc<pg_catalog::oids::RelationOids>,
    /// The key secrets are stored under (`catalog::secrets`).
    secrets: Arc<SecretKey>,
    /// Memory limits of statements (none until the server sets them: restore is unlimited).
    memory: std::sync::OnceLock<memory::MemoryLimits>,
}

/// A checkpoint's cut ([`ImageCut`]): the views' changed operator state staged, then the
/// catalog's stored tables and the views' results whose image is due, taken between two
/// commits.
struct TableImages {
    catalog: std::sync::Weak<Catalog>,
    dataflow: std::sync::Weak<Dataflow>,
}

impl ImageCut for TableImages {
    fn cut(&self, take: &mut dyn FnMut() -> bool, images: bool) -> Vec<(Arc<TableState>, PinnedRows)> {
        // The engine is gone (after its shutdown, whose last checkpoint has run): nothing is
        // taken, so nothing is written. Writing the staged batch without the images that
        // commits may owe (`TableState::write_planned`) could store a source's position
        // without the rows before it.
        let (Some(catalog), Some(dataflow)) = (self.catalog.upgrade(), self.dataflow.upgrade()) else {
            return Vec::new();
        };
        dataflow.checkpoint_cut(|results| {
            if !take() || !images {
                return Vec::new();
            }
            // Listed at the cut: a table a commit left rows of for this image is here.
            let mut tables = catalog.stored_tables();
            for r in results {
                if !tables.iter().any(|t| t.id() == r.id()) {
                    tables.push(r);
                }
            }
            let due = tables.into_iter().filter(|t| t.image_due());
            due.map(|t| {
                t.mark_imaged();
                let pinned = t.pin();
                (t, pinned)
            })
            .collect()
        })
    }
}

impl Engine {
    /// Opens the catalog in `store` and replays it: every table, view and connection created
    /// before comes back, tables with their rows.
    pub async fn open(store: Arc<CheckpointedStore>) -> Result<Arc<Self>> {
        Self::open_with_key(store, Arc::new(SecretKey::ephemeral())).await
    }

    /// [`Engine::open`] with the key that encrypts secrets (the server's, kept outside the
    /// store; `open` uses one that lives as long as the process).
    pub async fn open_with_key(store: Arc<CheckpointedStore>, secrets: Arc<SecretKey>) -> Result<Arc<Self>> {
        let checkpoints = store.clone();
        let catalog = Arc::new(Catalog::new(store)?);
        let sources = Arc::new(SourceRegistry::default());
        let sinks = Arc::new(SinkRegistry::default());
        let users = Arc::new(Users::load(store_of(&catalog))?);
        let dataflow = Arc::new(Dataflow::new(checkpoints.clone(), Arc::new(provider::LocalTables)));
        let activity = Arc::new(activity::Activity::default());
        let oids = Arc::new(pg_catalog::oids::RelationOids::default());
        let base =
            base_context(&catalog, &dataflow, &sources, &sinks, &checkpoints, &users, &activity, &oids).await?.state();
        let parser = SqlParser::new();
        let engine = Arc::new(Engine {
            catalog,
            activity,
            sources,
            sinks,
            dataflow,
            checkpoints,
            users,
            parser,
            base,
            oids,
            secrets,
            memory: Default::default(),
        });
        let session = engine.session();
        for entry in engine.catalog.stored_entries()? {
            let mut stmts = engine.parser.parse(&entry.create_sql)?;
            if stmts.len() != 1 {
                return Err(Error::Storage(format!("catalog entry {} is not one statement", entry.id)));
            }
            session
                .restore(&entry, stmts.remove(0))
                .await
                .map_err(|e| Error::Storage(format!("cannot restore {} \"{}\": {e}", entry.create_sql, entry.name)))?;
        }
        tracing::info!(objects = engine.catalog.stored_entries()?.len(), "catalog restored");
        engine.checkpoints.remove_unused_images()?;
        let images: Arc<dyn ImageCut> = Arc::new(TableImages {
            catalog: Arc::downgrade(&engine.catalog),
            dataflow: Arc::downgrade(&engine.dataflow),
        });
        // The cut holds the engine's parts weakly: no cycle through the store.
        engine.checkpoints.set_image_cut(images);
        sources::start_all(&engine)?;
        Ok(engine)
    }

    /// A new session (one per client connection).
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(self.clone(), self.base.clone())
    }

    /// What every client session is doing.
    pub fn activity(&self) -> &Arc<activity::Activity> {
        &self.activity
    }

    /// Holds the statements of sessions created from now on to `limits` (`sql::memory`).
    pub fn limit_memory(&self, limits: memory::MemoryLimits) {
        let _ = self.memory.set(limits);
    }

    /// The memory limits, once set.
    pub fn memory_limits(&self) -> Option<&memory::MemoryLimits> {
        self.memory.get()
    }

    /// The key secrets are encrypted with.
    pub fn secrets(&self) -> &Arc<SecretKey> {
        &self.secrets
    }

    /// The oids `pg_class` gave the relations (for functions that take one).
    pub(crate) fn oids(&self) -> &Arc<pg_catalog::oids::RelationOids> {
        &self.oids
    }

    /// The shared catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The shared parser.
    pub fn parser(&self) -> &SqlParser {
        &self.parser
    }

    /// The commit path and the running materialized views.
    pub fn dataflow(&self) -> &Arc<Dataflow> {
        &self.dataflow
    }

    /// The running sources.
    pub fn sources(&self) -> &Arc<SourceRegistry> {
        &self.sources
    }

    /// The users who may log in with `--auth password`.
    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    /// The running sinks.
    pub fn sinks(&self) -> &Arc<SinkRegistry> {
        &self.sinks
    }

    /// Makes every write committed so far durable (a checkpoint), off the async threads.
    /// Local DML and DDL call this before they return.
    pub async fn make_durable(&self) -> Result<()> {
        let store = self.checkpoints.clone();
        tokio::task::spawn_blocking(move || store.checkpoint())
            .await
            .map_err(|e| Error::Internal(format!("checkpoint task failed: {e}")))?
            .map(|_| ())
    }

    /// The checkpoint counters (`hw_catalog.checkpoints`).
    pub fn checkpoint_stats(&self) -> crate::state::CheckpointStats {
        self.checkpoints.stats()
    }

    /// Stops the sources and writes a last checkpoint (at shutdown).
    pub async fn shutdown(&self) -> Result<()> {
        self.sources.stop_all().await;
        let durable = self.make_durable().await;
        // Sinks stop last: what they have not sent is in their (now durable) outboxes.
        let sinks = self.sinks.clone();
        let _ = tokio::task::spawn_blocking(move || sinks.stop_all()).await;
        durable?;
        // Their last acknowledgements, so a restart does not send those entries again.
        self.make_durable().await
    }
}

fn store_of(catalog: &Catalog) -> Arc<dyn StateStore> {
    catalog.store().clone()
}

/// The `headwater` database as DataFusion sees it: `public`, `pg_catalog`,
/// `information_schema`, and `hw_catalog`.
///
/// `hw_catalog` and `information_schema` resolve by name but are not enumerated: datafusion-pg-catalog's
/// `pg_table_is_visible` is always true, so an enumerated system schema would show up in
/// psql's `\dt` next to the user's tables, which Postgres never does for schemas outside the
/// search path.
#[derive(Debug)]
struct Database {
    schemas: MemoryCatalogProvider,
    system: Arc<dyn SchemaProvider>,
    /// Set once at start-up (its views are planned over the rest of the database).
    information_schema: std::sync::OnceLock<Arc<dyn SchemaProvider>>,
}

impl CatalogProvider for Database {
    fn schema_names(&self) -> Vec<String> {
        self.schemas.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == "hw_catalog" {
            Some(self.system.clone())
        } else if name == "information_schema" {
            self.information_schema.get().cloned()
        } else {
            self.schemas.schema(name)
        }
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> datafusion::error::Result<Option<Arc<dyn SchemaProvider>>> {
        self.schemas.register_schema(name, schema)
    }
}

#[allow(clippy::too_many_arguments)]
async fn base_context(
    catalog: &Arc<Catalog>,
    dataflow: &Arc<Dataflow>,
    sources: &Arc<SourceRegistry>,
    sinks: &Arc<SinkRegistry>,
    checkpoints: &Arc<CheckpointedStore>,
    users: &Arc<Users>,
    activity: &Arc<activity::Activity>,
    oids: &Arc<pg_catalog::oids::RelationOids>,
) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(DATABASE, "public")
        .with_create_default_catalog_and_schema(false)
        // Ours, shaped like Postgres's (`pg_catalog::information_schema`), replaces DataFusion's.
        .with_information_schema(false);
    // Plain Utf8 strings: what the state layer stores and what sources produce.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    config.options_mut().sql_parser.enable_ident_normalization = true;
    // `1.1` is numeric, as in Postgres: `1.1 + 2.2` is exactly 3.3, and `amt * 1.1` on a
    // NUMERIC column stays exact (a float literal made it a double).
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    // TIMESTAMPTZ columns and casts are instants in UTC; sessions display them in their own
    // TimeZone at the wire (`pgwire::encode`).
    config.options_mut().execution.time_zone = Some("UTC".to_string());
    let mut ctx = SessionContext::new_with_config(config);
    literals::register_first(&ctx);
    aggregate_types::register(&mut ctx)?;
    aggregate_types::register_avg(&ctx);
    aggregate_types::register_min_max(&ctx);
    literals::register(&ctx);
    overflow::register(&ctx);
    ctx.add_optimizer_rule(Arc::new(null_in::CorrelatedNotIn));
    let db = Arc::new(Database {
        schemas: MemoryCatalogProvider::new(),
        system: Arc::new(hw_catalog::HwCatalogSchema::new(sources, sinks, checkpoints, catalog, dataflow)),
        information_schema: std::sync::OnceLock::new(),
    });
    db.register_schema("public", Arc::new(provider::PublicSchema::new(catalog)))?;
    ctx.register_catalog(DATABASE, db.clone());
    datafusion_pg_catalog::setup_pg_catalog(&ctx, DATABASE, users::UserRoles(Arc::downgrade(users)))
        .map_err(|e| Error::Internal(format!("pg_catalog setup failed: {e}")))?;
    // What the crate cannot know (materialized views, primary keys, typmods): `pg_catalog`.
    let database = ctx.catalog(DATABASE).ok_or_else(|| Error::Internal("database catalog missing".into()))?;
    if let Some(pg) = database.schema("pg_catalog") {
        database.register_schema(
            "pg_catalog",
            Arc::new(pg_catalog::PgCatalogOverlay::new(pg, catalog, oids.clone(), activity)),
        )?;
    }
    // Before any function is registered: it rebuilds the session state, which registers
    // every function again in hash order (an override such as `to_char` could lose to the
    // built-in it replaced, under its alias).
    json::register(&ctx)?;
    functions::register_global(&ctx);
    pg_catalog::functions::register(&ctx, catalog, oids);
    let _ = db.information_schema.set(pg_catalog::information_schema::schema(&ctx, catalog).await?);
    Ok(ctx)
}
