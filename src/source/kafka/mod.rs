//! Kafka sources: one topic of JSON messages into one table.
//!
//! ```sql
//! CREATE CONNECTION k TO KAFKA (BROKER 'broker:9092');
//! CREATE SOURCE orders (id BIGINT PRIMARY KEY, amount NUMERIC(12,2), note TEXT)
//!   FROM KAFKA CONNECTION k (TOPIC 'dbserver1.shop.orders') FORMAT JSON ENVELOPE DEBEZIUM;
//! ```
//! The table is named after the source; a Debezium topic whose messages carry schema blocks
//! may leave the column list out ([`infer`]). Messages are decoded per envelope ([`envelope`]) and
//! their values per column ([`decode`]). Exactly once: each partition's next offset is
//! stored in Headwater's own store in the same atomic batch as the rows it produced
//! (`s/<source id>`), never in a consumer group, so a restart — or a kill -9 at any moment —
//! resumes exactly after the last committed message. A message that cannot be read stops
//! the table with the partition, offset and reason (`hw_catalog.source_tables`), or is
//! skipped and counted with `WITH (ON_ERROR = 'skip')`.

mod decode;
mod envelope;
mod infer;
mod runner;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use envelope::Envelope;

use super::{
    CatchUp, DeclaredTable, SourceConfig, SourceHandle, SourceKind, SourceProbe, SourceRun, SourceStatus, TableDef,
    TableSelection, TableStatus,
};
use crate::error::{Error, Result};
use crate::state::{keys, StateStore, WriteBatch};
use crate::sync::Unpoisoned;

/// The options of a Kafka source written in parentheses after its connection; FORMAT and
/// ENVELOPE are clauses; the others go in `WITH (...)`.
pub const KAFKA_TOPIC_OPTIONS: &[&str] = &["TOPIC", "TOPIC_PATTERN", "START_OFFSET"];

const OPTIONS: &[&str] =
    &["TOPIC", "TOPIC_PATTERN", "START_OFFSET", "FORMAT", "ENVELOPE", "ON_ERROR", "TIMESTAMP_UNIT"];

/// How long `CREATE SOURCE` waits for the brokers to describe the topic.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Sources reading a Kafka topic.
pub struct Kafka;

/// Where a partition without a stored offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
}

/// What to do with a message that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    /// The table stops at the message (state `error`, with its offset and reason).
    Stop,
    /// The message is skipped, counted and reported; the table goes on.
    Skip,
}

/// The topics a source reads.
#[derive(Debug, Clone)]
enum Topics {
    /// `TOPIC 'name'`: one topic into a table named after the source.
    One(String),
    /// `TOPIC PATTERN 'regex'`: every topic whose whole name matches when the source is
    /// created, each into a table named after the topic's last `.`-separated part.
    Pattern(regex::Regex),
}

/// A Kafka source's options.
#[derive(Debug, Clone)]
struct KafkaOptions {
    topics: Topics,
    envelope: Envelope,
    start: Start,
    on_error: OnError,
    /// The unit of timestamps sent as bare numbers without a schema naming it.
    timestamp_unit: TimeUnit,
}

fn bad(message: String) -> Error {
    Error::InvalidParameterValue(message)
}

impl KafkaOptions {
    fn parse(options: &BTreeMap<String, String>) -> Result<Self> {
        if let Some(k) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(bad(format!("unknown option {k} for a Kafka source (known: {})", OPTIONS.join(", "))));
        }
        let topics =
            match (options.get("TOPIC").filter(|t| !t.is_empty()), options.get("TOPIC_PATTERN")) {
                (Some(t), None) => Topics::One(t.clone()),
                (None, Some(p)) => Topics::Pattern(
                    regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| bad(format!("TOPIC PATTERN '{p}' is not a regular expression: {e}")))?,
                ),
                (Some(_), Some(_)) => return Err(bad("give TOPIC or TOPIC PATTERN, not both".into())),
                (None, None) => return Err(bad(
                    "a Kafka source needs a topic: FROM KAFKA CONNECTION c (TOPIC 'name') or (TOPIC PATTERN 'regex')"
                        .into(),
                )),
            };
        match options.get("FORMAT").map(|f| f.to_ascii_uppercase()) {
            None => {}
            Some(f) if f == "JSON" => {}
            Some(f) => {
                return Err(Error::FeatureNotSupported(format!("FORMAT {f} for Kafka sources (FORMAT JSON is)")))
            }
        }
        let envelope = match options.get("ENVELOPE") {
            None => Envelope::None,
            Some(e) => Envelope::parse(e)
                .ok_or_else(|| bad(format!("unknown ENVELOPE {e} (NONE, UPSERT, DEBEZIUM or CANAL)")))?,
        };
        let start = match options.get("START_OFFSET").map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("earliest") => Start::Earliest,
            Some("latest") => Start::Latest,
            Some(other) => return Err(bad(format!("START_OFFSET must be 'earliest' or 'latest', not '{other}'"))),
        };
        let on_error = match options.get("ON_ERROR").map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("stop") => OnError::Stop,
            Some("skip") => OnError::Skip,
            Some(other) => return Err(bad(format!("ON_ERROR must be 'stop' or 'skip', not '{other}'"))),
        };
        let timestamp_unit = match options.get("TIMESTAMP_UNIT").map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("ms") => TimeUnit::Millisecond,
            Some("us") => TimeUnit::Microsecond,
            Some("ns") => TimeUnit::Nanosecond,
            Some("s") => TimeUnit::Second,
            Some(other) => return Err(bad(format!("TIMESTAMP_UNIT must be 's', 'ms', 'us' or 'ns', not '{other}'"))),
        };
        Ok(KafkaOptions { topics, envelope, start, on_error, timestamp_unit })
    }
}

/// One column of a topic's table, as its catalog entry keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredColumn {
    name: String,
    /// Arrow's text for the type (`Decimal128(12, 2)`), which parses back.
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

/// A topic's table: the catalog entry's `details`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicTable {
    name: String,
    topic: String,
    envelope: Envelope,
    columns: Vec<StoredColumn>,
    key: Option<Vec<usize>>,
    create_sql: String,
}

impl TopicTable {
    fn schema(&self) -> Result<SchemaRef> {
        let fields = self
            .columns
            .iter()
            .map(|c| {
                let t: DataType = c.data_type.parse().map_err(|e| {
                    Error::Storage(format!(
                        "captured table {}: column {} has type {}: {e}",
                        self.name, c.name, c.data_type
                    ))
                })?;
                Ok(Field::new(&c.name, t, c.nullable))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    fn key_names(&self) -> Vec<String> {
        self.key.iter().flatten().filter_map(|&i| self.columns.get(i).map(|c| c.name.clone())).collect()
    }

    fn def(&self) -> Result<TableDef> {
        Ok(TableDef {
            name: self.name.clone(),
            upstream: format!("topic {}", self.topic),
            schema: self.schema()?,
            key: self.key.clone(),
            create_sql: self.create_sql.clone(),
            details: serde_json::to_value(self).map_err(|e| Error::Internal(e.to_string()))?,
        })
    }
}

fn topic_table(details: &serde_json::Value, name: &str) -> Result<TopicTable> {
    serde_json::from_value(details.clone()).map_err(|e| Error::Storage(format!("corrupt captured table {name}: {e}")))
}

/// A client configuration for the connection's brokers (no consumer group offsets are used).
fn client_config(connection: &BTreeMap<String, String>, source: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in crate::sink::kafka::client_settings(connection) {
        c.set(k, v);
    }
    c.set("group.id", format!("headwater-source-{source}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "false");
    c
}

/// The partitions of `topic`, or why they cannot be read.
fn partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    connection: &str,
) -> Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(|e| Error::ConnectionException {
        sqlstate: "08001",
        message: format!("cannot reach the brokers of connection \"{connection}\": {e}"),
    })?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(Error::undefined("topic", topic));
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(Error::undefined("topic", topic));
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

/// The topics whose whole name matches `pattern`, with their partitions (42704 when none).
fn matching_topics(
    consumer: &BaseConsumer,
    pattern: &regex::Regex,
    connection: &str,
) -> Result<Vec<(String, Vec<i32>)>> {
    let metadata = consumer.fetch_metadata(None, METADATA_TIMEOUT).map_err(|e| Error::ConnectionException {
        sqlstate: "08001",
        message: format!("cannot reach the brokers of connection \"{connection}\": {e}"),
    })?;
    let mut found: Vec<(String, Vec<i32>)> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && pattern.is_match(t.name()) && !t.partitions().is_empty())
        .map(|t| (t.name().to_string(), t.partitions().iter().map(|p| p.id()).collect()))
        .collect();
    if found.is_empty() {
        return Err(Error::undefined(
            "topic matching",
            pattern.as_str().trim_start_matches("^(?:").trim_end_matches(")$"),
        ));
    }
    found.sort();
    Ok(found)
}

/// A pattern's table for `topic`: its last `.`-separated part (`dbserver1.shop.orders` →
/// `orders`, as Debezium and Canal name topics `prefix.database.table`).
fn table_name_of(topic: &str) -> String {
    topic.rsplit('.').next().unwrap_or(topic).to_string()
}

/// A table's columns fit the envelope: keyed envelopes need a primary key, NONE has none, and
/// every column type can be read from JSON.
fn check_declared(declared: &DeclaredTable, envelope: Envelope) -> Result<()> {
    for f in declared.schema.fields() {
        if !decode::supported(f.data_type()) {
            return Err(Error::FeatureNotSupported(format!(
                "column {} of type {} in a Kafka source (numbers, text, boolean, date, time and timestamp columns are read)",
                f.name(),
                f.data_type()
            )));
        }
    }
    match (envelope.keyed(), &declared.key) {
        (true, None) => {
            Err(bad(format!("ENVELOPE {} reads changes by key: declare the table's PRIMARY KEY", envelope.name())))
        }
        (false, Some(_)) => Err(bad(
            "ENVELOPE NONE appends every message: remove the PRIMARY KEY, or read the topic with ENVELOPE UPSERT"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// What a source has read: each topic's partitions' next offsets, stored with the rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Progress {
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl Progress {
    fn load(store: &dyn StateStore, source_id: u64) -> Result<Self> {
        match store.get(&keys::source_progress(source_id))? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| Error::Storage(format!("source {source_id} has corrupt stored offsets: {e}"))),
            None => Ok(Progress::default()),
        }
    }

    fn write(&self, source_id: u64, batch: &mut WriteBatch) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        batch.put(keys::source_progress(source_id), bytes);
        Ok(())
    }

    /// `0:120,1:98` (one topic) or `topic/0:120,...`, for `hw_catalog.sources.offsets`.
    fn describe(&self) -> String {
        let one = self.offsets.len() == 1;
        self.offsets
            .iter()
            .flat_map(|(t, parts)| {
                parts.iter().map(move |(p, o)| if one { format!("{p}:{o}") } else { format!("{t}/{p}:{o}") })
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn next(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(topic).and_then(|p| p.get(&partition)).copied()
    }

    fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        self.offsets.entry(topic.to_string()).or_default().insert(partition, next);
    }
}

#[async_trait::async_trait]
impl SourceKind for Kafka {
    fn connection_kind(&self) -> &'static str {
        "KAFKA"
    }

    async fn discover(
        &self,
        config: &SourceConfig<'_>,
        selection: &TableSelection,
        _check_upstream: bool,
    ) -> Result<Vec<TableDef>> {
        if *selection != TableSelection::All {
            return Err(Error::FeatureNotSupported(
                "ALTER SOURCE ... ADD TABLE on a Kafka source (its topics are chosen when it is created; create \
                 another source)"
                    .into(),
            ));
        }
        let options = KafkaOptions::parse(config.options)?;
        if config.declared.is_none() && options.envelope != Envelope::Debezium {
            return Err(Error::FeatureNotSupported(format!(
                "a Kafka source without a column list (only ENVELOPE DEBEZIUM topics with schema blocks tell their \
                 columns); declare them: CREATE SOURCE {} (id BIGINT PRIMARY KEY, ...) FROM KAFKA ...",
                crate::ident::quote_ident(config.source_name)
            )));
        }
        if let Some(declared) = config.declared {
            check_declared(declared, options.envelope)?;
        }
        // The topics must exist and the brokers answer; a Debezium topic without a column
        // list tells its columns in its first message's schema blocks.
        let connection = config.connection.clone();
        let (source, conn_name) = (config.source_name.to_string(), config.connection_name.to_string());
        let infer = config.declared.is_none();
        let topics = options.topics.clone();
        let found = tokio::task::spawn_blocking(move || -> Result<Vec<(String, String, Option<DeclaredTable>)>> {
            let consumer: BaseConsumer = client_config(&connection, &source)
                .create()
                .map_err(|e| bad(format!("connection \"{conn_name}\": {e}")))?;
            let chosen: Vec<(String, String, Vec<i32>)> = match &topics {
                Topics::One(t) => vec![(source.clone(), t.clone(), partitions(&consumer, t, &conn_name)?)],
                Topics::Pattern(re) => matching_topics(&consumer, re, &conn_name)?
                    .into_iter()
                    .map(|(t, parts)| (table_name_of(&t), t, parts))
                    .collect(),
            };
            let mut out = Vec::with_capacity(chosen.len());
            for (table, topic, parts) in chosen {
                let inferred = if infer { Some(infer::sample(&consumer, &topic, &parts, &table)?) } else { None };
                out.push((table, topic, inferred));
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let mut defs = Vec::with_capacity(found.len());
        for (name, topic, inferred) in found {
            if let Some(other) = defs.iter().find(|d: &&TableDef| d.name == name) {
                return Err(Error::DuplicateObject {
                    kind: "relation",
                    name: format!("{name} (for {} and topic {topic}; narrow the TOPIC PATTERN)", other.upstream),
                });
            }
            let declared = match (config.declared, &inferred) {
                (Some(d), _) => d,
                (None, Some(d)) => {
                    check_declared(d, options.envelope)?;
                    d
                }
                (None, None) => return Err(Error::Internal("no columns were inferred".into())),
            };
            let create_sql = match &inferred {
                Some(d) => d.create_sql.clone(),
                // The declared text names the source; a pattern's tables are named per topic.
                None => declared.create_sql.replacen(
                    &format!("CREATE TABLE {}", crate::ident::quoted(config.source_name)),
                    &format!("CREATE TABLE {}", crate::ident::quoted(&name)),
                    1,
                ),
            };
            let table = TopicTable {
                name,
                topic,
                envelope: options.envelope,
                columns: declared
                    .schema
                    .fields()
                    .iter()
                    .map(|f| StoredColumn {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                        nullable: f.is_nullable(),
                    })
                    .collect(),
                key: declared.key.clone(),
                create_sql,
            };
            // The stored type text must read back as the same type.
            let reread = table.schema()?;
            if reread.fields().iter().zip(declared.schema.fields()).any(|(a, b)| a.data_type() != b.data_type()) {
                return Err(Error::Internal(format!("a column type of {} does not survive its text", table.name)));
            }
            defs.push(table.def()?);
        }
        Ok(defs)
    }

    fn table_def(&self, name: &str, details: &serde_json::Value) -> Result<TableDef> {
        topic_table(details, name)?.def()
    }

    fn upstream_of(&self, details: &serde_json::Value) -> Option<String> {
        serde_json::from_value::<TopicTable>(details.clone()).ok().map(|t| format!("topic {}", t.topic))
    }

    fn start(&self, config: &SourceConfig<'_>, run: SourceRun) -> Result<SourceHandle> {
        let options = KafkaOptions::parse(config.options)?;
        if run.tables.is_empty() {
            return Err(Error::Storage(format!("Kafka source {} has no table", run.name)));
        }
        let mut readers = Vec::with_capacity(run.tables.len());
        let mut statuses = Vec::with_capacity(run.tables.len());
        for (details, table) in run.tables {
            let def = topic_table(&details, table.name())?;
            statuses.push(TableStatus {
                name: def.name.clone(),
                upstream: format!("topic {}", def.topic),
                state: "pending".into(),
                ..Default::default()
            });
            readers.push(runner::TopicReader { key_names: def.key_names(), topic: def.topic, table });
        }
        let topics: Vec<String> = readers.iter().map(|r| r.topic.clone()).collect();
        let status = Arc::new(Mutex::new(SourceStatus {
            name: run.name.clone(),
            kind: "kafka",
            connection: config.connection_name.to_string(),
            state: "starting".into(),
            tables: statuses,
            ..Default::default()
        }));
        let (applied_tx, applied) = watch::channel(BTreeMap::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let client = client_config(config.connection, &run.name);
        let runner = runner::Runner {
            name: run.name,
            id: run.id,
            connection: config.connection_name.to_string(),
            client: client.clone(),
            options,
            readers,
            store: run.store,
            dataflow: run.dataflow,
            status: status.clone(),
            applied: applied_tx,
            shutdown: shutdown_rx,
        };
        let catch_up = OffsetCatchUp { status: status.clone(), applied, client, topics };
        let task = tokio::task::spawn_blocking(move || runner.run());
        Ok(SourceHandle { probe: SourceProbe { status, catch_up: Arc::new(catch_up) }, shutdown, task })
    }

    fn forget_tables(&self, store: &dyn StateStore, source_id: u64, _tables: &[String]) -> Result<()> {
        self.reset(store, source_id)
    }

    fn reset(&self, store: &dyn StateStore, source_id: u64) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete(keys::source_progress(source_id));
        store.apply(b)
    }

    fn details_without_positions(&self, _details: &serde_json::Value) -> Option<serde_json::Value> {
        None
    }
}

/// `real_time_recency` for a Kafka source: reads each partition's high watermark, then waits
/// until the source has applied up to it.
struct OffsetCatchUp {
    status: Arc<Mutex<SourceStatus>>,
    /// Each topic's partitions' next offsets to apply, as committed.
    applied: watch::Receiver<BTreeMap<String, BTreeMap<i32, i64>>>,
    client: ClientConfig,
    topics: Vec<String>,
}

type Watermarks = Vec<(String, i32, i64)>;

#[async_trait::async_trait]
impl CatchUp for OffsetCatchUp {
    async fn wait_caught_up(&self, timeout: Duration) -> Result<()> {
        let (client, topics) = (self.client.clone(), self.topics.clone());
        let name = self.status.locked().name.clone();
        let watermarks = tokio::task::spawn_blocking(move || -> std::result::Result<Watermarks, String> {
            let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
            let mut high = Vec::new();
            for topic in topics {
                for p in partitions(&consumer, &topic, "").map_err(|e| e.to_string())? {
                    let (_, h) = consumer.fetch_watermarks(&topic, p, timeout).map_err(|e| e.to_string())?;
                    high.push((topic.clone(), p, h));
                }
            }
            Ok(high)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| {
            Error::OperatorIntervention(format!(
                "real_time_recency: cannot read the end offsets of source \"{name}\"'s topics ({e}); SET \
                 real_time_recency = off to read what has been applied so far"
            ))
        })?;
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout(timeout, async {
            loop {
                let done = {
                    let now = applied.borrow();
                    watermarks.iter().all(|(t, p, high)| {
                        *high == 0 || now.get(t).and_then(|parts| parts.get(p)).is_some_and(|o| o >= high)
                    })
                };
                if done {
                    return;
                }
                if applied.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        reached.map_err(|_| {
            let status = self.status.locked().clone();
            Error::OperatorIntervention(format!(
                "real_time_recency: source \"{}\" has applied up to offsets {}, the topics end at {}; gave up after \
                 real_time_recency_timeout (state: {}{})",
                status.name,
                status.offsets.unwrap_or_default(),
                watermarks.iter().map(|(t, p, o)| format!("{t}/{p}:{o}")).collect::<Vec<_>>().join(","),
                status.state,
                status.last_error.map(|e| format!(", last error: {e}")).unwrap_or_default()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let opts = |pairs: &[(&str, &str)]| {
            KafkaOptions::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let o = opts(&[("TOPIC", "t"), ("ENVELOPE", "debezium"), ("ON_ERROR", "skip")]).unwrap();
        assert!(matches!(&o.topics, Topics::One(t) if t == "t"));
        assert_eq!((o.envelope, o.on_error), (Envelope::Debezium, OnError::Skip));
        let o = opts(&[("TOPIC_PATTERN", "shop\\..*"), ("ENVELOPE", "debezium")]).unwrap();
        assert!(matches!(&o.topics, Topics::Pattern(p) if p.is_match("shop.orders") && !p.is_match("x.shop.orders")));
        assert_eq!(opts(&[("TOPIC", "t"), ("TOPIC_PATTERN", "t")]).unwrap_err().sqlstate(), "22023");
        assert_eq!(opts(&[("TOPIC_PATTERN", "(")]).unwrap_err().sqlstate(), "22023");
        assert_eq!(table_name_of("dbserver1.shop.orders"), "orders");
        assert_eq!(opts(&[]).unwrap_err().sqlstate(), "22023");
        assert_eq!(opts(&[("TOPIC", "t"), ("FORMAT", "AVRO")]).unwrap_err().sqlstate(), "0A000");
        assert_eq!(opts(&[("TOPIC", "t"), ("ENVELOPE", "x")]).unwrap_err().sqlstate(), "22023");
        assert_eq!(opts(&[("TOPIC", "t"), ("BOGUS", "1")]).unwrap_err().sqlstate(), "22023");
    }

    #[test]
    fn column_types_survive_their_text() {
        for t in [
            DataType::Int64,
            DataType::Decimal128(12, 2),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
            DataType::Utf8View,
            DataType::Date32,
            DataType::Time64(TimeUnit::Microsecond),
        ] {
            let back: DataType = t.to_string().parse().unwrap();
            assert_eq!(back, t);
        }
    }
}
