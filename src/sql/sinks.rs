//! `CREATE SINK` / restore / drop: the SQL side of [`crate::sink`].
//!
//! Everything a statement can get wrong is checked here, before the sink exists: the
//! connection (exists, is KAFKA), the relation (a table or materialized view), the options,
//! and the key (its columns exist; unless `NOT ENFORCED`, it contains a key the relation is
//! known to be unique on: a table's primary key, a view's GROUP BY columns). Nothing here
//! talks to Kafka: a broker that is down is the worker's business (it retries and says so in
//! `hw_catalog.sinks`), so CREATE SINK and restarts never hang on the network.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::parser::{ConnectionKind, ObjectType, SinkStatement};
use super::result::QueryResult;
use super::{HwStatement, Session};
use crate::catalog::{Namespace, Relation};
use crate::error::{Error, Result};
use crate::sink::encode::{DecimalFormat, Encoder, Envelope};
use crate::sink::kafka::{self, KafkaTarget};
use crate::sink::{Delivery, SinkConfig, SinkRegistry};

const TAG: &str = "CREATE SINK";
const TOPIC_OPTIONS: &[&str] = &["TOPIC", "PARTITIONS", "REPLICATION_FACTOR"];
const WITH_OPTIONS: &[&str] = &["DELIVERY", "DECIMAL_FORMAT", "CREATE_TOPIC", "TRANSACTIONAL_ID"];
const DEFAULT_PROGRESS_TOPIC: &str = "_headwater_progress";

fn check_options(given: &BTreeMap<String, String>, allowed: &[&str], what: &str) -> Result<()> {
    match given.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Error::InvalidParameterValue(format!(
            "unknown {what} option {k} (valid options: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn int_option(options: &BTreeMap<String, String>, key: &str) -> Result<Option<i32>> {
    options
        .get(key)
        .map(|v| {
            v.parse::<i32>().ok().filter(|n| *n > 0 || *n == -1).ok_or_else(|| {
                Error::InvalidParameterValue(format!("{key} must be a positive number (or -1), got {v}"))
            })
        })
        .transpose()
}

fn bool_option(options: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool> {
    match options.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "on" | "yes" | "1") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "off" | "no" | "0") => Ok(false),
        Some(v) => Err(Error::InvalidParameterValue(format!("{key} must be true or false, got {v}"))),
    }
}

/// A transactional id no other sink (here or on another server) uses.
fn new_transactional_id(name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    format!("headwater-{name}-{:016x}", h.finish())
}

fn sink_sql(s: &SinkStatement) -> String {
    let q = crate::sql::quote_ident;
    let opts = |o: &BTreeMap<String, String>| {
        o.iter().map(|(k, v)| format!("{k} = '{}'", v.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
    };
    let mut sql = format!(
        "CREATE SINK {} FROM {} INTO KAFKA CONNECTION {} ({})",
        q(&s.name),
        q(&s.from),
        q(&s.connection),
        opts(&s.kafka_options)
    );
    if let Some(key) = &s.key {
        sql.push_str(&format!(" KEY ({})", key.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ")));
        if s.key_not_enforced {
            sql.push_str(" NOT ENFORCED");
        }
    }
    sql.push_str(&format!(" FORMAT JSON ENVELOPE {}", s.envelope.as_deref().unwrap_or("DEBEZIUM")));
    if !s.options.is_empty() {
        sql.push_str(&format!(" WITH ({})", opts(&s.options)));
    }
    sql
}

/// `CREATE SINK` (and its replay at start-up, with `restore` = the catalog id).
pub(super) fn create_sink(s: &Session, stmt: &SinkStatement, restore: Option<u64>) -> Result<QueryResult> {
    let engine = s.engine();
    let catalog = engine.catalog();
    if restore.is_none() && catalog.get(Namespace::Sink, &stmt.name).is_some() {
        if stmt.if_not_exists {
            return Ok(QueryResult::command(TAG));
        }
        return Err(Error::duplicate("sink", &stmt.name));
    }
    // The connection.
    let conn = catalog
        .get(Namespace::Connection, &stmt.connection)
        .ok_or_else(|| Error::undefined("connection", &stmt.connection))?;
    let conn_options = match s.parse(&conn.entry.create_sql)?.pop() {
        Some(HwStatement::CreateConnection { kind: ConnectionKind::Kafka, options, .. }) => {
            super::secrets::resolve_options(s, &options)?
        }
        Some(HwStatement::CreateConnection { kind, .. }) => {
            return Err(Error::InvalidParameterValue(format!(
                "connection \"{}\" is a {kind} connection; a Kafka sink needs a KAFKA connection",
                stmt.connection
            )))
        }
        _ => return Err(Error::Storage(format!("connection \"{}\" has a corrupt definition", stmt.connection))),
    };
    // The relation.
    let rel = catalog.get(Namespace::Relation, &stmt.from).ok_or_else(|| Error::UndefinedTable(stmt.from.clone()))?;
    let Some(Relation::Table { state, .. }) = &rel.relation else {
        return Err(Error::FeatureNotSupported(format!(
            "a sink from the plain view \"{}\" (sinks publish tables and materialized views: \
             CREATE MATERIALIZED VIEW it instead)",
            stmt.from
        )));
    };
    // Format, envelope and options.
    if let Some(f) = stmt.format.as_deref().filter(|f| *f != "JSON") {
        return Err(Error::FeatureNotSupported(format!("FORMAT {f} (sinks write FORMAT JSON)")));
    }
    let envelope = match stmt.envelope.as_deref() {
        None | Some("DEBEZIUM") => Envelope::Debezium,
        Some("UPSERT") => Envelope::Upsert,
        Some(other) => {
            return Err(Error::InvalidParameterValue(format!("ENVELOPE must be UPSERT or DEBEZIUM, got {other}")))
        }
    };
    check_options(&stmt.kafka_options, TOPIC_OPTIONS, "Kafka sink")?;
    check_options(&stmt.options, WITH_OPTIONS, "sink WITH")?;
    let topic = stmt
        .kafka_options
        .get("TOPIC")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::InvalidParameterValue("a Kafka sink needs (TOPIC 'name')".into()))?
        .clone();
    let partitions = int_option(&stmt.kafka_options, "PARTITIONS")?;
    let replication_factor = int_option(&stmt.kafka_options, "REPLICATION_FACTOR")?;
    let delivery = match stmt.options.get("DELIVERY").map(|d| d.to_ascii_lowercase()).as_deref() {
        None | Some("exactly_once") | Some("exactly-once") => Delivery::ExactlyOnce,
        Some("at_least_once") | Some("at-least-once") => Delivery::AtLeastOnce,
        Some(other) => {
            return Err(Error::InvalidParameterValue(format!(
                "DELIVERY must be 'exactly_once' or 'at_least_once', got '{other}'"
            )))
        }
    };
    let decimal =
        stmt.options.get("DECIMAL_FORMAT").map_or(Ok(DecimalFormat::String), |v| crate::sink::decimal_format(v))?;
    let create_topic = bool_option(&stmt.options, "CREATE_TOPIC", true)?;
    // The key.
    let schema = state.schema();
    let unique_keys: Vec<Vec<usize>> = match state.key_columns() {
        Some(k) => vec![k.to_vec()],
        None => engine.dataflow().view_unique_keys(rel.entry.id),
    };
    let key = match &stmt.key {
        Some(cols) => {
            let mut idx = Vec::new();
            for c in cols {
                let i = schema.index_of(c).map_err(|_| {
                    Error::UndefinedColumn(format!("column \"{c}\" named in KEY does not exist in \"{}\"", stmt.from))
                })?;
                idx.push(i);
            }
            if !stmt.key_not_enforced && !unique_keys.iter().any(|u| u.iter().all(|c| idx.contains(c))) {
                let known = unique_keys
                    .iter()
                    .map(|u| {
                        format!(
                            "({})",
                            u.iter().map(|i| schema.field(*i).name().as_str()).collect::<Vec<_>>().join(", ")
                        )
                    })
                    .collect::<Vec<_>>();
                return Err(Error::InvalidColumnReference(format!(
                    "KEY ({}) is not known to be unique in \"{}\" (its unique keys: {}); a sink key must \
                         contain one of them, or be asserted with KEY (...) NOT ENFORCED",
                    cols.join(", "),
                    stmt.from,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            }
            Some(idx)
        }
        None => unique_keys.first().cloned(),
    };
    if envelope == Envelope::Upsert && key.is_none() {
        return Err(Error::InvalidParameterValue(format!(
            "ENVELOPE UPSERT needs a key, and \"{}\" has none Headwater knows of: give KEY (columns)",
            stmt.from
        )));
    }
    // The statement as stored: with its transactional id, fixed at creation.
    let mut stored = stmt.clone();
    stored.if_not_exists = false;
    stored.envelope = Some(match envelope {
        Envelope::Upsert => "UPSERT".into(),
        Envelope::Debezium => "DEBEZIUM".into(),
    });
    let transactional_id =
        stored.options.entry("TRANSACTIONAL_ID".into()).or_insert_with(|| new_transactional_id(&stmt.name)).clone();
    if restore.is_none() {
        let taken = catalog.list(ObjectType::Sink).into_iter().any(|o| {
            o.entry.create_sql.contains(&format!("TRANSACTIONAL_ID = '{}'", transactional_id.replace('\'', "''")))
        });
        if taken {
            return Err(Error::InvalidParameterValue(format!(
                "TRANSACTIONAL_ID '{transactional_id}' is used by another sink; it is a sink's identity in Kafka \
                 (leave it out to get a new one)"
            )));
        }
    }
    let depends_on = vec![stmt.from.clone(), ObjectType::Connection.dependency_key(&stmt.connection)];
    let mut id = 0;
    catalog.create(ObjectType::Sink, &stmt.name, sink_sql(&stored), depends_on, restore, |i| {
        id = i;
        Ok(None)
    })?;
    let config = SinkConfig {
        id,
        name: stmt.name.clone(),
        relation: stmt.from.clone(),
        connection: stmt.connection.clone(),
        delivery,
        encoder: Encoder { envelope, decimal, key, schema, relation: stmt.from.clone() },
        target: Arc::new(KafkaTarget {
            settings: kafka::client_settings(&conn_options),
            topic,
            create_topic,
            partitions: partitions.unwrap_or(-1),
            replication_factor: replication_factor.unwrap_or(-1),
            progress_topic: conn_options
                .get("PROGRESS_TOPIC")
                .cloned()
                .unwrap_or_else(|| DEFAULT_PROGRESS_TOPIC.into()),
            transactional_id,
        }),
    };
    let started = engine.sinks().start(config, state, engine.dataflow());
    if let Err(e) = started {
        if restore.is_none() {
            if let Some(obj) = catalog.get(Namespace::Sink, &stmt.name) {
                catalog.drop_objects(&[obj])?;
            }
        }
        return Err(e);
    }
    Ok(QueryResult::command(TAG))
}

/// Stops a dropped sink (waiting for its worker, off the async threads) and removes what it
/// stored.
pub(super) async fn release_sink(s: &Session, id: u64, name: &str) -> Result<()> {
    s.engine().dataflow().remove_tap(id);
    let sinks: Arc<SinkRegistry> = s.engine().sinks().clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || sinks.stop(&name, id))
        .await
        .map_err(|e| Error::Internal(format!("stopping the sink failed: {e}")))?;
    crate::sink::delete_state(s.engine().catalog().store().as_ref(), id)
}
