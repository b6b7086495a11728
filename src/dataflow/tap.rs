//! Taps: consumers of one relation's change stream that see every commit inside it (sinks).
//!
//! A tap runs under the commit lock, after the views: it gets the exact delta the commit
//! makes to its relation (a table or a materialized view) and adds what it wants stored to
//! the commit's own write batch — a sink's outbox entry — so the change and the tap's record
//! of it are durable together or not at all. After the batch is applied the tap learns the
//! checkpoint generation that will make it durable ([`Tap::committed`]).

use crate::change::{ChangeBatch, CommitOrigin};
use crate::error::Result;
use crate::state::WriteBatch;

/// A consumer of one relation's deltas.
pub trait Tap: Send {
    /// The relation (table or materialized view id) whose changes the tap consumes.
    fn relation(&self) -> u64;
    /// Adds the tap's record of `delta` to the commit's `batch`.
    fn stage(&mut self, delta: &ChangeBatch, origin: &CommitOrigin, batch: &mut WriteBatch) -> Result<()>;
    /// The commit's batch was applied; `generation` is the checkpoint that makes it durable.
    fn committed(&mut self, generation: u64);
    /// The commit failed after [`Tap::stage`]: nothing of it was stored.
    fn aborted(&mut self);
}
