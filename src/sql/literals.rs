//! Timestamp text the way Postgres reads it: `'2024-01-01 10:00'` (no seconds), `'2024-1-2'`.
//!
//! Arrow's string-to-timestamp cast wants seconds, so `TIMESTAMP '2024-01-01 10:00'`,
//! `'...'::timestamp`, `WHERE ts > '2024-01-01 10:00'` and `INSERT ... VALUES ('2024-01-01
//! 10:00')` failed with "error parsing time" where Postgres accepts them. Every one of those
//! is, once DataFusion has planned and coerced it, a cast of a text literal to a timestamp
//! type; [`TimestampLiterals`], an analyzer rule run after type coercion, gives such a literal
//! its `:00` seconds and two-digit month, day and hour. A literal used as text is never
//! touched.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use regex::Regex;

/// The analyzer rule (see the module docs).
#[derive(Debug, Default)]
pub struct TimestampLiterals;

/// Adds the rule to `ctx`'s analyzer.
pub fn register(ctx: &SessionContext) {
    ctx.add_analyzer_rule(Arc::new(TimestampLiterals));
}

/// `'2024-1-1 9:30'` → `'2024-01-01 09:30:00'`: two-digit month, day and hour, and seconds
/// (a fraction and a zone are kept); `None` when the text is already in that shape or is not
/// a date with an optional time.
pub fn with_seconds(text: &str) -> Option<String> {
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    let shape = SHAPE.get_or_init(|| {
        Regex::new(
            r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?)?(\s*(?:[+-]\d{1,2}(?::?\d{2})?|Z|UTC)?)\s*$",
        )
        .expect("a valid pattern")
    });
    let c = shape.captures(text)?;
    let date = format!("{}-{:0>2}-{:0>2}", &c[1], &c[2], &c[3]);
    let zone = c.get(7).map_or("", |m| m.as_str());
    let out = match (c.get(4), c.get(5)) {
        (Some(h), Some(m)) => {
            let s = c.get(6).map_or("00", |s| s.as_str());
            format!("{date} {:0>2}:{}:{s}{zone}", h.as_str(), m.as_str())
        }
        _ => format!("{date}{zone}"),
    };
    (out != text.trim()).then_some(out)
}

fn is_timestamp(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

fn fixed(expr: &Expr) -> Option<Expr> {
    let text = |e: &Expr| match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
            _,
        ) => with_seconds(s),
        _ => None,
    };
    let literal = |s: String| Box::new(Expr::Literal(ScalarValue::Utf8(Some(s)), None));
    match expr {
        Expr::Cast(Cast { expr, field }) if is_timestamp(field.data_type()) => {
            text(expr).map(|s| Expr::Cast(Cast { expr: literal(s), field: field.clone() }))
        }
        Expr::TryCast(TryCast { expr, field }) if is_timestamp(field.data_type()) => {
            text(expr).map(|s| Expr::TryCast(TryCast { expr: literal(s), field: field.clone() }))
        }
        _ => None,
    }
}

impl AnalyzerRule for TimestampLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform_up(|e| Ok(fixed(&e).map_or_else(|| Transformed::no(e), Transformed::yes)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "headwater_timestamp_literals"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_get_seconds() {
        assert_eq!(with_seconds("2024-01-01 10:00").as_deref(), Some("2024-01-01 10:00:00"));
        assert_eq!(with_seconds("2024-1-1T9:05").as_deref(), Some("2024-01-01 09:05:00"));
        assert_eq!(with_seconds("2024-1-2 09:30:15.5").as_deref(), Some("2024-01-02 09:30:15.5"));
        assert_eq!(with_seconds("2024-1-2").as_deref(), Some("2024-01-02"));
        assert_eq!(with_seconds("2024-01-01 10:00+02").as_deref(), Some("2024-01-01 10:00:00+02"));
        assert_eq!(with_seconds("2024-01-01 10:00:00"), None);
        assert_eq!(with_seconds("2024-01-01"), None);
        assert_eq!(with_seconds("10:00"), None);
    }
}
