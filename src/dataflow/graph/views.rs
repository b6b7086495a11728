//! A view's life in the dataflow: created (computed from its inputs, or loaded from the
//! store at start-up), described, and dropped.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::LogicalPlan;

use super::failures::{effective_errors, fail};
use super::{as_output, guarded_step, initial_deltas, wakes_at, Dataflow, Inner, Pending, View, ViewInfo};
use crate::dataflow::compile::compile;
use crate::dataflow::durable;
use crate::dataflow::errors::{ErrorDelta, ErrorSet};
use crate::dataflow::operator::{Deltas, Operator};
use crate::dataflow::tap::Tap;
use crate::error::{Error, Result};
use crate::state::{keys, CheckpointedStore, StateStore, TableState, WriteBatch};
use crate::sync::UnpoisonedRw;

impl Dataflow {
    /// Compiles `plan` into operators, fills `output` from the current contents of the inputs,
    /// and maintains it from then on. Writers keep going meanwhile: what they commit during
    /// the initial computation is queued and replayed before the view goes live.
    ///
    /// `restore` (at start-up, before any commit): the view's result and operator state are
    /// loaded from the store when it holds them for this very plan ([`durable::load`]);
    /// otherwise the view is computed, and what the store held for it replaced.
    pub fn create_view(
        &self,
        id: u64,
        name: &str,
        plan: LogicalPlan,
        output: Arc<TableState>,
        restore: bool,
    ) -> Result<()> {
        let (root, inputs) = compile(&plan, &*self.resolver)?;
        let input_ids = inputs.iter().map(|t| t.id()).collect();
        let mut view = View {
            id,
            name: name.to_string(),
            plan_text: durable::plan_text(&plan),
            plan,
            saved: false,
            loaded: false,
            abandoned: false,
            root,
            resolver: self.resolver.clone(),
            inputs,
            input_ids,
            output,
            errors: ErrorSet::default(),
            failed: None,
            published: None,
            wakes_at: None,
        };
        if restore {
            match self.load_view(&mut view) {
                Ok(true) => {
                    tracing::info!(
                        view = name,
                        rows = view.output.row_count(),
                        errors = view.errors.count(),
                        "materialized view loaded"
                    );
                    view.wakes_at = wakes_at(view.root.as_mut());
                    let mut inner = self.lock();
                    inner.views.push(view);
                    self.publish_errors(&mut inner);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    // The state is derived data: computing it again loses nothing.
                    tracing::warn!(view = name, error = %e, "cannot load the materialized view's saved state");
                    view.root = compile(&view.plan, &*view.resolver)?.0;
                    view.errors = ErrorSet::default();
                    view.output.clear();
                }
            }
        }
        let computed = self.compute(&mut view).and_then(|()| match view.errors.first() {
            // Like Postgres, CREATE refuses a query that fails on the rows there are; from
            // then on, rows that make it fail are the view's errors.
            Some(first) if !restore => Err(crate::dataflow::errors::as_statement_error(first)),
            _ => Ok(()),
        });
        // The commits queued meanwhile are replayed under the lock that makes the view live.
        let mut inner = self.lock();
        let queue = inner.pending.iter().position(|p| p.id == id).map(|slot| inner.pending.remove(slot).queue);
        let store = self.store.as_ref();
        let replayed = computed.and_then(|()| {
            queue
                .into_iter()
                .flatten()
                .try_for_each(|deltas| fill(&mut view.root, &deltas, &view.output, &mut view.errors, store))
        });
        match replayed {
            Ok(()) if restore => tracing::info!(
                view = name,
                errors = view.errors.count(),
                "materialized view recomputed from its inputs"
            ),
            Ok(()) => {}
            Err(e) if restore => {
                // At start-up a view that cannot be computed must not keep the server down:
                // it starts failed, empty, and is computed again when its inputs change.
                drop(inner);
                self.delete_failed(id);
                view.output.clear();
                view.errors = ErrorSet::default();
                fail(&mut view, &Error::view_failed(name, e));
                inner = self.lock();
            }
            Err(e) => {
                drop(inner);
                self.delete_failed(id);
                return Err(Error::view_failed(name, e));
            }
        }
        view.wakes_at = wakes_at(view.root.as_mut());
        inner.views.push(view);
        self.publish_errors(&mut inner);
        Ok(())
    }

    /// Publishes what reads of each view report after a view came or went (commits publish
    /// their own changes).
    fn publish_errors(&self, inner: &mut Inner) {
        let changed = effective_errors(&mut inner.views);
        let _published = self.publish.write_locked();
        for (output, errors) in changed {
            output.set_errors(errors);
        }
    }

    /// Loads `view`'s result and operator state when the store holds them for its plan and
    /// every view it reads was loaded too (one recomputed since its state was saved may hold
    /// other rows: a float sum added in another order). `false`: nothing was loaded.
    fn load_view(&self, view: &mut View) -> Result<bool> {
        let inputs_loaded = {
            let inner = self.lock();
            view.inputs.iter().all(|t| inner.views.iter().find(|v| v.id == t.id()).is_none_or(|v| v.loaded))
        };
        if !inputs_loaded {
            return Ok(false);
        }
        let store = self.store.as_ref();
        let inputs = &view.inputs;
        let contents = || initial_deltas(inputs, &self.pin(inputs), self.clock.now());
        if !durable::load(view.id, &view.plan_text, view.root.as_mut(), &mut view.errors, store, &contents)? {
            return Ok(false);
        }
        view.output.load(store)?;
        view.loaded = true;
        view.saved = true;
        Ok(true)
    }

    /// Computes `view` from its inputs' current rows, replacing what the store held for its
    /// id. Commits from then on queue for it ([`Pending`]): the caller replays them.
    fn compute(&self, view: &mut View) -> Result<()> {
        let store = self.store.as_ref();
        // Rows and state a previous view of this id left (a restore that recomputes).
        self.delete_stored(view.id)?;
        let pins = {
            let mut inner = self.lock();
            inner.pending.push(Pending {
                id: view.id,
                inputs: view.inputs.clone(),
                input_ids: view.input_ids.clone(),
                queue: Vec::new(),
            });
            self.pin(&view.inputs)
        };
        let initial = initial_deltas(&view.inputs, &pins, self.clock.now())?;
        fill(&mut view.root, &initial, &view.output, &mut view.errors, store)
    }

    /// Deletes what view `id` stored (rows, image record, operator state), in a batch of its
    /// own: before the view is computed, and after its CREATE failed.
    fn delete_stored(&self, id: u64) -> Result<()> {
        let store = self.store.as_ref();
        let mut batch = WriteBatch::default();
        batch.delete_prefix(store, &keys::table_rows(id))?;
        batch.delete(keys::image(id));
        durable::forget(id, store, &mut batch)?;
        store.apply(batch)
    }

    /// [`Dataflow::delete_stored`] for a view whose CREATE failed, so that its rows do not
    /// linger. A failure is only logged: the id is never handed out again
    /// ([`crate::catalog::Catalog::reserve_id`]), so nothing would read them.
    fn delete_failed(&self, id: u64) {
        if let Err(e) = self.delete_stored(id) {
            tracing::warn!(view = id, error = %e, "cannot delete the stored rows of a view whose CREATE failed");
        }
    }

    /// Starts feeding `tap` every commit's delta of its relation, and returns the relation's
    /// rows as of the same point: the snapshot that the first delta follows.
    pub fn add_tap(&self, sink_id: u64, tap: Box<dyn Tap>, relation: &Arc<TableState>) -> Result<RecordBatch> {
        let pinned = {
            let mut inner = self.lock();
            inner.taps.retain(|(id, _)| *id != sink_id);
            inner.taps.push((sink_id, tap));
            self.pin(std::slice::from_ref(relation))
        };
        // Built outside the commit lock: the pinned rows do not change.
        relation.snapshot_of(&pinned[&relation.id()])
    }

    /// Runs `f` on sink `sink_id`'s tap under the commit lock (no commit runs meanwhile).
    pub fn with_tap<R>(&self, sink_id: u64, f: impl FnOnce(&mut dyn Tap) -> R) -> Option<R> {
        let mut inner = self.lock();
        inner.taps.iter_mut().find(|(id, _)| *id == sink_id).map(|(_, t)| f(t.as_mut()))
    }

    /// Stops feeding a sink (DROP SINK).
    pub fn remove_tap(&self, sink_id: u64) {
        self.lock().taps.retain(|(id, _)| *id != sink_id);
    }

    /// Stops maintaining view `id`, which went live but whose catalog entry could not be
    /// written (its CREATE failed), and deletes what it stored.
    pub fn discard_view(&self, id: u64) {
        self.lock().views.retain(|v| v.id != id);
        self.delete_failed(id);
    }

    /// Stops maintaining views `ids` once `delete` (which deletes their catalog entries, rows
    /// and state) succeeded, all under the commit lock: no commit or checkpoint cut can write
    /// for them between the store scan that lists what to delete and their removal.
    pub fn drop_views(&self, ids: &[u64], delete: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut inner = self.lock();
        delete()?;
        inner.views.retain(|v| !ids.contains(&v.id));
        Ok(())
    }

    /// The dataflow and state sizes of a view.
    pub fn view_info(&self, id: u64) -> Option<ViewInfo> {
        let inner = self.lock();
        let view = inner.views.iter().find(|v| v.id == id)?;
        let mut dataflow = Vec::new();
        view.root.explain(0, &mut dataflow);
        Some(ViewInfo {
            id: view.id,
            name: view.name.clone(),
            dataflow,
            state_bytes: view.root.state_bytes() + view.errors.bytes(),
            rows: view.output.row_count(),
            result_bytes: view.output.memory_bytes(),
            loaded: view.loaded,
            error_count: view.errors.count(),
            errors: view.published.clone(),
            failed: view.failed.is_some(),
        })
    }

    /// The column sets view `id` is known to be unique on (DataFusion's functional
    /// dependencies of its plan: GROUP BY columns, keys carried through projections and joins).
    pub fn view_unique_keys(&self, id: u64) -> Vec<Vec<usize>> {
        use datafusion::common::Dependency;
        let inner = self.lock();
        let Some(view) = inner.views.iter().find(|v| v.id == id) else { return Vec::new() };
        let mut keys: Vec<Vec<usize>> = view
            .plan
            .schema()
            .functional_dependencies()
            .iter()
            .filter(|d| d.mode == Dependency::Single && !d.source_indices.is_empty())
            .map(|d| d.source_indices.clone())
            .collect();
        keys.sort_by_key(Vec::len);
        keys
    }

    /// Every running view, in creation order.
    pub fn views(&self) -> Vec<ViewInfo> {
        let ids: Vec<u64> = self.lock().views.iter().map(|v| v.id).collect();
        ids.into_iter().filter_map(|id| self.view_info(id)).collect()
    }
}

/// Steps `root` and applies its output to the (not yet visible) `output`, staging its rows;
/// its errors go to `errors`.
fn fill(
    root: &mut Box<dyn Operator>,
    deltas: &Deltas,
    output: &TableState,
    errors: &mut ErrorSet,
    store: &CheckpointedStore,
) -> Result<()> {
    let mut delta = ErrorDelta::default();
    let out = guarded_step(root, deltas, &mut delta)?;
    errors.apply(delta);
    if let Some(out) = out {
        if !out.is_empty() {
            let out = as_output(output, out)?;
            let planned = output.plan_change(&out)?;
            let mut batch = WriteBatch::default();
            output.write_planned(&planned, &mut batch, store.defers_rows_to_images());
            store.apply(batch)?;
            output.apply_planned(planned);
            output.compact();
        }
    }
    Ok(())
}
