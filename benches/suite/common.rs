//! Helpers shared by the benchmarks: a client of an in-process server, a table's state by
//! name, and the `order_extension` rows the view and memory benchmarks both load.
#![allow(dead_code)]

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use headwater::catalog::{Namespace, Relation};
use headwater::sql::Engine;
use headwater::state::TableState;

/// A tokio-postgres client of the Headwater server listening on `port`.
pub async fn client(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=bench dbname=headwater"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

/// The rows of table (or materialized view) `name`.
pub fn table(engine: &Engine, name: &str) -> Arc<TableState> {
    match engine.catalog().get(Namespace::Relation, name).and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => state,
        _ => panic!("{name} is not a table"),
    }
}

/// `order_extension` rows for `ids`: every third order is a web order.
pub fn extension(ids: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, true),
    ]));
    let channel: Vec<&str> = ids.iter().map(|i| ["web", "app", "store"][(i % 3) as usize]).collect();
    let columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(channel))];
    RecordBatch::try_new(schema, columns).unwrap()
}

/// When each transaction of a latency benchmark was sent, acknowledged by the upstream
/// database, and became visible in Headwater: nanoseconds since `base` by transaction
/// sequence number (0: not yet).
pub struct LatencyClock {
    pub base: std::time::Instant,
    pub sent: Vec<std::sync::atomic::AtomicU64>,
    /// When the upstream database answered the write (its commit returned to the client).
    pub acked: Vec<std::sync::atomic::AtomicU64>,
    pub visible: Vec<std::sync::atomic::AtomicU64>,
}

impl LatencyClock {
    /// A clock for transactions `0..total`.
    pub fn new(total: u64) -> Self {
        let slots = || (0..total).map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
        LatencyClock { base: std::time::Instant::now(), sent: slots(), acked: slots(), visible: slots() }
    }

    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// A tap on one relation that records, at each commit, when the transactions whose sequence
/// numbers its rows carry (BIGINT column `column`) became visible; `seen` counts them.
pub struct SequenceTap {
    pub relation: u64,
    pub column: usize,
    pub clock: Arc<LatencyClock>,
    pub staged: Vec<u64>,
    pub seen: Arc<std::sync::atomic::AtomicU64>,
}

impl SequenceTap {
    pub fn new(
        relation: u64,
        column: usize,
        clock: Arc<LatencyClock>,
        seen: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        SequenceTap { relation, column, clock, staged: Vec::new(), seen }
    }
}

impl headwater::dataflow::tap::Tap for SequenceTap {
    fn relation(&self) -> u64 {
        self.relation
    }

    fn stage(
        &mut self,
        delta: &headwater::change::ChangeBatch,
        _: &headwater::change::CommitOrigin,
        _: &mut headwater::state::WriteBatch,
    ) -> headwater::Result<()> {
        use datafusion::arrow::array::Array;
        let seqs = delta.data.column(self.column).as_any().downcast_ref::<Int64Array>().expect("a BIGINT column");
        for (i, w) in delta.weights.iter().enumerate() {
            if *w > 0 && seqs.is_valid(i) {
                self.staged.push(seqs.value(i) as u64);
            }
        }
        Ok(())
    }

    fn committed(&mut self, _generation: u64) {
        use std::sync::atomic::Ordering;
        let now = self.clock.now();
        for seq in self.staged.drain(..) {
            if let Some(slot) = self.clock.visible.get(seq as usize) {
                if slot.swap(now, Ordering::Relaxed) == 0 {
                    self.seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn aborted(&mut self) {
        self.staged.clear();
    }
}
