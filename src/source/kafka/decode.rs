//! JSON values → Arrow rows of a table's columns, with the encodings Kafka producers use:
//! numbers or strings for numbers (Canal writes every value as a string), decimals as text,
//! JSON numbers or Debezium's base64 two's-complement bytes, dates as `YYYY-MM-DD` or days
//! since the epoch, timestamps as text or epoch numbers in the unit Debezium's schema names
//! (else the source's `TIMESTAMP_UNIT`), times as text or since-midnight numbers.
//!
//! Every value is converted for its column before anything is appended, so a row either
//! goes in whole or is refused with the column and the reason.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, Int8Array, LargeStringArray, StringArray, StringViewArray, Time32MillisecondArray, Time32SecondArray,
    Time64MicrosecondArray, Time64NanosecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

/// What a Debezium schema block says of a field: its logical type name and decimal scale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hint {
    pub logical: Option<String>,
    pub scale: Option<i8>,
}

/// Hints by field name (from one message's schema block).
pub type Hints = HashMap<String, Hint>;

/// One JSON object's fields.
pub type Row = Map<String, Value>;

/// A value converted for its column.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Decimal(i128),
    Text(String),
    Bool(bool),
    Days(i32),
    /// Timestamps and times, in nanoseconds (since the epoch / since midnight).
    Nanos(i64),
}

/// The column types a source can fill; others are refused when the source is created.
pub fn supported(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Decimal128(_, _)
            | Utf8
            | LargeUtf8
            | Utf8View
            | Boolean
            | Date32
            | Timestamp(_, _)
            | Time32(TimeUnit::Second | TimeUnit::Millisecond)
            | Time64(_)
    )
}

/// Rows for one table, accumulated and then built as one batch.
pub struct RowsBuilder {
    schema: SchemaRef,
    key: Vec<usize>,
    /// The unit of timestamps given as bare numbers without a schema that names it.
    timestamp_unit: TimeUnit,
    columns: Vec<Vec<Cell>>,
    weights: Vec<i64>,
}

impl RowsBuilder {
    pub fn new(schema: SchemaRef, key: Option<Vec<usize>>, timestamp_unit: TimeUnit) -> Self {
        let columns = vec![Vec::new(); schema.fields().len()];
        RowsBuilder { schema, key: key.unwrap_or_default(), timestamp_unit, columns, weights: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Drops the rows pushed after the first `len` (a message whose later row failed).
    pub fn truncate(&mut self, len: usize) {
        for column in &mut self.columns {
            column.truncate(len);
        }
        self.weights.truncate(len);
    }

    /// Appends `row` with `weight`. A row that removes a key (`weight < 0` of a keyed table)
    /// needs only the key columns: the others are filled with placeholders.
    pub fn push(&mut self, row: &Row, weight: i64, hints: &Hints) -> Result<(), String> {
        let removes_key = weight < 0 && !self.key.is_empty();
        let mut cells = Vec::with_capacity(self.columns.len());
        for (i, field) in self.schema.fields().iter().enumerate() {
            let value = lookup(row, field.name());
            let hint = value.and_then(|(name, _)| hints.get(name));
            let cell = match value.map(|(_, v)| v) {
                None | Some(Value::Null) => {
                    if removes_key && !self.key.contains(&i) {
                        placeholder(field)
                    } else if field.is_nullable() {
                        Cell::Null
                    } else if value.is_none() {
                        return Err(format!("column {} is missing", field.name()));
                    } else {
                        return Err(format!("column {} is null but the column is NOT NULL", field.name()));
                    }
                }
                Some(v) => convert(field, v, hint, self.timestamp_unit)
                    .map_err(|e| format!("column {}: {e} (value {})", field.name(), shorten(v)))?,
            };
            cells.push(cell);
        }
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            column.push(cell);
        }
        self.weights.push(weight);
        Ok(())
    }

    /// The rows so far as a batch of the table's schema, and their weights; the builder is
    /// empty again.
    pub fn take(&mut self) -> Result<(RecordBatch, Vec<i64>), String> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (field, cells) in self.schema.fields().iter().zip(self.columns.iter_mut()) {
            arrays.push(build(field.data_type(), std::mem::take(cells))?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())?;
        Ok((batch, std::mem::take(&mut self.weights)))
    }
}

/// The field named `name`, or else the one whose name matches ignoring case (upstream
/// `OrderId` for a column declared `orderid`).
fn lookup<'a>(row: &'a Row, name: &str) -> Option<(&'a String, &'a Value)> {
    row.get_key_value(name).or_else(|| row.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
}

fn shorten(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// A value for a non-key column of a row that only removes its key (never stored).
fn placeholder(field: &Field) -> Cell {
    use DataType::*;
    match field.data_type() {
        Utf8 | LargeUtf8 | Utf8View => Cell::Text(String::new()),
        Boolean => Cell::Bool(false),
        Float32 | Float64 => Cell::Float(0.0),
        Decimal128(_, _) => Cell::Decimal(0),
        Date32 => Cell::Days(0),
        Timestamp(_, _) | Time32(_) | Time64(_) => Cell::Nanos(0),
        UInt8 | UInt16 | UInt32 | UInt64 => Cell::UInt(0),
        _ => Cell::Int(0),
    }
}

fn convert(field: &Field, v: &Value, hint: Option<&Hint>, unit: TimeUnit) -> Result<Cell, String> {
    use DataType::*;
    let logical = hint.and_then(|h| h.logical.as_deref());
    Ok(match field.data_type() {
        Int8 | Int16 | Int32 | Int64 => {
            let n = integer(v)?;
            let (lo, hi) = match field.data_type() {
                Int8 => (i8::MIN as i64, i8::MAX as i64),
                Int16 => (i16::MIN as i64, i16::MAX as i64),
                Int32 => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            if n < lo || n > hi {
                return Err(format!("{n} is out of range for {}", field.data_type()));
            }
            Cell::Int(n)
        }
        UInt8 | UInt16 | UInt32 | UInt64 => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            }
            .ok_or("not an unsigned integer")?;
            let hi = match field.data_type() {
                UInt8 => u8::MAX as u64,
                UInt16 => u16::MAX as u64,
                UInt32 => u32::MAX as u64,
                _ => u64::MAX,
            };
            if n > hi {
                return Err(format!("{n} is out of range for {}", field.data_type()));
            }
            Cell::UInt(n)
        }
        Float32 | Float64 => Cell::Float(match v {
            Value::Number(n) => n.as_f64().ok_or("not a number")?,
            Value::String(s) => parse_float(s).ok_or("not a number")?,
            _ => return Err("not a number".into()),
        }),
        Decimal128(precision, scale) => {
            let (precision, scale) = (*precision, *scale);
            let unscaled = match v {
                Value::Number(n) => parse_decimal(&n.to_string(), scale)?,
                Value::String(s) => match parse_decimal(s, scale) {
                    Ok(d) => d,
                    // Debezium's `decimal.handling.mode=precise`: the unscaled value as
                    // base64 two's-complement bytes, its scale in the schema (else the column's).
                    Err(e) => match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                        Ok(bytes) if !s.trim().is_empty() => {
                            let from = hint.and_then(|h| h.scale).unwrap_or(scale);
                            rescale(twos_complement(&bytes)?, from, scale)?
                        }
                        _ => return Err(e),
                    },
                },
                _ => return Err("not a numeric".into()),
            };
            let limit = 10i128.pow(precision as u32);
            if unscaled.abs() >= limit {
                return Err(format!("numeric field overflow: precision {precision}, scale {scale}"));
            }
            Cell::Decimal(unscaled)
        }
        Utf8 | LargeUtf8 | Utf8View => {
            let text = match v {
                Value::String(s) => s.clone(),
                // A nested value (a MySQL JSON column, a number) as its JSON text.
                other => other.to_string(),
            };
            match crate::types::PgText::of(field) {
                None => Cell::Text(text),
                // jsonb: a string holds JSON text (Debezium's Json type), else it is a JSON
                // string; varchar(n)/char(n): their length (22001 stops the message).
                Some(t) => match t.assign_value(&text) {
                    Ok(changed) => Cell::Text(changed.unwrap_or(text)),
                    Err(_) if t == crate::types::PgText::Jsonb && matches!(v, Value::String(_)) => {
                        let mut quoted = String::new();
                        crate::types::json::write_string(&text, &mut quoted);
                        Cell::Text(quoted)
                    }
                    Err(e) => return Err(e.message),
                },
            }
        }
        Boolean => Cell::Bool(match v {
            Value::Bool(b) => *b,
            Value::Number(n) => match n.as_i64() {
                Some(0) => false,
                Some(1) => true,
                _ => return Err("not a boolean".into()),
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "t" | "true" | "yes" | "on" => true,
                "0" | "f" | "false" | "no" | "off" => false,
                _ => return Err("not a boolean".into()),
            },
            _ => return Err("not a boolean".into()),
        }),
        Date32 => Cell::Days(match v {
            Value::Number(_) => i32::try_from(integer(v)?).map_err(|_| "date out of range")?,
            Value::String(s) => date_days(s)?,
            _ => return Err("not a date".into()),
        }),
        Timestamp(_, _) => Cell::Nanos(match v {
            Value::Number(_) => {
                let n = integer(v)?;
                let unit = match logical {
                    Some("io.debezium.time.MicroTimestamp") => TimeUnit::Microsecond,
                    Some("io.debezium.time.NanoTimestamp") => TimeUnit::Nanosecond,
                    Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => {
                        TimeUnit::Millisecond
                    }
                    _ => unit,
                };
                to_nanos(n, unit)?
            }
            Value::String(s) => timestamp_nanos(s)?,
            _ => return Err("not a timestamp".into()),
        }),
        Time32(_) | Time64(_) => Cell::Nanos(match v {
            Value::Number(_) => {
                let n = integer(v)?;
                let unit = match logical {
                    Some("io.debezium.time.MicroTime") => TimeUnit::Microsecond,
                    Some("io.debezium.time.NanoTime") => TimeUnit::Nanosecond,
                    // Debezium's Time and Kafka Connect's are milliseconds past midnight.
                    _ => TimeUnit::Millisecond,
                };
                let nanos = to_nanos(n, unit)?;
                if !(0..86_400_000_000_000).contains(&nanos) {
                    return Err("time out of range".into());
                }
                nanos
            }
            Value::String(s) => time_nanos(s)?,
            _ => return Err("not a time".into()),
        }),
        other => return Err(format!("columns of type {other} cannot be read from JSON")),
    })
}

fn integer(v: &Value) -> Result<i64, String> {
    match v {
        // 12.0 from a producer that writes every number as a double is 12; 12.5 is refused.
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).map(|f| f as i64))
            .ok_or_else(|| "not an integer in range".to_string()),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| "not an integer".to_string()),
        Value::Bool(b) => Ok(*b as i64),
        _ => Err("not an integer".into()),
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// Decimal text (`-12.345`, `1.5e3`) as an unscaled integer at `scale`, rounding half away
/// from zero past it (as Postgres rounds a value into NUMERIC(p, s)).
pub fn parse_decimal(text: &str, scale: i8) -> Result<i128, String> {
    let bad = || format!("\"{text}\" is not a numeric");
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    // value = digits × 10^(exponent − frac_len); we want value × 10^scale.
    let shift = exponent - frac_part.len() as i32 + scale as i32;
    let too_big = || "value out of range for numeric".to_string();
    let mut value: i128 = 0;
    let mut kept = digits.len() as i32;
    if shift < 0 {
        kept = (digits.len() as i32 + shift).max(0);
    }
    for b in digits.as_bytes()[..kept as usize].iter() {
        value = value.checked_mul(10).and_then(|v| v.checked_add((b - b'0') as i128)).ok_or_else(too_big)?;
    }
    if shift > 0 {
        for _ in 0..shift {
            value = value.checked_mul(10).ok_or_else(too_big)?;
        }
    } else if shift < 0 {
        let first_dropped = digits.as_bytes().get(kept as usize).copied();
        if first_dropped.is_some_and(|d| d >= b'5') {
            value = value.checked_add(1).ok_or_else(too_big)?;
        }
    }
    Ok(if negative { -value } else { value })
}

/// Big-endian two's-complement bytes as an integer (Kafka Connect's Decimal).
fn twos_complement(bytes: &[u8]) -> Result<i128, String> {
    if bytes.len() > 16 {
        return Err("decimal bytes longer than 16".into());
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut full = [if negative { 0xff } else { 0 }; 16];
    full[16 - bytes.len()..].copy_from_slice(bytes);
    Ok(i128::from_be_bytes(full))
}

fn rescale(value: i128, from: i8, to: i8) -> Result<i128, String> {
    let diff = to as i32 - from as i32;
    if diff >= 0 {
        10i128.checked_pow(diff as u32).and_then(|m| value.checked_mul(m)).ok_or_else(|| "numeric out of range".into())
    } else {
        let div = 10i128.pow((-diff) as u32);
        let (q, r) = (value / div, value % div);
        Ok(if r.abs() * 2 >= div { q + value.signum() } else { q })
    }
}

fn to_nanos(n: i64, unit: TimeUnit) -> Result<i64, String> {
    let factor = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    n.checked_mul(factor).ok_or_else(|| "timestamp out of range".into())
}

fn date_days(s: &str) -> Result<i32, String> {
    let date = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| format!("\"{s}\" is not a date"))?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date");
    Ok((date - epoch).num_days() as i32)
}

/// `2024-05-01 10:00:00[.ffffff]`, with `T`, and with `Z` or an offset (converted to UTC).
fn timestamp_nanos(s: &str) -> Result<i64, String> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(s.trim())
        .map_err(|_| format!("\"{s}\" is not a timestamp"))
}

fn time_nanos(s: &str) -> Result<i64, String> {
    use chrono::Timelike;
    let t = chrono::NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f").map_err(|_| format!("\"{s}\" is not a time"))?;
    Ok(t.num_seconds_from_midnight() as i64 * 1_000_000_000 + t.nanosecond() as i64)
}

fn build(t: &DataType, cells: Vec<Cell>) -> Result<ArrayRef, String> {
    use DataType::*;
    let int = |c: &Cell| match c {
        Cell::Int(n) => Some(*n),
        _ => None,
    };
    let uint = |c: &Cell| match c {
        Cell::UInt(n) => Some(*n),
        _ => None,
    };
    let nanos = |c: &Cell| match c {
        Cell::Nanos(n) => Some(*n),
        _ => None,
    };
    let cells = cells.iter();
    Ok(match t {
        Int8 => Arc::new(cells.map(|c| int(c).map(|n| n as i8)).collect::<Int8Array>()),
        Int16 => Arc::new(cells.map(|c| int(c).map(|n| n as i16)).collect::<Int16Array>()),
        Int32 => Arc::new(cells.map(|c| int(c).map(|n| n as i32)).collect::<Int32Array>()),
        Int64 => Arc::new(cells.map(int).collect::<Int64Array>()),
        UInt8 => Arc::new(cells.map(|c| uint(c).map(|n| n as u8)).collect::<UInt8Array>()),
        UInt16 => Arc::new(cells.map(|c| uint(c).map(|n| n as u16)).collect::<UInt16Array>()),
        UInt32 => Arc::new(cells.map(|c| uint(c).map(|n| n as u32)).collect::<UInt32Array>()),
        UInt64 => Arc::new(cells.map(uint).collect::<UInt64Array>()),
        Float32 => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Float(f) => Some(*f as f32),
                    _ => None,
                })
                .collect::<Float32Array>(),
        ),
        Float64 => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Float(f) => Some(*f),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        Decimal128(p, s) => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Decimal(d) => Some(*d),
                    _ => None,
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(*p, *s)
                .map_err(|e| e.to_string())?,
        ),
        Utf8 | LargeUtf8 | Utf8View => {
            let texts = cells.map(|c| match c {
                Cell::Text(s) => Some(s.as_str()),
                _ => None,
            });
            match t {
                Utf8 => Arc::new(texts.collect::<StringArray>()),
                LargeUtf8 => Arc::new(texts.collect::<LargeStringArray>()),
                _ => Arc::new(texts.collect::<StringViewArray>()),
            }
        }
        Boolean => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        Date32 => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Days(d) => Some(*d),
                    _ => None,
                })
                .collect::<Date32Array>(),
        ),
        Timestamp(unit, tz) => {
            let values = cells.map(nanos);
            match unit {
                TimeUnit::Second => Arc::new(
                    values
                        .map(|n| n.map(|n| n.div_euclid(1_000_000_000)))
                        .collect::<TimestampSecondArray>()
                        .with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Millisecond => Arc::new(
                    values
                        .map(|n| n.map(|n| n.div_euclid(1_000_000)))
                        .collect::<TimestampMillisecondArray>()
                        .with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Microsecond => Arc::new(
                    values
                        .map(|n| n.map(|n| n.div_euclid(1_000)))
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Nanosecond => {
                    Arc::new(values.collect::<TimestampNanosecondArray>().with_timezone_opt(tz.clone()))
                }
            }
        }
        Time32(TimeUnit::Second) => {
            Arc::new(cells.map(|c| nanos(c).map(|n| (n / 1_000_000_000) as i32)).collect::<Time32SecondArray>())
        }
        Time32(_) => {
            Arc::new(cells.map(|c| nanos(c).map(|n| (n / 1_000_000) as i32)).collect::<Time32MillisecondArray>())
        }
        Time64(TimeUnit::Nanosecond) => Arc::new(cells.map(nanos).collect::<Time64NanosecondArray>()),
        Time64(_) => Arc::new(cells.map(|c| nanos(c).map(|n| n / 1_000)).collect::<Time64MicrosecondArray>()),
        other => return Err(format!("columns of type {other} cannot be read from JSON")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use serde_json::json;

    #[test]
    fn decimals_from_text_numbers_and_debezium_bytes() {
        assert_eq!(parse_decimal("12.34", 2), Ok(1234));
        assert_eq!(parse_decimal("-0.005", 2), Ok(-1));
        assert_eq!(parse_decimal("0.004", 2), Ok(0));
        assert_eq!(parse_decimal("1.5e3", 1), Ok(15000));
        assert_eq!(parse_decimal("7", 3), Ok(7000));
        assert_eq!(parse_decimal(".5", 1), Ok(5));
        assert!(parse_decimal("1.2.3", 2).is_err());
        assert!(parse_decimal("", 2).is_err());
        assert!(parse_decimal("abc", 2).is_err());
        // Debezium's example: 12.34 at scale 2 is the unscaled 1234 = 0x04D2 → "BNI=".
        let f = Field::new("amount", DataType::Decimal128(10, 2), true);
        let hint = Hint { logical: Some("org.apache.kafka.connect.data.Decimal".into()), scale: Some(2) };
        assert_eq!(convert(&f, &json!("BNI="), Some(&hint), TimeUnit::Millisecond), Ok(Cell::Decimal(1234)));
        // Negative: -1234 = 0xFB2E.
        assert_eq!(convert(&f, &json!("+y4="), Some(&hint), TimeUnit::Millisecond), Ok(Cell::Decimal(-1234)));
        assert_eq!(convert(&f, &json!(12.5), None, TimeUnit::Millisecond), Ok(Cell::Decimal(1250)));
        assert!(convert(
            &Field::new("d", DataType::Decimal128(3, 2), true),
            &json!("10.00"),
            None,
            TimeUnit::Millisecond
        )
        .is_err());
    }

    #[test]
    fn typed_text_columns_keep_their_rules() {
        let unit = TimeUnit::Millisecond;
        let j = crate::types::PgText::Jsonb.field("j");
        let canonical = Ok(Cell::Text(r#"{"a": 2, "b": 1}"#.into()));
        assert_eq!(convert(&j, &json!(r#"{"b":1,"a":2}"#), None, unit), canonical);
        assert_eq!(convert(&j, &json!({"b": 1, "a": 2}), None, unit), canonical);
        assert_eq!(convert(&j, &json!("plain"), None, unit), Ok(Cell::Text("\"plain\"".into())));
        let v = crate::types::PgText::Varchar(2).field("v");
        assert_eq!(convert(&v, &json!("ab"), None, unit), Ok(Cell::Text("ab".into())));
        assert!(convert(&v, &json!("abc"), None, unit).is_err());
    }

    #[test]
    fn temporal_encodings() {
        let date = Field::new("d", DataType::Date32, true);
        assert_eq!(convert(&date, &json!(19000), None, TimeUnit::Millisecond), Ok(Cell::Days(19000)));
        assert_eq!(convert(&date, &json!("1970-01-11"), None, TimeUnit::Millisecond), Ok(Cell::Days(10)));
        let ts = Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), true);
        let micro = Hint { logical: Some("io.debezium.time.MicroTimestamp".into()), scale: None };
        assert_eq!(
            convert(&ts, &json!(1_500_000), Some(&micro), TimeUnit::Millisecond),
            Ok(Cell::Nanos(1_500_000_000))
        );
        assert_eq!(convert(&ts, &json!(1500), None, TimeUnit::Millisecond), Ok(Cell::Nanos(1_500_000_000)));
        assert_eq!(
            convert(&ts, &json!("1970-01-01 00:00:01.5"), None, TimeUnit::Millisecond),
            Ok(Cell::Nanos(1_500_000_000))
        );
        assert_eq!(
            convert(&ts, &json!("1970-01-01T01:00:01.5+01:00"), None, TimeUnit::Millisecond),
            Ok(Cell::Nanos(1_500_000_000))
        );
        let time = Field::new("h", DataType::Time64(TimeUnit::Microsecond), true);
        assert_eq!(convert(&time, &json!("00:00:02.25"), None, TimeUnit::Millisecond), Ok(Cell::Nanos(2_250_000_000)));
        assert!(convert(&time, &json!(-1), None, TimeUnit::Millisecond).is_err());
    }

    #[test]
    fn rows_go_in_whole_or_not_at_all() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
        ]));
        let mut b = RowsBuilder::new(schema, Some(vec![0]), TimeUnit::Millisecond);
        let row = |v: Value| v.as_object().unwrap().clone();
        b.push(&row(json!({"id": "1", "name": "a", "n": 5})), 1, &Hints::new()).unwrap();
        // Upstream spelled the column in another case.
        b.push(&row(json!({"ID": 2, "Name": "b"})), 1, &Hints::new()).unwrap();
        let e = b.push(&row(json!({"id": 3, "name": "c", "n": 3_000_000_000i64})), 1, &Hints::new()).unwrap_err();
        assert!(e.contains("column n") && e.contains("out of range"), "{e}");
        assert!(b.push(&row(json!({"id": 4})), 1, &Hints::new()).unwrap_err().contains("column name is missing"));
        // A key removal needs only the key.
        b.push(&row(json!({"id": 1})), -1, &Hints::new()).unwrap();
        let (batch, weights) = b.take().unwrap();
        assert_eq!((batch.num_rows(), weights), (3, vec![1, 1, -1]));
        assert!(b.is_empty());
    }
}
