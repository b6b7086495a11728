//! Binlog row images decoded straight from the rows event's bytes.
//!
//! mysql_common's generic row decoder re-reads the table map's optional metadata and rebuilds
//! a column description per column for every row, finds each column's metadata by walking
//! all the columns before it, formats DECIMAL and TIMESTAMP values as text (which were then
//! parsed back), and allocates a `Value` per cell. It also decodes negative TIME(1)/TIME(2)
//! values with a fraction wrongly. A [`RowDecoder`] is planned once per table-map event: per
//! binlog column, how its value is laid out ([`Wire`]) and which captured column it feeds;
//! decoding a row is then one pass over the image's bytes into [`Cell`]s.
//!
//! The layouts are MySQL's (`sql/log_event.cc`, `mysys/my_time.cc`, `strings/decimal.cc`),
//! shared by MariaDB with its default `mysql56_temporal_format`. Types with no layout here
//! (MySQL's binary JSON, the pre-5.6 temporal types) are decoded by mysql_common one value at
//! a time ([`Wire::Other`]), so every type the old path read is still read.

use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_common::io::ParseBuf;
use mysql_common::proto::MyDeserialize;

use super::binlog::RowChange;
use super::schema::TableSpec;
use super::types::{cell_from_binlog, Cell, Kind};
use crate::error::{Error, Result};

/// How one column's value is laid out in a row image.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// TINYINT, SMALLINT, MEDIUMINT, INT, BIGINT: `bytes` little-endian.
    Int {
        bytes: u8,
        unsigned: bool,
    },
    Float,
    Double,
    /// DECIMAL(precision, scale) in MySQL's binary format (groups of 9 digits in 4 bytes).
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// One byte, years since 1900 (0 is the year 0000).
    Year,
    /// Three bytes little-endian: day (5 bits), month (4), year.
    Date,
    /// TIME(dec): 3 bytes big-endian offset by 2^23, then the fraction.
    Time2 {
        dec: u8,
    },
    /// DATETIME(dec): 5 bytes big-endian offset by 2^39, then the fraction.
    DateTime2 {
        dec: u8,
    },
    /// TIMESTAMP(dec): 4 bytes big-endian epoch seconds, then the fraction.
    Timestamp2 {
        dec: u8,
    },
    /// BIT(n): ceil(n / 8) bytes big-endian.
    Bit {
        bytes: u8,
    },
    /// ENUM: the 1-based label index in `bytes` little-endian.
    Enum {
        bytes: u8,
    },
    /// SET: the label bitmap in `bytes` little-endian.
    Set {
        bytes: u8,
    },
    /// CHAR, VARCHAR, BINARY, VARBINARY, BLOB, TEXT (and MariaDB's JSON), GEOMETRY: a
    /// little-endian length of `len_bytes` bytes, then the bytes.
    Bytes {
        len_bytes: u8,
    },
    /// Anything else: decoded by mysql_common.
    Other {
        ty: ColumnType,
        meta: Box<[u8]>,
        unsigned: bool,
    },
}

/// One binlog column of a planned table: its layout and the captured column it feeds.
#[derive(Debug, Clone)]
struct Column {
    wire: Wire,
    /// The local column it feeds (`None`: not captured, skipped).
    target: Option<usize>,
}

/// The decode plan of one table-map event for one captured (or shard) table.
#[derive(Debug, Clone)]
pub struct RowDecoder {
    columns: Vec<Column>,
    /// The captured table's kinds, in local order.
    kinds: Vec<Kind>,
    /// Local columns not read from the row image: the upstream table's name (`INCLUDE TABLE
    /// NAME`), and columns a shard does not have yet.
    fixed: Vec<(usize, Cell)>,
}

impl RowDecoder {
    /// Plans the decoding of `tme`'s rows into `spec`'s columns. The caller has checked that
    /// the table map has as many columns as the spec captures from upstream.
    pub fn plan(tme: &TableMapEvent<'_>, spec: &TableSpec, upstream_table: &str) -> Result<RowDecoder> {
        let captured = spec.upstream_indexes();
        let n = tme.columns_count() as usize;
        let mut targets = vec![None; n];
        for (i, &local) in captured.iter().enumerate() {
            let p = spec.upstream_position(i);
            *targets.get_mut(p).ok_or_else(|| bad_map(spec, "fewer columns than captured"))? = Some(local);
        }
        // Column metadata is packed back to back; each type says how many bytes it takes.
        let mut columns = Vec::with_capacity(n);
        for (p, target) in targets.into_iter().enumerate() {
            let ty = tme
                .get_column_type(p)
                .map_err(|e| bad_map(spec, &e.to_string()))?
                .ok_or_else(|| bad_map(spec, "a column without a type"))?;
            let meta = tme.get_column_metadata(p).unwrap_or(&[]);
            // Signedness is the captured column's (binlog_row_metadata=MINIMAL has it too,
            // but the spec always does); a skipped column's signedness does not matter.
            let unsigned = target.is_some_and(|i| spec.columns[i].mysql_type.contains("unsigned"));
            columns.push(Column { wire: wire(ty, meta, unsigned), target });
        }
        Ok(RowDecoder {
            columns,
            kinds: spec.columns.iter().map(|c| c.kind.clone()).collect(),
            fixed: spec.fixed_cells(upstream_table),
        })
    }

    /// Decodes every row of `event` (WRITE, UPDATE or DELETE rows, v1 or v2) into `out`.
    pub fn decode(&self, event: &RowsEventData<'_>, out: &mut Vec<RowChange>) -> Result<()> {
        let n = self.columns.len();
        let before =
            event.columns_before_image().map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect::<Vec<bool>>());
        let after =
            event.columns_after_image().map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect::<Vec<bool>>());
        let data = event.rows_data();
        let mut pos = 0;
        // Each image's null bitmap covers its present columns.
        let width = |p: &Option<Vec<bool>>| p.as_ref().map_or(0, |p| p.iter().filter(|x| **x).count().div_ceil(8));
        let (before_nulls, after_nulls) = (width(&before), width(&after));
        while pos < data.len() {
            let before = before.as_deref().map(|p| self.image(p, before_nulls, data, &mut pos)).transpose()?;
            let after = after.as_deref().map(|p| self.image(p, after_nulls, data, &mut pos)).transpose()?;
            out.push(RowChange { before, after });
        }
        Ok(())
    }

    /// One row image: the null bitmap of the present columns, then their non-null values.
    fn image(&self, present: &[bool], null_bytes: usize, data: &[u8], pos: &mut usize) -> Result<Vec<Cell>> {
        let nulls = take(data, pos, null_bytes)?;
        let mut cells = vec![Cell::Null; self.kinds.len()];
        for (k, (column, _)) in self.columns.iter().zip(present).filter(|(_, p)| **p).enumerate() {
            if nulls[k / 8] >> (k % 8) & 1 == 1 {
                continue;
            }
            match column.target {
                Some(i) => cells[i] = read(&column.wire, &self.kinds[i], data, pos)?,
                None => skip(&column.wire, data, pos)?,
            }
        }
        for (i, value) in &self.fixed {
            cells[*i] = value.clone();
        }
        Ok(cells)
    }
}

fn bad_map(spec: &TableSpec, why: &str) -> Error {
    Error::Internal(format!("table map of `{}`.`{}`: {why}", spec.database, spec.table))
}

/// The layout of a column of binlog type `ty` with table-map metadata `meta`.
pub fn wire(ty: ColumnType, meta: &[u8], unsigned: bool) -> Wire {
    use ColumnType::*;
    let m = |i: usize| meta.get(i).copied().unwrap_or(0);
    match ty {
        MYSQL_TYPE_TINY => Wire::Int { bytes: 1, unsigned },
        MYSQL_TYPE_SHORT => Wire::Int { bytes: 2, unsigned },
        MYSQL_TYPE_INT24 => Wire::Int { bytes: 3, unsigned },
        MYSQL_TYPE_LONG => Wire::Int { bytes: 4, unsigned },
        MYSQL_TYPE_LONGLONG => Wire::Int { bytes: 8, unsigned },
        MYSQL_TYPE_FLOAT => Wire::Float,
        MYSQL_TYPE_DOUBLE => Wire::Double,
        MYSQL_TYPE_NEWDECIMAL => Wire::Decimal { precision: m(0), scale: m(1) },
        MYSQL_TYPE_YEAR => Wire::Year,
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Wire::Date,
        MYSQL_TYPE_TIME2 => Wire::Time2 { dec: m(0) },
        MYSQL_TYPE_DATETIME2 => Wire::DateTime2 { dec: m(0) },
        MYSQL_TYPE_TIMESTAMP2 => Wire::Timestamp2 { dec: m(0) },
        MYSQL_TYPE_BIT => Wire::Bit { bytes: (m(1) as usize * 8 + m(0) as usize).div_ceil(8) as u8 },
        MYSQL_TYPE_ENUM => Wire::Enum { bytes: m(1) },
        MYSQL_TYPE_SET => Wire::Set { bytes: m(1) },
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
            Wire::Bytes { len_bytes: if u16::from_le_bytes([m(0), m(1)]) < 256 { 1 } else { 2 } }
        }
        MYSQL_TYPE_STRING => {
            // CHAR(n) longer than 255 bytes keeps the length's high bits in the type byte.
            let (b0, b1) = (m(0) as usize, m(1) as usize);
            let max = if b0 & 0x30 != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 };
            Wire::Bytes { len_bytes: if max < 256 { 1 } else { 2 } }
        }
        MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_GEOMETRY
            if (1..=4).contains(&m(0)) =>
        {
            Wire::Bytes { len_bytes: m(0) }
        }
        _ => Wire::Other { ty, meta: meta.into(), unsigned },
    }
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let bytes = data
        .get(*pos..*pos + n)
        .ok_or_else(|| Error::Internal("a binlog row image ends in the middle of a value".into()))?;
    *pos += n;
    Ok(bytes)
}

fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |acc, &b| (acc << 8) | b as u64)
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | b as u64)
}

/// Bytes of a fraction of `dec` digits (1–2: hundredths in 1 byte, 3–4: 2 bytes, 5–6: 3).
fn frac_bytes(dec: u8) -> usize {
    (dec as usize).div_ceil(2)
}

/// Microseconds of a big-endian fraction of `dec` digits.
fn frac_us(bytes: &[u8], dec: u8) -> u32 {
    let v = be(bytes) as u32;
    match frac_bytes(dec) {
        1 => v * 10_000,
        2 => v * 100,
        _ => v,
    }
}

/// Digits of a binary DECIMAL group of n digits take `DIG2BYTES[n]` bytes.
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Bytes of a DECIMAL(precision, scale) value.
fn decimal_len(precision: u8, scale: u8) -> usize {
    let (intg, frac) = (precision.saturating_sub(scale) as usize, scale as usize);
    (intg / 9) * 4 + DIG2BYTES[intg % 9] + (frac / 9) * 4 + DIG2BYTES[frac % 9]
}

/// A binary DECIMAL as `(negative, digit groups)`: each group is `(value, digits)`, integer
/// groups first (the leading partial one first), then the fraction's. Read in place (a value
/// per row on the binlog path: no allocation).
fn decimal_groups(raw: &[u8], precision: u8, scale: u8) -> (bool, impl Iterator<Item = (u32, usize)> + '_) {
    let (intg, frac) = (precision.saturating_sub(scale) as usize, scale as usize);
    // The sign is the top bit, inverted; a negative value has all its bits inverted.
    let negative = raw.first().is_some_and(|b| b & 0x80 == 0);
    let mask = if negative { 0xFF } else { 0 };
    let byte = move |i: usize| raw[i] ^ mask ^ if i == 0 { 0x80 } else { 0 };
    let sizes = std::iter::once(intg % 9)
        .chain(std::iter::repeat_n(9, intg / 9 + frac / 9))
        .chain(std::iter::once(frac % 9))
        .filter(|&digits| digits > 0);
    let mut at = 0;
    let groups = sizes.map(move |digits| {
        let n = DIG2BYTES[digits];
        let v = (at..at + n).fold(0u32, |acc, i| (acc << 8) | byte(i) as u32);
        at += n;
        (v, digits)
    });
    (negative, groups)
}

/// The DECIMAL's unscaled value (precision ≤ 38).
fn decimal_unscaled(raw: &[u8], precision: u8, scale: u8) -> i128 {
    let (negative, groups) = decimal_groups(raw, precision, scale);
    let v = groups.fold(0i128, |acc, (g, digits)| acc * 10i128.pow(digits as u32) + g as i128);
    if negative {
        -v
    } else {
        v
    }
}

/// The DECIMAL as MySQL prints it: `-12.50`, `0.05`, `7`.
fn decimal_text(raw: &[u8], precision: u8, scale: u8) -> String {
    let (negative, groups) = decimal_groups(raw, precision, scale);
    let intg = precision.saturating_sub(scale) as usize;
    let mut digits = String::with_capacity(precision as usize + 2);
    for (g, n) in groups {
        digits.push_str(&format!("{g:0n$}"));
    }
    let (int, frac) = digits.split_at(intg);
    let int = int.trim_start_matches('0');
    let mut out = String::with_capacity(digits.len() + 2);
    if negative {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Bytes the value of `wire` at `pos` takes.
fn value_len(wire: &Wire, data: &[u8], pos: usize) -> Result<usize> {
    Ok(match wire {
        Wire::Int { bytes, .. } => *bytes as usize,
        Wire::Float => 4,
        Wire::Double => 8,
        Wire::Decimal { precision, scale } => decimal_len(*precision, *scale),
        Wire::Year => 1,
        Wire::Date => 3,
        Wire::Time2 { dec } => 3 + frac_bytes(*dec),
        Wire::DateTime2 { dec } => 5 + frac_bytes(*dec),
        Wire::Timestamp2 { dec } => 4 + frac_bytes(*dec),
        Wire::Bit { bytes } | Wire::Enum { bytes } | Wire::Set { bytes } => *bytes as usize,
        Wire::Bytes { len_bytes } => {
            let mut at = pos;
            *len_bytes as usize + le(take(data, &mut at, *len_bytes as usize)?) as usize
        }
        Wire::Other { .. } => unreachable!("values of other types are parsed, not measured"),
    })
}

fn skip(wire: &Wire, data: &[u8], pos: &mut usize) -> Result<()> {
    if let Wire::Other { .. } = wire {
        other(wire, data, pos)?;
    } else {
        let n = value_len(wire, data, *pos)?;
        take(data, pos, n)?;
    }
    Ok(())
}

/// A value of a type without a layout here, through mysql_common's value decoder.
fn other(wire: &Wire, data: &[u8], pos: &mut usize) -> Result<mysql_async::Value> {
    let Wire::Other { ty, meta, unsigned } = wire else { unreachable!("called for Wire::Other") };
    let rest = data.get(*pos..).unwrap_or(&[]);
    let mut buf = ParseBuf(rest);
    let value = BinlogValue::deserialize((*ty, &meta[..], *unsigned, false), &mut buf)
        .map_err(|e| Error::Internal(format!("binlog value of type {ty:?}: {e}")))?;
    *pos += rest.len() - buf.len();
    mysql_async::Value::try_from(value).map_err(|e| Error::Internal(format!("binlog value of type {ty:?}: {e}")))
}

/// Reads the value of `wire` at `pos` as a cell of a column of kind `kind`, with the rules of
/// [`cell_from_binlog`] (which the [`Wire::Other`] values go through).
fn read(wire: &Wire, kind: &Kind, data: &[u8], pos: &mut usize) -> Result<Cell> {
    if let Wire::Other { .. } = wire {
        return cell_from_binlog(kind, &other(wire, data, pos)?);
    }
    let n = value_len(wire, data, *pos)?;
    let raw = take(data, pos, n)?;
    let mismatch = || Error::Internal(format!("binlog value of layout {wire:?} for a column of kind {kind:?}"));
    Ok(match wire {
        Wire::Int { bytes, unsigned } => {
            let u = le(raw);
            let bits = *bytes as u32 * 8;
            let i = if *unsigned || bits == 64 { u as i64 } else { ((u << (64 - bits)) as i64) >> (64 - bits) };
            match kind {
                Kind::Int16 | Kind::Int32 | Kind::MediumInt | Kind::Int64 => Cell::Int(i),
                // BIGINT UNSIGNED, kept as DECIMAL(20,0).
                Kind::Decimal { .. } => Cell::UInt(if *unsigned { u } else { i as u64 }),
                Kind::Text { .. } => Cell::Text(i.to_string()),
                _ => return Err(mismatch()),
            }
        }
        Wire::Float => {
            let f = f32::from_le_bytes(raw.try_into().expect("4 bytes"));
            match kind {
                Kind::Float32 => Cell::Float(f),
                Kind::Float64 => Cell::Double(f as f64),
                _ => return Err(mismatch()),
            }
        }
        Wire::Double => match kind {
            Kind::Float64 => Cell::Double(f64::from_le_bytes(raw.try_into().expect("8 bytes"))),
            _ => return Err(mismatch()),
        },
        Wire::Decimal { precision, scale } => match kind {
            Kind::Decimal { scale: s, .. } if *s >= 0 && *s as u8 >= *scale && *precision <= 38 => {
                let v = decimal_unscaled(raw, *precision, *scale);
                Cell::Decimal(v * 10i128.pow((*s as u8 - scale) as u32))
            }
            Kind::Decimal { .. } | Kind::DecimalText => Cell::Text(decimal_text(raw, *precision, *scale)),
            _ => return Err(mismatch()),
        },
        Wire::Year => {
            let y = raw[0] as i64;
            match kind {
                Kind::Int16 | Kind::Int32 | Kind::Int64 => Cell::Int(if y == 0 { 0 } else { 1900 + y }),
                _ => return Err(mismatch()),
            }
        }
        Wire::Date => {
            let v = le(raw);
            let cell = Cell::DateTime {
                y: (v >> 9) as u16,
                mo: (v >> 5 & 15) as u8,
                d: (v & 31) as u8,
                h: 0,
                mi: 0,
                s: 0,
                us: 0,
            };
            match kind {
                Kind::Date | Kind::DateTime => cell,
                _ => return Err(mismatch()),
            }
        }
        Wire::DateTime2 { dec } => {
            let packed = be(&raw[..5]) as i64 - 0x80_0000_0000;
            let ymd = packed >> 17;
            let ym = ymd >> 5;
            let hms = packed & 0x1FFFF;
            let cell = Cell::DateTime {
                y: (ym / 13) as u16,
                mo: (ym % 13) as u8,
                d: (ymd & 31) as u8,
                h: (hms >> 12) as u8,
                mi: (hms >> 6 & 63) as u8,
                s: (hms & 63) as u8,
                us: frac_us(&raw[5..], *dec),
            };
            match kind {
                Kind::DateTime | Kind::Date | Kind::Timestamp => cell,
                _ => return Err(mismatch()),
            }
        }
        Wire::Timestamp2 { dec } => {
            let secs = be(&raw[..4]) as i64;
            let us = frac_us(&raw[4..], *dec);
            match kind {
                Kind::Timestamp => super::types::epoch_cell(secs, us).ok_or_else(mismatch)?,
                _ => return Err(mismatch()),
            }
        }
        Wire::Time2 { dec } => match kind {
            Kind::Time { fsp } => Cell::Text(time_text(raw, *dec, *fsp)),
            _ => return Err(mismatch()),
        },
        Wire::Bit { .. } => match kind {
            Kind::Bit => Cell::UInt(be(raw)),
            _ => return Err(mismatch()),
        },
        Wire::Enum { .. } => match kind {
            Kind::Enum { labels } => Cell::Text(super::types::enum_label(labels, le(raw))),
            _ => return Err(mismatch()),
        },
        Wire::Set { .. } => match kind {
            Kind::Set { labels } => Cell::Text(super::types::set_labels(labels, le(raw))),
            _ => return Err(mismatch()),
        },
        Wire::Bytes { len_bytes } => {
            let bytes = &raw[*len_bytes as usize..];
            super::types::cell_from_bytes(kind, bytes).ok_or_else(mismatch)??
        }
        Wire::Other { .. } => unreachable!("handled above"),
    })
}

/// A TIME(dec) value as MySQL prints it with `fsp` fraction digits: `-838:59:59.00`.
///
/// The packed value is `(hms << 24) + microseconds`, negative for negative times; a negative
/// value with a fraction stores the integer part rounded towards −∞ and the fraction as its
/// complement (MySQL's `my_time_packed_from_binary`).
fn time_text(raw: &[u8], dec: u8, fsp: u8) -> String {
    let int = be(&raw[..3]) as i64 - 0x80_0000;
    let frac = &raw[3..];
    let packed: i64 = match frac_bytes(dec) {
        0 => int << 24,
        1 | 2 => {
            let (mut int, mut f) = (int, be(frac) as i64);
            if int < 0 && f != 0 {
                int += 1;
                f -= if frac.len() == 1 { 0x100 } else { 0x10000 };
            }
            (int << 24) + f * if frac.len() == 1 { 10_000 } else { 100 }
        }
        _ => be(&raw[..6]) as i64 - 0x8000_0000_0000,
    };
    let negative = packed < 0;
    let abs = packed.unsigned_abs();
    let hms = abs >> 24;
    let us = abs % (1 << 24);
    let (h, mi, s) = ((hms >> 12) % (1 << 10), (hms >> 6) % 64, hms % 64);
    let mut t = format!("{}{h:02}:{mi:02}:{s:02}", if negative { "-" } else { "" });
    if fsp > 0 {
        t.push_str(&format!(".{us:06}")[..fsp as usize + 1]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MySQL's `decimal2bin` of a decimal given as text, to test the decoder against.
    fn encode_decimal(text: &str, precision: u8, scale: u8) -> Vec<u8> {
        let negative = text.starts_with('-');
        let t = text.trim_start_matches('-');
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let intg = (precision - scale) as usize;
        let int = format!("{int:0>intg$}");
        let frac = format!("{frac:0<width$}", width = scale as usize);
        let mut out = Vec::new();
        let mut push = |digits: &str| {
            if digits.is_empty() {
                return;
            }
            let n = DIG2BYTES[digits.len()];
            let v: u32 = digits.parse().unwrap();
            out.extend_from_slice(&v.to_be_bytes()[4 - n..]);
        };
        let lead = intg % 9;
        push(&int[..lead]);
        for c in int.as_bytes()[lead..].chunks(9) {
            push(std::str::from_utf8(c).unwrap());
        }
        for c in frac.as_bytes().chunks(9) {
            push(std::str::from_utf8(c).unwrap());
        }
        out[0] ^= 0x80;
        if negative {
            out.iter_mut().for_each(|b| *b ^= 0xFF);
        }
        out
    }

    #[test]
    fn decimals() {
        for (text, p, s) in [
            ("0.00", 12, 2),
            ("12.50", 12, 2),
            ("-12.50", 12, 2),
            ("-0.05", 5, 2),
            ("1234567890123456.78", 18, 2),
            ("-99999999999999999999999999", 27, 0),
            ("12345678901234567890.123456789012345678901234567890", 65, 30),
            ("-1.000000000000000000000000000001", 65, 30),
            ("7", 10, 0),
        ] {
            let raw = encode_decimal(text, p, s);
            assert_eq!(raw.len(), decimal_len(p, s), "{text}");
            let expected = text.trim_start_matches('-').trim_start_matches('0');
            let expected = format!(
                "{}{}",
                if text.starts_with('-') { "-" } else { "" },
                if expected.starts_with('.') || expected.is_empty() { format!("0{expected}") } else { expected.into() }
            );
            assert_eq!(decimal_text(&raw, p, s), expected, "{text}");
            if p <= 38 {
                let digits: String = text.chars().filter(|c| c.is_ascii_digit() || *c == '-').collect();
                assert_eq!(decimal_unscaled(&raw, p, s), digits.parse::<i128>().unwrap(), "{text}");
            }
        }
    }

    /// TIME(dec) as MySQL's `my_time_packed_to_binary` stores `[-]h:m:s.us` (C's `>>` floors,
    /// `%` keeps the dividend's sign, as Rust's do).
    fn encode_time(negative: bool, h: i64, m: i64, s: i64, us: i64, dec: u8) -> Vec<u8> {
        let mut packed = (((h << 12) | (m << 6) | s) << 24) + us;
        if negative {
            packed = -packed;
        }
        let (int, frac) = (packed >> 24, packed % (1 << 24));
        let mut out = ((int + 0x80_0000) as u32).to_be_bytes()[1..].to_vec();
        match frac_bytes(dec) {
            0 => {}
            1 => out.push((frac / 10_000) as i8 as u8),
            2 => out.extend_from_slice(&((frac / 100) as i16 as u16).to_be_bytes()),
            _ => out = ((packed + 0x8000_0000_0000) as u64).to_be_bytes()[2..].to_vec(),
        }
        out
    }

    #[test]
    fn times() {
        for (neg, h, m, s, us, dec, text) in [
            (false, 12, 34, 56, 0, 0, "12:34:56"),
            (true, 838, 59, 59, 0, 0, "-838:59:59"),
            (true, 1, 2, 3, 500_000, 1, "-01:02:03.5"),
            (true, 0, 0, 0, 10_000, 2, "-00:00:00.01"),
            (false, 0, 0, 0, 990_000, 2, "00:00:00.99"),
            (true, 25, 0, 1, 123_400, 4, "-25:00:01.1234"),
            (true, 100, 0, 0, 123_456, 6, "-100:00:00.123456"),
            (false, 838, 59, 59, 0, 3, "838:59:59.000"),
        ] {
            let raw = encode_time(neg, h, m, s, us, dec);
            assert_eq!(raw.len(), 3 + frac_bytes(dec), "{text}");
            assert_eq!(time_text(&raw, dec, dec), text);
        }
    }

    #[test]
    fn integers_sign_extend() {
        let mut pos = 0;
        let kind = Kind::MediumInt;
        let cell = read(&Wire::Int { bytes: 3, unsigned: false }, &kind, &[0xFF, 0xFF, 0xFF], &mut pos).unwrap();
        assert_eq!(cell, Cell::Int(-1));
        let mut pos = 0;
        let cell = read(
            &Wire::Int { bytes: 8, unsigned: true },
            &Kind::Decimal { precision: 20, scale: 0 },
            &[0xFF; 8],
            &mut pos,
        )
        .unwrap();
        assert_eq!(cell, Cell::UInt(u64::MAX));
        let mut pos = 0;
        let cell = read(&Wire::Int { bytes: 1, unsigned: false }, &Kind::Int16, &[0x80], &mut pos).unwrap();
        assert_eq!(cell, Cell::Int(-128));
        let mut pos = 0;
        let cell = read(&Wire::Int { bytes: 1, unsigned: true }, &Kind::Int16, &[0x80], &mut pos).unwrap();
        assert_eq!(cell, Cell::Int(128));
    }
}
