//! Transaction blocks (`BEGIN ... COMMIT`) over local tables.
//!
//! Outside a block each statement commits on its own. Inside one, INSERT, UPDATE and DELETE
//! are checked (keys, NOT NULL) and applied to the block's own copy of each table it writes:
//! [`TableState::apply_to_pinned`], an O(1) clone of the table's rows plus the block's
//! changes. Every later statement of the block reads that copy for the tables it wrote (its
//! own writes) and the last commit for the others; nothing reaches the tables, the views, the
//! sinks or the store before COMMIT. COMMIT adds up the block's changes per table — exact
//! Z-set deltas, so their consolidated sum is what applying them one after another does — and
//! commits them to every table the block wrote in one atomic commit
//! ([`crate::dataflow::Dataflow::commit`]); ROLLBACK drops them.
//!
//! Isolation is first committer wins on the rows written: the sum is committed as
//! [`ApplyMode::Checked`], so if another session changed or deleted a row the block changed
//! after the block read it, COMMIT fails with 40001 and writes nothing (two blocks inserting
//! one key: the second gets 23505). Reads are not repeatable across statements for tables the
//! block has not written.
//!
//! After an error the block is failed, as in Postgres: statements are refused (25P02) until
//! ROLLBACK, ROLLBACK TO SAVEPOINT, or COMMIT (which then rolls back). SAVEPOINT keeps a copy
//! of the block's state (O(1) per written table). DDL and source/sink commands inside a block
//! take effect at once; they are not undone by ROLLBACK.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;

use crate::change::{ApplyMode, ChangeBatch};
use crate::dataflow::consolidate;
use crate::error::{Error, Result};
use crate::state::table::PinnedRows;
use crate::state::TableState;

/// An open transaction block.
#[derive(Default)]
pub struct Transaction {
    /// The tables written so far, in order of their first write.
    written: Vec<Written>,
    /// A statement failed: only ROLLBACK (TO SAVEPOINT) or COMMIT are accepted.
    pub failed: bool,
    /// `SAVEPOINT name`s, oldest first, with the block's writes when each was set.
    savepoints: Vec<(String, Vec<Written>)>,
}

/// One table the block wrote: the rows as the block sees them and the changes that made them.
#[derive(Clone)]
struct Written {
    table: Arc<TableState>,
    rows: PinnedRows,
    changes: Vec<ChangeBatch>,
}

impl Transaction {
    /// Whether the block has written anything.
    pub fn has_writes(&self) -> bool {
        !self.written.is_empty()
    }

    /// Replaces the pinned rows of the tables the block wrote with the block's own.
    pub fn overlay(&self, pins: &mut HashMap<u64, PinnedRows>) {
        for w in &self.written {
            if let Some(p) = pins.get_mut(&w.table.id()) {
                *p = w.rows.clone();
            }
        }
    }

    /// Applies `change` (read from the block's view of `table`) to the block's copy of the
    /// table; checked as a commit is, so a bad statement fails here and leaves the block as it
    /// was.
    pub fn write(&mut self, table: &Arc<TableState>, change: ChangeBatch) -> Result<()> {
        let slot = self.written.iter().position(|w| w.table.id() == table.id());
        let base = match slot {
            Some(i) => self.written[i].rows.clone(),
            None => table.pin(),
        };
        let rows = table.apply_to_pinned(&base, &change)?;
        match slot {
            Some(i) => {
                self.written[i].rows = rows;
                self.written[i].changes.push(change);
            }
            None => self.written.push(Written { table: table.clone(), rows, changes: vec![change] }),
        }
        Ok(())
    }

    /// Per table written, the sum of the block's changes, to commit (tables whose changes
    /// cancel out are left out).
    pub fn net_changes(&self) -> Result<Vec<(Arc<TableState>, ChangeBatch)>> {
        let mut out = Vec::with_capacity(self.written.len());
        for w in &self.written {
            let schema = w.table.schema();
            let data = concat_batches(&schema, w.changes.iter().map(|c| &c.data))?;
            let weights = w.changes.iter().flat_map(|c| c.weights.iter().copied()).collect();
            // Consolidated as a plain delta, committed checked.
            let mut net = consolidate(ChangeBatch { data, weights, mode: ApplyMode::Delta })?;
            net.mode = ApplyMode::Checked;
            if !net.is_empty() {
                out.push((w.table.clone(), net));
            }
        }
        Ok(out)
    }

    /// `SAVEPOINT name`.
    pub fn savepoint(&mut self, name: &str) {
        self.savepoints.push((name.to_string(), self.written.clone()));
    }

    /// `ROLLBACK TO SAVEPOINT name`: the block's writes as they were at the savepoint, which
    /// stays (later ones go); the block is no longer failed.
    pub fn rollback_to(&mut self, name: &str) -> Result<()> {
        let i = self.find(name)?;
        self.savepoints.truncate(i + 1);
        self.written = self.savepoints[i].1.clone();
        self.failed = false;
        Ok(())
    }

    /// `RELEASE SAVEPOINT name`: forgets it and every later one; the writes stay.
    pub fn release(&mut self, name: &str) -> Result<()> {
        let i = self.find(name)?;
        self.savepoints.truncate(i);
        Ok(())
    }

    /// The most recent savepoint called `name` (names may repeat, as in Postgres).
    fn find(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| Error::InvalidSavepoint(format!("savepoint \"{name}\" does not exist")))
    }
}
