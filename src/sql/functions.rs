//! SQL functions Headwater adds to DataFusion's: the Postgres identity functions clients and
//! BI tools call on connect (`version()`, `current_setting()`), on top of those
//! datafusion-pg-catalog registers (`current_schema()`, `pg_table_is_visible()`, ...).

use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::settings::{Settings, SERVER_VERSION};

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
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    ));
}

/// `current_setting(name)`, reading this session's settings.
pub fn current_setting(settings: Arc<RwLock<Settings>>) -> ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let settings = settings.read().unwrap_or_else(|p| p.into_inner());
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
            let user = settings.read().unwrap_or_else(|p| p.into_inner()).get("session_authorization").ok();
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(user)))
        }),
    )
}
