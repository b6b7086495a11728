//! The running sources of an engine, and what can be read about each without stopping it:
//! its status (`hw_catalog.sources`, `hw_catalog.source_tables`, metrics) and whether it has
//! caught up with its upstream (`real_time_recency`).

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::mysql::position::BinlogPosition;
use crate::error::Result;
use crate::sync::Unpoisoned;

/// What `hw_catalog.sources` shows about one source.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    pub name: String,
    /// The kind of upstream: `mysql`, `kafka`.
    pub kind: &'static str,
    pub connection: String,
    /// starting, snapshotting, streaming, reconnecting, error.
    pub state: String,
    pub position: Option<BinlogPosition>,
    pub gtid: Option<String>,
    /// Seconds between the last applied upstream commit and now (0 when caught up and idle).
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub tables: Vec<TableStatus>,
    /// Kafka: the next offset to read of each partition, `partition:offset` comma-separated.
    pub offsets: Option<String>,
    /// Kafka: messages in the topic not applied yet (as of the last watermark check).
    pub lag_messages: Option<u64>,
}

/// What `hw_catalog.source_tables` shows about one captured table.
#[derive(Debug, Clone, Default)]
pub struct TableStatus {
    pub name: String,
    pub upstream: String,
    /// pending, snapshotting, streaming, error.
    pub state: String,
    pub rows_copied: u64,
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub rows_per_second: f64,
    pub last_error: Option<String>,
    /// Key ranges the table's snapshot was split into, read over several connections (0: one
    /// sequential read).
    pub snapshot_ranges: u64,
}

/// A running source, as the rest of the engine sees it.
pub struct SourceHandle {
    pub probe: SourceProbe,
    pub shutdown: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

impl SourceHandle {
    /// Stops the source and waits for it.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// What can be read about a running source without stopping it.
#[derive(Clone)]
pub struct SourceProbe {
    pub status: Arc<Mutex<SourceStatus>>,
    /// Whether it has applied what its upstream has committed (each kind knows its positions).
    pub catch_up: Arc<dyn CatchUp>,
}

/// `real_time_recency` for one source kind.
#[async_trait::async_trait]
pub trait CatchUp: Send + Sync {
    /// Waits until every upstream commit made before the call has been applied and no table
    /// is still in its snapshot; after `timeout`, fails with 57014 saying where the source is.
    async fn wait_caught_up(&self, timeout: Duration) -> Result<()>;
}

/// The running sources of an engine, by name.
#[derive(Default)]
pub struct SourceRegistry {
    sources: Mutex<BTreeMap<String, SourceHandle>>,
}

impl SourceRegistry {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceHandle>> {
        self.sources.locked()
    }

    /// Registers a started source.
    pub fn insert(&self, name: &str, handle: SourceHandle) {
        self.map().insert(name.to_string(), handle);
    }

    /// Stops and forgets a source.
    pub async fn stop(&self, name: &str) {
        let handle = self.map().remove(name);
        if let Some(h) = handle {
            h.stop().await;
        }
    }

    /// Stops every source (shutdown).
    pub async fn stop_all(&self) {
        let handles: Vec<SourceHandle> = std::mem::take(&mut *self.map()).into_values().collect();
        for h in handles {
            h.stop().await;
        }
    }

    /// The captured tables that are not kept up to date: (source, table, error). A table of a
    /// source in `error` counts, with the source's error. Cheap when there are none (no copy
    /// of the statuses), as every query asks.
    pub fn stale_tables(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (source, h) in self.map().iter() {
            let status = h.probe.status.locked();
            let source_failed = status.state == "error";
            // Linear in the tables, under the status lock the source's applier also takes:
            // a source may capture thousands, and this runs for every statement.
            if !source_failed && !status.tables.iter().any(|t| t.state == "error") {
                continue;
            }
            // A table merged from shards is stale only when none of its shards streams: a
            // shard that stopped alone (its shape differs) leaves the others current.
            let live: HashSet<&str> =
                status.tables.iter().filter(|t| t.state != "error").map(|t| t.name.as_str()).collect();
            let mut listed: HashSet<&str> = HashSet::new();
            for t in &status.tables {
                let stale = source_failed || (t.state == "error" && !live.contains(t.name.as_str()));
                if stale && listed.insert(t.name.as_str()) {
                    let why = t.last_error.clone().or_else(|| status.last_error.clone()).unwrap_or_default();
                    out.push((source.clone(), t.name.clone(), why));
                }
            }
        }
        out
    }

    /// A copy of every source's status.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        self.map().values().map(|h| h.probe.status.locked().clone()).collect()
    }

    /// Waits until each named source has applied all upstream commits made before the call.
    pub async fn wait_caught_up(&self, names: &[String], timeout: Duration) -> Result<()> {
        let probes: Vec<SourceProbe> =
            self.map().iter().filter(|(n, _)| names.contains(n)).map(|(_, h)| h.probe.clone()).collect();
        for probe in probes {
            probe.catch_up.wait_caught_up(timeout).await?;
        }
        Ok(())
    }
}
