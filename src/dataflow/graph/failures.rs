//! Views that fail: what reads report ([`effective_errors`]), and a view that stopped
//! being maintained ([`Failure`]), computed again from its inputs ([`recompute_view`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{as_output, guarded_step, initial_deltas, View};
use crate::change::{ApplyMode, ChangeBatch};
use crate::dataflow::compile::compile;
use crate::dataflow::errors::ErrorDelta;
use crate::dataflow::operator::Deltas;
use crate::error::{Error, Result, RowError, ViewErrors};
use crate::state::table::Planned;
use crate::state::TableState;

/// A view that stopped being maintained.
pub(super) struct Failure {
    pub(super) error: RowError,
    /// No recompute is tried before this.
    pub(super) retry_at: Instant,
    /// The wait after the next failed try.
    pub(super) backoff: Duration,
}

/// The first wait before a failed view is computed again, and the longest.
pub(super) const FIRST_RETRY: Duration = Duration::from_secs(1);
pub(super) const LAST_RETRY: Duration = Duration::from_secs(60);

impl Failure {
    pub(super) fn new(error: &Error) -> Failure {
        let error = match error {
            Error::InView { cause, .. } => cause.as_ref(),
            e => e,
        };
        Failure {
            error: RowError {
                sqlstate: error.sqlstate().to_string(),
                message: error.to_string(),
                context: "it stopped being maintained, and is computed again from its inputs when they change".into(),
            },
            retry_at: Instant::now(),
            backoff: FIRST_RETRY,
        }
    }
}

/// A failed view computed again, within a commit: fresh operators fed its inputs' rows as
/// of after the commit (the rows before it, with the commit's deltas applied: the rows that
/// made it fail may be the ones this commit removes); its result changes by what it should
/// hold now minus what it held when it failed. `errors`: all of its errors (they replace the
/// old ones).
pub(super) fn recompute_view(
    view: &mut View,
    deltas: &Deltas,
    errors: &mut ErrorDelta,
) -> Result<Option<(ChangeBatch, Planned)>> {
    let (root, _) = compile(&view.plan, &*view.resolver)?;
    view.root = root;
    let mut after = HashMap::new();
    for t in &view.inputs {
        let pinned = t.pin();
        let pinned = match deltas.get(&t.id()) {
            Some(delta) => t.apply_to_pinned(&pinned, delta)?,
            None => pinned,
        };
        after.insert(t.id(), pinned);
    }
    let initial = initial_deltas(&view.inputs, &after, deltas.now())?;
    let mut parts = Vec::new();
    parts.extend(guarded_step(&mut view.root, &initial, errors)?);
    let mut parts: Vec<ChangeBatch> = parts.into_iter().map(|p| as_output(&view.output, p)).collect::<Result<_>>()?;
    let old = view.output.snapshot()?;
    parts.push(ChangeBatch::uniform(old, -1));
    let schema = view.output.schema();
    let data = datafusion::arrow::compute::concat_batches(&schema, parts.iter().map(|p| &p.data))?;
    let weights = parts.into_iter().flat_map(|p| p.weights).collect();
    let out = crate::dataflow::consolidate(ChangeBatch { data, weights, mode: ApplyMode::Delta })?;
    if out.is_empty() {
        return Ok(None);
    }
    let planned = view.output.plan_change(&out)?;
    Ok(Some((out, planned)))
}

/// Stops maintaining `view` after `error`: its operators' state is unusable (a step failed
/// halfway), its result stays as it was, reads report the error, and its inputs' next change
/// computes it again.
pub(super) fn fail(view: &mut View, error: &Error) {
    tracing::error!(view = %view.name, error = %error, "materialized view stopped: computed again when its inputs change");
    view.failed = Some(Failure::new(error));
    view.saved = false;
}

/// What reads of each view report now that errors changed: a view's failure, else its own
/// first error, else that of the first view it reads that reports one. Returns the views
/// whose report changed (to publish with the commit).
pub(super) fn effective_errors(views: &mut [View]) -> Vec<(Arc<TableState>, Option<Arc<ViewErrors>>)> {
    let mut reported: HashMap<u64, Option<Arc<ViewErrors>>> = HashMap::new();
    let mut changed = Vec::new();
    for view in views.iter_mut() {
        let own = match (&view.failed, view.errors.first()) {
            (Some(f), _) => {
                Some(ViewErrors { view: view.name.clone(), count: 1 + view.errors.count(), first: f.error.clone() })
            }
            (None, Some(first)) => {
                Some(ViewErrors { view: view.name.clone(), count: view.errors.count(), first: first.clone() })
            }
            (None, None) => None,
        };
        let now = match own {
            Some(own) => Some(Arc::new(own)),
            None => {
                let mut inputs: Vec<u64> = view.input_ids.iter().copied().collect();
                inputs.sort_unstable();
                inputs.into_iter().find_map(|id| reported.get(&id).cloned().flatten())
            }
        };
        if now != view.published {
            view.published = now.clone();
            changed.push((view.output.clone(), now.clone()));
        }
        reported.insert(view.id, now);
    }
    changed
}
