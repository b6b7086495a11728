//! Headwater: a SQL-first streaming database.
//!
//! Users point Headwater at MySQL or MariaDB; captured tables become live SQL tables,
//! materialized views stay up to date incrementally, clients talk the Postgres wire protocol,
//! and sinks push changes to Kafka. This crate is the one binary.
//!
//! # Life of a change (source → dataflow → state → sink)
//! 1. A write arrives: a local `INSERT`/`UPDATE`/`DELETE` ([`sql`]'s DML, planned by
//!    DataFusion), or an upstream MySQL/MariaDB transaction ([`source::mysql`]: snapshot
//!    rows merged with the binlog).
//! 2. It becomes a [`change::ChangeBatch`]: Arrow rows with a signed weight each (Z-set).
//! 3. [`dataflow::Dataflow::commit`] checks it against the tables' keyed rows
//!    ([`state::TableState`]), runs the operators of every materialized view that reads them
//!    ([`dataflow::operator::Operator`], compiled from DataFusion's plan by
//!    [`dataflow::compile`]), writes the tables' changes to the embedded store
//!    ([`state::StateStore`], fjall) in one atomic batch, then swaps tables and views in memory
//!    together: a statement or upstream transaction is visible whole or not at all.
//! 4. Sinks ([`sink`]) get each commit's delta of the table or view they publish inside the
//!    commit, as an outbox entry in the same store batch, and send it to Kafka once the
//!    checkpoint holding it is on disk (exactly-once through Kafka transactions).
//!
//! # Life of a query (pgwire → DataFusion → state)
//! 1. [`pgwire`] accepts a connection and gives it a [`sql::Session`].
//! 2. [`sql::SqlParser`] parses the text (Postgres dialect plus Headwater statements).
//! 3. DataFusion plans and runs queries over the [`catalog`] exposed as the `public` schema
//!    ([`sql::provider`]), with `pg_catalog` and `information_schema` beside it. Point
//!    lookups by key skip the planner ([`sql::PointQuery`]).
//! 4. The query pins every table and view it reads at one commit
//!    ([`dataflow::Dataflow::pin`]); scans read the pinned rows (key-prefix equalities are
//!    range lookups); Arrow batches are encoded for the wire by arrow-pg.
//!
//! # Modules
//! Highest layer first; a module imports only those after it (`docs/architecture.md`,
//! "Layers", checked by `tests/integration/layers.rs`).
//! - [`server`]: process lifecycle (open state, restore catalog, start sources, serve, stop
//!   and flush on shutdown).
//! - [`metrics`]: `GET /metrics` for Prometheus, read from the same status as `hw_catalog`.
//! - [`sink`]: Kafka sinks (`CREATE SINK`): outbox, envelopes, the producer worker.
//! - [`source`]: upstream capture (`CREATE SOURCE ... FROM MYSQL`) behind the
//!   [`source::SourceKind`] trait, and the running sources.
//! - [`pgwire`]: the Postgres protocol edge.
//! - [`sql`]: parsing, sessions, DDL/DML, DataFusion integration.
//! - [`catalog`]: named objects, persisted and replayed.
//! - [`dataflow`]: the commit path, incremental view operators.
//! - [`state`]: durable key-value store and in-memory table state.
//! - [`change`]: change batches, the representation every layer speaks.
//! - [`types`]: Postgres types kept as Arrow text (`json`, `jsonb`, `varchar(n)`, `char(n)`).
//! - [`ident`]: Postgres identifiers in text.
//! - [`error`]: the one error type, with SQLSTATEs.
//! - [`sync`]: taking locks.
//! - [`alloc`]: the allocator's settings (how long freed memory is kept) and the process's
//!   memory ceiling.

#![deny(rustdoc::broken_intra_doc_links)]

pub mod alloc;
pub mod catalog;
pub mod change;
pub mod dataflow;
pub mod error;
pub mod ident;
pub mod metrics;
pub mod pgwire;
pub mod server;
pub mod sink;
pub mod source;
pub mod sql;
pub mod state;
pub mod sync;
pub mod types;

pub use error::{Error, Result};
pub use server::{parse_duration, Config, Server};
