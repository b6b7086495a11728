//! SQL functions Headwater adds to DataFusion's: the Postgres identity functions clients and
//! BI tools call on connect (`version()`, `current_setting()`), on top of those
//! datafusion-pg-catalog registers (`current_schema()`, `pg_table_is_visible()`, ...).

use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::settings::{Settings, SERVER_VERSION};
use crate::sync::UnpoisonedRw;

/// What `version()` answers: Postgres-shaped, so SQLAlchemy's `PostgreSQL (\d+)` matches.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Headwater {}) on {}-{}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// Registers the functions that do not depend on the session.
pub fn register_global(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        "like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let patterns = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
            let escapes = datafusion::arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
            let (p, e) =
                (patterns.as_any().downcast_ref::<StringArray>(), escapes.as_any().downcast_ref::<StringArray>());
            let (Some(p), Some(e)) = (p, e) else {
                return Err(datafusion::error::DataFusionError::Internal("like_escape: text expected".into()));
            };
            let out: StringArray = (0..p.len())
                .map(|i| (!p.is_null(i) && !e.is_null(i)).then(|| backslash_pattern(p.value(i), e.value(i))))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    // repeat/lpad/rpad refuse values past 1 GB (54000) before they allocate them.
    for f in super::limits::SizeChecked::functions() {
        ctx.register_udf(f);
    }
    // Postgres's templates, not chrono's (DataFusion's to_char takes strftime formats).
    ctx.register_udf(ScalarUDF::from(super::to_char::ToChar::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(PgTypeof { signature: Signature::any(1, Volatility::Immutable) }));
    // The engine clock's function (temporal filters in materialized views).
    ctx.register_udf(crate::dataflow::temporal::mz_now());
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    ));
}

/// `pg_typeof(x)`: the Postgres name of the argument's type (`integer`, `numeric`, `text`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let field = &args.arg_fields[0];
        let name = match crate::types::PgText::of(field) {
            // A regtype: the name without its length.
            Some(t) => t.name().split('(').next().unwrap_or_default().to_string(),
            None => super::dml::pg_type_name(field.data_type()),
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// A LIKE pattern written with escape character `escape` (`''`: none), rewritten to use the
/// backslash, the only escape DataFusion knows.
pub fn backslash_pattern(pattern: &str, escape: &str) -> String {
    let escape = escape.chars().next();
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// `current_setting(name)`, reading this session's settings.
pub fn current_setting(settings: Arc<RwLock<Settings>>) -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let settings = settings.read_locked();
            let lookup = |name: Option<&str>| -> datafusion::error::Result<Option<String>> {
                match name {
                    None => Ok(None),
                    Some(n) => settings
                        .get(n)
                        .map(Some)
                        .map_err(|e| datafusion::error::DataFusionError::Execution(e.to_string())),
                }
            };
            match &args[0] {
                ColumnarValue::Scalar(s) => {
                    let name = match s {
                        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => v.clone(),
                        other => Some(other.to_string()),
                    };
                    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(lookup(name.as_deref())?)))
                }
                ColumnarValue::Array(a) => {
                    let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                    let names = a.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                    let out: StringArray = (0..names.len())
                        .map(|i| lookup((!names.is_null(i)).then(|| names.value(i))))
                        .collect::<datafusion::error::Result<_>>()?;
                    Ok(ColumnarValue::Array(Arc::new(out)))
                }
            }
        }),
    )
}

/// `session_user` (and `current_user`, `user`, which datafusion-pg-catalog rewrites to it):
/// the user this session logged in as.
pub fn session_user(settings: Arc<RwLock<Settings>>) -> ScalarUDF {
    create_udf(
        "session_user",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| {
            let user = settings.read_locked().get("session_authorization").ok();
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(user)))
        }),
    )
}

/// `set_config(name, value, is_local)`: sets a setting of this session (as `SET`; `is_local`
/// is accepted, Headwater has no transaction-scoped settings) and returns the new value.
pub fn set_config(settings: Arc<RwLock<Settings>>) -> ScalarUDF {
    create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let text = |c: &ColumnarValue| -> Option<String> {
                match c {
                    ColumnarValue::Scalar(ScalarValue::Utf8(v)) => v.clone(),
                    ColumnarValue::Scalar(other) => Some(other.to_string()),
                    ColumnarValue::Array(a) => {
                        let a = datafusion::arrow::compute::cast(a, &DataType::Utf8).ok()?;
                        let s = a.as_any().downcast_ref::<StringArray>()?;
                        (s.len() > 0 && !s.is_null(0)).then(|| s.value(0).to_string())
                    }
                }
            };
            let (Some(name), Some(value)) = (text(&args[0]), text(&args[1])) else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
            };
            let mut s = settings.write_locked();
            s.set(&name, &value).map_err(|e| datafusion::error::DataFusionError::Execution(e.to_string()))?;
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(s.get(&name).ok())))
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_move_to_backslash_escapes() {
        assert_eq!(super::backslash_pattern("pg/_%", "/"), "pg\\_%");
        assert_eq!(super::backslash_pattern("a\\b//", "/"), "a\\\\b\\/");
        assert_eq!(super::backslash_pattern("a_b", ""), "a_b");
    }
}
