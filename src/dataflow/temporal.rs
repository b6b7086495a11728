//! Temporal filters: `WHERE created_at > now() - INTERVAL '1 hour'` in a materialized view,
//! maintained as time passes (Materialize's `mz_now()` model).
//!
//! `now()` (and `current_timestamp`, and `mz_now()`, its name here) in a view's WHERE or
//! HAVING becomes `mz_now()` ([`mark_now`]), a volatile function the optimizer cannot fold
//! into the time of CREATE. Each conjunct that compares a row's expression with
//! `mz_now() ± interval` (`<`, `<=`, `>`, `>=`, either side) gives every row an interval of
//! engine time ([`super::clock`]) in which it passes: `x > now() - d` holds while
//! `now < x + d`, `x <= now()` from `now = x` on. The other conjuncts stay an ordinary filter
//! below.
//!
//! Delta rule. With `now` the commit's clock reading, a row of weight `w` with interval
//! `[from, until)`: emitted with `w` now if `from <= now < until`, and `(until, row, −w)`
//! scheduled; if `now < from`, `(from, row, +w)` and `(until, row, −w)` scheduled. A commit at
//! `now` first emits every scheduled event at or before `now`. A retraction (`w < 0`) schedules
//! the opposite events, which cancel those of the insertion: the operator is linear in its
//! input, and its output at any time is the rows whose interval contains that time. State: the
//! scheduled events only (time → row → weight), saved like other operators' state, so a
//! restart keeps them; the rows visible now are in the view's result.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    create_udf, BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator as Op, ScalarUDF, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;

use super::consolidate;
use super::durable::{count_value, read_count, Dirty, OperatorState, StateWriter};
use super::errors::{evaluate_guarded, ErrorDelta};
use super::operator::{conform, indent, Deltas, Operator};
use crate::change::{ApplyMode, ChangeBatch, FastMap};
use crate::error::{Error, Result};

/// The name of the engine-time function.
pub const MZ_NOW: &str = "mz_now";

/// The type of `now()` in DataFusion, which `mz_now()` shares so that plans coerce alike.
fn now_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
}

/// `mz_now()`: the current time. In a query it is the wall clock; in a materialized view's
/// filter it is the engine clock, advancing ([`TemporalFilter`]).
pub fn mz_now() -> ScalarUDF {
    create_udf(
        MZ_NOW,
        vec![],
        now_type(),
        Volatility::Volatile,
        Arc::new(|_| {
            let ns = super::clock::wall_micros().saturating_mul(1000);
            Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(ns), Some("+00:00".into()))))
        }),
    )
}

fn is_now(e: &Expr) -> bool {
    matches!(e, Expr::ScalarFunction(f) if matches!(f.func.name(), "now" | "current_timestamp"))
}

/// True when `e` calls `mz_now()`.
pub fn calls_mz_now(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        found |= matches!(e, Expr::ScalarFunction(f) if f.func.name() == MZ_NOW);
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// `now()` in the filters of `plan` (WHERE, HAVING, at any depth) as `mz_now()`, before the
/// optimizer would fold it into a constant. Elsewhere `now()` stays, and is refused.
pub fn mark_now(plan: LogicalPlan) -> Result<LogicalPlan> {
    let udf = Arc::new(mz_now());
    Ok(plan
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::Filter(mut f) => {
                let predicate = f.predicate.clone().transform_up(|e| {
                    Ok(if is_now(&e) {
                        Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), vec![])))
                    } else {
                        Transformed::no(e)
                    })
                })?;
                if !predicate.transformed {
                    return Ok(Transformed::no(LogicalPlan::Filter(f)));
                }
                f.predicate = predicate.data;
                Ok(Transformed::yes(LogicalPlan::Filter(f)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// How a row's time `T` bounds the engine time `now` at which it passes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    /// `now < T`.
    Before,
    /// `now <= T`.
    AtOrBefore,
    /// `now > T`.
    After,
    /// `now >= T`.
    AtOrAfter,
}

/// One temporal conjunct: `T = row − offset` compared with `now` (microseconds).
pub struct Bound {
    row: Arc<dyn PhysicalExpr>,
    offset: i64,
    side: Side,
    text: String,
}

/// A conjunct `X op N` (or `N op X`) with `N` = `mz_now()` shifted by a fixed interval, as a
/// [`Bound`]; `physical` plans an expression against the filter's input.
pub fn bound(conjunct: &Expr, physical: &dyn Fn(&Expr) -> Result<Arc<dyn PhysicalExpr>>) -> Result<Bound> {
    let refuse = |why: &str| {
        Error::FeatureNotSupported(format!(
            "now() in {conjunct} ({why}; a temporal filter compares a row's time with now() plus or minus a \
             constant interval, with <, <=, > or >=, in an AND of WHERE or HAVING) in a materialized view"
        ))
    };
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else {
        return Err(refuse("not a comparison"));
    };
    let (row, now_side, op) = match (calls_mz_now(left), calls_mz_now(right)) {
        (false, true) => (left.as_ref(), right.as_ref(), *op),
        (true, false) => (right.as_ref(), left.as_ref(), op.swap().ok_or_else(|| refuse("not a comparison"))?),
        _ => return Err(refuse("now() on both sides")),
    };
    let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
    // N(t) − t must be the same at any t: a shift by days, hours, seconds (not months).
    let shift_at = |t: i64| -> Result<i64> {
        let at = Expr::Literal(ScalarValue::TimestampNanosecond(Some(t * 1000), Some("+00:00".into())), None);
        let shifted = now_side
            .clone()
            .transform_up(|e| {
                Ok(match &e {
                    Expr::ScalarFunction(f) if f.func.name() == MZ_NOW => Transformed::yes(at.clone()),
                    _ => Transformed::no(e),
                })
            })?
            .data;
        let value = physical(&Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(shifted), micros.clone())))?;
        let one_row = RecordBatch::try_new_with_options(
            Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        let v = value.evaluate(&one_row)?.into_array(1)?;
        let v = v.as_any().downcast_ref::<TimestampMicrosecondArray>().filter(|v| v.is_valid(0));
        Ok(v.ok_or_else(|| refuse("now() is not shifted by a constant"))?.value(0) - t)
    };
    let t0 = super::clock::wall_micros();
    let offset = shift_at(t0)?;
    if shift_at(t0 + 400 * 86_400_000_000)? != offset {
        return Err(refuse("an interval of months or years moves by a varying amount: write it in days"));
    }
    let side = match op {
        // row > now + d  ⟺  now < row − d
        Op::Gt => Side::Before,
        Op::GtEq => Side::AtOrBefore,
        Op::Lt => Side::After,
        Op::LtEq => Side::AtOrAfter,
        _ => return Err(refuse("not <, <=, > or >=")),
    };
    let row_expr = physical(&Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(row.clone()), micros)))?;
    Ok(Bound { row: row_expr, offset, side, text: conjunct.to_string() })
}

/// The filter on engine time (see the module).
pub struct TemporalFilter {
    input: Box<dyn Operator>,
    bounds: Vec<Bound>,
    format: RowConverter,
    /// Scheduled changes: time → encoded row → weight.
    events: BTreeMap<i64, FastMap<Box<[u8]>, i64>>,
    bytes: usize,
    /// Events changed since the last save.
    dirty: Dirty,
}

/// Per scheduled event: the boxed row's header and map slots.
const EVENT_OVERHEAD: usize = 64;

impl TemporalFilter {
    /// Keeps the rows of `input` while every bound holds.
    pub fn new(input: Box<dyn Operator>, bounds: Vec<Bound>) -> Result<Self> {
        let fields = input.schema().fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(TemporalFilter {
            input,
            bounds,
            format: RowConverter::new(fields)?,
            events: BTreeMap::new(),
            bytes: 0,
            dirty: Dirty::default(),
        })
    }

    fn schedule(&mut self, at: i64, row: &[u8], weight: i64) {
        self.dirty.mark(|| event_key(at, row), self.bytes);
        let slot = self.events.entry(at).or_default();
        let n = slot.entry(row.into()).or_insert(0);
        if *n == 0 {
            self.bytes += row.len() + EVENT_OVERHEAD;
        }
        *n += weight;
        if *n == 0 {
            slot.remove(row);
            self.bytes = self.bytes.saturating_sub(row.len() + EVENT_OVERHEAD);
            if slot.is_empty() {
                self.events.remove(&at);
            }
        }
    }

    /// Each row's interval `[from, until)` of engine time in which every bound holds.
    fn intervals(&self, times: &[ArrayRef], rows: usize) -> Vec<(i64, i64)> {
        let mut out = vec![(i64::MIN, i64::MAX); rows];
        for (bound, times) in self.bounds.iter().zip(times) {
            let times = times.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("cast to microseconds");
            for (i, (from, until)) in out.iter_mut().enumerate() {
                if times.is_null(i) {
                    // NULL compares as unknown: the row never passes.
                    *from = i64::MAX;
                    continue;
                }
                let t = times.value(i).saturating_sub(bound.offset);
                match bound.side {
                    Side::Before => *until = (*until).min(t),
                    Side::AtOrBefore => *until = (*until).min(t.saturating_add(1)),
                    Side::After => *from = (*from).max(t.saturating_add(1)),
                    Side::AtOrAfter => *from = (*from).max(t),
                }
            }
        }
        out
    }
}

fn event_key(at: i64, row: &[u8]) -> Box<[u8]> {
    // Sign bit flipped: the byte order of the keys is the order of the times.
    let mut k = Vec::with_capacity(8 + row.len());
    k.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(row);
    k.into()
}

fn split_event_key(key: &[u8]) -> Result<(i64, &[u8])> {
    let (at, row) = key.split_first_chunk::<8>().ok_or_else(|| super::durable::damaged("a truncated event"))?;
    Ok(((u64::from_be_bytes(*at) ^ (1 << 63)) as i64, row))
}

impl Operator for TemporalFilter {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let now = inputs.now();
        let delta = self.input.step(inputs, errors)?;
        let mut out: Vec<(Box<[u8]>, i64)> = Vec::new();
        // What was scheduled up to now happens first.
        let later = match now.checked_add(1) {
            Some(after) => self.events.split_off(&after),
            None => BTreeMap::new(),
        };
        let due = std::mem::replace(&mut self.events, later);
        for (at, rows) in due {
            for (row, w) in rows {
                self.dirty.mark(|| event_key(at, &row), self.bytes);
                self.bytes = self.bytes.saturating_sub(row.len() + EVENT_OVERHEAD);
                out.push((row, w));
            }
        }
        let had_delta = delta.is_some();
        if let Some(delta) = delta.filter(|d| !d.is_empty()) {
            let exprs: Vec<_> = self.bounds.iter().map(|b| b.row.clone()).collect();
            let (delta, times) = evaluate_guarded(&exprs, delta, errors)?;
            let encoded = self.format.convert_columns(delta.data.columns())?;
            for (i, (from, until)) in self.intervals(&times, delta.len()).into_iter().enumerate() {
                let (row, w) = (encoded.row(i).data(), delta.weights[i]);
                if from >= until || until <= now {
                    continue;
                }
                if from <= now {
                    out.push((row.into(), w));
                } else {
                    self.schedule(from, row, w);
                }
                if until != i64::MAX {
                    self.schedule(until, row, -w);
                }
            }
        }
        if out.is_empty() {
            let schema = self.schema();
            return Ok(had_delta.then(|| ChangeBatch::uniform(RecordBatch::new_empty(schema), 1)));
        }
        let parser = self.format.parser();
        let columns = self.format.convert_rows(out.iter().map(|(r, _)| parser.parse(r)))?;
        let data = conform(&self.schema(), columns, out.len())?;
        let weights = out.into_iter().map(|(_, w)| w).collect();
        Ok(Some(consolidate(ChangeBatch { data, weights, mode: ApplyMode::Delta })?))
    }

    fn schema(&self) -> SchemaRef {
        self.input.schema()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.input.inputs(out);
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let bounds: Vec<&str> = self.bounds.iter().map(|b| b.text.as_str()).collect();
        let events: usize = self.events.values().map(|e| e.len()).sum();
        out.push(format!(
            "{}TemporalFilter [{}] (state: {events} scheduled changes, {} bytes)",
            indent(depth),
            bounds.join(" AND "),
            self.bytes
        ));
        self.input.explain(depth + 1, out);
    }

    fn state_bytes(&self) -> usize {
        self.bytes + self.input.state_bytes()
    }

    fn visit_states(&mut self, f: &mut dyn FnMut(&mut dyn OperatorState)) {
        f(self);
        self.input.visit_states(f);
    }
}

/// Entries: one per scheduled change, `time (big-endian, sign flipped) ++ row` → weight.
impl OperatorState for TemporalFilter {
    fn save(&mut self, out: &mut StateWriter<'_>) {
        let Some(changed) = self.dirty.take(out) else {
            for (at, rows) in &self.events {
                for (row, w) in rows {
                    out.put(&event_key(*at, row), count_value(*w));
                }
            }
            return;
        };
        for key in changed {
            let Ok((at, row)) = split_event_key(&key) else { continue };
            let w = self.events.get(&at).and_then(|rows| rows.get(row)).copied();
            out.put_count(&key, w);
        }
    }

    fn load(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (at, row) = split_event_key(key)?;
        let w = read_count(value)?;
        self.events.entry(at).or_default().insert(row.into(), w);
        self.bytes += row.len() + EVENT_OVERHEAD;
        Ok(())
    }

    fn wakes_at(&self) -> Option<i64> {
        self.events.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    /// Rows enter and leave as the clock moves and the tables change, against the query
    /// evaluated at the same clock reading ([`crate::dataflow::testing::check_over_time`]).
    #[tokio::test]
    async fn temporal_filters_equal_recomputation() {
        let queries = [
            // A window: from k / 3 minutes on, for g + 1 minutes.
            "SELECT k, v FROM t WHERE to_timestamp(k * 20) <= mz_now() AND to_timestamp(k * 20 + (g + 1) * 60) > mz_now()",
            // Only an upper bound (rows leave), beside an ordinary conjunct, under an aggregate.
            "SELECT g, count(*) AS n FROM t WHERE mz_now() < to_timestamp((k + 3) * 60) AND v > 2 GROUP BY g",
            // Only a lower bound (rows enter), over a join.
            "SELECT t.k, u.k AS uk FROM t JOIN u ON t.g = u.g WHERE mz_now() >= to_timestamp(t.v * 120) + INTERVAL '1 minute'",
        ];
        for (i, sql) in queries.into_iter().enumerate() {
            crate::dataflow::testing::check_over_time(sql, 91 + i as u64, crate::dataflow::testing::STEPS).await;
        }
    }
}
