//! A scalar function evaluated row by row over [`ScalarValue`]s, for the JSON functions and
//! the typed-text casts: each row's work (parsing JSON) dwarfs the per-row value handling.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;

use crate::error::Error;
use crate::types::PgText;

/// What a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    Text,
    Binary,
    Int32,
    Bool,
    /// A JSON value of this type.
    Json(PgText),
    /// A JSON value of the first argument's type (`json` or `jsonb`; jsonb for plain text).
    JsonOfFirst,
    /// The type named by the second argument, a literal ([`PgText`] spelling): the casts.
    NamedBySecond,
    /// The type of the second argument (a typed NULL that names it: the array casts).
    TypeOfSecond,
}

/// One row's evaluation: the arguments with the fields they came from.
pub type RowFn = dyn Fn(&[ScalarValue], &[FieldRef]) -> Result<ScalarValue, Error> + Send + Sync;

/// A row-by-row scalar function.
pub struct RowUdf {
    name: String,
    signature: Signature,
    output: Output,
    f: Arc<RowFn>,
}

impl std::fmt::Debug for RowUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowUdf({})", self.name)
    }
}

impl PartialEq for RowUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.output == other.output
    }
}

impl Eq for RowUdf {}

impl std::hash::Hash for RowUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// A function of any arguments (each function checks its own).
pub fn row_udf(
    name: &str,
    output: Output,
    f: impl Fn(&[ScalarValue], &[FieldRef]) -> Result<ScalarValue, Error> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(RowUdf {
        name: name.to_string(),
        signature: Signature::variadic_any(Volatility::Immutable),
        output,
        f: Arc::new(f),
    })
}

fn field_for(output: Output, args: &[FieldRef], named: Option<&ScalarValue>) -> Field {
    match output {
        Output::Text => Field::new("", DataType::Utf8, true),
        Output::Binary => Field::new("", DataType::Binary, true),
        Output::Int32 => Field::new("", DataType::Int32, true),
        Output::Bool => Field::new("", DataType::Boolean, true),
        Output::Json(t) => t.field(""),
        Output::JsonOfFirst => {
            let first = args.first().and_then(|f| PgText::of(f));
            let t = if first == Some(PgText::Json) { PgText::Json } else { PgText::Jsonb };
            t.field("")
        }
        Output::TypeOfSecond => Field::new("", args.get(1).map_or(DataType::Utf8, |f| f.data_type().clone()), true),
        Output::NamedBySecond => match named.and_then(super::text_of).and_then(|s| spelled(&s)) {
            Some(t) => t.field(""),
            None => Field::new("", DataType::Utf8, true),
        },
    }
}

/// A [`PgText`] from its metadata spelling (`jsonb`, `varchar(3)`).
pub fn spelled(s: &str) -> Option<PgText> {
    PgText::of(
        &Field::new("", DataType::Utf8, true)
            .with_metadata([(crate::types::PG_TYPE_KEY.to_string(), s.to_string())].into_iter().collect()),
    )
}

impl ScalarUDFImpl for RowUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(field_for(self.output, &[], None).data_type().clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> datafusion::error::Result<FieldRef> {
        let named = args.scalar_arguments.get(1).copied().flatten();
        Ok(Arc::new(field_for(self.output, args.arg_fields, named)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let target = args.return_field.data_type().clone();
        let fail = |e: Error| DataFusionError::External(Box::new(e));
        if all_scalar {
            let values: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => unreachable!("all arguments are scalars"),
                })
                .collect();
            let out = (self.f)(&values, &args.arg_fields).map_err(fail)?;
            return Ok(ColumnarValue::Scalar(out.cast_to(&target)?));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = Vec::with_capacity(args.number_rows);
        let mut row = Vec::with_capacity(arrays.len());
        for i in 0..args.number_rows {
            row.clear();
            for a in &arrays {
                row.push(ScalarValue::try_from_array(a, i)?);
            }
            out.push((self.f)(&row, &args.arg_fields).map_err(fail)?);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(datafusion::arrow::array::new_empty_array(&target)));
        }
        let array = ScalarValue::iter_to_array(out)?;
        let array =
            if array.data_type() == &target { array } else { datafusion::arrow::compute::cast(&array, &target)? };
        Ok(ColumnarValue::Array(array))
    }
}
