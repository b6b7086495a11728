//! The running views and the commit path every write takes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;

mod failures;
mod views;

use super::clock::{Clock, GRANULARITY};
use super::compile::{compile, ScanResolver};
use super::durable;
use super::errors::{ErrorDelta, ErrorSet};
use super::operator::{conform, Deltas, Operator};
use super::tap::Tap;
use crate::change::CommitOrigin;
use crate::change::{ApplyMode, ChangeBatch};
use crate::error::{Error, Result, ViewErrors};
use crate::state::table::{PinnedRows, Planned};
use crate::state::{CheckpointedStore, StateStore, TableState, WriteBatch};
use crate::sync::{Unpoisoned, UnpoisonedRw};
use failures::{effective_errors, fail, recompute_view, Failure, LAST_RETRY};

/// What EXPLAIN MATERIALIZED VIEW and `hw_catalog.relations` report about a view.
#[derive(Debug, Clone)]
pub struct ViewInfo {
    /// The view's catalog id.
    pub id: u64,
    pub name: String,
    /// The operator tree, one line per node.
    pub dataflow: Vec<String>,
    /// Bytes held by the operators (join indexes, groups, multisets).
    pub state_bytes: usize,
    /// Rows of the view's result.
    pub rows: i64,
    /// Bytes held by the result rows.
    pub result_bytes: usize,
    /// Loaded from the store at start-up rather than computed from its inputs.
    pub loaded: bool,
    /// Rows of its inputs on which the view's query fails ([`super::errors`]).
    pub error_count: i64,
    /// What a read of the view reports: its own first error, its failure, or that of a view
    /// it reads.
    pub errors: Option<Arc<ViewErrors>>,
    /// The view stopped being maintained (an error no single row explains); it is computed
    /// again from its inputs at their next change.
    pub failed: bool,
}

struct View {
    id: u64,
    name: String,
    /// DataFusion's optimized plan, kept to rebuild the operators if a commit fails halfway.
    plan: LogicalPlan,
    /// The plan as printed with its schema: what the saved state is valid for ([`durable`]).
    plan_text: String,
    /// The store holds this view's operator state as of the last cut (else the next cut
    /// saves it whole: a new view, rebuilt operators).
    saved: bool,
    /// Loaded at start-up ([`ViewInfo::loaded`]).
    loaded: bool,
    /// Its operators could not be rebuilt after a failed commit: their state is not saved
    /// any more, and what the store held is deleted, so a restart recomputes the view.
    abandoned: bool,
    root: Box<dyn Operator>,
    /// Finds the stored relations behind the plan's scans when the operators are rebuilt.
    resolver: Arc<dyn ScanResolver>,
    inputs: Vec<Arc<TableState>>,
    input_ids: HashSet<u64>,
    output: Arc<TableState>,
    /// The rows of its inputs on which its query fails ([`super::errors`]).
    errors: ErrorSet,
    /// Set when a step failed in a way no row explains (an accumulator overflowed, a bug):
    /// the operators' state is unusable and the view is not maintained until a recompute
    /// from its inputs succeeds ([`Dataflow::commit_from`] retries at the inputs' next
    /// change, backing off).
    failed: Option<Failure>,
    /// What reads of the view report, as last published.
    published: Option<Arc<ViewErrors>>,
    /// When its operators next have output due without an input change (temporal filters).
    wakes_at: Option<i64>,
}

/// A view being created: the commits that happen while its initial contents are computed
/// are queued for it, then replayed (so creating a view never blocks writers or misses a
/// change).
struct Pending {
    id: u64,
    inputs: Vec<Arc<TableState>>,
    input_ids: HashSet<u64>,
    /// Each queued commit's deltas, with the inputs' rows after it ([`Deltas::after`]).
    queue: Vec<Deltas>,
}

#[derive(Default)]
struct Inner {
    /// In creation order, which is a topological order (a view only reads older objects).
    views: Vec<View>,
    pending: Vec<Pending>,
    /// Sinks' taps by sink id.
    taps: Vec<(u64, Box<dyn Tap>)>,
}

/// Serialises commits, maintains the views, and publishes each commit atomically.
pub struct Dataflow {
    store: Arc<CheckpointedStore>,
    /// How views' plans find the tables they scan ([`ScanResolver`]).
    resolver: Arc<dyn ScanResolver>,
    inner: Mutex<Inner>,
    /// The time each commit is made at ([`super::clock`]).
    clock: Clock,
    /// Held for writing while a commit changes tables in memory; queries hold it for reading
    /// while they pin the tables they read.
    publish: RwLock<()>,
}

impl Dataflow {
    /// A dataflow with no views, writing to `store`; `resolver` maps the scans of the plans
    /// given to [`Dataflow::create_view`] to stored relations.
    pub fn new(store: Arc<CheckpointedStore>, resolver: Arc<dyn ScanResolver>) -> Self {
        Dataflow {
            store,
            resolver,
            inner: Mutex::new(Inner::default()),
            clock: Clock::default(),
            publish: RwLock::new(()),
        }
    }

    /// The store commits write to (tables load their rows from it).
    pub fn store(&self) -> &Arc<CheckpointedStore> {
        &self.store
    }

    /// The engine clock temporal filters are maintained against.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The earliest engine time at which a view has rows to add or remove although no
    /// input changes (a temporal filter's next event).
    pub fn next_wake(&self) -> Option<i64> {
        self.lock().views.iter().filter_map(|v| v.wakes_at).min()
    }

    /// A commit of nothing but the passing of time: steps the views that have events due
    /// ([`super::clock`]).
    pub fn tick(&self) -> Result<()> {
        self.commit(&[], WriteBatch::default())
    }

    /// Starts the task that ticks the engine clock every [`GRANULARITY`] while a view has
    /// events due; it ends with the dataflow.
    pub fn start_clock(self: &Arc<Self>) {
        // Events that fell due while the engine was down happen before the first client reads.
        if self.next_wake().is_some_and(|t| t <= self.clock.now()) {
            if let Err(e) = self.tick() {
                tracing::warn!(error = %e, "the commit of the first clock tick failed; the next tick retries");
            }
        }
        let dataflow = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(GRANULARITY);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                let Some(dataflow) = dataflow.upgrade() else { return };
                if dataflow.next_wake().is_none_or(|t| t > dataflow.clock.now()) {
                    continue;
                }
                match tokio::task::spawn_blocking(move || dataflow.tick()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the commit of a clock tick failed; the next tick retries")
                    }
                    Err(e) => tracing::error!(error = %e, "the clock tick panicked"),
                }
            }
        });
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.locked()
    }

    /// The current rows of `tables`, all as of the same commit.
    pub fn pin(&self, tables: &[Arc<TableState>]) -> HashMap<u64, PinnedRows> {
        let _published = self.publish.read_locked();
        tables.iter().map(|t| (t.id(), t.pin())).collect()
    }

    /// Applies the changes of one statement or one upstream transaction to tables, and what
    /// follows from them to every view, atomically: the store gets one batch (with `extra`,
    /// e.g. a source's binlog offset), then every table and view changes in memory at once.
    /// On error nothing changes.
    pub fn commit(&self, changes: &[(&TableState, &ChangeBatch)], extra: WriteBatch) -> Result<()> {
        self.commit_from(changes, extra, &CommitOrigin::local())
    }

    /// [`Dataflow::commit`] of changes that came from `origin` (what sinks report).
    pub fn commit_from(
        &self,
        changes: &[(&TableState, &ChangeBatch)],
        mut extra: WriteBatch,
        origin: &CommitOrigin,
    ) -> Result<()> {
        let mut inner = self.lock();
        let readers: HashSet<u64> = inner
            .views
            .iter()
            .flat_map(|v| v.input_ids.iter())
            .chain(inner.pending.iter().flat_map(|p| p.input_ids.iter()))
            .copied()
            .chain(inner.taps.iter().map(|(_, t)| t.relation()))
            .collect();
        let mut planned: Vec<(&TableState, Planned)> = Vec::with_capacity(changes.len());
        let defer = self.store.defers_rows_to_images();
        let mut deltas = Deltas::at(self.clock.now());
        for (table, change) in changes {
            if change.is_empty() {
                continue;
            }
            let p = table.plan_change(change)?;
            if readers.contains(&table.id()) {
                let d = table.delta_of(&p)?;
                if !d.is_empty() {
                    deltas.insert(table.id(), d);
                }
            }
            table.write_planned(&p, &mut extra, defer);
            planned.push((*table, p));
        }
        let mut outputs: Vec<(Arc<TableState>, Planned)> = Vec::new();
        let mut stepped: Vec<usize> = Vec::new();
        // Per stepped view: its errors' delta, or (a recompute) its errors replaced whole;
        // and the views whose step failed outright. Applied once the commit is durable.
        let mut view_errors: Vec<(usize, ErrorDelta, bool)> = Vec::new();
        let mut failures: Vec<(usize, Error)> = Vec::new();
        let mut recovered: Vec<usize> = Vec::new();
        for (i, view) in inner.views.iter_mut().enumerate() {
            let due = view.wakes_at.is_some_and(|t| t <= deltas.now());
            if !due && !view.input_ids.iter().any(|id| deltas.contains_key(id)) {
                continue;
            }
            let mut errors = ErrorDelta::default();
            let result = match &view.failed {
                Some(f) if Instant::now() < f.retry_at => continue,
                Some(_) => {
                    stepped.push(i);
                    let r = recompute_view(view, &deltas, &mut errors);
                    if r.is_ok() {
                        recovered.push(i);
                    }
                    view_errors.push((i, errors, true));
                    r
                }
                None => {
                    stepped.push(i);
                    let r = step_view(view, &deltas, &mut errors);
                    view_errors.push((i, errors, false));
                    r
                }
            };
            match result {
                Ok(Some((delta, p))) => {
                    deltas.insert(view.id, delta);
                    view.output.write_planned(&p, &mut extra, defer);
                    outputs.push((view.output.clone(), p));
                }
                Ok(None) => {}
                // A view's failure is the view's: the commit goes on without it, and views
                // reading it keep what they had (its result does not change) and report it.
                Err(e) => failures.push((i, Error::view_failed(&view.name, e))),
            }
        }
        let mut failure = None;
        let mut tapped = Vec::new();
        if failure.is_none() {
            for (i, (_, tap)) in inner.taps.iter_mut().enumerate() {
                if let Some(delta) = deltas.get(&tap.relation()) {
                    tapped.push(i);
                    if let Err(e) = tap.stage(delta, origin, &mut extra) {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        let mut generation = 0;
        if failure.is_none() && !extra.is_empty() {
            match self.store.apply_tracked(extra) {
                Ok(g) => generation = g,
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            let failed: HashSet<usize> = failures.iter().map(|(i, _)| *i).collect();
            for i in stepped {
                let view = &mut inner.views[i];
                match (view.failed.is_some(), failed.contains(&i)) {
                    // Not computed again: it stays failed, with the same result.
                    (true, _) => {}
                    (false, true) => fail(view, &failures.iter().find(|(f, _)| *f == i).expect("listed").1),
                    (false, false) => rebuild(view, deltas.now()),
                }
            }
            for i in tapped {
                inner.taps[i].1.aborted();
            }
            return Err(e);
        }
        for i in tapped {
            inner.taps[i].1.committed(generation);
        }
        let mut errors_changed = !failures.is_empty() || !recovered.is_empty();
        for (i, errors, whole) in view_errors {
            // A step that failed halfway emitted part of its errors: the recompute that
            // brings the view back replaces them whole.
            if failures.iter().any(|(f, _)| *f == i) {
                continue;
            }
            let view = &mut inner.views[i];
            if whole {
                errors_changed |= !view.errors.is_empty();
                view.errors.clear();
            }
            errors_changed |= view.errors.apply(errors);
        }
        for &i in &stepped {
            let view = &mut inner.views[i];
            view.wakes_at = wakes_at(view.root.as_mut());
        }
        for i in recovered {
            let view = &mut inner.views[i];
            tracing::info!(view = %view.name, "materialized view computed again: it is maintained again");
            view.failed = None;
            view.saved = false;
        }
        for (i, e) in &failures {
            let view = &mut inner.views[*i];
            match &mut view.failed {
                // A recompute that failed again: wait longer before the next.
                Some(f) => {
                    f.retry_at = Instant::now() + f.backoff;
                    f.backoff = (f.backoff * 2).min(LAST_RETRY);
                    tracing::warn!(view = %view.name, error = %e, retry_in = ?f.backoff, "materialized view still fails");
                }
                None => fail(view, e),
            }
        }
        let published = if errors_changed { effective_errors(&mut inner.views) } else { Vec::new() };
        let mut queued = Vec::new();
        for (i, pending) in inner.pending.iter_mut().enumerate() {
            let mut mine: Deltas =
                deltas.iter().filter(|(id, _)| pending.input_ids.contains(id)).map(|(k, v)| (*k, v.clone())).collect();
            mine.set_now(deltas.now());
            if !mine.is_empty() {
                pending.queue.push(mine);
                queued.push(i);
            }
        }
        let written: Vec<&TableState> = planned.iter().map(|(t, _)| *t).collect();
        let outputs_written: Vec<Arc<TableState>> = outputs.iter().map(|(t, _)| t.clone()).collect();
        {
            let _published = self.publish.write_locked();
            for (table, p) in planned {
                table.apply_planned(p);
            }
            for (table, p) in outputs {
                table.apply_planned(p);
            }
            for (output, errors) in published {
                output.set_errors(errors);
            }
        }
        // The inputs' rows after this commit, for the views that will replay it.
        for i in queued {
            let pending = &mut inner.pending[i];
            let after = pending.inputs.iter().map(|t| (t.id(), t.pin())).collect();
            pending.queue.last_mut().expect("queued above").set_after(after);
        }
        // Still the only writer (`inner` is held), but readers may pin again meanwhile.
        for table in written.into_iter().chain(outputs_written.iter().map(|t| t.as_ref())) {
            table.compact();
        }
        Ok(())
    }

    /// A checkpoint's cut ([`crate::state::checkpoint::ImageCut`]): between two commits (none
    /// is in progress: every change staged in the store is also in memory, in tables and
    /// views), stages what changed in each view's operator state since the last cut
    /// ([`durable::save`]), then runs `f` with the views' results (stored tables the cut may
    /// image, listed here because a view goes live before its catalog entry is written).
    pub fn checkpoint_cut<R>(&self, f: impl FnOnce(Vec<Arc<TableState>>) -> R) -> R {
        let mut inner = self.lock();
        let mut batch = WriteBatch::default();
        let mut saved = Vec::new();
        for (i, view) in inner.views.iter_mut().enumerate() {
            let store = self.store.as_ref();
            // A failed view's operators are unusable: what the store holds is deleted once,
            // so a restart computes the view again.
            let staged = match view.abandoned || view.failed.is_some() {
                true if view.saved => continue,
                true => durable::forget(view.id, store, &mut batch),
                false => durable::save(
                    view.id,
                    &view.plan_text,
                    view.root.as_mut(),
                    &mut view.errors,
                    !view.saved,
                    store,
                    &mut batch,
                ),
            };
            match staged {
                Ok(()) => saved.push(i),
                Err(e) => {
                    // What was staged is partial and the changes recorded are consumed:
                    // the next cut writes the view whole.
                    view.saved = false;
                    tracing::error!(view = %view.name, error = %e, "cannot save the view's state");
                }
            }
        }
        // Staged with the cut's writes; should that fail (the store refuses writes for good
        // after a failed checkpoint), the views save themselves whole the next time.
        let staged = batch.is_empty() || self.store.apply(batch).is_ok();
        for i in saved {
            inner.views[i].saved = staged;
        }
        f(inner.views.iter().map(|v| v.output.clone()).collect())
    }

    /// Gives `table` new columns (see [`TableState::plan_widen`]), with `extra` (its new
    /// catalog entry, a source's progress) in the same atomic store batch. Serialised with
    /// commits. No view changes: each reads the columns it was compiled with (its `Scan`
    /// projects), and the old columns keep their values.
    pub fn widen_table(
        &self,
        table: &TableState,
        schema: SchemaRef,
        values: &[ArrayRef],
        mut extra: WriteBatch,
    ) -> Result<()> {
        let _inner = self.lock();
        let widening = table.plan_widen(schema, values, &mut extra)?;
        self.store.apply(extra)?;
        let _published = self.publish.write_locked();
        table.apply_widen(widening);
        Ok(())
    }
}

/// Runs one view's operators on a commit's deltas and plans the change to its result.
fn step_view(view: &mut View, deltas: &Deltas, errors: &mut ErrorDelta) -> Result<Option<(ChangeBatch, Planned)>> {
    let Some(out) = guarded_step(&mut view.root, deltas, errors)? else { return Ok(None) };
    if out.is_empty() {
        return Ok(None);
    }
    let out = as_output(&view.output, out)?;
    let planned = view.output.plan_change(&out)?;
    Ok(Some((out, planned)))
}

/// [`Operator::step`], with a panic inside an operator (or a DataFusion kernel it calls)
/// turned into an error: the view fails, the server keeps serving.
fn guarded_step(root: &mut Box<dyn Operator>, deltas: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| root.step(deltas, errors))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Error::Internal(format!("operator panicked: {what}")))
    })
}

/// The root's delta with the result table's schema (names and nullability of the view).
fn as_output(output: &TableState, out: ChangeBatch) -> Result<ChangeBatch> {
    let data = conform(&output.schema(), out.data.columns().to_vec(), out.len())?;
    Ok(ChangeBatch { data, weights: out.weights, mode: ApplyMode::Delta })
}

/// The earliest time an operator of `root` has output due without an input change.
fn wakes_at(root: &mut dyn Operator) -> Option<i64> {
    let mut at: Option<i64> = None;
    root.visit_states(&mut |op| {
        if let Some(t) = op.wakes_at() {
            at = Some(at.map_or(t, |a| a.min(t)));
        }
    });
    at
}

/// Every input's rows as one insert-only delta, replayed (the rows after it are the pins).
/// `now`: the engine clock's reading.
fn initial_deltas(inputs: &[Arc<TableState>], pins: &HashMap<u64, PinnedRows>, now: i64) -> Result<Deltas> {
    let mut deltas = Deltas::at(now);
    for t in inputs {
        let rows = t.snapshot_of(&pins[&t.id()])?;
        deltas.insert(t.id(), ChangeBatch::uniform(rows, 1));
    }
    deltas.set_after(pins.clone());
    Ok(deltas)
}

/// After a failed commit, recompiles a view's operators from its inputs, which the failed
/// commit did not change (its result and errors did not change either).
fn rebuild(view: &mut View, now: i64) {
    let attempt = || -> Result<Box<dyn Operator>> {
        let (mut root, _) = compile(&view.plan, &*view.resolver)?;
        let pins = view.inputs.iter().map(|t| (t.id(), t.pin())).collect();
        let init = initial_deltas(&view.inputs, &pins, now)?;
        guarded_step(&mut root, &init, &mut ErrorDelta::default())?;
        Ok(root)
    };
    match attempt() {
        Ok(root) => {
            view.root = root;
            view.saved = false;
        }
        Err(e) => {
            view.abandoned = true;
            view.saved = false;
            tracing::error!(view = %view.name, error = %e, "cannot rebuild view after a failed commit: its state is no longer saved, a restart recomputes it");
        }
    }
}
