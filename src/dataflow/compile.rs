//! From DataFusion's optimized `LogicalPlan` to a tree of incremental operators.
//!
//! DataFusion does the SQL work — name resolution, type coercion, view inlining, subquery
//! decorrelation (IN/EXISTS become semi/anti joins), DISTINCT and set operations rewritten
//! as aggregates and joins — and this module maps the resulting nodes one to one. What has no
//! incremental form here is refused with SQLSTATE 0A000 naming the construct, before the view
//! exists: never a silently wrong view.

use std::sync::Arc;

use datafusion::arrow::array::{new_empty_array, ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, JoinType, NullEquality};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::expressions::{lit, Column};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion::physical_plan::unnest::ListUnnest;
use datafusion::scalar::ScalarValue;

use super::aggregate::{AggKind, Aggregate};
use super::join::{Join, Side};
use super::operator::{nullable, Constant, Filter, Operator, Project, Scan, Union};
use super::temporal::{bound, calls_mz_now, TemporalFilter, MZ_NOW};
use super::topk::{SortKey, TopK};
use super::unnest::Unnest;
use super::window::Window;
use crate::error::{Error, Result};
use crate::state::TableState;

mod grouping;
mod recursion;

fn refuse(what: impl Into<String>) -> Error {
    Error::FeatureNotSupported(format!("{} in a materialized view", what.into()))
}

/// Refuses plans whose result depends on something other than their inputs' rows: functions
/// that are not immutable (`random()`, `now()` outside a temporal filter: [`super::temporal`]
/// turned those inside into `mz_now()`), parameters. Checked on the analyzed plan, before the
/// optimizer folds `now()` into a constant.
pub fn check_maintainable(plan: &LogicalPlan) -> Result<()> {
    let mut problem: Option<Error> = None;
    plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            expr.apply(|e| {
                match e {
                    // The engine clock of temporal filters (`compile` checks where it is).
                    Expr::ScalarFunction(f) if f.func.name() == MZ_NOW => return Ok(TreeNodeRecursion::Continue),
                    Expr::ScalarFunction(f) if f.func.signature().volatility != Volatility::Immutable => {
                        let hint = if matches!(f.func.name(), "now" | "current_timestamp") {
                            "; a temporal filter in WHERE, such as t > now() - INTERVAL '1 hour', is maintained as \
                             time passes"
                        } else {
                            ""
                        };
                        let place = if hint.is_empty() { "" } else { " outside a temporal filter" };
                        problem = Some(refuse(format!(
                            "{}(){place} (its result changes over time or between calls, so the view would go \
                             stale{hint})",
                            f.func.name()
                        )));
                    }
                    Expr::Placeholder(p) => problem = Some(refuse(format!("parameter {}", p.id))),
                    _ => return Ok(TreeNodeRecursion::Continue),
                }
                Ok(TreeNodeRecursion::Stop)
            })?;
            if problem.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    problem.map_or(Ok(()), Err)
}

/// A compiled view: its operator tree and the stored relations (tables, views) it reads.
pub type Compiled = (Box<dyn Operator>, Vec<Arc<TableState>>);

/// How the compiler finds the stored rows behind a scan. The query layer owns the DataFusion
/// table providers (`sql::provider`); the dataflow knows only [`TableState`]s, so the layer
/// that builds the plans says which state a provider reads (`None`: not a stored relation,
/// such as a system table, which no view can maintain).
pub trait ScanResolver: Send + Sync {
    /// The stored relation whose rows `provider` serves.
    fn table_state(&self, provider: &dyn TableProvider) -> Option<Arc<TableState>>;
}

/// What compiling one plan collects: the relations it reads, and how to find them.
pub(super) struct Inputs<'a> {
    resolver: &'a dyn ScanResolver,
    tables: Vec<Arc<TableState>>,
    /// The recursive CTEs being compiled, innermost last: name and the id their work table's
    /// rows carry (`recursion`).
    work: Vec<(String, u64)>,
}

/// The operator tree for `plan` and the stored relations it reads.
pub fn compile(plan: &LogicalPlan, resolver: &dyn ScanResolver) -> Result<Compiled> {
    let mut inputs = Inputs { resolver, tables: Vec::new(), work: Vec::new() };
    let plan = super::scalar_subquery::as_joins(plan.clone())?;
    let root = node(&plan, &mut inputs)?;
    let mut tables = inputs.tables;
    tables.sort_by_key(|t: &Arc<TableState>| t.id());
    tables.dedup_by_key(|t| t.id());
    Ok((root, tables))
}

/// The stored relation `plan` reads and which of its columns each output column is, when
/// `plan` only selects columns of it (a scan under plain-column projections and aliases):
/// its rows are then the relation's rows, one for one.
fn table_columns(plan: &LogicalPlan, resolver: &dyn ScanResolver) -> Option<(Arc<TableState>, Vec<usize>)> {
    match plan {
        LogicalPlan::TableScan(scan) if scan.fetch.is_none() => {
            let provider = source_as_provider(&scan.source).ok()?;
            let state = resolver.table_state(provider.as_ref())?;
            let columns = match &scan.projection {
                Some(p) => p.clone(),
                None => (0..scan.projected_schema.fields().len()).collect(),
            };
            Some((state, columns))
        }
        LogicalPlan::SubqueryAlias(a) => table_columns(&a.input, resolver),
        LogicalPlan::Projection(p) => {
            let (state, inner) = table_columns(&p.input, resolver)?;
            let columns = p
                .expr
                .iter()
                .map(|e| match e.clone().unalias() {
                    Expr::Column(c) => p.input.schema().index_of_column(&c).ok().map(|i| inner[i]),
                    _ => None,
                })
                .collect::<Option<Vec<usize>>>()?;
            Some((state, columns))
        }
        _ => None,
    }
}

fn physical(expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
    if calls_mz_now(expr) {
        return Err(refuse(format!(
            "now() in {expr} (only a temporal filter can use it: a comparison of a row's time with now() plus or \
             minus an interval, in an AND of WHERE or HAVING)"
        )));
    }
    let mut subquery = false;
    expr.apply(|e| {
        subquery |= matches!(e, Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_));
        Ok(if subquery { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    })?;
    if subquery {
        return Err(refuse(
            "a subquery that cannot be turned into a join (e.g. a scalar subquery inside a join condition that \
             reads both sides, or under GROUPING SETS: join with it instead)",
        ));
    }
    Ok(create_physical_expr(expr, schema, &ExecutionProps::new(), &PhysicalPlanningContext::default())?)
}

fn arrow_schema(plan: &LogicalPlan) -> SchemaRef {
    nullable(plan.schema().as_arrow())
}

fn node(plan: &LogicalPlan, tables: &mut Inputs) -> Result<Box<dyn Operator>> {
    Ok(match plan {
        LogicalPlan::TableScan(_) if recursion::work_table(plan).is_some() => {
            recursion::work_scan(plan, &recursion::work_table(plan).unwrap_or_default(), tables)?
        }
        LogicalPlan::TableScan(scan) => {
            if scan.fetch.is_some() {
                return Err(refuse("LIMIT"));
            }
            let provider = source_as_provider(&scan.source)?;
            let Some(state) = tables.resolver.table_state(provider.as_ref()) else {
                return Err(refuse(format!("reading the system table {}", scan.table_name)));
            };
            let name = scan.table_name.to_string();
            let table = state.id();
            tables.tables.push(state);
            // Pushed-down filters are inexact, so DataFusion keeps them in a Filter above.
            Box::new(Scan { table, name, projection: scan.projection.clone(), schema: arrow_schema(plan) })
        }
        LogicalPlan::Projection(p) => project(p, node(&p.input, tables)?)?,
        LogicalPlan::Filter(f) => {
            // `row_number() OVER (...) <= n` directly above its window: a per-partition top-k
            // (the filter stays, and keeps exactly the rows the top-k emits).
            // (DataFusion may put a projection in between, dropping columns the window read.)
            let ranked = ranked_window(&f.input).and_then(|(plan, w)| {
                let rank = plan.schema().field(plan.schema().fields().len() - 1).name().clone();
                rank_limit(&f.predicate, &rank).map(|n| (plan, w, n))
            });
            let input = match ranked {
                Some((plan, w, limit)) => {
                    let top = ranked_top_k(w, limit, arrow_schema(plan), tables)?;
                    match f.input.as_ref() {
                        LogicalPlan::Projection(p) => project(p, top)?,
                        _ => top,
                    }
                }
                None if calls_mz_now(&f.predicate) => return temporal_filter(f, tables),
                None => node(&f.input, tables)?,
            };
            Box::new(Filter { input, predicate: physical(&f.predicate, f.input.schema())? })
        }
        LogicalPlan::Window(w) => window(w, arrow_schema(plan), tables)?,
        LogicalPlan::SubqueryAlias(s) => node(&s.input, tables)?,
        // ORDER BY alone is ignored (a view is a set); with LIMIT it is a top-k.
        LogicalPlan::Sort(s) => match s.fetch {
            None => node(&s.input, tables)?,
            Some(fetch) => top_k(s, 0, fetch, tables)?,
        },
        LogicalPlan::Limit(l) => {
            use datafusion::logical_expr::{FetchType, SkipType};
            let (SkipType::Literal(skip), FetchType::Literal(fetch)) = (l.get_skip_type()?, l.get_fetch_type()?) else {
                return Err(refuse("LIMIT/OFFSET that are not constants"));
            };
            // OFFSET alone: every row past the offset (a window to the end).
            let fetch = fetch.unwrap_or(super::topk::UNLIMITED);
            match l.input.as_ref() {
                LogicalPlan::Sort(s) => top_k(s, skip, fetch, tables)?,
                // SQL leaves which rows are kept unspecified; a view must keep the same ones
                // every time: those that come first ordered by all their columns (ascending,
                // NULLs first), the order top-k breaks ties with anyway.
                input => {
                    // The optimizer pushed the limit into the scans below as a hint ("any
                    // `fetch` rows"); the top-k chooses the rows, so they read everything.
                    let input = input
                        .clone()
                        .transform_down(|n| match n {
                            LogicalPlan::TableScan(mut scan) if scan.fetch.is_some() => {
                                scan.fetch = None;
                                Ok(datafusion::common::tree_node::Transformed::yes(LogicalPlan::TableScan(scan)))
                            }
                            n => Ok(datafusion::common::tree_node::Transformed::no(n)),
                        })?
                        .data;
                    Box::new(TopK::new(node(&input, tables)?, Vec::new(), skip, fetch)?)
                }
            }
        }
        LogicalPlan::Union(u) => {
            let inputs = u.inputs.iter().map(|i| node(i, tables)).collect::<Result<Vec<_>>>()?;
            Box::new(Union { inputs, schema: arrow_schema(plan) })
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let schema = arrow_schema(plan);
            let groups = (0..input.schema().fields().len())
                .map(|i| physical(&Expr::Column(input.schema().columns()[i].clone()), input.schema()))
                .collect::<Result<Vec<_>>>()?;
            let input = node(input, tables)?;
            Box::new(Aggregate::new(input, groups, Vec::new(), schema)?)
        }
        LogicalPlan::Distinct(Distinct::On(d)) => {
            // DISTINCT ON (e) ... ORDER BY e, x: for each value of e, the first row by the
            // ORDER BY (without one, by the whole row) — a top-1 per partition; the rank the
            // ranked top-k appends is not selected.
            let input_schema = d.input.schema();
            let partition_by = d.on_expr.iter().map(|e| physical(e, input_schema)).collect::<Result<Vec<_>>>()?;
            let keys = match &d.sort_expr {
                Some(order_by) => sort_keys(order_by, input_schema)?,
                None => Vec::new(),
            };
            let mut fields: Vec<Field> =
                nullable(input_schema.as_arrow()).fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new("__hw_rank", DataType::UInt64, true));
            let input = node(&d.input, tables)?;
            let ranked = TopK::ranked(input, partition_by, keys, 1, Arc::new(Schema::new(fields)))?;
            let exprs = d.select_expr.iter().map(|e| physical(e, input_schema)).collect::<Result<Vec<_>>>()?;
            Box::new(Project { input: Box::new(ranked), exprs, schema: arrow_schema(plan) })
        }
        LogicalPlan::Aggregate(a) => {
            if let [Expr::GroupingSet(sets)] = a.group_expr.as_slice() {
                return grouping::grouping_sets(a, sets, arrow_schema(plan), tables);
            }
            let mut groups = Vec::new();
            for g in &a.group_expr {
                if matches!(g, Expr::GroupingSet(_)) {
                    return Err(refuse("GROUPING SETS / ROLLUP / CUBE beside other GROUP BY expressions"));
                }
                groups.push(physical(g, a.input.schema())?);
            }
            let aggs = grouping::aggregates(a)?;
            let input = node(&a.input, tables)?;
            Box::new(Aggregate::new(input, groups, aggs, arrow_schema(plan))?)
        }
        LogicalPlan::Join(j) => {
            // NOT IN (subquery): maintained in its uncorrelated single-column form.
            if j.null_aware && (j.on.len() != 1 || j.filter.is_some() || j.join_type != JoinType::LeftAnti) {
                return Err(refuse(
                    "correlated or multi-column NOT IN (subquery) (use NOT EXISTS, which a view can maintain)",
                ));
            }
            match j.join_type {
                JoinType::LeftMark | JoinType::RightMark => mark_join(j, plan, tables)?,
                kind => join(j, kind, arrow_schema(plan), tables)?,
            }
        }
        LogicalPlan::EmptyRelation(e) => {
            let schema = arrow_schema(plan);
            let rows = if e.produce_one_row {
                let columns: Vec<ArrayRef> = schema.fields().iter().map(|f| new_empty_array(f.data_type())).collect();
                let options = RecordBatchOptions::new().with_row_count(Some(1));
                Some(RecordBatch::try_new_with_options(schema.clone(), columns, &options)?)
            } else {
                None
            };
            Box::new(Constant { rows, schema })
        }
        LogicalPlan::Values(v) => {
            let schema = arrow_schema(plan);
            let mut columns = Vec::new();
            for (c, field) in schema.fields().iter().enumerate() {
                let mut values = Vec::new();
                for row in &v.values {
                    match &row[c] {
                        Expr::Literal(value, _) => values.push(value.clone()),
                        other => return Err(refuse(format!("VALUES entry {other} that is not a constant"))),
                    }
                }
                let array = ScalarValue::iter_to_array(values)?;
                columns.push(if array.data_type() == field.data_type() {
                    array
                } else {
                    datafusion::arrow::compute::cast(&array, field.data_type())?
                });
            }
            let rows = Some(RecordBatch::try_new(schema.clone(), columns)?);
            Box::new(Constant { rows, schema })
        }
        LogicalPlan::RecursiveQuery(q) => recursion::recursive(plan, q, tables)?,
        LogicalPlan::Unnest(u) => {
            let lists = u
                .list_type_columns
                .iter()
                .map(|(index, list)| ListUnnest { index_in_input_schema: *index, depth: list.depth })
                .collect();
            let input = node(&u.input, tables)?;
            Box::new(Unnest::new(input, lists, u.struct_type_columns.clone(), u.options.clone(), arrow_schema(plan)))
        }
        other => return Err(refuse(format!("{} plans", node_name(other)))),
    })
}

/// The join `j` as an operator of kind `kind` with output `schema`.
fn join(
    j: &datafusion::logical_expr::Join,
    kind: JoinType,
    schema: SchemaRef,
    tables: &mut Inputs,
) -> Result<Box<dyn Operator>> {
    let pair = j.left.schema().join(j.right.schema())?;
    let mut left_keys = j.on.iter().map(|(l, _)| physical(l, j.left.schema())).collect::<Result<Vec<_>>>()?;
    let mut right_keys = j.on.iter().map(|(_, r)| physical(r, j.right.schema())).collect::<Result<Vec<_>>>()?;
    if j.on.is_empty() {
        // A cross join (or a join on a condition only): every row has the same key.
        left_keys.push(lit(true));
        right_keys.push(lit(true));
    }
    let filter = j.filter.as_ref().map(|f| physical(f, &pair)).transpose()?;
    let left = Side::new(node(&j.left, tables)?, left_keys)?;
    let right = Side::new(node(&j.right, tables)?, right_keys)?;
    let nulls_equal = j.null_equality == NullEquality::NullEqualsNull;
    let mut join = Join::new(left, right, kind, filter, nulls_equal, nullable(pair.as_arrow()), schema)?;
    if j.null_aware {
        return Ok(Box::new(join.null_aware()?));
    }
    // Inside a recursive term a side keeps its own rows: the rounds of a commit feed its
    // changes once, so a side reading a table's rows would miss them later.
    if tables.work.is_empty() {
        join.back_sides([table_columns(&j.left, tables.resolver), table_columns(&j.right, tables.resolver)]);
    }
    Ok(Box::new(join))
}

/// A mark join (`EXISTS`/`IN (subquery)` under `OR`): every row of the kept side with a
/// boolean saying whether it has a partner. Maintained as what it is,
/// `semi × {true} ∪ anti × {false}`: the rows with a partner, marked true, beside those
/// without, marked false; a change of partners moves a row from one to the other.
fn mark_join(j: &datafusion::logical_expr::Join, plan: &LogicalPlan, tables: &mut Inputs) -> Result<Box<dyn Operator>> {
    let (kept, semi, anti) = match j.join_type {
        JoinType::LeftMark => (&j.left, JoinType::LeftSemi, JoinType::LeftAnti),
        _ => (&j.right, JoinType::RightSemi, JoinType::RightAnti),
    };
    let kept_schema = arrow_schema(kept);
    let schema = arrow_schema(plan);
    let mut inputs = Vec::new();
    for (kind, mark) in [(semi, true), (anti, false)] {
        let input = join(j, kind, kept_schema.clone(), tables)?;
        let mut exprs: Vec<Arc<dyn PhysicalExpr>> = kept_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        exprs.push(lit(mark));
        inputs.push(Box::new(Project { input, exprs, schema: schema.clone() }) as Box<dyn Operator>);
    }
    Ok(Box::new(Union { inputs, schema }))
}

fn node_name(plan: &LogicalPlan) -> String {
    let text = plan.display().to_string();
    text.split(':').next().unwrap_or("this").to_string()
}

/// How an aggregate function is maintained (see `aggregate`).
fn aggregate_kind(name: &str, distinct: bool, arg_types: &[DataType]) -> AggKind {
    let scale = |t: Option<&DataType>| match t {
        Some(DataType::Float16 | DataType::Float32 | DataType::Float64) => Some(None),
        Some(t) if t.is_integer() => Some(Some(0)),
        Some(DataType::Decimal128(_, s)) => Some(Some(*s)),
        _ => None,
    };
    match (name, distinct) {
        ("count", false) => AggKind::Count,
        ("count", true) if arg_types.len() == 1 => AggKind::CountDistinct,
        ("sum", false) => scale(arg_types.first()).map_or(AggKind::Generic, AggKind::Sum),
        ("avg" | "mean", false) => scale(arg_types.first()).map_or(AggKind::Generic, AggKind::Avg),
        ("min", _) => AggKind::Min,
        ("max", _) => AggKind::Max,
        ("bool_and", _) => AggKind::BoolAnd,
        ("bool_or", _) => AggKind::BoolOr,
        _ => AggKind::Generic,
    }
}

/// The window's PARTITION BY and ORDER BY when it is a plain `row_number()`.
fn row_number(
    w: &datafusion::logical_expr::expr::WindowFunction,
) -> Option<(&[Expr], &[datafusion::logical_expr::SortExpr])> {
    let p = &w.params;
    (w.fun.name() == "row_number" && p.args.is_empty() && p.filter.is_none() && !p.distinct)
        .then_some((p.partition_by.as_slice(), p.order_by.as_slice()))
}

/// The projection `p` over an already compiled `input`.
fn project(p: &datafusion::logical_expr::Projection, input: Box<dyn Operator>) -> Result<Box<dyn Operator>> {
    let exprs = p.expr.iter().map(|e| physical(e, p.input.schema())).collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Project { input, exprs, schema: nullable(p.schema.as_arrow()) }))
}

/// The window (and its plan node) under `plan`: `plan` itself or below a projection.
/// Only a window of one `row_number()`.
fn ranked_window(plan: &LogicalPlan) -> Option<(&LogicalPlan, &datafusion::logical_expr::Window)> {
    let (plan, w) = match plan {
        LogicalPlan::Window(w) => (plan, w),
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Window(w) => (p.input.as_ref(), w),
            _ => return None,
        },
        _ => return None,
    };
    let [expr] = w.window_expr.as_slice() else { return None };
    let Expr::WindowFunction(f) = strip_alias(expr) else { return None };
    row_number(f).map(|_| (plan, w))
}

fn strip_alias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => strip_alias(&a.expr),
        e => e,
    }
}

/// The window functions of `w`: one [`Window`] operator per distinct PARTITION BY and ORDER BY
/// (each appends its functions' columns to its input's), then the columns in `w`'s order.
fn window(w: &datafusion::logical_expr::Window, schema: SchemaRef, tables: &mut Inputs) -> Result<Box<dyn Operator>> {
    type Spec = (Vec<Expr>, Vec<datafusion::logical_expr::SortExpr>);
    let input_schema = w.input.schema();
    let width = input_schema.fields().len();
    let mut groups: Vec<(Spec, Vec<usize>)> = Vec::new();
    for (i, e) in w.window_expr.iter().enumerate() {
        let Expr::WindowFunction(f) = strip_alias(e) else {
            return Err(Error::Internal(format!("window expression {e} is not a window function")));
        };
        let spec = (f.params.partition_by.clone(), f.params.order_by.clone());
        match groups.iter_mut().find(|(s, _)| *s == spec) {
            Some((_, members)) => members.push(i),
            None => groups.push((spec, vec![i])),
        }
    }
    let mut op = node(&w.input, tables)?;
    let mut fields: Vec<Field> = schema.fields()[..width].iter().map(|f| f.as_ref().clone()).collect();
    // Where each window expression's column ends up.
    let mut position = vec![0; w.window_expr.len()];
    for ((partition_by, order_by), members) in groups {
        let partition_by = partition_by.iter().map(|e| physical(e, input_schema)).collect::<Result<Vec<_>>>()?;
        let keys = sort_keys(&order_by, input_schema)?;
        let mut functions = Vec::with_capacity(members.len());
        for &i in &members {
            functions.push(datafusion::physical_planner::create_window_expr(
                &w.window_expr[i],
                input_schema,
                &ExecutionProps::new(),
                &PhysicalPlanningContext::default(),
            )?);
            position[i] = fields.len();
            fields.push(schema.field(width + i).clone());
        }
        op = Box::new(Window::new(op, partition_by, keys, functions, Arc::new(Schema::new(fields.clone())))?);
    }
    if position.iter().enumerate().all(|(i, &p)| p == width + i) {
        return Ok(op);
    }
    let columns = (0..width).chain(position);
    let exprs: Vec<Arc<dyn PhysicalExpr>> =
        columns.map(|c| Arc::new(Column::new(fields[c].name(), c)) as Arc<dyn PhysicalExpr>).collect();
    Ok(Box::new(Project { input: op, exprs, schema }))
}

/// `n` when `predicate` is `rank <= n`, `rank < n + 1` or `rank = 1` (either side, casts
/// ignored) on the column named `rank`.
fn rank_limit(predicate: &Expr, rank: &str) -> Option<usize> {
    use datafusion::logical_expr::{BinaryExpr, Operator as Op};
    fn strip(e: &Expr) -> &Expr {
        match e {
            Expr::Cast(c) => strip(&c.expr),
            Expr::TryCast(c) => strip(&c.expr),
            other => other,
        }
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else { return None };
    let (column, op, value) = match (strip(left), strip(right)) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => (c, op.swap()?, v),
        _ => return None,
    };
    if column.name != rank {
        return None;
    }
    let n = match value {
        ScalarValue::Int64(Some(n)) => *n,
        ScalarValue::Int32(Some(n)) => *n as i64,
        ScalarValue::UInt64(Some(n)) => i64::try_from(*n).ok()?,
        ScalarValue::Decimal128(Some(n), _, 0) => i64::try_from(*n).ok()?,
        _ => return None,
    };
    let limit = match op {
        Op::LtEq => n,
        Op::Lt => n - 1,
        Op::Eq if n == 1 => 1,
        _ => return None,
    };
    usize::try_from(limit.max(0)).ok()
}

/// `row_number() OVER (PARTITION BY .. ORDER BY ..)` of `w`, keeping ranks up to `limit`.
fn ranked_top_k(
    w: &datafusion::logical_expr::Window,
    limit: usize,
    schema: SchemaRef,
    tables: &mut Inputs,
) -> Result<Box<dyn Operator>> {
    let not_top_k = || refuse("window functions (OVER) other than one ROW_NUMBER() filtered by rank <= n");
    let [expr] = w.window_expr.as_slice() else { return Err(not_top_k()) };
    let expr = match expr {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::WindowFunction(f) = expr else { return Err(not_top_k()) };
    let Some((partition_by, order_by)) = row_number(f) else { return Err(not_top_k()) };
    let input_schema = w.input.schema();
    let partition_by = partition_by.iter().map(|e| physical(e, input_schema)).collect::<Result<Vec<_>>>()?;
    let keys = sort_keys(order_by, input_schema)?;
    Ok(Box::new(TopK::ranked(node(&w.input, tables)?, partition_by, keys, limit, schema)?))
}

/// `ORDER BY s.expr LIMIT fetch OFFSET skip` over `s.input`.
fn top_k(
    s: &datafusion::logical_expr::Sort,
    skip: usize,
    fetch: usize,
    tables: &mut Inputs,
) -> Result<Box<dyn Operator>> {
    let keys = sort_keys(&s.expr, s.input.schema())?;
    Ok(Box::new(TopK::new(node(&s.input, tables)?, keys, skip, fetch)?))
}

/// ORDER BY expressions as the top-k operator's keys.
fn sort_keys(order_by: &[datafusion::logical_expr::SortExpr], schema: &DFSchema) -> Result<Vec<SortKey>> {
    order_by
        .iter()
        .map(|e| {
            Ok(SortKey {
                expr: physical(&e.expr, schema)?,
                options: datafusion::arrow::compute::SortOptions { descending: !e.asc, nulls_first: e.nulls_first },
            })
        })
        .collect()
}

/// A filter with temporal conjuncts ([`super::temporal`]): the others filter first, then the
/// rows pass while their time bounds hold.
fn temporal_filter(f: &datafusion::logical_expr::Filter, tables: &mut Inputs) -> Result<Box<dyn Operator>> {
    use datafusion::logical_expr::utils::{conjunction, split_conjunction};
    let schema = f.input.schema();
    let (temporal, plain): (Vec<&Expr>, Vec<&Expr>) =
        split_conjunction(&f.predicate).into_iter().partition(|c| calls_mz_now(c));
    let plan = |e: &Expr| physical(e, schema);
    let bounds = temporal.into_iter().map(|c| bound(c, &plan)).collect::<Result<Vec<_>>>()?;
    let mut input = node(&f.input, tables)?;
    if let Some(rest) = conjunction(plain.into_iter().cloned()) {
        input = Box::new(Filter { input, predicate: physical(&rest, schema)? });
    }
    Ok(Box::new(TemporalFilter::new(input, bounds)?))
}
