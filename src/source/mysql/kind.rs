//! The MySQL / MariaDB source kind: [`SourceKind`] over this module's discovery, runner and
//! stored progress.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::position::BinlogPosition;
use super::schema::{discover, upstream, TableSpec};
use super::{check_upstream, connection_opts, CapturedTable, MySqlSource, SourceOptions};
use crate::error::{Error, Result};
use crate::source::{
    CatchUp, SourceConfig, SourceHandle, SourceKind, SourceRun, SourceStatus, TableDef, TableSelection,
};
use crate::state::StateStore;
use crate::sync::Unpoisoned;

/// How long `CREATE SOURCE` / `ALTER SOURCE` wait for the upstream server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sources reading a MySQL or MariaDB server's tables and binlog.
pub struct MySql;

async fn connect(config: &SourceConfig<'_>) -> Result<mysql_async::Conn> {
    let connection = config.connection_name;
    let opts = connection_opts(config.connection)?;
    tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts))
        .await
        .map_err(|_| Error::ConnectionException {
            sqlstate: "08001",
            message: format!("cannot reach the upstream server of connection \"{connection}\" within 10s"),
        })?
        .map_err(|e| Error::ConnectionException {
            sqlstate: "08001",
            message: format!("cannot connect to the upstream server of connection \"{connection}\": {e}"),
        })
}

fn spec_of(details: &serde_json::Value, name: &str) -> Result<TableSpec> {
    serde_json::from_value(details.clone()).map_err(|e| Error::Storage(format!("corrupt captured table {name}: {e}")))
}

fn table_def(spec: &TableSpec) -> Result<TableDef> {
    Ok(TableDef {
        name: spec.name.clone(),
        upstream: format!("{}.{}", spec.database, spec.table),
        schema: CapturedTable::schema(spec),
        key: (!spec.key.is_empty()).then(|| spec.key.clone()),
        create_sql: spec.create_sql(),
        details: serde_json::to_value(spec).map_err(|e| Error::Internal(e.to_string()))?,
    })
}

#[async_trait::async_trait]
impl SourceKind for MySql {
    fn connection_kind(&self) -> &'static str {
        "MYSQL"
    }

    async fn discover(
        &self,
        config: &SourceConfig<'_>,
        selection: &TableSelection,
        check: bool,
    ) -> Result<Vec<TableDef>> {
        let options = SourceOptions::parse(config.options)?;
        let mut conn = connect(config).await?;
        if check {
            check_upstream(&mut conn, options.server_id).await?;
        }
        let specs = discover(&mut conn, selection).await?;
        let _ = conn.disconnect().await.map_err(upstream);
        specs.iter().map(table_def).collect()
    }

    fn table_def(&self, name: &str, details: &serde_json::Value) -> Result<TableDef> {
        table_def(&spec_of(details, name)?)
    }

    fn upstream_of(&self, details: &serde_json::Value) -> Option<String> {
        let spec: TableSpec = serde_json::from_value(details.clone()).ok()?;
        Some(format!("{}.{}", spec.database, spec.table))
    }

    fn start(&self, config: &SourceConfig<'_>, run: SourceRun) -> Result<SourceHandle> {
        let mut tables = Vec::with_capacity(run.tables.len());
        for (details, state) in run.tables {
            let spec = spec_of(&details, state.name())?;
            tables.push(CapturedTable { spec: Arc::new(spec), state });
        }
        let source = MySqlSource {
            name: run.name,
            id: run.id,
            connection: config.connection_name.to_string(),
            opts: connection_opts(config.connection)?,
            options: SourceOptions::parse(config.options)?,
            tables,
            store: run.store,
            dataflow: run.dataflow,
            catalog: run.catalog,
        };
        Ok(source.start())
    }

    fn forget_tables(&self, store: &dyn StateStore, source_id: u64, tables: &[String]) -> Result<()> {
        super::forget_tables(store, source_id, tables)
    }

    fn reset(&self, store: &dyn StateStore, source_id: u64) -> Result<()> {
        super::reset_progress(store, source_id)
    }

    fn details_without_positions(&self, details: &serde_json::Value) -> Option<serde_json::Value> {
        let mut spec: TableSpec = serde_json::from_value(details.clone()).ok()?;
        let mut cleared = spec.since.take().is_some();
        for shard in spec.shard_specs.values_mut() {
            cleared |= shard.since.take().is_some();
        }
        cleared.then(|| serde_json::to_value(&spec).ok()).flatten()
    }
}

/// `real_time_recency` for a MySQL source: reads the upstream's current binlog position,
/// then waits for the source to apply up to it.
pub struct BinlogCatchUp {
    pub status: Arc<Mutex<SourceStatus>>,
    /// The binlog position up to which every upstream commit has been applied.
    pub applied: watch::Receiver<Option<BinlogPosition>>,
    /// How to reach the upstream server (for its current position).
    pub opts: mysql_async::Opts,
}

#[async_trait::async_trait]
impl CatchUp for BinlogCatchUp {
    async fn wait_caught_up(&self, timeout: Duration) -> Result<()> {
        let target = tokio::time::timeout(timeout, async {
            let mut conn = mysql_async::Conn::new(self.opts.clone()).await.map_err(super::schema::upstream)?;
            super::current_position(&mut conn).await
        })
        .await
        .map_err(|_| recency_timeout(self, None))?
        .map_err(|e| {
            let name = self.status.locked().name.clone();
            Error::OperatorIntervention(format!(
                "real_time_recency: cannot read the current binlog position of source \"{name}\"'s upstream \
                     server ({e}); SET real_time_recency = off to read what has been applied so far"
            ))
        })?;
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout(timeout, async {
            loop {
                // Caught up: the position is reached and no table is still in its snapshot
                // (whose rows would be partial).
                let reached = applied.borrow().as_ref().is_some_and(|p| *p >= target);
                let state = self.status.locked().state.clone();
                if reached && state == "streaming" {
                    return;
                }
                if applied.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        reached.map_err(|_| recency_timeout(self, Some(&target)))
    }
}

fn recency_timeout(h: &BinlogCatchUp, target: Option<&BinlogPosition>) -> Error {
    let status = h.status.locked().clone();
    let at = status.position.map_or("nothing yet".to_string(), |p| p.to_string());
    let upstream = target.map_or("unknown (upstream unreachable)".to_string(), |p| p.to_string());
    Error::OperatorIntervention(format!(
        "real_time_recency: source \"{}\" has applied up to {at}, upstream is at {upstream}; \
             gave up after real_time_recency_timeout (state: {}{})",
        status.name,
        status.state,
        status.last_error.map(|e| format!(", last error: {e}")).unwrap_or_default()
    ))
}
