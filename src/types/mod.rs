//! Postgres types Headwater stores as Arrow text and tells apart by a field's metadata:
//! `json`, `jsonb`, `varchar(n)` and `char(n)`.
//!
//! Arrow has one string type; Postgres has several whose values obey different rules. A
//! column (or expression) of one of them is an Arrow `Utf8` field carrying
//! [`PG_TYPE_KEY`]. The marker travels with the field through DataFusion's plans (column
//! references keep it; casts and functions set it), so the wire reports the Postgres type and
//! writes check the rules: [`PgText::assign`] is what `INSERT`/`UPDATE` and the sources apply to
//! a column's values, [`PgText::cast_value`] what an explicit cast applies.

pub mod json;

use std::collections::HashMap;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};

/// The field metadata key naming a text field's Postgres type (`jsonb`, `varchar(20)`).
pub const PG_TYPE_KEY: &str = "hw.pg_type";

/// A Postgres type stored as Arrow `Utf8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgText {
    /// `json`: the text as given, validated.
    Json,
    /// `jsonb`: the canonical text ([`json::Json::to_text`]).
    Jsonb,
    /// `varchar(n)`: at most `n` characters.
    Varchar(u32),
    /// `char(n)`: `n` characters, blank-padded. Stored without trailing blanks (which
    /// Postgres ignores in every comparison and when converting to text) and padded on output.
    Bpchar(u32),
}

/// A value that breaks its column's type, with the SQLSTATE Postgres gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeViolation {
    pub sqlstate: &'static str,
    pub message: String,
}

impl PgText {
    /// The type a field carries, if it is one of these.
    pub fn of(field: &Field) -> Option<PgText> {
        if !matches!(field.data_type(), DataType::Utf8) {
            return None;
        }
        let spelled = field.metadata().get(PG_TYPE_KEY)?;
        let length = |prefix: &str| spelled.strip_prefix(prefix)?.strip_suffix(')')?.parse::<u32>().ok();
        match spelled.as_str() {
            "json" => Some(PgText::Json),
            "jsonb" => Some(PgText::Jsonb),
            _ => length("varchar(").map(PgText::Varchar).or_else(|| length("bpchar(").map(PgText::Bpchar)),
        }
    }

    /// The metadata that marks a field as this type.
    pub fn metadata(self) -> HashMap<String, String> {
        let spelled = match self {
            PgText::Json => "json".to_string(),
            PgText::Jsonb => "jsonb".to_string(),
            PgText::Varchar(n) => format!("varchar({n})"),
            PgText::Bpchar(n) => format!("bpchar({n})"),
        };
        HashMap::from([(PG_TYPE_KEY.to_string(), spelled)])
    }

    /// A nullable field of this type.
    pub fn field(self, name: &str) -> Field {
        Field::new(name, DataType::Utf8, true).with_metadata(self.metadata())
    }

    /// `field` (a `Utf8` field) marked as this type.
    pub fn mark(self, field: Field) -> Field {
        let mut metadata = field.metadata().clone();
        metadata.extend(self.metadata());
        field.with_metadata(metadata)
    }

    /// The Postgres type's name as `format_type` prints it.
    pub fn name(self) -> String {
        match self {
            PgText::Json => "json".into(),
            PgText::Jsonb => "jsonb".into(),
            PgText::Varchar(n) => format!("character varying({n})"),
            PgText::Bpchar(n) => format!("character({n})"),
        }
    }

    /// The type's oid in `pg_type`.
    pub fn oid(self) -> u32 {
        match self {
            PgText::Json => 114,
            PgText::Jsonb => 3802,
            PgText::Varchar(_) => 1043,
            PgText::Bpchar(_) => 1042,
        }
    }

    /// `pg_attribute.atttypmod`: the length plus 4, or −1.
    pub fn typmod(self) -> i32 {
        match self {
            PgText::Json | PgText::Jsonb => -1,
            PgText::Varchar(n) | PgText::Bpchar(n) => n.saturating_add(4).min(i32::MAX as u32) as i32,
        }
    }

    /// One value stored in a column of this type (assignment, as INSERT/UPDATE do): JSON
    /// validated (jsonb made canonical); a string longer than `n` refused (22001) unless only
    /// blanks go past `n`, which are cut; `char(n)` without its trailing blanks. `None` when the
    /// value is stored as given.
    pub fn assign_value(self, value: &str) -> Result<Option<String>, TypeViolation> {
        match self {
            PgText::Json => json::Json::parse(value).map(|_| None).map_err(violation),
            PgText::Jsonb => {
                let canonical = json::Json::parse_jsonb(value).map_err(violation)?.to_text();
                Ok((canonical != value).then_some(canonical))
            }
            PgText::Varchar(n) | PgText::Bpchar(n) => {
                let n = n as usize;
                let cut = match value.char_indices().nth(n) {
                    Some((at, _)) if value[at..].bytes().all(|b| b == b' ') => Some(&value[..at]),
                    Some(_) => {
                        let kind = if matches!(self, PgText::Varchar(_)) { "character varying" } else { "character" };
                        return Err(TypeViolation {
                            sqlstate: "22001",
                            message: format!("value too long for type {kind}({n})"),
                        });
                    }
                    None => None,
                };
                let kept = cut.unwrap_or(value);
                let kept = if matches!(self, PgText::Bpchar(_)) { kept.trim_end_matches(' ') } else { kept };
                Ok((kept.len() != value.len()).then(|| kept.to_string()))
            }
        }
    }

    /// [`PgText::assign_value`] over a column; the same array when nothing changes.
    pub fn assign(self, values: &StringArray) -> Result<Option<StringArray>, TypeViolation> {
        let mut changed: Option<Vec<Option<String>>> = None;
        for i in 0..values.len() {
            if values.is_null(i) {
                continue;
            }
            if let Some(new) = self.assign_value(values.value(i))? {
                let out = changed.get_or_insert_with(|| {
                    (0..values.len()).map(|j| (!values.is_null(j)).then(|| values.value(j).to_string())).collect()
                });
                out[i] = Some(new);
            }
        }
        Ok(changed.map(StringArray::from))
    }

    /// One value under an explicit cast to this type: strings cut to `n` characters (Postgres
    /// truncates on an explicit cast), JSON as on assignment.
    pub fn cast_value(self, value: &str) -> Result<Option<String>, TypeViolation> {
        match self {
            PgText::Varchar(n) | PgText::Bpchar(n) => {
                let cut = value.char_indices().nth(n as usize).map_or(value, |(at, _)| &value[..at]);
                let kept = if matches!(self, PgText::Bpchar(_)) { cut.trim_end_matches(' ') } else { cut };
                Ok((kept.len() != value.len()).then(|| kept.to_string()))
            }
            _ => self.assign_value(value),
        }
    }

    /// How a stored value is shown: `char(n)` padded with blanks to `n` characters.
    pub fn display(self, value: &str) -> Option<String> {
        match self {
            PgText::Bpchar(n) => {
                let len = value.chars().count();
                (len < n as usize).then(|| format!("{value}{}", " ".repeat(n as usize - len)))
            }
            _ => None,
        }
    }
}

/// Postgres's `bytea` input: `\x` and hex digit pairs (whitespace between pairs allowed), or
/// the escape format (`\\` a backslash, `\ooo` an octal byte, other characters as their
/// UTF-8 bytes). `None` for text that is neither (Postgres: 22P02).
pub fn bytea_in(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|p| std::str::from_utf8(p).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
            .collect();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = bytes.get(i + 1..i + 4)?;
            if !oct.iter().all(|b| (b'0'..=b'7').contains(b)) || oct[0] > b'3' {
                return None;
            }
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
        }
    }
    Some(out)
}

fn violation(e: json::JsonError) -> TypeViolation {
    TypeViolation { sqlstate: e.sqlstate, message: e.message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_obey_their_length_as_in_postgres() {
        let v = PgText::Varchar(3);
        assert_eq!(v.assign_value("abc"), Ok(None));
        assert_eq!(v.assign_value("ab "), Ok(None));
        assert_eq!(v.assign_value("abc   "), Ok(Some("abc".into())));
        assert_eq!(v.assign_value("abcd").unwrap_err().sqlstate, "22001");
        assert_eq!(v.assign_value("ééé"), Ok(None));
        assert_eq!(v.cast_value("abcdef"), Ok(Some("abc".into())));
        let c = PgText::Bpchar(5);
        assert_eq!(c.assign_value("ab   "), Ok(Some("ab".into())));
        assert_eq!(c.assign_value("ab"), Ok(None));
        assert_eq!(c.assign_value("abcdef").unwrap_err().message, "value too long for type character(5)");
        assert_eq!(c.display("ab").as_deref(), Some("ab   "));
        assert_eq!(c.display("abcde"), None);
    }

    #[test]
    fn bytea_text_reads_as_postgres() {
        assert_eq!(bytea_in("\\xdeadBEEF"), Some(vec![0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(bytea_in("\\x01 02"), Some(vec![1, 2]));
        assert_eq!(bytea_in("\\x"), Some(vec![]));
        assert_eq!(bytea_in("\\x123"), None);
        assert_eq!(bytea_in("abc"), Some(b"abc".to_vec()));
        assert_eq!(bytea_in("a\\\\b\\001"), Some(b"a\\b\x01".to_vec()));
        assert_eq!(bytea_in("bad\\9"), None);
    }

    #[test]
    fn markers_survive_a_round_trip() {
        for t in [PgText::Json, PgText::Jsonb, PgText::Varchar(20), PgText::Bpchar(1)] {
            assert_eq!(PgText::of(&t.field("c")), Some(t));
        }
        assert_eq!(PgText::of(&Field::new("c", DataType::Utf8, true)), None);
        assert_eq!(PgText::Jsonb.assign_value(r#"{"b":1,"a":2}"#), Ok(Some(r#"{"a": 2, "b": 1}"#.into())));
        assert_eq!(PgText::Json.assign_value(r#"{"b":1,"a":2}"#), Ok(None));
        assert_eq!(PgText::Json.assign_value("{").unwrap_err().sqlstate, "22P02");
    }
}

/// A float's shortest digits (`2.0`, `1e16`, `1.5e-5`, `-0.0`) as Postgres writes them
/// (`2`, `1e+16`, `1.5e-05`, `-0`), scientific from decimal exponent `scientific_from`;
/// `None` when `text` is not a finite number.
pub fn float_text(text: &[u8], scientific_from: i32) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let (negative, text) = text.strip_prefix('-').map_or((false, text), |t| (true, t));
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The value is 0.DIGITS × 10^point.
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let point = int.len() as i32 + exponent - (all.len() - significant.len()) as i32;
    let digits = significant.trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    if digits.is_empty() {
        return Some(format!("{sign}0"));
    }
    let e = point - 1;
    let body = if e < -4 || e >= scientific_from {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() { first.to_string() } else { format!("{first}.{rest}") };
        format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
    };
    Some(format!("{sign}{body}"))
}

/// The elements of a one-dimensional Postgres array literal (`{1,2,NULL}`, `{"a b","c\"d"}`):
/// each element's text, `None` for an unquoted `NULL`. Blanks around elements are dropped,
/// quotes and backslashes escape. `None` for text that is not such a literal (Postgres:
/// 22P02, "malformed array literal"); nested braces (several dimensions) included.
pub fn array_in(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Some(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let mut quoted = false;
        let mut trailing_blanks = 0;
        loop {
            match chars.peek().copied() {
                None | Some(',') => break,
                Some('{') | Some('}') => return None,
                Some('"') if item.is_empty() && !quoted => {
                    chars.next();
                    quoted = true;
                    loop {
                        match chars.next()? {
                            '"' => break,
                            '\\' => item.push(chars.next()?),
                            c => item.push(c),
                        }
                    }
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                    if !matches!(chars.peek(), None | Some(',')) {
                        return None;
                    }
                }
                Some('"') => return None,
                Some('\\') => {
                    chars.next();
                    item.push(chars.next()?);
                    trailing_blanks = 0;
                }
                Some(c) => {
                    chars.next();
                    item.push(c);
                    trailing_blanks = if c.is_whitespace() { trailing_blanks + 1 } else { 0 };
                }
            }
        }
        if !quoted {
            item.truncate(item.len() - trailing_blanks);
            if item.is_empty() {
                return None;
            }
        }
        out.push(if !quoted && item.eq_ignore_ascii_case("null") { None } else { Some(item) });
        if chars.next().is_none() {
            return Some(out);
        }
    }
}

#[cfg(test)]
mod array_tests {
    use super::array_in;

    fn some(items: &[Option<&str>]) -> Option<Vec<Option<String>>> {
        Some(items.iter().map(|i| i.map(String::from)).collect())
    }

    #[test]
    fn array_literals_read_as_postgres_reads_them() {
        assert_eq!(array_in("{1,2,3}"), some(&[Some("1"), Some("2"), Some("3")]));
        assert_eq!(array_in(" { 1 , NULL ,null} "), some(&[Some("1"), None, None]));
        assert_eq!(array_in("{}"), some(&[]));
        assert_eq!(
            array_in(r#"{"a b","NULL",c\,d,"e\"f"}"#),
            some(&[Some("a b"), Some("NULL"), Some("c,d"), Some("e\"f")])
        );
        assert_eq!(array_in(r#"{"",x}"#), some(&[Some(""), Some("x")]));
        for bad in ["1,2", "{1,2", "{1,,2}", "{{1},{2}}", "{\"a\"b}", "{a\"b\"}", "{1,}", "{\"a}"] {
            assert_eq!(array_in(bad), None, "{bad}");
        }
    }
}
