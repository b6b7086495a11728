//! `json`, `jsonb`, `varchar(n)` and `char(n)` in SQL: the types (a [`TypePlanner`]), the
//! casts to them (an analyzer rule), Postgres's JSON operators (an [`ExprPlanner`]) and
//! functions.
//!
//! Values are Arrow text marked with their type ([`crate::types::PgText`]); the rules of each
//! type live there. Here:
//! - `CAST(x AS jsonb)`, `x::varchar(3)`: the planner gives the cast a marked field, and
//!   [`TypedTextCasts`] turns the cast into `pg_text_cast(x, 'jsonb')`, which validates
//!   (22P02), makes jsonb canonical or cuts strings to their length, as Postgres's casts do.
//!   A cast of a marked value to plain `text` becomes `pg_text_plain(x)`, so the result is
//!   reported as `text`.
//! - `-> ->> #> #>> @> <@ ? ?| ?& || -` on json/jsonb: the functions in [`functions`]. An
//!   untyped literal on the other side of `@>`, `||`, `=`, `<>` is read as jsonb, as Postgres
//!   resolves an `unknown` literal.
//! - Equality of jsonb values compares canonical text; ordering (`<`, `ORDER BY`) of jsonb
//!   is by text, not by Postgres's jsonb ordering (docs/sql.md, "Differences").

mod aggregate;
mod functions;
mod udf;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr, TypePlanner};
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, ScalarUDF};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{BinaryOperator, CharacterLength, DataType as SqlType};
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

use crate::types::json::Json;
use crate::types::PgText;

/// Installs the types, casts, operators and functions on `ctx` (after datafusion-pg-catalog,
/// whose type planner this one wraps).
pub fn register(ctx: &SessionContext) -> Result<()> {
    {
        let state = ctx.state_ref();
        let existing = state.read().clone();
        let rebuilt = datafusion::execution::SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(PgTextTypes))
            .build();
        *state.write() = rebuilt;
    }
    {
        use datafusion::execution::FunctionRegistry;
        let state = ctx.state_ref();
        state.write().register_expr_planner(Arc::new(JsonOperators))?;
    }
    ctx.add_analyzer_rule(Arc::new(TypedTextCasts));
    for f in functions::all() {
        ctx.register_udf(f);
    }
    for f in aggregate::all() {
        ctx.register_udaf(f);
    }
    Ok(())
}

/// Plans `json`, `jsonb`, `varchar(n)`, `char(n)` as marked text; everything else as
/// datafusion-pg-catalog does.
#[derive(Debug)]
struct PgTextTypes;

impl TypePlanner for PgTextTypes {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        let length = |l: &Option<CharacterLength>| match l {
            Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length).ok(),
            _ => None,
        };
        let typed = match sql_type {
            SqlType::JSON => Some(PgText::Json),
            SqlType::JSONB => Some(PgText::Jsonb),
            SqlType::Varchar(l) | SqlType::CharacterVarying(l) | SqlType::CharVarying(l) => {
                length(l).map(PgText::Varchar)
            }
            SqlType::Char(l) | SqlType::Character(l) => Some(PgText::Bpchar(length(l).unwrap_or(1))),
            SqlType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("jsonb") => Some(PgText::Jsonb),
            SqlType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("json") => Some(PgText::Json),
            _ => None,
        };
        match typed {
            Some(t) => Ok(Some(Arc::new(t.field("")))),
            None => PgOidTypePlanner.plan_type_field(sql_type),
        }
    }
}

/// The field an expression has in `schema` (`None` when it cannot be typed).
fn field_of(e: &Expr, schema: &DFSchema) -> Option<FieldRef> {
    e.to_field(schema).ok().map(|(_, f)| f)
}

fn typed(e: &Expr, schema: &DFSchema) -> Option<PgText> {
    field_of(e, schema).and_then(|f| PgText::of(&f))
}

fn is_text_literal(e: &Expr) -> bool {
    matches!(e, Expr::Literal(ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_), _))
}

fn call(f: ScalarUDF, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(f), args))
}

/// `pg_text_cast(e, 'jsonb')`.
fn cast_to(e: Expr, t: PgText) -> Expr {
    let spelling = t.metadata().remove(crate::types::PG_TYPE_KEY).unwrap_or_default();
    call(functions::pg_text_cast(), vec![e, Expr::Literal(ScalarValue::Utf8(Some(spelling)), None)])
}

/// Postgres's JSON operators over marked text.
#[derive(Debug)]
struct JsonOperators;

impl ExprPlanner for JsonOperators {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator as B;
        let RawBinaryExpr { op, left, right } = expr;
        let lt = typed(&left, schema);
        let rt = typed(&right, schema);
        let json = |t: Option<PgText>| matches!(t, Some(PgText::Json | PgText::Jsonb));
        let plain_text = matches!(field_of(&left, schema).map(|f| f.data_type().clone()), Some(DataType::Utf8));
        // An untyped literal facing a jsonb value is jsonb.
        let as_jsonb = |e: Expr| if is_text_literal(&e) { cast_to(e, PgText::Jsonb) } else { e };
        let planned = match op {
            // Plain text is read as JSON by the access operators (Postgres has them on json
            // only; accepting text too costs nothing and helps MariaDB's JSON-as-text columns).
            B::Arrow if json(lt) || plain_text => call(functions::get(false), vec![left, right]),
            B::LongArrow if json(lt) || plain_text => call(functions::get(true), vec![left, right]),
            B::HashArrow if json(lt) || plain_text => call(functions::path(false), vec![left, right]),
            B::HashLongArrow if json(lt) || plain_text => call(functions::path(true), vec![left, right]),
            B::AtArrow if json(lt) || json(rt) => call(functions::contains(), vec![as_jsonb(left), as_jsonb(right)]),
            B::ArrowAt if json(lt) || json(rt) => call(functions::contains(), vec![as_jsonb(right), as_jsonb(left)]),
            B::Question if json(lt) => call(functions::exists("jsonb_exists"), vec![left, right]),
            B::QuestionPipe if json(lt) => call(functions::exists("jsonb_exists_any"), vec![left, right]),
            B::QuestionAnd if json(lt) => call(functions::exists("jsonb_exists_all"), vec![left, right]),
            B::StringConcat if lt == Some(PgText::Jsonb) && (rt == Some(PgText::Jsonb) || is_text_literal(&right)) => {
                call(functions::concat(), vec![left, as_jsonb(right)])
            }
            B::StringConcat if rt == Some(PgText::Jsonb) && is_text_literal(&left) => {
                call(functions::concat(), vec![as_jsonb(left), right])
            }
            B::Minus if lt == Some(PgText::Jsonb) => call(functions::delete(), vec![left, right]),
            B::Eq | B::NotEq if lt == Some(PgText::Json) || rt == Some(PgText::Json) => {
                return Err(datafusion::error::DataFusionError::External(Box::new(
                    crate::error::Error::UndefinedFunction(format!(
                        "operator does not exist: json {op} json (compare jsonb values, or cast to text)"
                    )),
                )));
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq
                if lt == Some(PgText::Jsonb) && is_text_literal(&right) =>
            {
                return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right: as_jsonb(right) }));
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq
                if rt == Some(PgText::Jsonb) && is_text_literal(&left) =>
            {
                return Ok(PlannerResult::Original(RawBinaryExpr { op, left: as_jsonb(left), right }));
            }
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

/// Casts to a marked type run its rules; casts of a marked value to plain text drop the mark;
/// casts of text to `bytea` read Postgres's bytea text; arrays cast to text are written as
/// Postgres writes them.
#[derive(Debug, Default)]
pub struct TypedTextCasts;

impl AnalyzerRule for TypedTextCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let mut inputs_merged = DFSchema::empty();
            for input in node.inputs() {
                inputs_merged.merge(input.schema());
            }
            // A rewritten expression keeps the name the column had (`j::text` is `j`), and the
            // node's schema is computed again: it still had the cast's field, marks included.
            let names = NamePreserver::new(&node);
            let rewritten = node.map_expressions(|e| {
                let saved = names.save(&e);
                let out = e.transform_up(|e| {
                    let Expr::Cast(Cast { expr, field }) = &e else { return Ok(Transformed::no(e)) };
                    let target = PgText::of(field);
                    let from = typed(expr, &inputs_merged);
                    match target {
                        Some(t) if from != Some(t) => {
                            let inner = match field_of(expr, &inputs_merged).map(|f| f.data_type().clone()) {
                                Some(DataType::Utf8) => expr.as_ref().clone(),
                                _ => Expr::Cast(Cast::new(expr.clone(), DataType::Utf8)),
                            };
                            Ok(Transformed::yes(cast_to(inner, t)))
                        }
                        None if from.is_some() && *field.data_type() == DataType::Utf8 => {
                            Ok(Transformed::yes(call(functions::pg_text_plain(), vec![expr.as_ref().clone()])))
                        }
                        // An array as text is Postgres's `{1,2}`, not Arrow's `[1, 2]`.
                        None if *field.data_type() == DataType::Utf8
                            && matches!(
                                field_of(expr, &inputs_merged).map(|f| f.data_type().clone()),
                                Some(DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..))
                            ) =>
                        {
                            Ok(Transformed::yes(call(functions::pg_array_text(), vec![expr.as_ref().clone()])))
                        }
                        // Text to an array reads Postgres's array literal (`'{1,2}'`).
                        None if matches!(field.data_type(), DataType::List(_) | DataType::LargeList(_))
                            && matches!(
                                field_of(expr, &inputs_merged).map(|f| f.data_type().clone()),
                                Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                            ) =>
                        {
                            let typed_null = Expr::Literal(ScalarValue::try_from(field.data_type())?, None);
                            Ok(Transformed::yes(call(
                                functions::pg_array_in(),
                                vec![expr.as_ref().clone(), typed_null],
                            )))
                        }
                        // Text to bytea reads Postgres's bytea text (`'\x0102'`), not the text's bytes.
                        None if *field.data_type() == DataType::Binary
                            && matches!(
                                field_of(expr, &inputs_merged).map(|f| f.data_type().clone()),
                                Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                            ) =>
                        {
                            Ok(Transformed::yes(call(functions::pg_bytea_in(), vec![expr.as_ref().clone()])))
                        }
                        _ => Ok(Transformed::no(e)),
                    }
                })?;
                Ok(if out.transformed { out.update_data(|e| saved.restore(e)) } else { out })
            })?;
            if rewritten.transformed {
                rewritten.map_data(|p| p.recompute_schema())
            } else {
                Ok(rewritten)
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "typed_text_casts"
    }
}

/// A text argument's value (`None` for NULL); other scalars as their text.
pub(super) fn text_of(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        other if other.is_null() => None,
        other => Some(other.to_string()),
    }
}

/// A JSON argument parsed (`None` for NULL); its field says whether it is jsonb.
pub(super) fn json_arg(
    v: &ScalarValue,
    field: Option<&FieldRef>,
) -> std::result::Result<Option<Json>, crate::error::Error> {
    let Some(text) = text_of(v) else { return Ok(None) };
    let jsonb = field.and_then(|f| PgText::of(f)) != Some(PgText::Json);
    let parsed = if jsonb { Json::parse_jsonb(&text) } else { Json::parse(&text) };
    parsed.map(Some).map_err(|e| crate::error::Error::DataException { sqlstate: e.sqlstate, message: e.message })
}
