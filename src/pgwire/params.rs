//! Bind parameters as Postgres converts them (issue 31: psycopg sends Python `12.34` as
//! `float8` and `5` as `int8`; inserting them into a `NUMERIC(12,2)` column, comparing with
//! one, or `SELECT %s::text` with an int failed with 22023 "Cannot coerce ...").
//!
//! A client may declare a parameter's type in Parse. When that type is not the one the
//! statement needs, arrow-pg refuses the conversions Postgres makes: float and integer to
//! `numeric`, anything to `text`. Here such a parameter is decoded as the type the client
//! sent, then converted to the statement's type as Postgres's casts do — a `float8` becomes a
//! `numeric` through its shortest text (15 significant digits, `float8_numeric`) rounded half
//! away from zero to the column's scale, so `12.345` stored in `NUMERIC(12,2)` is `12.35` as in
//! Postgres, not the binary float's `12.34`.

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::into_pg_type;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use pgwire::api::portal::Portal;
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

/// The values of `portal`'s parameters as the statement's `types` (`None`: as sent).
/// `assignment`: the statement only stores its parameters (`INSERT ... VALUES`), so a float
/// is rounded to the column's scale as Postgres's assignment does; elsewhere (a comparison:
/// Postgres compares a numeric with a float as floats) a float that the numeric type cannot
/// hold exactly is refused rather than compared as a different number.
pub fn parameters<S: Clone>(
    portal: &Portal<S>,
    types: &[Option<&DataType>],
    assignment: bool,
) -> PgWireResult<ParamValues> {
    let declared = &portal.statement.parameter_types;
    if declared.iter().any(|t| matches!(t, Some(t) if *t == Type::JSON || *t == Type::JSONB)) {
        return parameters(&json_as_text(portal), types, assignment);
    }
    // Parameters the client typed differently from what the statement needs are decoded as
    // sent and converted below.
    let mut as_sent = vec![false; types.len()];
    let decode: Vec<Option<&DataType>> = types
        .iter()
        .enumerate()
        .map(|(i, wanted)| {
            let sent = declared.get(i).cloned().flatten().filter(|t| *t != Type::UNKNOWN);
            match (wanted, sent) {
                (Some(want), Some(sent)) if needs_conversion(want, &sent) => {
                    as_sent[i] = true;
                    None
                }
                _ => *wanted,
            }
        })
        .collect();
    let ParamValues::List(mut values) = deserialize_parameters(portal, &decode)? else {
        return Err(invalid("positional parameters expected".into()));
    };
    for (i, value) in values.iter_mut().enumerate() {
        if let (true, Some(Some(target))) = (as_sent.get(i).copied().unwrap_or(false), types.get(i)) {
            value.value = convert(&value.value, target, assignment)?;
        }
    }
    Ok(ParamValues::List(values))
}

/// `portal` with its json/jsonb parameters as text (arrow-pg has no decoder for them): the
/// text form is the document; the binary jsonb form is a version byte (1) and the text.
fn json_as_text<S: Clone>(portal: &Portal<S>) -> Portal<S> {
    let declared = &portal.statement.parameter_types;
    let mut types = declared.clone();
    let mut values = portal.parameters.clone();
    for (i, t) in declared.iter().enumerate() {
        let Some(t) = t else { continue };
        if *t != Type::JSON && *t != Type::JSONB {
            continue;
        }
        types[i] = Some(Type::TEXT);
        if *t == Type::JSONB && portal.parameter_format.is_binary(i) {
            if let Some(Some(v)) = values.get_mut(i) {
                if v.first() == Some(&1) {
                    *v = v.slice(1..);
                }
            }
        }
    }
    let statement =
        pgwire::api::stmt::StoredStatement::new(portal.statement.id.clone(), portal.statement.statement.clone(), types);
    let mut copy = Portal::new_cursor(portal.name.clone(), std::sync::Arc::new(statement));
    copy.parameter_format = portal.parameter_format.clone();
    copy.parameters = values;
    copy.result_column_format = portal.result_column_format.clone();
    copy
}

/// A parameter sent as `sent` for a place that needs `want`, which arrow-pg cannot convert.
fn needs_conversion(want: &DataType, sent: &Type) -> bool {
    let float_or_int = matches!(*sent, Type::FLOAT4 | Type::FLOAT8 | Type::INT2 | Type::INT4 | Type::INT8);
    match want {
        DataType::Decimal128(..) | DataType::Decimal256(..) => float_or_int,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            into_pg_type(want).map(|t| t != *sent).unwrap_or(false)
                && !matches!(*sent, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME)
        }
        _ => false,
    }
}

/// `value` as `target`, the way Postgres casts it.
fn convert(value: &ScalarValue, target: &DataType, assignment: bool) -> PgWireResult<ScalarValue> {
    if value.is_null() {
        return ScalarValue::try_from(target).map_err(|e| invalid(e.to_string()));
    }
    let f = match value {
        ScalarValue::Float64(Some(f)) => *f,
        ScalarValue::Float32(Some(f)) => f64::from(*f),
        _ => return value.cast_to(target).map_err(|e| out_of_range(e.to_string())),
    };
    let DataType::Decimal128(p, s) = target else {
        return value.cast_to(target).map_err(|e| out_of_range(e.to_string()));
    };
    let converted = float_to_decimal(f, *p, *s)?;
    let digits_after_point = float_text(f)?.normalize().scale();
    if !assignment && digits_after_point > (*s).max(0) as u32 {
        let mut info = ErrorInfo::new(
            "ERROR".into(),
            "0A000".into(),
            format!("a float parameter ({f}) compared with numeric({p},{s}) would be rounded"),
        );
        info.hint = Some(
            "Postgres compares a numeric with a float as floats; send the parameter as numeric or text (psycopg: \
             Decimal('...')) so that the comparison is exact."
                .into(),
        );
        return Err(PgWireError::UserError(Box::new(info)));
    }
    Ok(converted)
}

/// Postgres's `float8_numeric`: the float's text with 15 significant digits, then rounded to
/// the scale, half away from zero.
fn float_to_decimal(f: f64, precision: u8, scale: i8) -> PgWireResult<ScalarValue> {
    use rust_decimal::RoundingStrategy;
    let decimal = float_text(f)?;
    let rounded = decimal.round_dp_with_strategy(scale.max(0) as u32, RoundingStrategy::MidpointAwayFromZero);
    // The mantissa at exactly `scale` digits after the point.
    let mut mantissa = rounded.mantissa();
    for _ in rounded.scale()..scale.max(0) as u32 {
        mantissa = mantissa.checked_mul(10).ok_or_else(|| out_of_range(format!("numeric field overflow: {f}")))?;
    }
    let limit = 10i128.checked_pow(u32::from(precision)).unwrap_or(i128::MAX);
    if mantissa.abs() >= limit {
        return Err(out_of_range(format!(
            "numeric field overflow: a field with precision {precision}, scale {scale} cannot hold {f}"
        )));
    }
    Ok(ScalarValue::Decimal128(Some(mantissa), precision, scale))
}

/// A float's value as Postgres's `float8_numeric` reads it: its text with 15 significant digits.
fn float_text(f: f64) -> PgWireResult<rust_decimal::Decimal> {
    if !f.is_finite() {
        return Err(out_of_range(format!("cannot convert {f} to numeric")));
    }
    use rust_decimal::prelude::FromPrimitive;
    rust_decimal::Decimal::from_scientific(&format!("{f:.14e}"))
        // Past rust_decimal's 28 fractional digits: the nearest value it holds.
        .or_else(|_| rust_decimal::Decimal::from_f64(f).map(|d| d.round_dp(28)).ok_or(()))
        .map_err(|_| out_of_range(format!("numeric field overflow: {f}")))
}

fn invalid(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), "22023".into(), message)))
}

fn out_of_range(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), "22003".into(), message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(f: f64, p: u8, s: i8) -> Option<i128> {
        match float_to_decimal(f, p, s) {
            Ok(ScalarValue::Decimal128(v, ..)) => v,
            _ => None,
        }
    }

    #[test]
    fn floats_become_numerics_as_in_postgres() {
        assert_eq!(decimal(12.34, 12, 2), Some(1234));
        // The binary float is 12.3449999...; Postgres rounds its 15-digit text: 12.35.
        assert_eq!(decimal(12.345, 12, 2), Some(1235));
        assert_eq!(decimal(-12.345, 12, 2), Some(-1235));
        assert_eq!(decimal(5.0, 12, 2), Some(500));
        assert_eq!(decimal(0.1 + 0.2, 38, 10), Some(3_000_000_000));
        assert_eq!(decimal(1e-20, 12, 2), Some(0));
        assert!(float_to_decimal(1e11, 12, 2).is_err(), "past the precision: 22003");
        assert!(float_to_decimal(f64::NAN, 12, 2).is_err());
    }

    #[test]
    fn other_values_are_cast() {
        let v = convert(&ScalarValue::Int64(Some(5)), &DataType::Decimal128(12, 2), false).unwrap();
        assert_eq!(v, ScalarValue::Decimal128(Some(500), 12, 2));
        let v = convert(&ScalarValue::Int64(Some(5)), &DataType::Utf8, false).unwrap();
        assert_eq!(v, ScalarValue::Utf8(Some("5".into())));
        let v = convert(&ScalarValue::Int64(None), &DataType::Decimal128(12, 2), false).unwrap();
        assert_eq!(v, ScalarValue::Decimal128(None, 12, 2));
    }

    #[test]
    fn comparisons_refuse_floats_the_numeric_would_round() {
        let money = DataType::Decimal128(12, 2);
        assert!(convert(&ScalarValue::Float64(Some(1.5)), &money, false).is_ok());
        assert!(convert(&ScalarValue::Float64(Some(1.555)), &money, false).is_err());
        let stored = convert(&ScalarValue::Float64(Some(1.555)), &money, true).unwrap();
        assert_eq!(stored, ScalarValue::Decimal128(Some(156), 12, 2), "assignment rounds, as Postgres");
    }
}
