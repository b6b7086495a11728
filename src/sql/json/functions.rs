//! The JSON functions and operator functions, with Postgres's names and answers, and the
//! functions the typed-text rule puts in place of casts (`pg_text_cast`, `pg_bytea_in`,
//! `pg_array_text`).

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::logical_expr::ScalarUDF;
use datafusion::scalar::ScalarValue;

use super::udf::{row_udf, spelled, Output};
use super::{json_arg, text_of};
use crate::error::Error;
use crate::types::json::{key_order, Json};
use crate::types::PgText;

type Result<T> = std::result::Result<T, Error>;

fn data(sqlstate: &'static str, message: impl Into<String>) -> Error {
    Error::DataException { sqlstate, message: message.into() }
}

fn text(v: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(v)
}

fn arity(name: &str, args: &[ScalarValue], range: std::ops::RangeInclusive<usize>) -> Result<()> {
    if range.contains(&args.len()) {
        Ok(())
    } else {
        Err(Error::UndefinedFunction(format!("function {name} does not take {} arguments", args.len())))
    }
}

/// The JSON value to return for a function over `first` (json or jsonb text).
fn json_out(v: Option<&Json>) -> ScalarValue {
    text(v.map(Json::to_text))
}

/// A `text[]` argument: a list, or Postgres's array literal `'{a,b}'`.
fn text_list(v: &ScalarValue) -> Result<Option<Vec<String>>> {
    match v {
        ScalarValue::List(list) => {
            if list.is_null(0) {
                return Ok(None);
            }
            let values = list.value(0);
            let mut out = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                let item = ScalarValue::try_from_array(&values, i).map_err(Error::from)?;
                out.push(text_of(&item).ok_or_else(|| data("22004", "path element must not be null"))?);
            }
            Ok(Some(out))
        }
        other => match text_of(other) {
            None => Ok(None),
            Some(s) => parse_array_literal(&s).map(Some),
        },
    }
}

/// `'{a,"b c",1}'` → `["a", "b c", "1"]`.
fn parse_array_literal(s: &str) -> Result<Vec<String>> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| data("22P02", format!("malformed array literal: \"{s}\"")))?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let mut item = String::new();
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => item.extend(chars.next()),
                    '"' => break,
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_string();
        }
        out.push(item);
        chars.next(); // the comma
    }
    Ok(out)
}

/// `pg_text_cast(value, 'jsonb')`: an explicit cast to a marked type.
pub fn pg_text_cast() -> ScalarUDF {
    row_udf("pg_text_cast", Output::NamedBySecond, |a, _| {
        let t = a
            .get(1)
            .and_then(text_of)
            .and_then(|s| spelled(&s))
            .ok_or_else(|| Error::Internal("pg_text_cast: no type".into()))?;
        let Some(value) = text_of(&a[0]) else { return Ok(text(None)) };
        match t.cast_value(&value) {
            Ok(Some(v)) => Ok(text(Some(v))),
            Ok(None) => Ok(text(Some(value))),
            Err(e) => Err(data(e.sqlstate, e.message)),
        }
    })
}

/// `pg_bytea_in(text)`: text cast to `bytea` as Postgres reads it (`'\\x0102'` is two bytes;
/// Arrow's cast took the text's own bytes).
pub fn pg_bytea_in() -> ScalarUDF {
    row_udf("pg_bytea_in", Output::Binary, |a, _| {
        let Some(t) = a.first().and_then(text_of) else { return Ok(ScalarValue::Binary(None)) };
        crate::types::bytea_in(&t).map(|b| ScalarValue::Binary(Some(b))).ok_or_else(|| {
            if t.starts_with("\\x") {
                data("22023", format!("invalid hexadecimal data in bytea: \"{t}\""))
            } else {
                data("22P02", format!("invalid input syntax for type bytea: \"{t}\""))
            }
        })
    })
}

/// `pg_array_in(text, NULL::T[])`: Postgres's array input (`'{1,2,NULL}'`) as an array of the
/// second argument's type, each element read as its element type would read it.
pub fn pg_array_in() -> ScalarUDF {
    row_udf("pg_array_in", Output::TypeOfSecond, |a, _| {
        let target = a.get(1).map(|t| t.data_type()).unwrap_or(DataType::Null);
        let element = match &target {
            DataType::List(f) | DataType::LargeList(f) => f.data_type().clone(),
            other => return Err(Error::Internal(format!("pg_array_in: {other} is not an array type"))),
        };
        let Some(t) = a.first().and_then(text_of) else { return ScalarValue::try_from(&target).map_err(Error::from) };
        let items = crate::types::array_in(&t).ok_or_else(|| {
            data(
                "22P02",
                format!("malformed array literal: \"{t}\" (one dimension: {{1,2,NULL}}, elements quoted with \"...\")"),
            )
        })?;
        let values = items
            .into_iter()
            .map(|item| match item {
                None => ScalarValue::try_from(&element).map_err(Error::from),
                Some(s) => ScalarValue::try_from_string(s.clone(), &element).map_err(|_| {
                    data(
                        "22P02",
                        format!("invalid input syntax for type {}: \"{s}\"", crate::sql::dml::pg_type_name(&element)),
                    )
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(match target {
            DataType::LargeList(_) => ScalarValue::LargeList(ScalarValue::new_large_list(&values, &element)),
            _ => ScalarValue::List(ScalarValue::new_list_nullable(&values, &element)),
        })
    })
}

/// `pg_array_text(array)`: an array cast to text as Postgres writes it (`{1,2}`,
/// `{a,"b c",NULL}`, `{{1},{2}}`); Arrow's cast wrote `[1, 2]`.
pub fn pg_array_text() -> ScalarUDF {
    row_udf("pg_array_text", Output::Text, |a, _| {
        let Some(v) = a.first() else { return Ok(text(None)) };
        if v.is_null() {
            return Ok(text(None));
        }
        let mut out = String::new();
        array_text(v, &mut out)?;
        Ok(text(Some(out)))
    })
}

fn array_text(v: &ScalarValue, out: &mut String) -> Result<()> {
    let values = match v {
        ScalarValue::List(l) => l.value(0),
        ScalarValue::LargeList(l) => l.value(0),
        ScalarValue::FixedSizeList(l) => l.value(0),
        _ => return Err(Error::Internal("pg_array_text: not an array".into())),
    };
    out.push('{');
    for i in 0..values.len() {
        if i > 0 {
            out.push(',');
        }
        let item = ScalarValue::try_from_array(&values, i).map_err(Error::from)?;
        match &item {
            x if x.is_null() => out.push_str("NULL"),
            ScalarValue::List(_) | ScalarValue::LargeList(_) | ScalarValue::FixedSizeList(_) => array_text(&item, out)?,
            ScalarValue::Boolean(Some(b)) => out.push(if *b { 't' } else { 'f' }),
            other => {
                let t = match other {
                    ScalarValue::Utf8(Some(t)) | ScalarValue::LargeUtf8(Some(t)) | ScalarValue::Utf8View(Some(t)) => {
                        t.clone()
                    }
                    ScalarValue::TimestampSecond(..)
                    | ScalarValue::TimestampMillisecond(..)
                    | ScalarValue::TimestampMicrosecond(..)
                    | ScalarValue::TimestampNanosecond(..) => {
                        text_of(&other.cast_to(&datafusion::arrow::datatypes::DataType::Utf8).map_err(Error::from)?)
                            .unwrap_or_default()
                            .replacen('T', " ", 1)
                    }
                    ScalarValue::Float32(Some(_)) | ScalarValue::Float64(Some(_)) => {
                        let t = text_of(other).unwrap_or_default();
                        let from = if matches!(other, ScalarValue::Float32(_)) { 6 } else { 15 };
                        crate::types::float_text(t.as_bytes(), from).unwrap_or_else(|| t.replace("inf", "Infinity"))
                    }
                    o => text_of(o).unwrap_or_default(),
                };
                let quote = t.is_empty()
                    || t.eq_ignore_ascii_case("null")
                    || t.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
                if quote {
                    out.push('"');
                    for c in t.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str(&t);
                }
            }
        }
    }
    out.push('}');
    Ok(())
}

/// `pg_text_plain(value)`: a marked value as plain text.
pub fn pg_text_plain() -> ScalarUDF {
    row_udf("pg_text_plain", Output::Text, |a, _| Ok(text(a.first().and_then(text_of))))
}

/// `->` (`as_text`: `->>`): by key, or by index for an integer.
pub fn get(as_text: bool) -> ScalarUDF {
    let name = if as_text { "pg_json_get_text" } else { "pg_json_get" };
    let output = if as_text { Output::Text } else { Output::JsonOfFirst };
    row_udf(name, output, move |a, f| {
        arity(name, a, 2..=2)?;
        let Some(j) = json_arg(&a[0], f.first())? else { return Ok(text(None)) };
        // Only jsonb keeps a scalar as a one-element array (`'"x"'::jsonb -> 0` is `"x"`).
        let json_scalar = f.first().and_then(|f| PgText::of(f)) == Some(PgText::Json)
            && !matches!(j, Json::Array(_) | Json::Object(_));
        let found = match &a[1] {
            _ if json_scalar => None,
            v if v.is_null() => None,
            ScalarValue::Int8(Some(i)) => j.element(i64::from(*i)),
            ScalarValue::Int16(Some(i)) => j.element(i64::from(*i)),
            ScalarValue::Int32(Some(i)) => j.element(i64::from(*i)),
            ScalarValue::Int64(Some(i)) => j.element(*i),
            other => j.field(&text_of(other).unwrap_or_default()),
        };
        Ok(if as_text { text(found.and_then(Json::as_text)) } else { json_out(found) })
    })
}

/// `#>` (`as_text`: `#>>`): by a path of keys and indexes.
pub fn path(as_text: bool) -> ScalarUDF {
    let name = if as_text { "pg_json_path_text" } else { "pg_json_path" };
    let output = if as_text { Output::Text } else { Output::JsonOfFirst };
    row_udf(name, output, move |a, f| {
        arity(name, a, 2..=2)?;
        let Some(j) = json_arg(&a[0], f.first())? else { return Ok(text(None)) };
        let Some(steps) = text_list(&a[1])? else { return Ok(text(None)) };
        let found = j.path(&steps);
        Ok(if as_text { text(found.and_then(Json::as_text)) } else { json_out(found) })
    })
}

/// `jsonb_extract_path(j, VARIADIC steps)` and its `_text` and `json_` forms.
fn extract_path(name: &'static str, as_text: bool) -> ScalarUDF {
    let output = if as_text { Output::Text } else { Output::JsonOfFirst };
    row_udf(name, output, move |a, f| {
        if a.is_empty() {
            return Err(Error::UndefinedFunction(format!("function {name}() needs a JSON argument")));
        }
        let Some(j) = json_arg(&a[0], f.first())? else { return Ok(text(None)) };
        let mut steps = Vec::with_capacity(a.len() - 1);
        for s in &a[1..] {
            match text_of(s) {
                Some(s) => steps.push(s),
                None => return Ok(text(None)),
            }
        }
        let found = j.path(&steps);
        Ok(if as_text { text(found.and_then(Json::as_text)) } else { json_out(found) })
    })
}

/// `jsonb_contains(a, b)`: `a @> b`.
pub fn contains() -> ScalarUDF {
    row_udf("jsonb_contains", Output::Bool, |a, f| {
        arity("jsonb_contains", a, 2..=2)?;
        let (Some(x), Some(y)) = (json_arg(&a[0], f.first())?, json_arg(&a[1], f.get(1))?) else {
            return Ok(ScalarValue::Boolean(None));
        };
        Ok(ScalarValue::Boolean(Some(x.contains(&y))))
    })
}

/// `?` (`jsonb_exists`), `?|` (`jsonb_exists_any`), `?&` (`jsonb_exists_all`).
pub fn exists(name: &'static str) -> ScalarUDF {
    row_udf(name, Output::Bool, move |a, f| {
        arity(name, a, 2..=2)?;
        let Some(j) = json_arg(&a[0], f.first())? else { return Ok(ScalarValue::Boolean(None)) };
        let answer = match name {
            "jsonb_exists" => match text_of(&a[1]) {
                Some(k) => j.has_key(&k),
                None => return Ok(ScalarValue::Boolean(None)),
            },
            _ => {
                let Some(keys) = text_list(&a[1])? else { return Ok(ScalarValue::Boolean(None)) };
                if name == "jsonb_exists_any" {
                    keys.iter().any(|k| j.has_key(k))
                } else {
                    keys.iter().all(|k| j.has_key(k))
                }
            }
        };
        Ok(ScalarValue::Boolean(Some(answer)))
    })
}

/// `||` of jsonb values: objects merged (the right wins), anything else as arrays joined.
pub fn concat() -> ScalarUDF {
    row_udf("jsonb_concat", Output::Json(PgText::Jsonb), |a, f| {
        arity("jsonb_concat", a, 2..=2)?;
        let (Some(x), Some(y)) = (json_arg(&a[0], f.first())?, json_arg(&a[1], f.get(1))?) else {
            return Ok(text(None));
        };
        let mut out = match (x, y) {
            (Json::Object(mut l), Json::Object(r)) => {
                l.extend(r);
                Json::Object(l)
            }
            (l, r) => {
                let items = |v: Json| match v {
                    Json::Array(items) => items,
                    other => vec![other],
                };
                let mut all = items(l);
                all.extend(items(r));
                Json::Array(all)
            }
        };
        out.normalize();
        Ok(json_out(Some(&out)))
    })
}

/// `-` of jsonb: a key (or a string element), an index, or a `text[]` of keys removed.
pub fn delete() -> ScalarUDF {
    row_udf("jsonb_delete", Output::Json(PgText::Jsonb), |a, f| {
        arity("jsonb_delete", a, 2..=2)?;
        let Some(j) = json_arg(&a[0], f.first())? else { return Ok(text(None)) };
        if a[1].is_null() {
            return Ok(text(None));
        }
        let index = match &a[1] {
            ScalarValue::Int8(Some(i)) => Some(i64::from(*i)),
            ScalarValue::Int16(Some(i)) => Some(i64::from(*i)),
            ScalarValue::Int32(Some(i)) => Some(i64::from(*i)),
            ScalarValue::Int64(Some(i)) => Some(*i),
            _ => None,
        };
        let keys = match (&a[1], index) {
            (_, Some(_)) => vec![],
            (ScalarValue::List(_), None) => text_list(&a[1])?.unwrap_or_default(),
            (other, None) => vec![text_of(other).unwrap_or_default()],
        };
        let out = match (j, index) {
            (Json::Array(mut items), Some(i)) => {
                let at = if i < 0 { items.len() as i64 + i } else { i };
                if (0..items.len() as i64).contains(&at) {
                    items.remove(at as usize);
                }
                Json::Array(items)
            }
            (Json::Object(_), Some(_)) => return Err(data("22023", "cannot delete from object using integer index")),
            (Json::Object(entries), None) => {
                Json::Object(entries.into_iter().filter(|(k, _)| !keys.contains(k)).collect())
            }
            (Json::Array(items), None) => {
                Json::Array(items.into_iter().filter(|v| !matches!(v, Json::String(s) if keys.contains(s))).collect())
            }
            _ => return Err(data("22023", "cannot delete from scalar")),
        };
        Ok(json_out(Some(&out)))
    })
}

/// A SQL value as JSON, as `to_jsonb` converts it (`None` for SQL NULL).
pub fn to_json_value(v: &ScalarValue, field: Option<&FieldRef>) -> Result<Option<Json>> {
    if v.is_null() {
        return Ok(None);
    }
    let number =
        |s: String| crate::types::json::canonical_number(&s).map(Json::Number).map_err(|e| data(e.sqlstate, e.message));
    Ok(Some(match v {
        ScalarValue::Boolean(Some(b)) => Json::Bool(*b),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal128(..)
        | ScalarValue::Decimal256(..) => number(v.to_string())?,
        ScalarValue::Float32(Some(x)) if x.is_finite() => number(format!("{x}"))?,
        ScalarValue::Float64(Some(x)) if x.is_finite() => number(format!("{x}"))?,
        ScalarValue::Float32(Some(x)) => Json::String(pg_special_float(f64::from(*x))),
        ScalarValue::Float64(Some(x)) => Json::String(pg_special_float(*x)),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            match field.and_then(|f| PgText::of(f)) {
                Some(PgText::Json | PgText::Jsonb) => json_arg(v, field)?.unwrap_or(Json::Null),
                _ => Json::String(s.clone()),
            }
        }
        ScalarValue::List(list) => {
            let values = list.value(0);
            let mut items = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                let item = ScalarValue::try_from_array(&values, i).map_err(Error::from)?;
                items.push(to_json_value(&item, None)?.unwrap_or(Json::Null));
            }
            Json::Array(items)
        }
        ScalarValue::Struct(s) => {
            let mut entries = Vec::new();
            for (i, f) in s.fields().iter().enumerate() {
                let item = ScalarValue::try_from_array(s.column(i), 0).map_err(Error::from)?;
                entries.push((f.name().clone(), to_json_value(&item, Some(f))?.unwrap_or(Json::Null)));
            }
            Json::Object(entries)
        }
        other => {
            // Dates, times, timestamps, intervals: their ISO text, as Postgres's to_jsonb.
            let text = other.cast_to(&datafusion::arrow::datatypes::DataType::Utf8).map_err(Error::from)?;
            Json::String(text_of(&text).unwrap_or_default())
        }
    }))
}

fn pg_special_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x > 0.0 {
        "Infinity".into()
    } else {
        "-Infinity".into()
    }
}

fn to_json(name: &'static str, t: PgText) -> ScalarUDF {
    row_udf(name, Output::Json(t), move |a, f| {
        arity(name, a, 1..=1)?;
        let mut v = to_json_value(&a[0], f.first())?;
        if let Some(v) = v.as_mut() {
            v.normalize();
        }
        Ok(json_out(v.as_ref()))
    })
}

fn build_object(name: &'static str, t: PgText) -> ScalarUDF {
    row_udf(name, Output::Json(t), move |a, f| {
        if a.len() % 2 != 0 {
            return Err(data("22023", "argument list must have even number of elements"));
        }
        let mut entries = Vec::with_capacity(a.len() / 2);
        for (i, pair) in a.chunks(2).enumerate() {
            let key = text_of(&pair[0])
                .ok_or_else(|| data("22004", format!("argument {}: key must not be null", 2 * i + 1)))?;
            let key = match to_json_value(&pair[0], f.get(2 * i))? {
                Some(Json::String(s)) => s,
                _ => key,
            };
            entries.push((key, to_json_value(&pair[1], f.get(2 * i + 1))?.unwrap_or(Json::Null)));
        }
        let mut v = Json::Object(entries);
        if t == PgText::Jsonb {
            v.normalize();
            return Ok(json_out(Some(&v)));
        }
        // json_build_object keeps the order and writes `"k" : v`, as Postgres does.
        let Json::Object(entries) = v else { unreachable!("built as an object") };
        let mut out = String::from("{");
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            crate::types::json::write_string(k, &mut out);
            out.push_str(" : ");
            out.push_str(&v.to_text());
        }
        out.push('}');
        Ok(text(Some(out)))
    })
}

fn build_array(name: &'static str, t: PgText) -> ScalarUDF {
    row_udf(name, Output::Json(t), move |a, f| {
        let mut items = Vec::with_capacity(a.len());
        for (i, v) in a.iter().enumerate() {
            items.push(to_json_value(v, f.get(i))?.unwrap_or(Json::Null));
        }
        let mut v = Json::Array(items);
        v.normalize();
        Ok(json_out(Some(&v)))
    })
}

fn type_of(name: &'static str) -> ScalarUDF {
    row_udf(name, Output::Text, move |a, f| {
        arity(name, a, 1..=1)?;
        Ok(text(json_arg(&a[0], f.first())?.map(|j| j.type_name().to_string())))
    })
}

fn array_length(name: &'static str) -> ScalarUDF {
    row_udf(name, Output::Int32, move |a, f| {
        arity(name, a, 1..=1)?;
        match json_arg(&a[0], f.first())? {
            None => Ok(ScalarValue::Int32(None)),
            Some(Json::Array(items)) => Ok(ScalarValue::Int32(Some(items.len() as i32))),
            Some(Json::Object(_)) => Err(data("22023", "cannot get array length of a non-array")),
            Some(_) => Err(data("22023", "cannot get array length of a scalar")),
        }
    })
}

fn strip_nulls(name: &'static str) -> ScalarUDF {
    fn strip(v: Json) -> Json {
        match v {
            Json::Object(entries) => Json::Object(
                entries.into_iter().filter(|(_, v)| *v != Json::Null).map(|(k, v)| (k, strip(v))).collect(),
            ),
            Json::Array(items) => Json::Array(items.into_iter().map(strip).collect()),
            other => other,
        }
    }
    row_udf(name, Output::JsonOfFirst, move |a, f| {
        arity(name, a, 1..=1)?;
        Ok(json_out(json_arg(&a[0], f.first())?.map(strip).as_ref()))
    })
}

fn pretty() -> ScalarUDF {
    row_udf("jsonb_pretty", Output::Text, |a, f| {
        arity("jsonb_pretty", a, 1..=1)?;
        Ok(text(json_arg(&a[0], f.first())?.map(|j| j.pretty())))
    })
}

/// `jsonb_set(target, path, new_value [, create_if_missing])`.
fn set() -> ScalarUDF {
    fn set_at(at: &mut Json, steps: &[String], value: Json, create: bool) -> Result<()> {
        let Some((step, rest)) = steps.split_first() else { return Ok(()) };
        match at {
            Json::Object(entries) => {
                match entries.iter_mut().find(|(k, _)| k == step) {
                    Some((_, v)) if rest.is_empty() => *v = value,
                    Some((_, v)) => set_at(v, rest, value, create)?,
                    None if rest.is_empty() && create => {
                        entries.push((step.clone(), value));
                        entries.sort_by(|(a, _), (b, _)| key_order(a, b));
                    }
                    None => {}
                }
                Ok(())
            }
            Json::Array(items) => {
                let i: i64 = step.trim().parse().map_err(|_| {
                    data("22P02", format!("path element at position {} is not an integer: \"{step}\"", 1))
                })?;
                let len = items.len() as i64;
                let at = if i < 0 { len + i } else { i };
                if (0..len).contains(&at) {
                    if rest.is_empty() {
                        items[at as usize] = value;
                    } else {
                        set_at(&mut items[at as usize], rest, value, create)?;
                    }
                } else if rest.is_empty() && create {
                    if at < 0 {
                        items.insert(0, value);
                    } else {
                        items.push(value);
                    }
                }
                Ok(())
            }
            _ => Err(data("22023", "cannot set path in scalar")),
        }
    }
    row_udf("jsonb_set", Output::Json(PgText::Jsonb), |a, f| {
        arity("jsonb_set", a, 3..=4)?;
        let Some(mut target) = json_arg(&a[0], f.first())? else { return Ok(text(None)) };
        let Some(steps) = text_list(&a[1])? else { return Ok(text(None)) };
        let Some(value) = json_arg(&a[2], f.get(2))? else { return Ok(text(None)) };
        let create = match a.get(3) {
            Some(ScalarValue::Boolean(Some(b))) => *b,
            Some(ScalarValue::Boolean(None)) => return Ok(text(None)),
            _ => true,
        };
        set_at(&mut target, &steps, value, create)?;
        Ok(json_out(Some(&target)))
    })
}

/// Every function this module defines.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        pg_text_cast(),
        pg_text_plain(),
        pg_bytea_in(),
        pg_array_text(),
        get(false),
        get(true),
        path(false),
        path(true),
        contains(),
        exists("jsonb_exists"),
        exists("jsonb_exists_any"),
        exists("jsonb_exists_all"),
        concat(),
        delete(),
        extract_path("jsonb_extract_path", false),
        extract_path("jsonb_extract_path_text", true),
        extract_path("json_extract_path", false),
        extract_path("json_extract_path_text", true),
        to_json("to_jsonb", PgText::Jsonb),
        to_json("to_json", PgText::Json),
        build_object("jsonb_build_object", PgText::Jsonb),
        build_object("json_build_object", PgText::Json),
        build_array("jsonb_build_array", PgText::Jsonb),
        build_array("json_build_array", PgText::Json),
        type_of("jsonb_typeof"),
        type_of("json_typeof"),
        array_length("jsonb_array_length"),
        array_length("json_array_length"),
        strip_nulls("jsonb_strip_nulls"),
        strip_nulls("json_strip_nulls"),
        pretty(),
        set(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_read_as_postgres_writes_them() {
        assert_eq!(parse_array_literal("{a,b}").unwrap(), ["a", "b"]);
        assert_eq!(parse_array_literal(r#"{"a b", c ,"d\"e"}"#).unwrap(), ["a b", "c", "d\"e"]);
        assert_eq!(parse_array_literal("{}").unwrap(), Vec::<String>::new());
        assert_eq!(parse_array_literal("a,b").unwrap_err().sqlstate(), "22P02");
    }
}
