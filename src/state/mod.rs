//! State: where rows and catalog entries live.
//!
//! Two layers, both small:
//! - [`store::StateStore`] is the durable key-value interface: atomic multi-key batches
//!   ([`store::WriteBatch`]) over one ordered keyspace. [`fjall_store::FjallStore`] is the
//!   embedded implementation under `--data-dir` ([`datadir`]: marker, lock; [`store::SledStore`]
//!   for data directories of format 1); [`store::MemoryStore`] backs unit tests. The keyspace layout is in [`keys`].
//! - [`checkpoint::CheckpointedStore`] sits between the engine and the durable store (fjall; sled in format-1 directories): commits
//!   stage their writes in memory, and a checkpoint (every `--checkpoint-interval`, on DDL,
//!   on local DML, at shutdown) writes what changed since the last one in one atomic batch,
//!   and from time to time a table's whole rows as an [`image`] file, so a restart reads a
//!   table sequentially and the store holds only what changed since.
//! - [`table::TableState`] keeps the rows of one table (local, and later captured upstream
//!   tables) in memory, keyed by the primary key encoded with Arrow's row format, and applies
//!   weighted changes ([`crate::change::ChangeBatch`]) to it in three steps (plan, write, apply)
//!   that the one commit path, `dataflow::Dataflow::commit`, runs for several tables with a
//!   single store batch, so a commit is all-or-nothing on disk and in memory.
//!
//! Queries never read the store: they pin a table's rows ([`table::TableState::pin`]), an
//! immutable view that later commits do not change.

pub mod checkpoint;
pub mod datadir;
pub mod fjall_store;
pub mod image;
pub mod index;
pub mod keys;
pub mod store;
pub mod table;

pub use checkpoint::{CheckpointStats, CheckpointedStore};
pub use store::{MemoryStore, SledStore, StateStore, WriteBatch};
pub use table::TableState;
