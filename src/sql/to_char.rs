//! `to_char(timestamp | date, template)` with Postgres's template patterns.
//!
//! DataFusion's `to_char` takes chrono's `strftime` format, so a Postgres template such as
//! `'YYYY-MM-DD HH24:MI'` came back as the literal text — a silently wrong answer for every
//! BI tool that formats dates in SQL. This replaces it under the same name: the template is
//! parsed once per distinct text into [`Token`]s (the patterns of Postgres's "Template
//! Patterns for Date/Time Formatting", the `FM` prefix, the `TH`/`th` suffix, quoted text and
//! backslash escapes) and rendered from chrono's calendar fields. Values are formatted in UTC
//! (the session's `TimeZone` is not visible to a function; `timestamptz` values are UTC
//! instants). `to_char` of a number is refused with 0A000 rather than answered wrongly.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{exec_err, not_impl_err, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Text(String),
    Field { pattern: Pattern, fill: bool, ordinal: Option<bool> },
}

/// The patterns, each with the case its name output takes where that matters.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pattern {
    Hour24,
    Hour12,
    Minute,
    Second,
    Millis,
    Micros,
    Fraction(u8),
    Meridiem { upper: bool, dots: bool },
    Year4,
    Year3,
    Year2,
    Year1,
    IsoYear,
    MonthName(Case),
    MonthAbbrev(Case),
    Month,
    DayName(Case),
    DayAbbrev(Case),
    DayOfYear,
    DayOfMonth,
    DayOfWeek,
    IsoDayOfWeek,
    IsoWeek,
    WeekOfYear,
    Quarter,
    Century,
    Julian,
    Zone { upper: bool },
    Offset,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    Upper,
    Capitalized,
    Lower,
}

/// Patterns matched case-insensitively (numbers), longest first.
const NUMERIC: [(&str, Pattern); 24] = [
    ("HH24", Pattern::Hour24),
    ("HH12", Pattern::Hour12),
    ("IYYY", Pattern::IsoYear),
    ("YYYY", Pattern::Year4),
    ("FF1", Pattern::Fraction(1)),
    ("FF2", Pattern::Fraction(2)),
    ("FF3", Pattern::Fraction(3)),
    ("FF4", Pattern::Fraction(4)),
    ("FF5", Pattern::Fraction(5)),
    ("FF6", Pattern::Fraction(6)),
    ("YYY", Pattern::Year3),
    ("DDD", Pattern::DayOfYear),
    ("HH", Pattern::Hour12),
    ("MI", Pattern::Minute),
    ("SS", Pattern::Second),
    ("MS", Pattern::Millis),
    ("US", Pattern::Micros),
    ("YY", Pattern::Year2),
    ("MM", Pattern::Month),
    ("DD", Pattern::DayOfMonth),
    ("ID", Pattern::IsoDayOfWeek),
    ("IW", Pattern::IsoWeek),
    ("WW", Pattern::WeekOfYear),
    ("CC", Pattern::Century),
];

/// Patterns whose case chooses the output's case, matched exactly, longest first.
const NAMED: [(&str, Pattern); 22] = [
    ("MONTH", Pattern::MonthName(Case::Upper)),
    ("Month", Pattern::MonthName(Case::Capitalized)),
    ("month", Pattern::MonthName(Case::Lower)),
    ("A.M.", Pattern::Meridiem { upper: true, dots: true }),
    ("P.M.", Pattern::Meridiem { upper: true, dots: true }),
    ("a.m.", Pattern::Meridiem { upper: false, dots: true }),
    ("p.m.", Pattern::Meridiem { upper: false, dots: true }),
    ("DAY", Pattern::DayName(Case::Upper)),
    ("Day", Pattern::DayName(Case::Capitalized)),
    ("day", Pattern::DayName(Case::Lower)),
    ("MON", Pattern::MonthAbbrev(Case::Upper)),
    ("Mon", Pattern::MonthAbbrev(Case::Capitalized)),
    ("mon", Pattern::MonthAbbrev(Case::Lower)),
    ("DY", Pattern::DayAbbrev(Case::Upper)),
    ("Dy", Pattern::DayAbbrev(Case::Capitalized)),
    ("dy", Pattern::DayAbbrev(Case::Lower)),
    ("AM", Pattern::Meridiem { upper: true, dots: false }),
    ("PM", Pattern::Meridiem { upper: true, dots: false }),
    ("am", Pattern::Meridiem { upper: false, dots: false }),
    ("pm", Pattern::Meridiem { upper: false, dots: false }),
    ("TZ", Pattern::Zone { upper: true }),
    ("tz", Pattern::Zone { upper: false }),
];

/// Single-letter patterns, tried last (case-insensitive).
const SINGLE: [(&str, Pattern); 5] = [
    ("OF", Pattern::Offset),
    ("Y", Pattern::Year1),
    ("D", Pattern::DayOfWeek),
    ("Q", Pattern::Quarter),
    ("J", Pattern::Julian),
];

fn parse(template: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            // Quoted text, with backslash escapes inside.
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            text.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => text.push(c),
                }
            }
            rest = &after[end.min(after.len())..];
            continue;
        }
        if let Some(after) = rest.strip_prefix('\\') {
            let mut chars = after.chars();
            if let Some(c) = chars.next() {
                text.push(c);
            }
            rest = chars.as_str();
            continue;
        }
        let (fill, body) = match rest.get(..2) {
            Some(p) if p.eq_ignore_ascii_case("FM") => (true, &rest[2..]),
            _ => (false, rest),
        };
        let found = NAMED
            .iter()
            .find(|(p, _)| body.starts_with(p))
            .or_else(|| NUMERIC.iter().chain(SINGLE.iter()).find(|(p, _)| prefix_ci(body, p)));
        match found {
            Some((p, pattern)) => {
                if !text.is_empty() {
                    out.push(Token::Text(std::mem::take(&mut text)));
                }
                let mut after = &body[p.len()..];
                let ordinal = match after.get(..2) {
                    Some("TH") => Some(true),
                    Some("th") => Some(false),
                    _ => None,
                };
                if ordinal.is_some() {
                    after = &after[2..];
                }
                out.push(Token::Field { pattern: *pattern, fill, ordinal });
                rest = after;
            }
            None => {
                let mut chars = rest.chars();
                if let Some(c) = chars.next() {
                    text.push(c);
                }
                rest = chars.as_str();
            }
        }
    }
    if !text.is_empty() {
        out.push(Token::Text(text));
    }
    out
}

fn prefix_ci(s: &str, p: &str) -> bool {
    s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

fn cased(name: &str, case: Case) -> String {
    match case {
        Case::Upper => name.to_uppercase(),
        Case::Lower => name.to_lowercase(),
        Case::Capitalized => name.to_string(),
    }
}

fn suffix(n: i64, upper: bool) -> &'static str {
    let s = match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    };
    match (upper, s) {
        (false, s) => s,
        (true, "st") => "ST",
        (true, "nd") => "ND",
        (true, "rd") => "RD",
        (true, _) => "TH",
    }
}

fn render(tokens: &[Token], t: &NaiveDateTime, zoned: bool, out: &mut String) {
    use std::fmt::Write;
    for token in tokens {
        let (pattern, fill, ordinal) = match token {
            Token::Text(s) => {
                out.push_str(s);
                continue;
            }
            Token::Field { pattern, fill, ordinal } => (*pattern, *fill, *ordinal),
        };
        let hour12 = match t.hour() % 12 {
            0 => 12,
            h => h,
        };
        let number = |n: i64, width: usize| -> Option<(i64, usize)> { Some((n, width)) };
        let micros = i64::from(t.nanosecond() / 1000);
        let value = match pattern {
            Pattern::Hour24 => number(t.hour().into(), 2),
            Pattern::Hour12 => number(hour12.into(), 2),
            Pattern::Minute => number(t.minute().into(), 2),
            Pattern::Second => number(t.second().into(), 2),
            Pattern::Millis => number(micros / 1000, 3),
            Pattern::Micros => number(micros, 6),
            Pattern::Fraction(n) => number(micros / 10i64.pow(6 - u32::from(n)), n.into()),
            Pattern::Year4 => number(t.year().into(), 4),
            Pattern::Year3 => number(i64::from(t.year()) % 1000, 3),
            Pattern::Year2 => number(i64::from(t.year()) % 100, 2),
            Pattern::Year1 => number(i64::from(t.year()) % 10, 1),
            Pattern::IsoYear => number(t.iso_week().year().into(), 4),
            Pattern::Month => number(t.month().into(), 2),
            Pattern::DayOfYear => number(t.ordinal().into(), 3),
            Pattern::DayOfMonth => number(t.day().into(), 2),
            Pattern::DayOfWeek => number(i64::from(t.weekday().num_days_from_sunday()) + 1, 1),
            Pattern::IsoDayOfWeek => number(t.weekday().number_from_monday().into(), 1),
            Pattern::IsoWeek => number(t.iso_week().week().into(), 2),
            Pattern::WeekOfYear => number(i64::from(t.ordinal0() / 7) + 1, 2),
            Pattern::Quarter => number(i64::from(t.month0() / 3) + 1, 1),
            Pattern::Century => {
                let y = i64::from(t.year());
                number(if y > 0 { (y - 1) / 100 + 1 } else { y / 100 - 1 }, 2)
            }
            Pattern::Julian => number(i64::from(t.date().num_days_from_ce()) + 1_721_425, 1),
            _ => None,
        };
        if let Some((n, width)) = value {
            if fill {
                let _ = write!(out, "{n}");
            } else {
                let _ = write!(out, "{n:0width$}");
            }
            if let Some(upper) = ordinal {
                out.push_str(suffix(n, upper));
            }
            continue;
        }
        let month = MONTHS[t.month0() as usize];
        let day = DAYS[t.weekday().num_days_from_sunday() as usize];
        let text = match pattern {
            // Full names are blank-padded to nine characters unless FM.
            Pattern::MonthName(c) if fill => cased(month, c),
            Pattern::MonthName(c) => format!("{:<9}", cased(month, c)),
            Pattern::DayName(c) if fill => cased(day, c),
            Pattern::DayName(c) => format!("{:<9}", cased(day, c)),
            Pattern::MonthAbbrev(c) => cased(&month[..3], c),
            Pattern::DayAbbrev(c) => cased(&day[..3], c),
            Pattern::Meridiem { upper, dots } => {
                let pm = t.hour() >= 12;
                let s = match (pm, dots) {
                    (false, false) => "am",
                    (true, false) => "pm",
                    (false, true) => "a.m.",
                    (true, true) => "p.m.",
                };
                if upper {
                    s.to_uppercase()
                } else {
                    s.to_string()
                }
            }
            Pattern::Zone { upper } if zoned => (if upper { "UTC" } else { "utc" }).to_string(),
            Pattern::Offset if zoned => "+00".to_string(),
            _ => String::new(),
        };
        out.push_str(&text);
    }
}

/// The `to_char` function (see the module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToChar {
    signature: Signature,
}

impl ToChar {
    pub fn new() -> Self {
        ToChar { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl Default for ToChar {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) | DataType::Null => Ok(DataType::Utf8),
            other => not_impl_err!("to_char of {other} is not supported (dates and timestamps are)"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let zoned = matches!(arrays[0].data_type(), DataType::Timestamp(_, Some(_)));
        let values = datafusion::arrow::compute::cast(&arrays[0], &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let templates = datafusion::arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
        let (Some(values), Some(templates)) = (
            values.as_any().downcast_ref::<TimestampMicrosecondArray>(),
            templates.as_any().downcast_ref::<StringArray>(),
        ) else {
            return exec_err!("to_char: unexpected argument types");
        };
        let mut parsed: Option<(String, Vec<Token>)> = None;
        let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
        let mut text = String::new();
        for i in 0..values.len() {
            if values.is_null(i) || templates.is_null(i) {
                out.append_null();
                continue;
            }
            let template = templates.value(i);
            if parsed.as_ref().is_none_or(|(t, _)| t != template) {
                parsed = Some((template.to_string(), parse(template)));
            }
            let Some(t) = DateTime::from_timestamp_micros(values.value(i)).map(|d| d.naive_utc()) else {
                return exec_err!("to_char: timestamp out of range");
            };
            text.clear();
            render(parsed.as_ref().map_or(&[][..], |(_, p)| p), &t, zoned, &mut text);
            out.append_value(&text);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(template: &str, t: &str) -> String {
        let t = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let mut out = String::new();
        render(&parse(template), &t, false, &mut out);
        out
    }

    #[test]
    fn postgres_templates() {
        let t = "2024-03-05 14:07:09.123456";
        assert_eq!(fmt("YYYY-MM-DD HH24:MI:SS", t), "2024-03-05 14:07:09");
        assert_eq!(fmt("YYYY-MM-DD\"T\"HH24:MI:SS.US", t), "2024-03-05T14:07:09.123456");
        assert_eq!(fmt("HH12:MI AM", t), "02:07 PM");
        assert_eq!(fmt("hh:mi pm", "2024-03-05 00:30:00"), "12:30 am");
        assert_eq!(fmt("Day, DD Month YYYY", t), "Tuesday  , 05 March     2024");
        assert_eq!(fmt("FMDay, FMDDth FMMonth", t), "Tuesday, 5th March");
        assert_eq!(fmt("Mon DY dy MON", t), "Mar TUE tue MAR");
        assert_eq!(fmt("YYYY\"Q\"Q WW IW D ID DDD", t), "2024Q1 10 10 3 2 065");
        assert_eq!(fmt("MS FF3 FF1", t), "123 123 1");
        assert_eq!(fmt("CC YY Y J", t), "21 24 4 2460375");
        assert_eq!(fmt("\"at\" yyyy-mm \\Q", t), "at 2024-03 Q");
        assert_eq!(fmt("DDTH DDth", "2024-03-22 00:00:00"), "22ND 22nd");
        assert_eq!(fmt("FMDDth", "2024-03-11 00:00:00"), "11th");
    }
}
