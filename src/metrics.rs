//! Prometheus metrics: `GET /metrics` on `--metrics-listen`, in the OpenMetrics text format.
//!
//! Nothing is counted twice: every scrape reads the same live status that `hw_catalog` shows
//! ([`SourceStatus`](crate::source::SourceStatus), [`SinkStatus`](crate::sink::SinkStatus),
//! [`CheckpointStats`](crate::state::CheckpointStats),
//! [`relation_sizes`](crate::sql::hw_catalog::relation_sizes)), through one
//! [`Collector`] that holds the engine weakly. The hot paths carry no metric updates of their
//! own. The HTTP side is hyper's HTTP/1 server, one task per connection, stopped with the
//! server.
//!
//! Names (all prefixed `headwater_`), by what they describe:
//! - sources: `source_up`, `source_state{state}`, `source_lag_seconds`, `source_lag_messages`
//!   (Kafka), `source_tables`;
//!   `source_tables_by_state{state}`; per captured table `source_table_state{state}`,
//!   `source_table_rows_copied`, `source_table_chunks_done`, `source_table_chunks_total`;
//! - tables and materialized views: `relation_rows`, `relation_memory_bytes`,
//!   `relation_operator_bytes`; per materialized view `view_errors` (rows its query fails
//!   on) and `view_state{state}`; `views_errored` (views whose reads report an error);
//! - checkpoints: `checkpoints_total`, `checkpoint_last_duration_seconds`,
//!   `checkpoint_last_bytes`, `checkpoint_written_bytes_total`, `checkpoint_staged_bytes`,
//!   `checkpoint_failing`;
//! - sinks: `sink_messages_total`, `sink_pending_commits`, `sink_lag_seconds`,
//!   `sink_state{state}`.

use std::convert::Infallible;
use std::sync::{Arc, Weak};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::sql::Engine;

/// Per-table series are bounded: a source capturing more tables than this gets them only for
/// its tables that are not streaming (snapshotting, pending, failed: the ones to look at),
/// at most this many, and the captured tables' `relation_*` series are left out once there
/// are more tables than this (materialized views always have theirs). Ten thousand captured
/// tables would otherwise be 70,000 series in every scrape — a cost for the user's
/// Prometheus, not only for Headwater. `source_tables_by_state` counts them all, and
/// `hw_catalog.source_tables` / `hw_catalog.relations` list them all.
pub const TABLE_SERIES_LIMIT: usize = 1_000;

/// The captured tables that get per-table series ([`TABLE_SERIES_LIMIT`]).
fn tables_with_series(tables: &[crate::source::TableStatus]) -> impl Iterator<Item = &crate::source::TableStatus> {
    let all = tables.len() <= TABLE_SERIES_LIMIT;
    tables.iter().filter(move |t| all || t.state != "streaming").take(TABLE_SERIES_LIMIT)
}

/// The content type of the OpenMetrics text format (Prometheus reads it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

/// One metric family: its samples, each a label set and a value.
struct Family<T> {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Labels, T)>,
}

impl<T> Family<T> {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family { name, help, samples: Vec::new() }
    }

    fn add(&mut self, labels: Labels, value: T) {
        self.samples.push((labels, value));
    }
}

fn gauges(encoder: &mut DescriptorEncoder, family: &Family<f64>) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(family.name, family.help, None, MetricType::Gauge)?;
    for (labels, value) in &family.samples {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counters(encoder: &mut DescriptorEncoder, family: &Family<u64>) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(family.name, family.help, None, MetricType::Counter)?;
    for (labels, value) in &family.samples {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

/// Reads the engine's status at each scrape.
struct EngineCollector(Weak<Engine>);

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCollector")
    }
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let Some(engine) = self.0.upgrade() else { return Ok(()) };
        let mut up = Family::new("source_up", "1 while the source reads its upstream (snapshotting or streaming)");
        let mut state =
            Family::new("source_state", "The source's state, as hw_catalog.sources.state (1 for the current one)");
        let mut lag = Family::new("source_lag_seconds", "Seconds between the last applied upstream commit and now");
        let mut lag_messages =
            Family::new("source_lag_messages", "Messages in a Kafka source's topics not applied yet");
        let mut tables = Family::new("source_tables", "Captured tables of the source");
        let mut table_state = Family::new("source_table_state", "A captured table's state (1 for the current one)");
        let mut copied = Family::new(
            "source_table_rows_copied",
            "Rows the table's snapshot has copied (Kafka: rows applied since the server started)",
        );
        let mut done = Family::new("source_table_chunks_done", "Snapshot chunks applied");
        let mut total = Family::new("source_table_chunks_total", "Snapshot chunks estimated");
        let mut by_state = Family::new("source_tables_by_state", "Captured tables of the source in each state");
        for s in engine.sources().statuses() {
            let source = || vec![("source", s.name.clone())];
            let running = matches!(s.state.as_str(), "snapshotting" | "streaming");
            up.add(source(), f64::from(u8::from(running)));
            state.add(vec![("source", s.name.clone()), ("state", s.state.clone())], 1.0);
            if let Some(l) = s.lag_seconds {
                lag.add(source(), l);
            }
            if let Some(l) = s.lag_messages {
                lag_messages.add(source(), l as f64);
            }
            tables.add(source(), s.tables.len() as f64);
            let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for t in &s.tables {
                *counts.entry(t.state.as_str()).or_default() += 1;
            }
            for (st, n) in counts {
                by_state.add(vec![("source", s.name.clone()), ("state", st.to_string())], n as f64);
            }
            for t in tables_with_series(&s.tables) {
                let labels =
                    || vec![("source", s.name.clone()), ("table", t.name.clone()), ("upstream", t.upstream.clone())];
                let mut with_state = labels();
                with_state.push(("state", t.state.clone()));
                table_state.add(with_state, 1.0);
                copied.add(labels(), t.rows_copied as f64);
                done.add(labels(), t.chunks_done as f64);
                total.add(labels(), t.chunks_total as f64);
            }
        }
        for f in [&up, &state, &lag, &lag_messages, &tables, &by_state, &table_state, &copied, &done, &total] {
            gauges(&mut encoder, f)?;
        }

        let mut rows = Family::new("relation_rows", "Rows of a table or materialized view");
        let mut memory =
            Family::new("relation_memory_bytes", "Bytes of state in memory: rows, plus a view's operators");
        let mut operators = Family::new("relation_operator_bytes", "Bytes of a materialized view's operator state");
        let sizes = crate::sql::hw_catalog::relation_sizes(engine.catalog(), engine.dataflow());
        let with_tables = sizes.iter().filter(|r| r.kind == "table").count() <= TABLE_SERIES_LIMIT;
        for r in sizes.iter().filter(|r| with_tables || r.kind != "table") {
            let labels = || vec![("relation", r.name.clone()), ("type", r.kind.to_string())];
            rows.add(labels(), r.rows as f64);
            memory.add(labels(), r.memory_bytes as f64);
            if r.kind == "materialized view" {
                operators.add(labels(), r.operator_bytes as f64);
            }
        }
        for f in [&rows, &memory, &operators] {
            gauges(&mut encoder, f)?;
        }

        let mut view_errors =
            Family::new("view_errors", "Rows of its inputs on which a materialized view's query fails");
        let mut view_state = Family::new("view_state", "A materialized view's state (1 for the current one)");
        let mut errored = Family::new("views_errored", "Materialized views whose reads report an error");
        let mut n_errored = 0.0;
        for v in engine.dataflow().views() {
            let state = crate::sql::hw_catalog::view_state(&v);
            view_errors.add(vec![("view", v.name.clone())], v.error_count as f64);
            view_state.add(vec![("view", v.name.clone()), ("state", state.to_string())], 1.0);
            n_errored += if state == "running" { 0.0 } else { 1.0 };
        }
        errored.add(Vec::new(), n_errored);
        for f in [&view_errors, &view_state, &errored] {
            gauges(&mut encoder, f)?;
        }

        let c = engine.checkpoint_stats();
        let mut written = Family::new("checkpoints", "Checkpoints written since the server started");
        written.add(Vec::new(), c.count);
        counters(&mut encoder, &written)?;
        let mut bytes =
            Family::new("checkpoint_written_bytes", "Bytes written by checkpoints since the server started");
        bytes.add(Vec::new(), c.total_bytes);
        counters(&mut encoder, &bytes)?;
        let single = |name, help, value: f64| {
            let mut f = Family::new(name, help);
            f.add(Vec::new(), value);
            f
        };
        for f in [
            single(
                "checkpoint_last_duration_seconds",
                "How long the last checkpoint took",
                c.last_duration.as_secs_f64(),
            ),
            single("checkpoint_last_bytes", "Bytes the last checkpoint wrote", c.last_bytes as f64),
            single("checkpoint_staged_bytes", "Bytes staged for the next checkpoint", c.staged_bytes as f64),
            single(
                "checkpoint_failing",
                "1 when the last checkpoint failed",
                f64::from(u8::from(c.last_error.is_some())),
            ),
        ] {
            gauges(&mut encoder, &f)?;
        }

        let mut messages = Family::new("sink_messages", "Messages the sink has produced to Kafka");
        let mut pending = Family::new("sink_pending_commits", "Commits whose messages are not yet in Kafka");
        let mut sink_lag = Family::new("sink_lag_seconds", "Age of the oldest commit not yet in Kafka");
        let mut sink_state =
            Family::new("sink_state", "The sink's state, as hw_catalog.sinks.state (1 for the current one)");
        for s in engine.sinks().statuses() {
            let labels = || vec![("sink", s.name.clone()), ("relation", s.relation.clone())];
            messages.add(labels(), s.messages_sent);
            pending.add(labels(), s.pending_commits as f64);
            sink_lag.add(labels(), s.lag_seconds);
            let mut with_state = labels();
            with_state.push(("state", s.state.clone()));
            sink_state.add(with_state, 1.0);
        }
        counters(&mut encoder, &messages)?;
        for f in [&pending, &sink_lag, &sink_state] {
            gauges(&mut encoder, f)?;
        }
        Ok(())
    }
}

/// The exposition of `engine`'s metrics (what `GET /metrics` returns).
pub fn render(engine: &Arc<Engine>) -> String {
    let mut registry = Registry::with_prefix("headwater");
    registry.register_collector(Box::new(EngineCollector(Arc::downgrade(engine))));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("cannot encode the metrics: {e}");
    }
    out
}

async fn respond(engine: Weak<Engine>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    let text = "text/plain; charset=utf-8";
    Ok(match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => match engine.upgrade() {
            Some(engine) => reply(StatusCode::OK, CONTENT_TYPE, render(&engine)),
            None => reply(StatusCode::SERVICE_UNAVAILABLE, text, "the server is stopping\n".into()),
        },
        (_, "/metrics") => reply(StatusCode::METHOD_NOT_ALLOWED, text, "use GET /metrics\n".into()),
        _ => reply(StatusCode::NOT_FOUND, text, "Headwater serves GET /metrics here\n".into()),
    })
}

/// Serves `GET /metrics` on `listener` until `shutdown` turns true.
pub async fn serve(engine: Weak<Engine>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics listener: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let engine = engine.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |r| respond(engine.clone(), r));
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("metrics connection: {e}");
                    }
                }
                // The server stops: the connection closes with it.
                _ = stop.changed() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::TableStatus;

    fn tables(n: usize, failing: usize) -> Vec<TableStatus> {
        (0..n)
            .map(|i| TableStatus {
                name: format!("t{i}"),
                state: if i < failing { "error" } else { "streaming" }.into(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn per_table_series_are_bounded() {
        assert_eq!(tables_with_series(&tables(1_000, 0)).count(), 1_000, "a source at the limit keeps them all");
        assert_eq!(tables_with_series(&tables(10_000, 0)).count(), 0);
        let t = tables(10_000, 3);
        let listed: Vec<&str> = tables_with_series(&t).map(|t| t.state.as_str()).collect();
        assert_eq!(listed, ["error"; 3], "past the limit only the tables to look at");
        assert_eq!(tables_with_series(&tables(10_000, 5_000)).count(), TABLE_SERIES_LIMIT);
    }
}
