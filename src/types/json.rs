//! JSON values as Postgres reads, stores and prints them.
//!
//! A `json` value is kept as the text it was given (validated); a `jsonb` value as its
//! canonical text: keys of each object in jsonb order (shorter first, then bytewise) with the
//! last of duplicate keys kept, numbers as `numeric` prints them (`1e2` → `100`, `1.50` stays),
//! and Postgres's spacing (`{"a": 1, "b": [1, 2]}`). Both are Arrow `Utf8` columns marked
//! by [`super::PgText`]; the operators and functions in `sql::json` work on this text.
//!
//! The parser recurses, bounded in depth ([`MAX_DEPTH`]), so hostile input cannot exhaust
//! the stack.

use std::fmt::Write;

/// Deeper nesting is refused with 54001 (Postgres's limit is its stack depth, with the same
/// SQLSTATE). MySQL's JSON nests at most 100 deep, so every upstream value fits; the bound
/// keeps every recursive walk (parse, print, compare, drop) far from a thread's stack end.
pub const MAX_DEPTH: usize = 256;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as `numeric` text: no exponent, no `+`, no leading zeros.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Entries in jsonb order without duplicate keys once [`Json::normalize`]d.
    Object(Vec<(String, Json)>),
}

/// Why a text is not JSON, with the SQLSTATE Postgres gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub sqlstate: &'static str,
    pub message: String,
}

impl JsonError {
    fn syntax(detail: impl Into<String>) -> Self {
        JsonError { sqlstate: "22P02", message: format!("invalid input syntax for type json: {}", detail.into()) }
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Json {
    /// Parses `text` (any JSON value, surrounded by whitespace or not).
    pub fn parse(text: &str) -> Result<Json, JsonError> {
        let mut p = Parser { src: text.as_bytes(), pos: 0 };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.pos != p.src.len() {
            return Err(JsonError::syntax(format!("unexpected text after the value at offset {}", p.pos)));
        }
        Ok(v)
    }

    /// Parses `text` as jsonb: the canonical value.
    pub fn parse_jsonb(text: &str) -> Result<Json, JsonError> {
        let mut v = Json::parse(text)?;
        v.normalize();
        Ok(v)
    }

    /// Sorts every object's keys in jsonb order and keeps the last of duplicate keys.
    pub fn normalize(&mut self) {
        match self {
            Json::Array(items) => items.iter_mut().for_each(Json::normalize),
            Json::Object(entries) => {
                entries.iter_mut().for_each(|(_, v)| v.normalize());
                // Stable: of equal keys the later one stays last, and is the one kept.
                entries.sort_by(|(a, _), (b, _)| key_order(a, b));
                let mut kept: Vec<(String, Json)> = Vec::with_capacity(entries.len());
                for (k, v) in entries.drain(..) {
                    match kept.last_mut() {
                        Some((last, value)) if *last == k => *value = v,
                        _ => kept.push((k, v)),
                    }
                }
                *entries = kept;
            }
            _ => {}
        }
    }

    /// The jsonb text of the value: `{"a": 1, "b": [true, null]}`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Object(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_string(k, out);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// `jsonb_pretty`: four-space indents, one entry per line.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    fn write_pretty(&self, out: &mut String, depth: usize) {
        let indent = |out: &mut String, d: usize| (0..d).for_each(|_| out.push_str("    "));
        match self {
            Json::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    indent(out, depth + 1);
                    v.write_pretty(out, depth + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push(']');
            }
            Json::Object(entries) if !entries.is_empty() => {
                out.push_str("{\n");
                for (i, (k, v)) in entries.iter().enumerate() {
                    indent(out, depth + 1);
                    write_string(k, out);
                    out.push_str(": ");
                    v.write_pretty(out, depth + 1);
                    out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
                }
                indent(out, depth);
                out.push('}');
            }
            // Postgres closes an empty container on its own line too: `{` `\n` `}`.
            Json::Array(_) => {
                out.push_str("[\n");
                indent(out, depth);
                out.push(']');
            }
            Json::Object(_) => {
                out.push_str("{\n");
                indent(out, depth);
                out.push('}');
            }
            other => other.write(out),
        }
    }

    /// The value's type as `jsonb_typeof` names it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// `->` by key: the object's entry (the last one of that name in a `json` object).
    pub fn field(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `->` by position: the array's element; negative counts from the end. A jsonb scalar
    /// is, as Postgres stores it, a one-element array: element 0 (or −1) is the scalar.
    pub fn element(&self, index: i64) -> Option<&Json> {
        match self {
            Json::Object(_) => None,
            scalar @ (Json::Null | Json::Bool(_) | Json::Number(_) | Json::String(_)) => {
                (index == 0 || index == -1).then_some(scalar)
            }
            Json::Array(items) => {
                let i = if index < 0 { items.len() as i64 + index } else { index };
                usize::try_from(i).ok().and_then(|i| items.get(i))
            }
        }
    }

    /// `#>`: each step a key of an object or an index into an array (a step that is not an
    /// integer finds nothing in an array).
    pub fn path<S: AsRef<str>>(&self, steps: &[S]) -> Option<&Json> {
        let mut at = self;
        for step in steps {
            let step = step.as_ref();
            at = match at {
                Json::Object(_) => at.field(step)?,
                Json::Array(_) => at.element(step.trim().parse::<i64>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// `->>`: a string's own text, any other value's JSON text, SQL NULL for JSON null.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_text()),
        }
    }

    /// `@>` of jsonb: whether `self` contains `other`.
    pub fn contains(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Object(mine), Json::Object(theirs)) => theirs
                .iter()
                .all(|(k, v)| mine.iter().rev().find(|(mk, _)| mk == k).is_some_and(|(_, mv)| mv.contains(v))),
            (Json::Array(mine), Json::Array(theirs)) => theirs.iter().all(|t| {
                mine.iter().any(|m| match (m, t) {
                    // Inside arrays, a scalar is only matched by an equal scalar.
                    (Json::Array(_) | Json::Object(_), _) => m.contains(t),
                    _ => m.equals(t),
                })
            }),
            // A top-level array contains a scalar it holds.
            (Json::Array(mine), scalar) if !matches!(scalar, Json::Object(_)) => mine.iter().any(|m| m.equals(scalar)),
            (a, b) => a.equals(b),
        }
    }

    /// jsonb equality: numbers by value (`1.0` = `1`), objects by keys.
    pub fn equals(&self, other: &Json) -> bool {
        match (self, other) {
            (Json::Number(a), Json::Number(b)) => numeric_key(a) == numeric_key(b),
            (Json::Array(a), Json::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y)),
            (Json::Object(a), Json::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(bk, bv)| bk == k && v.equals(bv)))
            }
            (a, b) => a == b,
        }
    }

    /// `?`: a key of an object, a string element of an array, or the string itself.
    pub fn has_key(&self, key: &str) -> bool {
        match self {
            Json::Object(entries) => entries.iter().any(|(k, _)| k == key),
            Json::Array(items) => items.iter().any(|v| matches!(v, Json::String(s) if s == key)),
            Json::String(s) => s == key,
            _ => false,
        }
    }
}

/// jsonb's key order: shorter keys first, then bytewise.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A number's text without trailing fractional zeros, for comparing values.
fn numeric_key(n: &str) -> &str {
    if n.contains('.') {
        n.trim_end_matches('0').trim_end_matches('.')
    } else {
        n
    }
}

/// Writes `s` as a JSON string, escaped as Postgres escapes it.
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON number's lexeme as `numeric` text (`-1.50e1` → `-15.0`, `1e2` → `100`).
pub fn canonical_number(lexeme: &str) -> Result<String, JsonError> {
    let (negative, rest) = match lexeme.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, lexeme),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => {
            let e = rest[i + 1..].parse::<i64>().map_err(|_| JsonError::syntax(format!("bad number {lexeme}")))?;
            (&rest[..i], e)
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int}{frac}");
    let mut scale = frac.len() as i64 - exponent;
    if !(-100_000..=100_000).contains(&scale) {
        return Err(JsonError { sqlstate: "22003", message: format!("value overflows numeric format: {lexeme}") });
    }
    if scale < 0 {
        digits.extend(std::iter::repeat_n('0', (-scale) as usize));
        scale = 0;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let zero = whole == "0" && fraction.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(digits.len() + 2);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(whole);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn expect_word(&mut self, word: &str, value: Json) -> Result<Json, JsonError> {
        if self.src[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.unexpected())
        }
    }

    fn unexpected(&self) -> JsonError {
        match self.src.get(self.pos) {
            None => JsonError::syntax("the input ends unexpectedly"),
            Some(_) => {
                let end = (self.pos + 1..=self.src.len())
                    .find(|&e| std::str::from_utf8(&self.src[self.pos..e]).is_ok())
                    .unwrap_or(self.src.len());
                let token = String::from_utf8_lossy(&self.src[self.pos..end]);
                JsonError::syntax(format!("token \"{token}\" is invalid at offset {}", self.pos))
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth >= MAX_DEPTH {
            return Err(JsonError {
                sqlstate: "54001",
                message: format!("JSON nested deeper than {MAX_DEPTH} levels"),
            });
        }
        match self.src.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.src.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(Json::Object(entries));
                }
                loop {
                    self.ws();
                    if self.src.get(self.pos) != Some(&b'"') {
                        return Err(self.unexpected());
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.src.get(self.pos) != Some(&b':') {
                        return Err(self.unexpected());
                    }
                    self.pos += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                    self.ws();
                    match self.src.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Json::Object(entries));
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.src.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.src.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.expect_word("true", Json::Bool(true)),
            Some(b'f') => self.expect_word("false", Json::Bool(false)),
            Some(b'n') => self.expect_word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.unexpected()),
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.src.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.src.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        if !digits(self) {
            return Err(self.unexpected());
        }
        if self.src[int_start] == b'0' && self.pos - int_start > 1 {
            self.pos = int_start + 1;
            return Err(self.unexpected());
        }
        if self.src.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.unexpected());
            }
        }
        if let Some(b'e' | b'E') = self.src.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.src.get(self.pos) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.unexpected());
            }
        }
        let lexeme = std::str::from_utf8(&self.src[start..self.pos]).map_err(|_| self.unexpected())?;
        Ok(Json::Number(canonical_number(lexeme)?))
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(&b) = self.src.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The input is a &str, and a run ends only at an ASCII byte: valid UTF-8.
            out.push_str(std::str::from_utf8(&self.src[run_start..self.pos]).map_err(|_| self.unexpected())?);
            match self.src.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.src.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => {
                            return Err(JsonError::syntax(format!("escape sequence is invalid at offset {}", self.pos)))
                        }
                    };
                    self.pos += 1;
                    out.push(c);
                }
                _ => return Err(JsonError::syntax("a string is not terminated, or holds a control character")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let hex = self
            .src
            .get(self.pos..self.pos + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                JsonError::syntax(format!("\"\\u\" must be followed by four hexadecimal digits (offset {})", self.pos))
            })?;
        self.pos += 4;
        Ok(hex)
    }

    /// After `\u`: one code point, a surrogate pair taken together.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.src[self.pos..].starts_with(b"\\u") {
                return Err(JsonError::syntax("a Unicode high surrogate must be followed by a low surrogate"));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(JsonError::syntax("a Unicode high surrogate must be followed by a low surrogate"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        if code == 0 {
            return Err(JsonError { sqlstate: "22P05", message: "unsupported Unicode escape sequence \\u0000".into() });
        }
        char::from_u32(code)
            .ok_or_else(|| JsonError::syntax("a Unicode low surrogate must follow a high surrogate".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonb(text: &str) -> String {
        Json::parse_jsonb(text).unwrap().to_text()
    }

    #[test]
    fn jsonb_text_is_canonical_as_in_postgres() {
        assert_eq!(
            jsonb(r#"{"b":1,"a":[1, 2.50,{"cc":null,"c":true}], "b": 2}"#),
            r#"{"a": [1, 2.50, {"c": true, "cc": null}], "b": 2}"#
        );
        assert_eq!(jsonb(" 1e2 "), "100");
        assert_eq!(jsonb("-1.50e1"), "-15.0");
        assert_eq!(jsonb("1.5e-3"), "0.0015");
        assert_eq!(jsonb("-0"), "0");
        assert_eq!(jsonb("-0.0"), "0.0");
        assert_eq!(jsonb(r#""\u00e9\n\"\ud83d\ude00""#), "\"é\\n\\\"😀\"");
        assert_eq!(jsonb("{}"), "{}");
        assert_eq!(jsonb("[]"), "[]");
        assert_eq!(jsonb(r#"{"aa":1,"b":2}"#), r#"{"b": 2, "aa": 1}"#);
    }

    #[test]
    fn bad_json_is_refused_with_postgres_sqlstates() {
        for bad in ["", "{", "[1,]", "01", "1.", "tru", "{\"a\" 1}", "\"a", "{'a': 1}", "[1] x", "\"\t\"", "NaN"] {
            assert_eq!(Json::parse(bad).unwrap_err().sqlstate, "22P02", "{bad:?}");
        }
        assert_eq!(Json::parse(r#""\u0000""#).unwrap_err().sqlstate, "22P05");
        let deep = "[".repeat(5000) + &"]".repeat(5000);
        assert_eq!(Json::parse(&deep).unwrap_err().sqlstate, "54001");
    }

    #[test]
    fn containment_and_keys_follow_jsonb() {
        let j = |t: &str| Json::parse_jsonb(t).unwrap();
        assert!(j(r#"{"a":1,"b":{"c":[1,2,3]}}"#).contains(&j(r#"{"b":{"c":[3,1]}}"#)));
        assert!(!j(r#"{"a":1}"#).contains(&j(r#"{"a":2}"#)));
        assert!(j("[1,2,[3,4]]").contains(&j("[[4]]")));
        assert!(j("[1,2]").contains(&j("1")));
        assert!(!j("[1,2]").contains(&j("[[1]]")));
        assert!(j(r#"{"a":1.0}"#).contains(&j(r#"{"a":1}"#)));
        assert!(j(r#"["a","b"]"#).has_key("a"));
        assert!(j(r#"{"a":null}"#).has_key("a"));
        assert!(!j(r#"{"a":{"b":1}}"#).has_key("b"));
        assert_eq!(j(r#"{"a":[1,{"b":"x"}]}"#).path(&["a", "-1", "b"]).and_then(Json::as_text).as_deref(), Some("x"));
        assert_eq!(j("[1,2,3]").element(-1).map(Json::to_text).as_deref(), Some("3"));
        assert_eq!(j("null").as_text(), None);
    }

    #[test]
    fn pretty_prints_like_jsonb_pretty() {
        let v = Json::parse_jsonb(r#"{"a":[1,{}],"b":[]}"#).unwrap();
        assert_eq!(v.pretty(), "{\n    \"a\": [\n        1,\n        {\n        }\n    ],\n    \"b\": [\n    ]\n}");
    }
}
