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
//! 2. It becomes a [`dataflow::ChangeBatch`]: Arrow rows with a signed weight each (Z-set).
//! 3. [`state::commit`] checks it against the tables' keyed rows ([`state::TableState`]) and
//!    writes it to the embedded store ([`state::SledStore`]) in one atomic batch, then swaps
//!    it into memory: a statement is visible whole or not at all.
//! 4. Incremental views and sinks will consume the same change batches.
//!
//! # Life of a query (pgwire → DataFusion → state)
//! 1. [`pgwire`] accepts a connection and gives it a [`sql::Session`].
//! 2. [`sql::SqlParser`] parses the text (Postgres dialect plus Headwater statements).
//! 3. DataFusion plans and runs queries over the [`catalog`] exposed as the `public` schema
//!    ([`sql::provider`]), with `pg_catalog` and `information_schema` beside it.
//! 4. Table scans read an immutable snapshot of the table's rows; Arrow batches are encoded
//!    for the wire by arrow-pg.
//!
//! # Modules
//! - [`server`]: process lifecycle (open state, restore catalog, start sources, serve, stop
//!   and flush on shutdown).
//! - [`source`]: upstream capture (`CREATE SOURCE ... FROM MYSQL`) and the running sources.
//! - [`pgwire`]: the Postgres protocol edge.
//! - [`sql`]: parsing, sessions, DDL/DML, DataFusion integration.
//! - [`catalog`]: named objects, persisted and replayed.
//! - [`dataflow`]: the change representation (incremental operators arrive here).
//! - [`state`]: durable key-value store and in-memory table state.
//! - [`error`]: the one error type, with SQLSTATEs.

pub mod catalog;
pub mod dataflow;
pub mod error;
pub mod pgwire;
pub mod server;
pub mod source;
pub mod sql;
pub mod state;

pub use error::{Error, Result};
pub use server::{Config, Server};
