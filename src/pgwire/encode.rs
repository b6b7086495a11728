//! Statement results and errors → pgwire responses.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use bytes::BytesMut;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldFormat;
use pgwire::api::results::FieldInfo;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use crate::error::Error;
use crate::sql::{QueryResult, Session};
use crate::types::PgText;

/// How this session shows values: its `TimeZone`, `DateStyle`, `IntervalStyle`,
/// `bytea_output` and `extra_float_digits`.
fn format_options(session: &Session) -> FormatOptions {
    let mut o = FormatOptions::default();
    let set = |target: &mut String, name: &str| {
        if let Some(v) = session.setting(name) {
            *target = v;
        }
    };
    set(&mut o.time_zone, "timezone");
    set(&mut o.date_style, "datestyle");
    set(&mut o.interval_style, "intervalstyle");
    set(&mut o.bytea_output, "bytea_output");
    if let Some(d) = session.setting("extra_float_digits").and_then(|v| v.parse().ok()) {
        o.extra_float_digits = d;
    }
    o
}

/// The schema with every `timestamptz` column shown in `zone`. Arrow keeps the instant and
/// only relabels the zone, which arrow-pg then uses for the text form (`+08` offsets); the
/// binary form is the instant either way.
fn in_time_zone(schema: &SchemaRef, zone: &str) -> Option<SchemaRef> {
    let relabel = |dt: &DataType| match dt {
        DataType::Timestamp(unit, Some(tz)) if tz.as_ref() != zone => {
            Some(DataType::Timestamp(*unit, Some(zone.into())))
        }
        _ => None,
    };
    if !schema.fields().iter().any(|f| relabel(f.data_type()).is_some()) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match relabel(f.data_type()) {
            Some(dt) => f.as_ref().clone().with_data_type(dt),
            None => f.as_ref().clone(),
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

/// Significant digits a `numeric` value can be sent with: arrow-pg encodes through
/// rust_decimal, whose 96-bit mantissa holds 28 (and some 29-digit) numbers.
const MAX_SENT_DIGITS: u32 = 28;

/// A decimal type some of whose values may not fit [`MAX_SENT_DIGITS`].
fn wide_decimal(dt: &DataType) -> bool {
    matches!(dt, DataType::Decimal128(p, _) if u32::from(*p) > MAX_SENT_DIGITS)
}

/// Unconstrained `NUMERIC` (a column declared without precision, `x::numeric`): Arrow holds
/// it as `Decimal128(38, 10)`; Postgres keeps each value's own scale and prints `0.3`, not
/// `0.3000000000`. Values of this type are written without trailing fractional zeros, the
/// spelling of most values a user enters (`2.50` entered is `2.5`; Postgres: `2.50`).
const UNCONSTRAINED: DataType = DataType::Decimal128(38, 10);

/// A decimal as Postgres writes it in text: every digit (38 fit; rust_decimal, which arrow-pg
/// writes through, holds 28), with `scale` fractional digits, or without trailing fractional
/// zeros when `trim`.
fn decimal_text(value: i128, scale: u32, trim: bool) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let frac = if trim { frac.trim_end_matches('0') } else { frac };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// The batch with its text-format decimal columns written as [`decimal_text`] does.
fn with_decimal_text(batch: RecordBatch, text_decimal: &[bool]) -> datafusion::error::Result<RecordBatch> {
    use datafusion::arrow::array::{Array, Decimal128Array, StringArray};
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = batch.columns().to_vec();
    for (i, is_text) in text_decimal.iter().enumerate() {
        let DataType::Decimal128(_, scale @ 0..) = *fields[i].data_type() else { continue };
        let Some(values) = columns[i].as_any().downcast_ref::<Decimal128Array>().filter(|_| *is_text) else {
            continue;
        };
        let trim = *fields[i].data_type() == UNCONSTRAINED;
        let text: StringArray = values.iter().map(|v| v.map(|v| decimal_text(v, scale as u32, trim))).collect();
        columns[i] = Arc::new(text);
        fields[i] = fields[i].clone().with_data_type(DataType::Utf8);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())), columns)?)
}

/// Decimal columns whose values need more than [`MAX_SENT_DIGITS`] digits, rounded to the
/// fractional digits that fit the largest of them (a product of unconstrained `NUMERIC`s has
/// scale 30: `1.5 * 2.25 * 3` is sent as `10.125000000000000000000000`, where it would be
/// unreadable). Values whose integer part alone needs more are left as they are (the encoder
/// then fails with 22003, as an out-of-range value).
fn decimals_as_sent(batch: RecordBatch) -> datafusion::error::Result<RecordBatch> {
    use datafusion::arrow::array::{Array, Decimal128Array};
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let (DataType::Decimal128(_, scale), Some(values)) =
            (f.data_type(), c.as_any().downcast_ref::<Decimal128Array>())
        else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
            continue;
        };
        let largest = values.iter().flatten().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        let digits = if largest == 0 { 1 } else { largest.ilog10() + 1 };
        let scale = (*scale).max(0) as u32;
        if digits <= MAX_SENT_DIGITS || scale == 0 {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
            continue;
        }
        let integer_digits = digits.saturating_sub(scale);
        let fits = MAX_SENT_DIGITS.saturating_sub(integer_digits).min(scale) as i8;
        let dt = DataType::Decimal128(38, fits);
        columns.push(cast(c, &dt)?);
        fields.push(f.as_ref().clone().with_data_type(dt));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())), columns)?)
}

fn relabel(batch: RecordBatch, schema: &SchemaRef) -> datafusion::error::Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// `timestamptz` values as Postgres writes them in text: `2024-01-02 08:34:05.5+05:30` (the
/// offset with minutes when it has them, fractional seconds without trailing zeros). pgwire's
/// own text form drops the offset's minutes.
fn timestamptz_text(column: &ArrayRef, zone: &str) -> datafusion::error::Result<ArrayRef> {
    use chrono::{Offset, TimeZone};
    use datafusion::arrow::array::{Array, StringArray, TimestampMicrosecondArray};
    let tz: datafusion::arrow::array::timezone::Tz = zone.parse()?;
    let micros = cast(column, &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None))?;
    let micros = micros.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("cast to microseconds");
    let text: StringArray = (0..micros.len())
        .map(|i| {
            if micros.is_null(i) {
                return None;
            }
            let utc = chrono::DateTime::from_timestamp_micros(micros.value(i))?;
            let local = tz.from_utc_datetime(&utc.naive_utc());
            let mut out = local.format("%Y-%m-%d %H:%M:%S").to_string();
            let fraction = local.timestamp_subsec_micros();
            if fraction > 0 {
                out.push_str(format!(".{fraction:06}").trim_end_matches('0'));
            }
            let offset = local.offset().fix().local_minus_utc();
            let (sign, offset) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
            out.push_str(&format!("{sign}{:02}", offset / 3600));
            if offset % 3600 != 0 {
                out.push_str(&format!(":{:02}", offset % 3600 / 60));
            }
            if offset % 60 != 0 {
                out.push_str(&format!(":{:02}", offset % 60));
            }
            Some(out)
        })
        .collect();
    Ok(Arc::new(text))
}

/// The batch with its text-format `timestamptz` columns written as Postgres text.
fn with_timestamptz_text(batch: RecordBatch, text_tz: &[bool], zone: &str) -> datafusion::error::Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(text_tz)
        .map(|(c, is_tz)| if *is_tz { timestamptz_text(c, zone) } else { Ok(c.clone()) })
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// The wire fields of `schema`: arrow-pg's, with the Postgres types of marked text columns
/// (`json`, `jsonb`, `varchar(n)`, `char(n)`: [`crate::types::PgText`]) and their typmods.
pub fn pg_fields(
    schema: &SchemaRef,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    let fields = arrow_schema_to_pg_fields(schema, format, options)?;
    Ok(fields
        .into_iter()
        .zip(schema.fields())
        .map(|(info, field)| match PgText::of(field) {
            None => info,
            Some(t) => {
                let datatype = match t {
                    PgText::Json => Type::JSON,
                    PgText::Jsonb => Type::JSONB,
                    PgText::Varchar(_) => Type::VARCHAR,
                    PgText::Bpchar(_) => Type::BPCHAR,
                };
                FieldInfo::new(info.name().to_string(), info.table_id(), info.column_id(), datatype, info.format())
                    .with_format_options(info.format_options().clone())
                    .with_type_size(-1)
                    .with_type_modifier(t.typmod())
            }
        })
        .collect())
}

/// What marked text columns need before arrow-pg encodes them: `char(n)` padded to `n`;
/// `jsonb` in binary format as its version byte and text (sent as bytes).
#[derive(Debug, Clone, Copy)]
enum TypedText {
    Pad(u32),
    JsonbBinary,
}

fn typed_text_columns(schema: &SchemaRef, fields: &[FieldInfo]) -> Vec<(usize, TypedText)> {
    schema
        .fields()
        .iter()
        .zip(fields)
        .enumerate()
        .filter_map(|(i, (f, info))| match PgText::of(f)? {
            PgText::Bpchar(n) => Some((i, TypedText::Pad(n))),
            PgText::Jsonb if info.format() == FieldFormat::Binary => Some((i, TypedText::JsonbBinary)),
            _ => None,
        })
        .collect()
}

fn with_typed_text(batch: RecordBatch, columns: &[(usize, TypedText)]) -> datafusion::error::Result<RecordBatch> {
    use datafusion::arrow::array::{Array, BinaryArray, StringArray};
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays = batch.columns().to_vec();
    for &(i, how) in columns {
        let Some(values) = arrays[i].as_any().downcast_ref::<StringArray>() else { continue };
        arrays[i] = match how {
            TypedText::Pad(n) => {
                let t = PgText::Bpchar(n);
                Arc::new(
                    values
                        .iter()
                        .map(|v| v.map(|v| t.display(v).unwrap_or_else(|| v.to_string())))
                        .collect::<StringArray>(),
                ) as ArrayRef
            }
            TypedText::JsonbBinary => {
                fields[i] = Field::new(fields[i].name(), DataType::Binary, true);
                Arc::new(
                    (0..values.len())
                        .map(|r| (!values.is_null(r)).then(|| [&[1u8][..], values.value(r).as_bytes()].concat()))
                        .collect::<BinaryArray>(),
                ) as ArrayRef
            }
        };
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())), arrays)?)
}

/// Encodes a result; rows stream to the client as DataFusion produces them.
pub fn response(result: QueryResult, format: &Format, session: &Session) -> PgWireResult<Response> {
    Ok(match result {
        QueryResult::Rows { schema, stream } => {
            let options = format_options(session);
            let options_zone = options.time_zone.clone();
            let options_zone_shortest = options.extra_float_digits >= 1;
            let shown = in_time_zone(&schema, &options.time_zone);
            let schema = shown.clone().unwrap_or(schema);
            let fields = Arc::new(pg_fields(&schema, format, Some(Arc::new(options)))?);
            let typed_text = typed_text_columns(&schema, &fields);
            let row_fields = fields.clone();
            let shortest = options_zone_shortest;
            let fixes: Arc<[TextFix]> = fields.iter().map(|f| TextFix::of(f, shortest)).collect();
            let fix_text = fixes.iter().any(|f| *f != TextFix::None);
            let text_tz: Arc<[bool]> =
                fields.iter().map(|f| f.format() == FieldFormat::Text && *f.datatype() == Type::TIMESTAMPTZ).collect();
            let zone = text_tz.iter().any(|b| *b).then(|| options_zone.clone());
            // Decimals in text are written here, exactly; in binary, arrow-pg writes them
            // (rounded to fit rust_decimal when they must be: `decimals_as_sent`).
            let text_decimal: Arc<[bool]> = schema
                .fields()
                .iter()
                .zip(fields.iter())
                .map(|(f, info)| {
                    info.format() == FieldFormat::Text && matches!(f.data_type(), DataType::Decimal128(..))
                })
                .collect();
            let any_text_decimal = text_decimal.iter().any(|b| *b);
            let wide_decimals = schema
                .fields()
                .iter()
                .zip(text_decimal.iter())
                .any(|(f, is_text)| !is_text && wide_decimal(f.data_type()));
            let rows = stream
                .map(move |batch| {
                    let batch = match &shown {
                        Some(s) => batch.and_then(|b| relabel(b, s)),
                        None => batch,
                    };
                    let batch = match &zone {
                        Some(z) => batch.and_then(|b| with_timestamptz_text(b, &text_tz, z)),
                        None => batch,
                    };
                    let batch =
                        if any_text_decimal { batch.and_then(|b| with_decimal_text(b, &text_decimal)) } else { batch };
                    let batch = if wide_decimals { batch.and_then(decimals_as_sent) } else { batch };
                    let batch =
                        if typed_text.is_empty() { batch } else { batch.and_then(|b| with_typed_text(b, &typed_text)) };
                    let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                        Ok(b) if fix_text => {
                            let fixes = fixes.clone();
                            Box::new(
                                encode_recordbatch(row_fields.clone(), b)
                                    .map(move |r| r.map(|r| postgres_text(r, &fixes))),
                            )
                        }
                        Ok(b) => encode_recordbatch(row_fields.clone(), b),
                        Err(e) => Box::new(std::iter::once(Err(error(Error::from(e))))),
                    };
                    futures::stream::iter(rows)
                })
                .flatten();
            Response::Query(QueryResponse::new(fields, rows))
        }
        QueryResult::Returned { tag, batch } => {
            let rows = QueryResult::from_batches(batch.schema(), vec![batch]);
            let mut response = response(rows, format, session)?;
            if let Response::Query(q) = &mut response {
                // pgwire appends the number of rows sent.
                q.set_command_tag(if tag == "INSERT" { "INSERT 0" } else { &tag });
            }
            response
        }
        QueryResult::Command { tag, rows } => {
            let mut t = Tag::new(&tag);
            if tag == "INSERT" {
                t = t.with_oid(0);
            }
            if let Some(n) = rows {
                t = t.with_rows(n);
            }
            Response::Execution(t)
        }
        QueryResult::CopyOut { format, schema, stream } => super::copy::copy_out(format, schema, stream, session)?,
        QueryResult::CopyIn(copy) => super::copy::copy_in_response(&copy),
        QueryResult::TransactionStart(tag) => Response::TransactionStart(Tag::new(&tag)),
        QueryResult::TransactionEnd(tag) => Response::TransactionEnd(Tag::new(&tag)),
    })
}

/// Text values whose spelling pgwire gets wrong, fixed after encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextFix {
    None,
    /// pgwire writes `inf`/`-inf`; Postgres (and JDBC's parser) write `Infinity`/`-Infinity`.
    /// With `extra_float_digits` ≥ 1 (the default) pgwire writes Rust's shortest form
    /// (`2.0`, `1e16`, `0.00001`); Postgres writes the same digits as `printf`'s `%g` would
    /// place them (`2`, `1e+16`, `1e-05`): fixed notation for decimal exponents from −4
    /// below 15 (float4: below 6), else `d.ddde±XX` ([`crate::types::float_text`]).
    Float {
        /// The decimal exponent from which Postgres writes scientific notation.
        scientific_from: i32,
        /// Whether the digits are the shortest form (`extra_float_digits` ≥ 1).
        shortest: bool,
    },
    /// An array of floats (`{1.5,2.0,inf}`): each element as [`TextFix::Float`] writes it.
    FloatArray {
        scientific_from: i32,
        shortest: bool,
    },
    /// pgwire always writes six fractional digits (`12:34:56.000000`); Postgres drops trailing
    /// zeros and a bare dot (`12:34:56`, `03:04:05.5+00`), and some drivers compare text.
    Time,
}

impl TextFix {
    fn of(field: &pgwire::api::results::FieldInfo, shortest: bool) -> Self {
        if field.format() != FieldFormat::Text {
            return TextFix::None;
        }
        match *field.datatype() {
            Type::FLOAT4 => TextFix::Float { scientific_from: 6, shortest },
            Type::FLOAT8 => TextFix::Float { scientific_from: 15, shortest },
            Type::FLOAT4_ARRAY => TextFix::FloatArray { scientific_from: 6, shortest },
            Type::FLOAT8_ARRAY => TextFix::FloatArray { scientific_from: 15, shortest },
            // (timestamptz text is written by `timestamptz_text`.)
            Type::TIME | Type::TIMESTAMP => TextFix::Time,
            _ => TextFix::None,
        }
    }

    fn apply<'a>(self, value: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        match (self, value) {
            (TextFix::Float { .. }, b"inf") => b"Infinity",
            (TextFix::Float { .. }, b"-inf") => b"-Infinity",
            (TextFix::Float { scientific_from, shortest: true }, v) => {
                match crate::types::float_text(v, scientific_from) {
                    Some(text) => {
                        scratch.clear();
                        scratch.extend_from_slice(text.as_bytes());
                        scratch
                    }
                    None => v,
                }
            }
            (TextFix::FloatArray { scientific_from, shortest }, v) => {
                let element = TextFix::Float { scientific_from, shortest };
                let mut out = Vec::with_capacity(v.len());
                let mut inner = Vec::new();
                for token in v.split_inclusive(|b| matches!(b, b'{' | b'}' | b',')) {
                    let (item, separator) = match token.split_last() {
                        Some((last, item)) if matches!(last, b'{' | b'}' | b',') => (item, Some(*last)),
                        _ => (token, None),
                    };
                    if !item.is_empty() && item != b"NULL" {
                        out.extend_from_slice(element.apply(item, &mut inner));
                    } else {
                        out.extend_from_slice(item);
                    }
                    out.extend(separator);
                }
                *scratch = out;
                scratch
            }
            (TextFix::Time, v) => match v.iter().position(|b| *b == b'.') {
                Some(dot) => {
                    let digits = v[dot + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                    let kept = v[dot + 1..dot + 1 + digits].iter().rposition(|b| *b != b'0').map_or(0, |p| p + 1);
                    scratch.clear();
                    scratch.extend_from_slice(&v[..if kept == 0 { dot } else { dot + 1 + kept }]);
                    scratch.extend_from_slice(&v[dot + 1 + digits..]);
                    scratch
                }
                None => v,
            },
            _ => value,
        }
    }
}

/// Rewrites the fields of a text row that [`TextFix`] names.
fn postgres_text(row: DataRow, fixes: &[TextFix]) -> DataRow {
    // Floats in their shortest form always need it; otherwise only when infinite: leave the
    // other rows untouched (no copy).
    let shortest = fixes
        .iter()
        .any(|f| matches!(f, TextFix::Float { shortest: true, .. } | TextFix::FloatArray { shortest: true, .. }));
    if !shortest && !fixes.contains(&TextFix::Time) && !row.data.windows(3).any(|w| w == b"inf") {
        return row;
    }
    let mut out = BytesMut::with_capacity(row.data.len());
    let mut scratch = Vec::new();
    let mut rest = &row.data[..];
    for fix in fixes {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else { return row };
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            out.extend_from_slice(&len.to_be_bytes());
            rest = tail;
            continue;
        }
        let Some((value, tail)) = tail.split_at_checked(len as usize) else { return row };
        let value = fix.apply(value, &mut scratch);
        out.extend_from_slice(&(value.len() as i32).to_be_bytes());
        out.extend_from_slice(value);
        rest = tail;
    }
    DataRow::new(out, row.field_count)
}

/// An [`Error`] as a Postgres `ErrorResponse`.
pub fn error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

/// The fields of the `ErrorResponse` for `e`.
pub fn error_info(e: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.to_string());
    info.hint = e.hint();
    if e.sqlstate() == "XX000" {
        tracing::warn!("internal error: {e}");
    }
    info
}

#[cfg(test)]
mod tests {
    use super::TextFix;

    #[test]
    fn decimals_are_written_exactly() {
        assert_eq!(super::decimal_text(150, 2, false), "1.50");
        assert_eq!(super::decimal_text(15_000_000_000, 10, true), "1.5");
        assert_eq!(super::decimal_text(20_000_000_000, 10, true), "2");
        assert_eq!(super::decimal_text(-5, 1, false), "-0.5");
        assert_eq!(super::decimal_text(-5, 3, true), "-0.005");
        assert_eq!(super::decimal_text(0, 2, false), "0.00");
        assert_eq!(super::decimal_text(0, 10, true), "0");
        assert_eq!(super::decimal_text(42, 0, true), "42");
        let big: i128 = 12345678901234567890123456789012345678;
        assert_eq!(super::decimal_text(big, 10, true), "1234567890123456789012345678.9012345678");
        assert_eq!(super::decimal_text(-big, 4, false), "-1234567890123456789012345678901234.5678");
    }

    #[test]
    fn text_like_postgres() {
        let mut s = Vec::new();
        assert_eq!(TextFix::Time.apply(b"12:34:56.000000", &mut s), b"12:34:56");
        assert_eq!(TextFix::Time.apply(b"1999-12-31 23:59:59.500000+00", &mut s), b"1999-12-31 23:59:59.5+00");
        assert_eq!(TextFix::Time.apply(b"2024-01-02 03:04:05.123456", &mut s), b"2024-01-02 03:04:05.123456");
        let float8 = TextFix::Float { scientific_from: 15, shortest: true };
        let float4 = TextFix::Float { scientific_from: 6, shortest: true };
        assert_eq!(float8.apply(b"-inf", &mut s), b"-Infinity");
        // Postgres's float8out / float4out (psql: SELECT 2::float8, 1e16::float8, ...).
        for (ryu, want) in [
            ("1.5", "1.5"),
            ("2.0", "2"),
            ("10000000000.0", "10000000000"),
            ("1e16", "1e+16"),
            ("1000000000000000.0", "1e+15"),
            ("100000000000000.0", "100000000000000"),
            ("1e-5", "1e-05"),
            ("0.0001", "0.0001"),
            ("1.2345e-7", "1.2345e-07"),
            ("-0.0", "-0"),
            ("0.0", "0"),
            ("-1.25", "-1.25"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("NaN", "NaN"),
        ] {
            assert_eq!(std::str::from_utf8(float8.apply(ryu.as_bytes(), &mut s)).unwrap(), want, "{ryu}");
        }
        assert_eq!(float4.apply(b"100000.0", &mut s), b"100000");
        assert_eq!(float4.apply(b"1000000.0", &mut s), b"1e+06");
        assert_eq!(float4.apply(b"3.0", &mut s), b"3");
    }
}
