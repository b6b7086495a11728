//! Numeric division with Postgres's precision (issue 31: `1 / 3.0` was `0.3333`, DataFusion
//! keeping four more decimals than the dividend; Postgres answers `0.33333333333333333333`).
//!
//! Postgres chooses each quotient's scale from its operands' values (`select_div_scale`):
//! at least 16 significant digits, and never fewer decimals than either operand shows. The
//! quotient's estimated weight in base-10000 digits is the dividend's minus the divisor's,
//! one less when the dividend's first base-10000 digit is not larger than the divisor's;
//! the scale is `16 - 4 * weight`, at least either operand's scale. Arrow's decimals have
//! one scale per column, so [`divide`] rounds each quotient (half away from zero) to the
//! scale Postgres would pick for it, then writes it at the column's scale: the values are
//! Postgres's whenever its scale fits the column's (20 decimals, or the operands' if more),
//! only trailing zeros are added (`10 / 4.0` is `2.50000000000000000000` where Postgres
//! prints `2.5000000000000000`). A quotient Postgres would give more decimals (below
//! 0.0001) is rounded to the column's.
//!
//! The rule in [`super::overflow`] replaces every `/` of two decimals with [`udf`].

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use datafusion::arrow::datatypes::{i256, DataType, Decimal128Type};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// Decimals a quotient's column keeps at least.
const QUOTIENT_SCALE: i8 = 20;
/// Significant digits Postgres gives a quotient at least (`NUMERIC_MIN_SIG_DIGITS`).
const MIN_SIGNIFICANT_DIGITS: i32 = 16;

/// Integer digits a quotient's column keeps at least: a quotient of 10^18 or more whose
/// operands could be larger fails with 22003 rather than costing every quotient decimals
/// (`bigint` operands alone could need 20 integer digits).
const QUOTIENT_INTEGER_DIGITS: i16 = 18;

/// The type of `Decimal128(p1, s1) / Decimal128(p2, s2)`: scale 20 (or either operand's if
/// larger), as far as 38 digits leave room for the integer digits a quotient can have (at
/// most [`QUOTIENT_INTEGER_DIGITS`] of them reserved).
pub fn quotient_type(left: &DataType, right: &DataType) -> Option<DataType> {
    let (DataType::Decimal128(p1, s1), DataType::Decimal128(_, s2)) = (left, right) else { return None };
    let possible = i16::from(*p1) - i16::from(*s1) + i16::from(*s2);
    let integer_digits = possible.clamp(1, QUOTIENT_INTEGER_DIGITS) as i8;
    let scale = QUOTIENT_SCALE.max(*s1).max(*s2).min(38 - integer_digits).max(0);
    Some(DataType::Decimal128(38, scale))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericDivide {
    signature: Signature,
}

impl ScalarUDFImpl for NumericDivide {
    fn name(&self) -> &str {
        "hw_numeric_divide"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        quotient_type(&args[0], &args[1])
            .ok_or_else(|| DataFusionError::Internal(format!("hw_numeric_divide of {} and {}", args[0], args[1])))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let out = args.return_field.data_type().clone();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(divide(&arrays[0], &arrays[1], &out)?))
    }
}

/// The function `a / b` of two decimals becomes (see the module docs).
pub fn udf() -> Arc<ScalarUDF> {
    static UDF: OnceLock<Arc<ScalarUDF>> = OnceLock::new();
    UDF.get_or_init(|| {
        Arc::new(ScalarUDF::new_from_impl(NumericDivide { signature: Signature::any(2, Volatility::Immutable) }))
    })
    .clone()
}

fn scale_of(t: &DataType) -> i32 {
    match t {
        DataType::Decimal128(_, s) => i32::from(*s),
        _ => 0,
    }
}

/// A value's base-10000 weight and first base-10000 digit, as Postgres stores numerics
/// (`(0, 0)` for zero).
fn weight_and_first_digit(value: i128, scale: i32) -> (i32, i128) {
    let v = value.unsigned_abs();
    if v == 0 {
        return (0, 0);
    }
    // The first significant decimal digit is at 10^d.
    let d = v.ilog10() as i32 - scale;
    let weight = d.div_euclid(4);
    // The digit: the value divided by 10000^weight, truncated, from the integer `v`.
    let shift = scale + 4 * weight;
    let first = if shift >= 0 { v / 10u128.pow(shift as u32) } else { v * 10u128.pow((-shift) as u32) };
    (weight, first as i128)
}

/// The scale Postgres gives `x / y` (values at scales `s1`, `s2`).
fn postgres_scale(x: i128, s1: i32, y: i128, s2: i32) -> i32 {
    let (w1, f1) = weight_and_first_digit(x, s1);
    let (w2, f2) = weight_and_first_digit(y, s2);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    (MIN_SIGNIFICANT_DIGITS - qweight * 4).max(s1).max(s2).clamp(0, 1000)
}

fn out_of_range() -> DataFusionError {
    DataFusionError::ArrowError(
        Box::new(ArrowError::ComputeError("value overflows numeric format (numeric out of range)".into())),
        None,
    )
}

fn pow10(n: u32) -> Result<i256> {
    i256::from_i128(10).checked_pow(n).ok_or_else(out_of_range)
}

/// `x / y` rounded half away from zero to `t` decimals, written at scale `s`.
fn quotient(x: i128, s1: i32, y: i128, s2: i32, t: i32, s: i32) -> Result<i128> {
    // x / 10^s1 ÷ y / 10^s2 at scale t = x · 10^(s2 + t − s1) / y.
    let k = s2 + t - s1;
    let (mut n, mut d) = (i256::from_i128(x), i256::from_i128(y));
    if k >= 0 {
        n = n.checked_mul(pow10(k as u32)?).ok_or_else(out_of_range)?;
    } else {
        d = d.checked_mul(pow10((-k) as u32)?).ok_or_else(out_of_range)?;
    }
    let q = n.checked_div(d).ok_or_else(out_of_range)?;
    let r = n.checked_rem(d).ok_or_else(out_of_range)?;
    let twice = r.checked_abs().and_then(|r| r.checked_mul(i256::from_i128(2))).ok_or_else(out_of_range)?;
    let q = if twice >= d.checked_abs().ok_or_else(out_of_range)? {
        let away = if n.is_negative() != d.is_negative() { i256::from_i128(-1) } else { i256::ONE };
        q.checked_add(away).ok_or_else(out_of_range)?
    } else {
        q
    };
    let v = q.checked_mul(pow10((s - t) as u32)?).ok_or_else(out_of_range)?;
    let v = v.to_i128().ok_or_else(out_of_range)?;
    if v.unsigned_abs() >= 10u128.pow(38) {
        return Err(out_of_range());
    }
    Ok(v)
}

/// Divides two decimal arrays into `out` (see the module docs); a zero divisor fails with
/// "Divide by zero" (22012), as Postgres's `division by zero`.
pub fn divide(a: &ArrayRef, b: &ArrayRef, out: &DataType) -> Result<ArrayRef> {
    let (s1, s2, s) = (scale_of(a.data_type()), scale_of(b.data_type()), scale_of(out));
    let (xa, ya) = (a.as_primitive::<Decimal128Type>(), b.as_primitive::<Decimal128Type>());
    let mut values = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        if xa.is_null(i) || ya.is_null(i) {
            values.push(None);
            continue;
        }
        let (x, y) = (xa.value(i), ya.value(i));
        if y == 0 {
            return Err(DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None));
        }
        let t = postgres_scale(x, s1, y, s2).min(s);
        values.push(Some(quotient(x, s1, y, s2, t, s)?));
    }
    let (p, scale) = match out {
        DataType::Decimal128(p, s) => (*p, *s),
        other => return Err(DataFusionError::Internal(format!("hw_numeric_divide into {other}"))),
    };
    Ok(Arc::new(Decimal128Array::from(values).with_precision_and_scale(p, scale)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x / y` as text, for values written at scales `s1` and `s2`.
    fn div(x: i128, s1: i8, y: i128, s2: i8) -> String {
        let (lt, rt) = (DataType::Decimal128(38, s1), DataType::Decimal128(38, s2));
        let out = quotient_type(&DataType::Decimal128(20, s1), &rt).unwrap();
        let a: ArrayRef = Arc::new(Decimal128Array::from(vec![x]).with_data_type(lt));
        let b: ArrayRef = Arc::new(Decimal128Array::from(vec![y]).with_data_type(rt));
        let q = divide(&a, &b, &out).unwrap();
        datafusion::arrow::util::display::array_value_to_string(&q, 0).unwrap()
    }

    #[test]
    fn quotients_carry_postgres_digits() {
        // Postgres: 1 / 3.0 = 0.33333333333333333333, 2.0 / 3 = 0.66666666666666666667.
        assert_eq!(div(1, 0, 30, 1), "0.33333333333333333333");
        assert_eq!(div(20, 1, 3, 0), "0.66666666666666666667");
        // 10 / 4.0 = 2.5000000000000000 (16 decimals, written at 20).
        assert_eq!(div(10, 0, 40, 1), "2.50000000000000000000");
        // 7 / 3 rounds at 16 decimals: 2.3333333333333333; -7 / 3 rounds away from zero.
        assert_eq!(div(7, 0, 3, 0), "2.33333333333333330000");
        assert_eq!(div(-2, 0, 3, 0), "-0.66666666666666666667");
        // 2438234.9 / 7.0 = 348319.271428571429 (12 decimals: weight 1).
        assert_eq!(div(24382349, 1, 70, 1), "348319.27142857142900000000");
        // 0 / 5 = 0.00000000000000000000
        assert_eq!(div(0, 0, 5, 0), "0.00000000000000000000");
    }

    #[test]
    fn division_by_zero_fails() {
        let a: ArrayRef = Arc::new(Decimal128Array::from(vec![1]).with_data_type(DataType::Decimal128(10, 0)));
        let b: ArrayRef = Arc::new(Decimal128Array::from(vec![0]).with_data_type(DataType::Decimal128(10, 1)));
        let out = quotient_type(a.data_type(), b.data_type()).unwrap();
        assert!(divide(&a, &b, &out).unwrap_err().to_string().contains("Divide by zero"));
    }
}
