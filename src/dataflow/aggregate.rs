//! GROUP BY with retractable aggregates (also DISTINCT, which is a GROUP BY without aggregates).
//!
//! State: per group (key in Arrow's row format) the group's row count and one accumulator per
//! aggregate, held in a slab (`groups`) that a map from key to slot indexes. A commit looks each
//! distinct group of its change up once, then applies its rows and finishes its outputs by
//! slot, with no further hashing. Delta rule: for every group the commit touches, output `−old_row +new_row`
//! (rows that did not change cancel; a group whose count drops to 0 disappears; a global
//! aggregate always has its one row, whose value over no input is the SQL one: `count` 0,
//! the others NULL).
//!
//! Accumulators, each exact under deletes:
//! - `count`, `sum`, `avg`: linear — a count and a sum (i128 at the argument's decimal scale,
//!   or f64 for floating point) updated by `weight × value`;
//! - `min`, `max`, `count(DISTINCT)`, `bool_and`, `bool_or`: the multiset of the argument's
//!   values in an ordered map (value → multiplicity), so deleting the minimum finds the next;
//! - everything else (`string_agg`, `array_agg`, `sum(DISTINCT)`, ...): the same multiset,
//!   fed in value order to DataFusion's own accumulator for the groups that changed. An
//!   ordered aggregate (`string_agg(x, ',' ORDER BY y)`, `percentile_cont(..) WITHIN GROUP`)
//!   keeps its ORDER BY values beside its arguments in the multiset, and its accumulator
//!   orders by them (ties in the ORDER BY come in the multiset's order: the same every time).
//!
//! What a checkpoint saves of it, and how: [`saved`].

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::scalar::ScalarValue;

use super::durable::{Dirty, OperatorState};
use super::errors::{screen, ErrorDelta};
use super::operator::{conform, evaluate, indent, Deltas, Operator};
use crate::change::{ApplyMode, ChangeBatch, FastMap};
use crate::error::{Error, Result};

mod saved;

use saved::{group_entry, value_entry};

/// How an aggregate is maintained.
#[derive(Debug, Clone, PartialEq)]
pub enum AggKind {
    Count,
    /// `sum`; the argument is summed at this decimal scale (`None`: as f64).
    Sum(Option<i8>),
    /// `avg`; as for `Sum`.
    Avg(Option<i8>),
    Min,
    Max,
    CountDistinct,
    BoolAnd,
    BoolOr,
    /// Recomputed by DataFusion's accumulator from the group's multiset of arguments.
    Generic,
}

/// One aggregate of the operator.
pub struct AggSpec {
    pub kind: AggKind,
    /// The arguments, then (for an ordered `Generic` aggregate) the ORDER BY expressions.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub output_type: DataType,
    /// DataFusion's aggregate, for `Generic` (and for display).
    pub function: Arc<AggregateFunctionExpr>,
    /// Row format of the arguments (multiset kinds).
    values: Option<RowConverter>,
}

impl AggSpec {
    /// `function` over the operator's input; `ordering`: its ORDER BY expressions, fed to its
    /// accumulator after the arguments (`arg_types` has the types of both).
    pub fn new(
        kind: AggKind,
        function: Arc<AggregateFunctionExpr>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        ordering: Vec<Arc<dyn PhysicalExpr>>,
        arg_types: &[DataType],
    ) -> Result<Self> {
        let output_type = function.field().data_type().clone();
        let values = match kind {
            AggKind::Count | AggKind::Sum(_) | AggKind::Avg(_) => None,
            _ => Some(RowConverter::new(arg_types.iter().map(|t| SortField::new(t.clone())).collect())?),
        };
        let mut args = function.expressions();
        args.extend(ordering);
        Ok(AggSpec { kind, args, filter, output_type, function, values })
    }
}

enum Acc {
    Count(i64),
    Sum { int: i128, float: f64, n: i64 },
    Values(BTreeMap<Vec<u8>, i64>),
}

struct Group {
    rows: i64,
    accs: Vec<Acc>,
    /// Changed since the last save (its key is in `Aggregate::dirty`).
    dirty: bool,
}

/// GROUP BY `groups` computing `aggs`.
pub struct Aggregate {
    pub input: Box<dyn Operator>,
    pub groups: Vec<Arc<dyn PhysicalExpr>>,
    pub aggs: Vec<AggSpec>,
    group_format: RowConverter,
    /// Group key → slot in `groups`.
    index: FastMap<Vec<u8>, u32>,
    groups_state: Vec<Group>,
    /// Slots of emptied groups, reused before `groups_state` grows.
    free: Vec<u32>,
    started: bool,
    schema: SchemaRef,
    bytes: usize,
    /// Entries changed since the last save ([`durable`](super::durable)).
    dirty: Dirty,
}

impl Aggregate {
    /// The operator; `schema` is group columns then aggregate columns.
    pub fn new(
        input: Box<dyn Operator>,
        groups: Vec<Arc<dyn PhysicalExpr>>,
        aggs: Vec<AggSpec>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let group_fields =
            schema.fields().iter().take(groups.len()).map(|f| SortField::new(f.data_type().clone())).collect();
        let group_format = RowConverter::new(group_fields)?;
        Ok(Aggregate {
            input,
            groups,
            aggs,
            group_format,
            index: FastMap::default(),
            groups_state: Vec::new(),
            free: Vec::new(),
            started: false,
            schema,
            bytes: 0,
            dirty: Dirty::default(),
        })
    }

    fn is_global(&self) -> bool {
        self.groups.is_empty()
    }

    fn new_group(&self) -> Group {
        let accs = self
            .aggs
            .iter()
            .map(|a| match a.kind {
                AggKind::Count => Acc::Count(0),
                AggKind::Sum(_) | AggKind::Avg(_) => Acc::Sum { int: 0, float: 0.0, n: 0 },
                _ => Acc::Values(BTreeMap::new()),
            })
            .collect();
        Group { rows: 0, accs, dirty: false }
    }

    /// The aggregate values of a group (or of an empty input, for `None`).
    fn values(&self, group: Option<&Group>) -> Result<Vec<Out>> {
        let empty;
        let group = match group {
            Some(g) => g,
            None => {
                empty = self.new_group();
                &empty
            }
        };
        self.aggs.iter().zip(&group.accs).map(|(spec, acc)| finish(spec, acc)).collect()
    }

    /// Every expression evaluated on the input: group keys, arguments, filters.
    fn expressions(&self) -> impl Iterator<Item = &Arc<dyn PhysicalExpr>> {
        self.groups.iter().chain(self.aggs.iter().flat_map(|a| a.args.iter().chain(&a.filter)))
    }

    /// The group keys of `change`'s rows (`None` for a global aggregate).
    fn group_keys(&self, change: &ChangeBatch) -> Result<Option<Rows>> {
        if self.is_global() {
            return Ok(None);
        }
        let arrays = self.groups.iter().map(|g| evaluate(g, &change.data)).collect::<Result<Vec<_>>>()?;
        Ok(Some(self.group_format.convert_columns(&arrays)?))
    }

    /// A slot for the new (empty) group `key`, which the caller looked up and did not find.
    fn insert_group(&mut self, key: &[u8]) -> u32 {
        self.bytes += key.len() + 64 + 32 * self.aggs.len();
        let group = self.new_group();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.groups_state[slot as usize] = group;
                slot
            }
            None => {
                self.groups_state.push(group);
                (self.groups_state.len() - 1) as u32
            }
        };
        self.index.insert(key.to_vec(), slot);
        slot
    }

    /// Adds `change` to the groups: row `i` goes to slot `slot_of_row[i]`, whose key is
    /// `key_of_row(i)`.
    fn apply<'k>(
        &mut self,
        change: &ChangeBatch,
        slot_of_row: &[u32],
        key_of_row: &dyn Fn(usize) -> &'k [u8],
    ) -> Result<()> {
        let data = &change.data;
        let mut inputs = Vec::with_capacity(self.aggs.len());
        for spec in &self.aggs {
            let args = spec.args.iter().map(|a| evaluate(a, data)).collect::<Result<Vec<_>>>()?;
            let mask = match &spec.filter {
                Some(f) => Some(evaluate(f, data)?.as_boolean().clone()),
                None => None,
            };
            inputs.push(AggInput::new(spec, args, mask)?);
        }
        let mut bytes = self.bytes as i64;
        for ((i, &w), &slot) in change.weights.iter().enumerate().zip(slot_of_row) {
            let group = &mut self.groups_state[slot as usize];
            group.rows += w;
            if !group.dirty {
                group.dirty = true;
                self.dirty.mark(|| group_entry(key_of_row(i)), self.bytes);
            }
            for (n, ((spec, input), acc)) in self.aggs.iter().zip(&inputs).zip(group.accs.iter_mut()).enumerate() {
                let (added, value) = input.add(spec, acc, i, w)?;
                bytes += added;
                if let Some(v) = value {
                    self.dirty.mark(|| value_entry(n, key_of_row(i), v), self.bytes);
                }
            }
        }
        self.bytes = bytes.max(0) as usize;
        Ok(())
    }
}

/// The evaluated arguments of one aggregate for one change batch.
struct AggInput {
    args: Vec<ArrayRef>,
    mask: Option<BooleanArray>,
    /// Sum arguments as i128 at the sum's scale, or f64.
    ints: Option<Vec<Option<i128>>>,
    floats: Option<Vec<Option<f64>>>,
    values: Option<datafusion::arrow::row::Rows>,
}

impl AggInput {
    fn new(spec: &AggSpec, args: Vec<ArrayRef>, mask: Option<BooleanArray>) -> Result<Self> {
        let mut input = AggInput { args, mask, ints: None, floats: None, values: None };
        match spec.kind {
            AggKind::Sum(Some(scale)) | AggKind::Avg(Some(scale)) => {
                let a = cast(&input.args[0], &DataType::Decimal128(38, scale))?;
                input.ints = Some(a.as_primitive::<Decimal128Type>().iter().collect());
            }
            AggKind::Sum(None) | AggKind::Avg(None) => {
                let a = cast(&input.args[0], &DataType::Float64)?;
                input.floats = Some(a.as_primitive::<Float64Type>().iter().collect());
            }
            AggKind::Count => {}
            _ => {
                let format = spec.values.as_ref().expect("multiset kinds have a format");
                input.values = Some(format.convert_columns(&input.args)?);
            }
        }
        Ok(input)
    }

    fn counts(&self, i: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m.is_valid(i) && m.value(i))
    }

    fn any_null(&self, i: usize) -> bool {
        self.args.iter().any(|a| a.is_null(i))
    }

    /// Adds row `i` with weight `w` to `acc`; returns the change in state bytes and, for a
    /// multiset, the value whose multiplicity changed.
    fn add(&self, spec: &AggSpec, acc: &mut Acc, i: usize, w: i64) -> Result<(i64, Option<&[u8]>)> {
        if !self.counts(i) {
            return Ok((0, None));
        }
        match acc {
            Acc::Count(n) => {
                if !self.any_null(i) {
                    *n += w;
                }
            }
            Acc::Sum { int, float, n } => {
                if let Some(ints) = &self.ints {
                    if let Some(v) = ints[i] {
                        *int = v
                            .checked_mul(w as i128)
                            .and_then(|d| int.checked_add(d))
                            .ok_or_else(|| out_of_range("sum overflows 128 bits"))?;
                        *n += w;
                    }
                } else if let Some(v) = self.floats.as_ref().and_then(|f| f[i]) {
                    *float += v * w as f64;
                    *n += w;
                }
            }
            Acc::Values(map) => {
                if spec.kind != AggKind::Generic && self.any_null(i) {
                    return Ok((0, None));
                }
                let v = self.values.as_ref().expect("multiset input").row(i).data();
                match map.get_mut(v) {
                    Some(n) => {
                        *n += w;
                        if *n == 0 {
                            map.remove(v);
                            return Ok((-(v.len() as i64 + 40), Some(v)));
                        }
                    }
                    None => {
                        map.insert(v.to_vec(), w);
                        return Ok((v.len() as i64 + 40, Some(v)));
                    }
                }
                return Ok((0, Some(v)));
            }
        }
        Ok((0, None))
    }
}

/// One finished aggregate value. The linear kinds and `count(DISTINCT)` finish to a plain
/// number of the output type, so a commit's outputs are built straight into Arrow arrays;
/// the rest (and any output type not listed) go through `ScalarValue`.
#[derive(Debug, Clone)]
enum Out {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    /// At the output type's precision and scale.
    Dec(i128),
    Scalar(ScalarValue),
}

impl PartialEq for Out {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Out::Null, Out::Null) => true,
            (Out::I64(a), Out::I64(b)) => a == b,
            (Out::U64(a), Out::U64(b)) => a == b,
            // Bitwise, as `ScalarValue` compares floats: NaN equals NaN, 0.0 is not -0.0.
            (Out::F64(a), Out::F64(b)) => a.to_bits() == b.to_bits(),
            (Out::Dec(a), Out::Dec(b)) => a == b,
            (Out::Scalar(a), Out::Scalar(b)) => a == b,
            _ => false,
        }
    }
}

impl Out {
    fn into_scalar(self, data_type: &DataType) -> Result<ScalarValue> {
        Ok(match (self, data_type) {
            (Out::Null, t) => ScalarValue::try_from(t)?,
            (Out::I64(v), _) => ScalarValue::Int64(Some(v)),
            (Out::U64(v), _) => ScalarValue::UInt64(Some(v)),
            (Out::F64(v), _) => ScalarValue::Float64(Some(v)),
            (Out::Dec(v), DataType::Decimal128(p, s)) => ScalarValue::Decimal128(Some(v), *p, *s),
            (Out::Dec(_), t) => return Err(Error::Internal(format!("a decimal aggregate value for {t}"))),
            (Out::Scalar(v), _) => v,
        })
    }
}

/// The column of `values`, all of `data_type`.
fn out_column(data_type: &DataType, values: Vec<Out>) -> Result<ArrayRef> {
    use datafusion::arrow::array::{Decimal128Array, Float64Array, Int64Array, UInt64Array};
    if values.is_empty() {
        return Ok(datafusion::arrow::array::new_empty_array(data_type));
    }
    let column: Option<ArrayRef> = match data_type {
        DataType::Int64 => plain(&values, |v| if let Out::I64(v) = v { Some(*v) } else { None })
            .map(|c| Arc::new(Int64Array::from(c)) as ArrayRef),
        DataType::UInt64 => plain(&values, |v| if let Out::U64(v) = v { Some(*v) } else { None })
            .map(|c| Arc::new(UInt64Array::from(c)) as ArrayRef),
        DataType::Float64 => plain(&values, |v| if let Out::F64(v) = v { Some(*v) } else { None })
            .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
        DataType::Decimal128(p, s) => match plain(&values, |v| if let Out::Dec(v) = v { Some(*v) } else { None }) {
            Some(c) => Some(Arc::new(Decimal128Array::from(c).with_precision_and_scale(*p, *s)?)),
            None => None,
        },
        _ => None,
    };
    if let Some(column) = column {
        return Ok(column);
    }
    let scalars = values.into_iter().map(|v| v.into_scalar(data_type)).collect::<Result<Vec<_>>>()?;
    Ok(ScalarValue::iter_to_array(scalars)?)
}

/// The values as one primitive column when each is `Null` or what `pick` takes (else `None`).
fn plain<T>(values: &[Out], pick: fn(&Out) -> Option<T>) -> Option<Vec<Option<T>>> {
    values.iter().map(|v| if matches!(v, Out::Null) { Some(None) } else { pick(v).map(Some) }).collect()
}

/// `v` at `data_type`'s decimal precision, if it is a decimal type of scale `scale` and `v`
/// fits its precision (else `None`: the caller casts, which reports the overflow).
fn decimal_at(v: i128, scale: i8, data_type: &DataType) -> Option<Out> {
    match data_type {
        DataType::Decimal128(p, s) if *s == scale && *p <= 38 && v.unsigned_abs() < 10u128.pow(*p as u32) => {
            Some(Out::Dec(v))
        }
        _ => None,
    }
}

/// The SQL value of one accumulator.
fn finish(spec: &AggSpec, acc: &Acc) -> Result<Out> {
    let null = || ScalarValue::try_from(&spec.output_type);
    let out = &spec.output_type;
    let value = match (acc, &spec.kind) {
        (Acc::Count(n), _) if *out == DataType::Int64 => return Ok(Out::I64(*n)),
        (Acc::Count(n), _) => ScalarValue::Int64(Some(*n)),
        (Acc::Sum { n: 0, .. }, _) => return Ok(Out::Null),
        (Acc::Sum { float, .. }, AggKind::Sum(None)) if *out == DataType::Float64 => return Ok(Out::F64(*float)),
        (Acc::Sum { int, float, .. }, AggKind::Sum(scale)) => match scale {
            None => ScalarValue::Float64(Some(*float)),
            Some(s) => match out {
                DataType::Int64 => {
                    return Ok(Out::I64(i64::try_from(*int).map_err(|_| out_of_range("bigint out of range in sum"))?))
                }
                DataType::UInt64 => {
                    return Ok(Out::U64(u64::try_from(*int).map_err(|_| out_of_range("sum out of range"))?))
                }
                _ => match decimal_at(*int, *s, out) {
                    Some(v) => return Ok(v),
                    None => ScalarValue::Decimal128(Some(*int), 38, *s),
                },
            },
        },
        (Acc::Sum { int, float, n }, AggKind::Avg(scale)) => match (scale, out) {
            (Some(s), DataType::Decimal128(tp, ts)) => {
                let mul = 10i128.pow((*ts - *s).max(0) as u32);
                let scaled = int.checked_mul(mul).ok_or_else(|| out_of_range("avg overflows"))?;
                // Rounded half away from zero below precision 38, truncated at 38: what the
                // query engine's `avg` does (`sql::aggregate_types::RoundedAvg`).
                let (q, r, n) = (scaled / *n as i128, scaled % *n as i128, *n as i128);
                let v = if *tp < 38 && r.abs() * 2 >= n { q + scaled.signum() } else { q };
                match decimal_at(v, *ts, out) {
                    Some(v) => return Ok(v),
                    None => ScalarValue::Decimal128(Some(v), 38, *ts),
                }
            }
            (Some(s), DataType::Float64) => return Ok(Out::F64(*int as f64 / 10f64.powi(*s as i32) / *n as f64)),
            (Some(s), _) => ScalarValue::Float64(Some(*int as f64 / 10f64.powi(*s as i32) / *n as f64)),
            (None, DataType::Float64) => return Ok(Out::F64(*float / *n as f64)),
            (None, _) => ScalarValue::Float64(Some(*float / *n as f64)),
        },
        (Acc::Sum { .. }, _) => return Err(Error::Internal("a sum accumulator for another aggregate".into())),
        (Acc::Values(map), AggKind::CountDistinct) if *out == DataType::Int64 => return Ok(Out::I64(map.len() as i64)),
        (Acc::Values(map), kind) => {
            let format = spec.values.as_ref().expect("multiset kinds have a format");
            let decode = |keys: Vec<&Vec<u8>>| -> Result<Vec<ArrayRef>> {
                let parser = format.parser();
                Ok(format.convert_rows(keys.into_iter().map(|k| parser.parse(k)))?)
            };
            match kind {
                AggKind::CountDistinct => ScalarValue::Int64(Some(map.len() as i64)),
                AggKind::Min | AggKind::Max => {
                    let k = if *kind == AggKind::Min { map.keys().next() } else { map.keys().next_back() };
                    match k {
                        Some(k) => ScalarValue::try_from_array(&decode(vec![k])?[0], 0)?,
                        None => null()?,
                    }
                }
                AggKind::BoolAnd | AggKind::BoolOr => {
                    if map.is_empty() {
                        null()?
                    } else {
                        let values = decode(map.keys().collect())?;
                        let b = values[0].as_boolean();
                        let all = b.iter().all(|v| v == Some(true));
                        let any = b.iter().any(|v| v == Some(true));
                        ScalarValue::Boolean(Some(if *kind == AggKind::BoolAnd { all } else { any }))
                    }
                }
                _ => {
                    let mut acc = spec.function.create_accumulator()?;
                    if !map.is_empty() {
                        let distinct = spec.function.is_distinct();
                        let keys: Vec<&Vec<u8>> = map
                            .iter()
                            .flat_map(|(k, n)| std::iter::repeat_n(k, if distinct { 1 } else { (*n).max(0) as usize }))
                            .collect();
                        acc.update_batch(&decode(keys)?)?;
                    }
                    acc.evaluate()?
                }
            }
        }
    };
    if value.data_type() == spec.output_type {
        Ok(Out::Scalar(value))
    } else {
        Ok(Out::Scalar(value.cast_to(&spec.output_type)?))
    }
}

impl Operator for Aggregate {
    fn step(&mut self, inputs: &Deltas, errors: &mut ErrorDelta) -> Result<Option<ChangeBatch>> {
        let first = !self.started;
        self.started = true;
        let change = self.input.step(inputs, errors)?;
        // Rows on which a group key, an argument or a FILTER fails are errors, in no group.
        let change = change.map(|c| screen(self.expressions(), c, errors)).transpose()?;
        if change.is_none() && !(first && self.is_global()) {
            return Ok(None);
        }
        // The distinct groups this change touches, in order of first appearance, and each
        // input row's position among them.
        let rows = change.as_ref().map(|c| self.group_keys(c)).transpose()?.flatten();
        let n = change.as_ref().map_or(0, |c| c.weights.len());
        let (keys, of_row): (Vec<&[u8]>, Vec<u32>) = match &rows {
            Some(rows) => {
                let mut position: FastMap<&[u8], u32> = FastMap::default();
                position.reserve(n);
                let mut keys = Vec::new();
                let of_row = rows
                    .iter()
                    .map(|r| {
                        *position.entry(r.data()).or_insert_with(|| {
                            keys.push(r.data());
                            (keys.len() - 1) as u32
                        })
                    })
                    .collect();
                (keys, of_row)
            }
            None => (vec![&[]], vec![0; n]),
        };
        // Each group's old output, computed before the change applies, and its slot (one
        // lookup per group; a change gives every group it touches a slot).
        let mut old: Vec<Option<Vec<Out>>> = Vec::with_capacity(keys.len());
        let mut slots: Vec<Option<u32>> = Vec::with_capacity(keys.len());
        for &k in &keys {
            let slot = self.index.get(k).copied();
            old.push(match slot.map(|s| &self.groups_state[s as usize]) {
                Some(g) if g.rows > 0 || self.is_global() => Some(self.values(Some(g))?),
                None if self.is_global() && !first => Some(self.values(None)?),
                _ => None,
            });
            slots.push(match (slot, &change) {
                (None, Some(_)) => Some(self.insert_group(k)),
                _ => slot,
            });
        }
        if let Some(c) = &change {
            let slot_of_row: Vec<u32> =
                of_row.iter().map(|&d| slots[d as usize].expect("a change gives a slot")).collect();
            self.apply(c, &slot_of_row, &|i| keys[of_row[i] as usize])?;
        }
        let mut out_keys: Vec<&[u8]> = Vec::new();
        let mut out_values: Vec<Vec<Out>> = Vec::new();
        let mut weights: Vec<i64> = Vec::new();
        let mut emptied: Vec<(&[u8], u32)> = Vec::new();
        for ((k, before), slot) in keys.iter().zip(old).zip(&slots) {
            let group = slot.map(|s| &self.groups_state[s as usize]);
            if let Some(g) = group {
                if g.rows < 0 {
                    return Err(Error::Internal("aggregate group count went negative".into()));
                }
            }
            let after = match group {
                Some(g) if g.rows > 0 || self.is_global() => Some(self.values(Some(g))?),
                None if self.is_global() => Some(self.values(None)?),
                _ => None,
            };
            if let (Some(g), Some(s)) = (group, slot) {
                if g.rows == 0 && !self.is_global() {
                    emptied.push((k, *s));
                }
            }
            if before == after {
                continue;
            }
            for (values, w) in [(before, -1), (after, 1)] {
                if let Some(v) = values {
                    out_keys.push(*k);
                    out_values.push(v);
                    weights.push(w);
                }
            }
        }
        let rows = weights.len();
        let mut columns: Vec<ArrayRef> = if self.is_global() || rows == 0 {
            // No group columns (global) or no rows: empty group columns.
            let groups = self.schema.fields().iter().take(self.groups.len());
            groups.map(|f| datafusion::arrow::array::new_empty_array(f.data_type())).collect()
        } else {
            let parser = self.group_format.parser();
            self.group_format.convert_rows(out_keys.iter().map(|k| parser.parse(k)))?
        };
        let mut per_agg: Vec<Vec<Out>> = (0..self.aggs.len()).map(|_| Vec::with_capacity(rows)).collect();
        for values in out_values {
            for (column, v) in per_agg.iter_mut().zip(values) {
                column.push(v);
            }
        }
        for (spec, values) in self.aggs.iter().zip(per_agg) {
            columns.push(out_column(&spec.output_type, values)?);
        }
        for (k, slot) in emptied {
            if self.index.remove(k).is_some() {
                let empty = Group { rows: 0, accs: Vec::new(), dirty: false };
                let g = std::mem::replace(&mut self.groups_state[slot as usize], empty);
                let held: usize = g.accs.iter().map(|a| if let Acc::Values(m) = a { m.len() } else { 0 }).sum();
                self.bytes = self.bytes.saturating_sub(k.len() + 64 + 32 * self.aggs.len() + held * 40);
                self.free.push(slot);
            }
        }
        let data = conform(&self.schema, columns, rows)?;
        Ok(Some(ChangeBatch { data, weights, mode: ApplyMode::Delta }))
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn inputs(&self, out: &mut Vec<u64>) {
        self.input.inputs(out)
    }

    fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let groups: Vec<String> = self.groups.iter().map(|g| g.to_string()).collect();
        let aggs: Vec<String> = self.aggs.iter().map(|a| format!("{} [{:?}]", a.function.name(), a.kind)).collect();
        out.push(format!(
            "{}Aggregate group by [{}] compute [{}] (state: {} groups, {} bytes)",
            indent(depth),
            groups.join(", "),
            aggs.join(", "),
            self.index.len(),
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

fn out_of_range(message: &str) -> Error {
    Error::DataException { sqlstate: "22003", message: message.to_string() }
}

#[cfg(test)]
mod tests {
    /// Grouped and global aggregates and DISTINCT against DataFusion, over random deltas
    /// (groups appear and vanish, NULLs are skipped, min/max lose their extreme).
    #[tokio::test]
    async fn aggregates_match_a_recomputation() {
        for (i, sql) in [
            "SELECT g, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, count(v) AS c FROM t GROUP BY g",
            "SELECT count(*) AS n, sum(v) AS s, max(v) AS hi FROM t",
            "SELECT DISTINCT g FROM t",
            "SELECT g, count(DISTINCT v) AS d FROM t GROUP BY g",
            "SELECT g, avg(v) AS a FROM t GROUP BY g HAVING count(*) > 2",
        ]
        .into_iter()
        .enumerate()
        {
            crate::dataflow::testing::check(sql, 21 + i as u64, crate::dataflow::testing::STEPS).await;
        }
    }
}
