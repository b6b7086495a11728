//! MySQL column types → Headwater (Arrow) types, and the decoding both capture paths share.
//!
//! The snapshot reads rows through the text protocol (every value a string, TIMESTAMP in a
//! `+00:00` session); the binlog delivers typed values (TIMESTAMP as epoch seconds, ENUM as an
//! index, SET as a bitmap, strings as raw bytes in the column's charset). Both are first turned
//! into a [`Cell`], and only [`ColumnBuilder::append`] turns cells into Arrow values, so a row
//! decodes identically whichever path it came through. The mapping is documented in
//! `docs/types.md`.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a column is decoded and stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    /// TINYINT, SMALLINT, YEAR, TINYINT UNSIGNED.
    Int16,
    /// INT, SMALLINT UNSIGNED, MEDIUMINT UNSIGNED.
    Int32,
    /// MEDIUMINT (signed): the binlog carries it as 24 unsigned bits.
    MediumInt,
    /// BIGINT, INT UNSIGNED.
    Int64,
    /// DECIMAL(p,s) with p ≤ 28, BIGINT UNSIGNED as (20,0).
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// DECIMAL wider than 28 digits, kept exact as text.
    DecimalText,
    Float32,
    Float64,
    /// DATE; the zero date becomes NULL.
    Date,
    /// DATETIME(n): wall-clock, no time zone.
    DateTime,
    /// TIMESTAMP(n): an instant, stored in UTC.
    Timestamp,
    /// TIME(n): a signed duration up to ±838:59:59, as MySQL prints it (`-838:59:59.00`).
    Time {
        fsp: u8,
    },
    /// CHAR, VARCHAR, TEXT, JSON. `charset` names the column's MySQL character set when its
    /// binlog bytes are not UTF-8 and must be transcoded (see [`Charset`]); `latin1` is the
    /// spelling of data directories written before other charsets were decoded. `json`: a
    /// JSON column (MySQL's `JSON`, MariaDB's `LONGTEXT CHECK (json_valid(..))`), captured as
    /// `jsonb` with its values in jsonb's canonical text.
    Text {
        latin1: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        charset: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        json: bool,
    },
    /// ENUM('a', ...): the label.
    Enum {
        labels: Vec<String>,
    },
    /// SET('a', ...): the labels present, comma-separated as MySQL prints them.
    Set {
        labels: Vec<String>,
    },
    /// BIT(n): the number, as BIGINT.
    Bit,
    /// BINARY, VARBINARY, BLOB and anything else stored as raw bytes.
    Binary,
    /// BINARY(n): zero-padded to n bytes (the binlog strips the padding).
    FixedBinary {
        len: usize,
    },
}

impl Kind {
    /// Chooses the kind from `information_schema.COLUMNS`.
    pub fn from_column(
        data_type: &str,
        column_type: &str,
        precision: Option<u64>,
        scale: Option<u64>,
        charset: Option<&str>,
    ) -> Kind {
        let unsigned = column_type.contains("unsigned");
        match data_type {
            "tinyint" => Kind::Int16,
            "smallint" if unsigned => Kind::Int32,
            "smallint" => Kind::Int16,
            "mediumint" if unsigned => Kind::Int32,
            "mediumint" => Kind::MediumInt,
            "int" | "integer" if unsigned => Kind::Int64,
            "int" | "integer" => Kind::Int32,
            "bigint" if unsigned => Kind::Decimal { precision: 20, scale: 0 },
            "bigint" => Kind::Int64,
            "year" => Kind::Int16,
            "decimal" | "numeric" => {
                let p = precision.unwrap_or(10);
                let s = scale.unwrap_or(0);
                // arrow-pg encodes NUMERIC through rust_decimal (28 digits): wider values
                // are kept exact as text rather than failing at query time.
                if p <= 28 {
                    Kind::Decimal { precision: p as u8, scale: s as i8 }
                } else {
                    Kind::DecimalText
                }
            }
            "float" => Kind::Float32,
            "double" | "real" => Kind::Float64,
            "date" => Kind::Date,
            "datetime" => Kind::DateTime,
            "timestamp" => Kind::Timestamp,
            "time" => {
                let fsp = column_type.split_once('(').and_then(|(_, r)| r.trim_end_matches(')').parse().ok());
                Kind::Time { fsp: fsp.unwrap_or(0) }
            }
            "enum" => Kind::Enum { labels: labels(column_type) },
            "set" => Kind::Set { labels: labels(column_type) },
            "bit" => {
                // BIT(64) values with the top bit set read as negative BIGINTs.
                Kind::Bit
            }
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" => {
                let charset = charset.map(|c| c.to_ascii_lowercase()).filter(|c| !Charset::is_utf8(c));
                Kind::Text { latin1: false, charset, json: data_type == "json" }
            }
            "binary" => {
                let len = column_type.trim_start_matches("binary(").trim_end_matches(')').parse().unwrap_or(0);
                Kind::FixedBinary { len }
            }
            _ => Kind::Binary,
        }
    }

    /// The Arrow type of the column.
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Int16 => DataType::Int16,
            Kind::Int32 | Kind::MediumInt => DataType::Int32,
            Kind::Int64 | Kind::Bit => DataType::Int64,
            Kind::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Kind::DecimalText | Kind::Text { .. } | Kind::Enum { .. } | Kind::Set { .. } | Kind::Time { .. } => {
                DataType::Utf8
            }
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Date => DataType::Date32,
            Kind::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Kind::Binary | Kind::FixedBinary { .. } => DataType::Binary,
        }
    }

    /// The SQL spelling of the type, for `SHOW CREATE TABLE`.
    pub fn sql_type(&self) -> String {
        match self {
            Kind::Int16 => "SMALLINT".into(),
            Kind::Int32 | Kind::MediumInt => "INTEGER".into(),
            Kind::Int64 | Kind::Bit => "BIGINT".into(),
            Kind::Decimal { precision, scale } => format!("NUMERIC({precision},{scale})"),
            Kind::Text { json: true, .. } => "JSONB".into(),
            Kind::DecimalText | Kind::Text { .. } | Kind::Enum { .. } | Kind::Set { .. } | Kind::Time { .. } => {
                "TEXT".into()
            }
            Kind::Float32 => "REAL".into(),
            Kind::Float64 => "DOUBLE PRECISION".into(),
            Kind::Date => "DATE".into(),
            Kind::DateTime => "TIMESTAMP".into(),
            Kind::Timestamp => "TIMESTAMPTZ".into(),
            Kind::Binary | Kind::FixedBinary { .. } => "BYTEA".into(),
        }
    }
}

/// Labels of `enum('a','b')` / `set('a','b')`, unescaping doubled quotes.
fn labels(column_type: &str) -> Vec<String> {
    let inner = column_type.split_once('(').map_or("", |(_, r)| r.strip_suffix(')').unwrap_or(r));
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quote) {
            ('\'', false) => in_quote = true,
            ('\'', true) if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            ('\'', true) => {
                in_quote = false;
                out.push(std::mem::take(&mut cur));
            }
            (c, true) => cur.push(c),
            _ => {}
        }
    }
    out
}

/// One value on its way from MySQL to Arrow (stored, too: the value a merged table's shard
/// that has not gained a column yet gives it, [`super::schema::TableSpec::absent`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Exact decimal or any text, already UTF-8.
    Text(String),
    /// A decimal's unscaled value at its column's scale.
    Decimal(i128),
    Bytes(Vec<u8>),
    /// Date and time parts (year 0 = zero date).
    DateTime {
        y: u16,
        mo: u8,
        d: u8,
        h: u8,
        mi: u8,
        s: u8,
        us: u32,
    },
    /// A signed duration.
    Time {
        negative: bool,
        hours: u32,
        mi: u8,
        s: u8,
        us: u32,
    },
}

impl Cell {
    /// The value as a message shows it.
    pub fn describe(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Int(v) => v.to_string(),
            Cell::UInt(v) => v.to_string(),
            Cell::Float(v) => v.to_string(),
            Cell::Double(v) => v.to_string(),
            Cell::Text(t) => format!("'{}'", t.replace('\'', "''")),
            other => format!("{other:?}"),
        }
    }
}

/// Parses a text-protocol value of a column of kind `kind`.
pub fn cell_from_text(kind: &Kind, raw: Option<&[u8]>) -> Result<Cell> {
    let Some(raw) = raw else { return Ok(Cell::Null) };
    let text = || String::from_utf8_lossy(raw).into_owned();
    // Parsed values are read in place (no String per value: the snapshot's hot path).
    let parsed = || String::from_utf8_lossy(raw);
    let bad = || Error::Internal(format!("cannot decode {kind:?} value {:?}", String::from_utf8_lossy(raw)));
    Ok(match kind {
        Kind::Int16 | Kind::Int32 | Kind::MediumInt | Kind::Int64 => Cell::Int(parsed().parse().map_err(|_| bad())?),
        Kind::Decimal { .. } | Kind::DecimalText => Cell::Text(text()),
        Kind::Float32 => Cell::Float(parsed().parse().map_err(|_| bad())?),
        Kind::Float64 => Cell::Double(parsed().parse().map_err(|_| bad())?),
        Kind::Date | Kind::DateTime | Kind::Timestamp => parse_datetime(&parsed()).ok_or_else(bad)?,
        Kind::Time { .. } => Cell::Text(text()),
        Kind::Text { json: true, .. } => Cell::Text(jsonb_text(text())),
        Kind::Text { .. } | Kind::Enum { .. } | Kind::Set { .. } => Cell::Text(text()),
        Kind::Bit => Cell::UInt(be_u64(raw)),
        Kind::Binary | Kind::FixedBinary { .. } => Cell::Bytes(raw.to_vec()),
    })
}

/// A JSON column's value as jsonb's canonical text. Upstream checks JSON (MySQL's type,
/// MariaDB's constraint); a value that is not JSON anyway is kept as it came (one bad value
/// must not stop a table): jsonb operators refuse it with 22P02 when they read it.
fn jsonb_text(text: String) -> String {
    match crate::types::json::Json::parse_jsonb(&text) {
        Ok(v) => v.to_text(),
        Err(_) => text,
    }
}

/// Converts a binlog value of a column of kind `kind`.
pub fn cell_from_binlog(kind: &Kind, value: &mysql_async::Value) -> Result<Cell> {
    use mysql_async::Value as V;
    let bad = || Error::Internal(format!("unexpected binlog value {value:?} for {kind:?}"));
    Ok(match (kind, value) {
        (_, V::NULL) => Cell::Null,
        (Kind::MediumInt, V::Int(i)) => Cell::Int(sign_extend_24(*i)),
        (Kind::MediumInt, V::UInt(u)) => Cell::Int(sign_extend_24(*u as i64)),
        (Kind::FixedBinary { .. } | Kind::Text { .. } | Kind::Binary, V::Bytes(b)) => {
            cell_from_bytes(kind, b).expect("a bytes kind")?
        }
        // The binlog carries ENUM as its index and SET as its bitmap, little-endian.
        (Kind::Enum { labels }, V::Bytes(b)) => Cell::Text(enum_label(labels, le_u64(b))),
        (Kind::Set { labels }, V::Bytes(b)) => Cell::Text(set_labels(labels, le_u64(b))),
        (Kind::Int16 | Kind::Int32 | Kind::Int64, V::Int(i)) => Cell::Int(*i),
        (Kind::Int16 | Kind::Int32 | Kind::Int64, V::UInt(u)) => Cell::Int(*u as i64),
        (Kind::Decimal { .. } | Kind::DecimalText, V::Bytes(b)) => Cell::Text(String::from_utf8_lossy(b).into_owned()),
        (Kind::Decimal { .. }, V::UInt(u)) => Cell::UInt(*u),
        (Kind::Decimal { .. }, V::Int(i)) => Cell::UInt(*i as u64),
        (Kind::Float32, V::Float(f)) => Cell::Float(*f),
        (Kind::Float64, V::Double(f)) => Cell::Double(*f),
        (Kind::Float64, V::Float(f)) => Cell::Double(*f as f64),
        (Kind::Date | Kind::DateTime, V::Date(y, mo, d, h, mi, s, us)) => {
            Cell::DateTime { y: *y, mo: *mo, d: *d, h: *h, mi: *mi, s: *s, us: *us }
        }
        // TIMESTAMP arrives as UTC epoch seconds with an optional fraction: "1709251201.5".
        (Kind::Timestamp, V::Bytes(b)) => epoch_to_cell(&String::from_utf8_lossy(b)).ok_or_else(bad)?,
        (Kind::Timestamp, V::Date(y, mo, d, h, mi, s, us)) => {
            Cell::DateTime { y: *y, mo: *mo, d: *d, h: *h, mi: *mi, s: *s, us: *us }
        }
        // mysql_common 0.37 decodes negative TIME(1)/TIME(2) values with a fraction wrongly
        // (and panics in debug builds): refuse rather than store a wrong value.
        (Kind::Time { fsp: 1..=2 }, V::Time(true, _, _, _, _, us)) if *us != 0 => {
            return Err(Error::FeatureNotSupported(
                "negative TIME(1)/TIME(2) values with a fraction in the binlog (mysql_common decoding bug)".into(),
            ))
        }
        (Kind::Time { fsp }, V::Time(neg, days, h, mi, s, us)) => {
            let mut t = format!("{}{:02}:{:02}:{:02}", if *neg { "-" } else { "" }, days * 24 + *h as u32, mi, s);
            if *fsp > 0 {
                t.push_str(&format!(".{us:06}")[..*fsp as usize + 1]);
            }
            Cell::Text(t)
        }
        (Kind::Enum { labels }, V::Int(i)) => Cell::Text(enum_label(labels, *i as u64)),
        (Kind::Enum { labels }, V::UInt(i)) => Cell::Text(enum_label(labels, *i)),
        (Kind::Set { labels }, V::Int(i)) => Cell::Text(set_labels(labels, *i as u64)),
        (Kind::Set { labels }, V::UInt(i)) => Cell::Text(set_labels(labels, *i)),
        (Kind::Bit, V::Bytes(b)) => Cell::UInt(be_u64(b)),
        (Kind::Text { .. }, V::Int(i)) => Cell::Text(i.to_string()),
        // YEAR and some integer types arrive as their text.
        (Kind::Int16 | Kind::Int32 | Kind::MediumInt | Kind::Int64 | Kind::Float32 | Kind::Float64, V::Bytes(b)) => {
            cell_from_text(kind, Some(b))?
        }
        _ => return Err(bad()),
    })
}

/// A string or binary column's raw binlog bytes as a cell; `None` when `kind` is not
/// stored from bytes.
pub(super) fn cell_from_bytes(kind: &Kind, b: &[u8]) -> Option<Result<Cell>> {
    Some(Ok(match kind {
        Kind::FixedBinary { len } => {
            let mut v = b.to_vec();
            if v.len() < *len {
                v.resize(*len, 0);
            }
            Cell::Bytes(v)
        }
        // MySQL's latin1 is Windows-1252 (0x80 is €), with 0x81, 0x8D, 0x8F, 0x90, 0x9D as the
        // C1 controls: exactly the Encoding Standard's windows-1252, which the snapshot path
        // gets from the server's own conversion to utf8mb4.
        Kind::Text { json: true, .. } => Cell::Text(jsonb_text(String::from_utf8_lossy(b).into_owned())),
        Kind::Text { latin1, charset, .. } => match charset.as_deref().or(latin1.then_some("latin1")) {
            None => Cell::Text(match std::str::from_utf8(b) {
                Ok(t) => t.to_string(),
                Err(_) => String::from_utf8_lossy(b).into_owned(),
            }),
            Some(name) => return Some(Charset::decode(name, b).map(Cell::Text)),
        },
        Kind::Binary => Cell::Bytes(b.to_vec()),
        _ => return None,
    }))
}

pub(super) fn enum_label(labels: &[String], index: u64) -> String {
    // 0 is MySQL's "invalid value" empty string; labels are 1-based.
    labels.get((index as usize).wrapping_sub(1)).cloned().unwrap_or_default()
}

pub(super) fn set_labels(labels: &[String], bits: u64) -> String {
    labels
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn le_u64(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

fn sign_extend_24(v: i64) -> i64 {
    if (0x80_0000..0x100_0000).contains(&v) {
        v - 0x100_0000
    } else {
        v
    }
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

fn epoch_to_cell(s: &str) -> Option<Cell> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let us: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<6}")[..6].parse().ok()? };
    epoch_cell(secs, us)
}

/// A TIMESTAMP's epoch seconds and microseconds as a UTC date-time cell; 0 is the zero
/// timestamp.
pub(super) fn epoch_cell(secs: i64, us: u32) -> Option<Cell> {
    if secs == 0 && us == 0 {
        return Some(Cell::DateTime { y: 0, mo: 0, d: 0, h: 0, mi: 0, s: 0, us: 0 });
    }
    let dt = chrono::DateTime::from_timestamp(secs, us * 1000)?.naive_utc();
    use chrono::{Datelike, Timelike};
    Some(Cell::DateTime {
        y: dt.year() as u16,
        mo: dt.month() as u8,
        d: dt.day() as u8,
        h: dt.hour() as u8,
        mi: dt.minute() as u8,
        s: dt.second() as u8,
        us,
    })
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]`.
fn parse_datetime(s: &str) -> Option<Cell> {
    let (date, time) = s.split_once(' ').unwrap_or((s, "00:00:00"));
    let mut d = date.split('-');
    let (y, mo, dd) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, sec) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let us = if frac.is_empty() { 0 } else { format!("{frac:0<6}")[..6].parse().ok()? };
    Some(Cell::DateTime { y, mo, d: dd, h, mi, s: sec, us })
}

/// Builds one Arrow column of a given kind.
pub enum ColumnBuilder {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Decimal(Decimal128Builder, i8),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
}

impl ColumnBuilder {
    /// An empty builder for `kind`.
    pub fn new(kind: &Kind) -> Result<Self> {
        Ok(match kind {
            Kind::Int16 => ColumnBuilder::Int16(Int16Builder::new()),
            Kind::Int32 | Kind::MediumInt => ColumnBuilder::Int32(Int32Builder::new()),
            Kind::Int64 | Kind::Bit => ColumnBuilder::Int64(Int64Builder::new()),
            Kind::Decimal { precision, scale } => {
                ColumnBuilder::Decimal(Decimal128Builder::new().with_precision_and_scale(*precision, *scale)?, *scale)
            }
            Kind::Float32 => ColumnBuilder::Float32(Float32Builder::new()),
            Kind::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            Kind::Date => ColumnBuilder::Date(Date32Builder::new()),
            Kind::DateTime => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            Kind::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            Kind::DecimalText | Kind::Text { .. } | Kind::Enum { .. } | Kind::Set { .. } | Kind::Time { .. } => {
                ColumnBuilder::Utf8(StringBuilder::new())
            }
            Kind::Binary | Kind::FixedBinary { .. } => ColumnBuilder::Binary(BinaryBuilder::new()),
        })
    }

    /// Appends one value.
    pub fn append(&mut self, cell: Cell) -> Result<()> {
        let mismatch = |c: &Cell| Error::Internal(format!("value {c:?} does not fit the column"));
        match (self, cell) {
            (ColumnBuilder::Int16(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Int32(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Int64(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Decimal(b, _), Cell::Null) => b.append_null(),
            (ColumnBuilder::Float32(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Float64(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Date(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Utf8(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Binary(b), Cell::Null) => b.append_null(),
            (ColumnBuilder::Int16(b), Cell::Int(i)) => b.append_value(i as i16),
            (ColumnBuilder::Int32(b), Cell::Int(i)) => b.append_value(i as i32),
            (ColumnBuilder::Int64(b), Cell::Int(i)) => b.append_value(i),
            (ColumnBuilder::Int64(b), Cell::UInt(u)) => b.append_value(u as i64),
            (ColumnBuilder::Decimal(b, _), Cell::UInt(u)) => b.append_value(u as i128),
            (ColumnBuilder::Decimal(b, _), Cell::Decimal(v)) => b.append_value(v),
            (ColumnBuilder::Decimal(b, scale), Cell::Text(t)) => {
                b.append_value(parse_decimal(&t, *scale).ok_or_else(|| Error::Internal(format!("bad decimal {t}")))?)
            }
            (ColumnBuilder::Decimal(b, scale), Cell::Int(i)) => b.append_value(i as i128 * 10i128.pow(*scale as u32)),
            (ColumnBuilder::Float32(b), Cell::Float(f)) => b.append_value(f),
            (ColumnBuilder::Float64(b), Cell::Double(f)) => b.append_value(f),
            (ColumnBuilder::Date(b), Cell::DateTime { y, mo, d, .. }) => match days_from_civil(y, mo, d) {
                Some(days) => b.append_value(days),
                None => b.append_null(), // zero date
            },
            (ColumnBuilder::Timestamp(b), Cell::DateTime { y, mo, d, h, mi, s, us }) => {
                match days_from_civil(y, mo, d) {
                    Some(days) => b.append_value(
                        days as i64 * 86_400_000_000
                            + (h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1_000_000
                            + us as i64,
                    ),
                    None => b.append_null(), // zero date
                }
            }
            (ColumnBuilder::Utf8(b), Cell::Text(t)) => b.append_value(t),
            (ColumnBuilder::Binary(b), Cell::Bytes(v)) => b.append_value(v),
            (ColumnBuilder::Binary(b), Cell::Text(t)) => b.append_value(t.as_bytes()),
            (_, c) => return Err(mismatch(&c)),
        }
        Ok(())
    }

    /// Appends a text-protocol value exactly as `append(cell_from_text(kind, raw))` would,
    /// without the intermediate [`Cell`] for the common kinds (the snapshot's hot path): text
    /// goes straight into the string builder, integers and decimals are parsed in place.
    pub fn append_text(&mut self, kind: &Kind, raw: Option<&[u8]>) -> Result<()> {
        let Some(raw) = raw else { return self.append(Cell::Null) };
        let int = |raw: &[u8]| -> Result<i64> {
            std::str::from_utf8(raw).ok().and_then(|t| t.parse().ok()).ok_or_else(|| {
                Error::Internal(format!("cannot decode {kind:?} value {:?}", String::from_utf8_lossy(raw)))
            })
        };
        match (self, kind) {
            (ColumnBuilder::Utf8(b), Kind::Text { json: true, .. }) => {
                b.append_value(jsonb_text(String::from_utf8_lossy(raw).into_owned()))
            }
            (
                ColumnBuilder::Utf8(b),
                Kind::Text { .. } | Kind::Enum { .. } | Kind::Set { .. } | Kind::Time { .. } | Kind::DecimalText,
            ) => match std::str::from_utf8(raw) {
                Ok(text) => b.append_value(text),
                Err(_) => b.append_value(String::from_utf8_lossy(raw)),
            },
            (ColumnBuilder::Int16(b), Kind::Int16) => b.append_value(int(raw)? as i16),
            (ColumnBuilder::Int32(b), Kind::Int32 | Kind::MediumInt) => b.append_value(int(raw)? as i32),
            (ColumnBuilder::Int64(b), Kind::Int64) => b.append_value(int(raw)?),
            (ColumnBuilder::Decimal(b, scale), Kind::Decimal { .. }) => {
                let text = String::from_utf8_lossy(raw);
                b.append_value(
                    parse_decimal(&text, *scale).ok_or_else(|| Error::Internal(format!("bad decimal {text}")))?,
                )
            }
            (this, kind) => this.append(cell_from_text(kind, Some(raw))?)?,
        }
        Ok(())
    }

    /// The finished column.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, _) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
        }
    }
}

/// Exact decimal text → scaled integer (digits past `scale` are cut, as the column's scale
/// never has more). Accumulated digit by digit: no String per value.
fn parse_decimal(t: &str, scale: i8) -> Option<i128> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let scale = scale.max(0) as usize;
    let frac = if frac.len() > scale { &frac[..scale] } else { frac };
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for _ in frac.len()..scale {
        v = v.checked_mul(10)?;
    }
    Some(if neg { -v } else { v })
}

/// Days since 1970-01-01 of a civil date; `None` for MySQL's zero dates (year, month or day 0).
fn days_from_civil(y: u16, m: u8, d: u8) -> Option<i32> {
    if y == 0 || m == 0 || d == 0 {
        return None;
    }
    chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)
        .map(|date| (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

/// The MySQL character sets whose binlog bytes are transcoded to UTF-8. The snapshot needs
/// none of this (the server converts to the connection's utf8mb4); the binlog carries the
/// column's own bytes. Each MySQL charset maps to its Encoding Standard twin (encoding_rs):
/// MySQL's `latin1` is Windows-1252 (0x80 is €) with 0x81, 0x8D, 0x8F, 0x90, 0x9D as the C1
/// controls — exactly the standard's windows-1252.
pub struct Charset;

impl Charset {
    /// Charsets whose bytes are UTF-8 already (ASCII is a subset).
    pub fn is_utf8(name: &str) -> bool {
        matches!(name, "utf8" | "utf8mb3" | "utf8mb4" | "ascii" | "binary")
    }

    fn encoding(name: &str) -> Option<&'static encoding_rs::Encoding> {
        use encoding_rs::*;
        Some(match name {
            "latin1" => WINDOWS_1252,
            "latin2" => ISO_8859_2,
            "latin5" => WINDOWS_1254,
            "latin7" => ISO_8859_13,
            "cp1250" => WINDOWS_1250,
            "cp1251" => WINDOWS_1251,
            "cp1256" => WINDOWS_1256,
            "cp1257" => WINDOWS_1257,
            "cp866" => IBM866,
            "koi8r" => KOI8_R,
            "koi8u" => KOI8_U,
            "greek" => ISO_8859_7,
            "hebrew" => ISO_8859_8,
            "tis620" => WINDOWS_874,
            "macroman" => MACINTOSH,
            "gbk" | "gb2312" => GBK,
            "gb18030" => GB18030,
            "big5" => BIG5,
            "euckr" => EUC_KR,
            "sjis" | "cp932" => SHIFT_JIS,
            "ujis" | "eucjpms" => EUC_JP,
            "ucs2" | "utf16" => UTF_16BE,
            "utf16le" => UTF_16LE,
            _ => return None,
        })
    }

    /// Whether binlog bytes of this charset can be decoded (checked at CREATE SOURCE).
    pub fn supported(name: &str) -> bool {
        Self::is_utf8(name) || name == "utf32" || Self::encoding(name).is_some()
    }

    /// The text of `bytes` in charset `name`.
    pub fn decode(name: &str, bytes: &[u8]) -> Result<String> {
        if name == "utf32" {
            return bytes
                .chunks(4)
                .map(|c| {
                    let c: [u8; 4] = c.try_into().ok()?;
                    char::from_u32(u32::from_be_bytes(c))
                })
                .collect::<Option<String>>()
                .ok_or_else(|| Error::Internal("a utf32 value is not valid UTF-32".into()));
        }
        let encoding = Self::encoding(name).ok_or_else(|| {
            Error::FeatureNotSupported(format!(
                "binlog values in character set {name} cannot be decoded; convert the column to utf8mb4 \
                 (ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4)"
            ))
        })?;
        Ok(encoding.decode_without_bom_handling(bytes).0.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_and_set_labels() {
        assert_eq!(labels("enum('a','b''c','')"), vec!["a", "b'c", ""]);
        let set = Kind::from_column("set", "set('x','y','z')", None, None, None);
        let cell = cell_from_binlog(&set, &mysql_async::Value::UInt(0b101)).unwrap();
        assert_eq!(cell, Cell::Text("x,z".into()));
    }

    #[test]
    fn text_and_binlog_paths_agree() {
        let ts = Kind::Timestamp;
        let a = cell_from_text(&ts, Some(b"2024-03-01 00:00:01.500000")).unwrap();
        let b = cell_from_binlog(&ts, &mysql_async::Value::Bytes(b"1709251201.5".to_vec())).unwrap();
        assert_eq!(a, b);
        let t = Kind::Time { fsp: 6 };
        let a = cell_from_text(&t, Some(b"-838:59:59.990000")).unwrap();
        let b = cell_from_binlog(&t, &mysql_async::Value::Time(true, 34, 22, 59, 59, 990000)).unwrap();
        assert_eq!(a, b);
        // mysql_common decodes these wrongly: refused, never stored.
        let t2 = Kind::Time { fsp: 2 };
        assert!(cell_from_binlog(&t2, &mysql_async::Value::Time(true, 0, 0, 0, 1, 500000)).is_err());
        assert!(cell_from_binlog(&t2, &mysql_async::Value::Time(false, 0, 0, 0, 1, 500000)).is_ok());
        let latin = Kind::Text { latin1: true, charset: None, json: false };
        let b = cell_from_binlog(&latin, &mysql_async::Value::Bytes(vec![0x68, 0xe9, 0x6c, 0x6c, 0x6f])).unwrap();
        assert_eq!(b, Cell::Text("héllo".into()));
        // cp1252 in 0x80–0x9F, and the five bytes MySQL maps to C1 controls.
        let b = cell_from_binlog(&latin, &mysql_async::Value::Bytes(vec![0x80, 0x93, 0x94, 0x9f, 0x81, 0x9d])).unwrap();
        assert_eq!(b, Cell::Text("€“”Ÿ\u{81}\u{9d}".into()));
        let named = |c: &str| Kind::Text { latin1: false, charset: Some(c.into()), json: false };
        let v = |b: &[u8]| mysql_async::Value::Bytes(b.to_vec());
        assert_eq!(cell_from_binlog(&named("latin1"), &v(&[0x80])).unwrap(), Cell::Text("€".into()));
        assert_eq!(cell_from_binlog(&named("gbk"), &v(&[0xd6, 0xd0, 0xce, 0xc4])).unwrap(), Cell::Text("中文".into()));
        assert_eq!(cell_from_binlog(&named("cp1251"), &v(&[0xcf, 0xf0, 0xe8])).unwrap(), Cell::Text("При".into()));
        assert_eq!(cell_from_binlog(&named("utf32"), &v(&[0, 1, 0xf6, 0x42])).unwrap(), Cell::Text("🙂".into()));
        assert!(cell_from_binlog(&named("swe7"), &v(b"a")).is_err());
        assert!(Charset::supported("big5") && Charset::supported("utf8mb4") && !Charset::supported("swe7"));
    }

    #[test]
    fn decimals_and_dates_are_exact() {
        assert_eq!(parse_decimal("-12.5", 3), Some(-12500));
        assert_eq!(parse_decimal(".5", 2), Some(50));
        assert_eq!(parse_decimal("7.", 1), Some(70));
        assert_eq!(parse_decimal("1.239", 2), Some(123));
        assert_eq!(parse_decimal("0", 0), Some(0));
        assert_eq!(parse_decimal("1e5", 0), None);
        assert_eq!(parse_decimal("1.2.3", 2), None);
        assert_eq!(parse_decimal("99999999999999999999999999999999999999999", 0), None);
        assert_eq!(parse_decimal("18446744073709551615", 0), Some(18446744073709551615));
        assert_eq!(days_from_civil(1970, 1, 2), Some(1));
        assert_eq!(days_from_civil(0, 0, 0), None);
    }
}
