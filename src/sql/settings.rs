//! Session settings: what `SET`, `SHOW`, `RESET` and `current_setting()` read and write.
//!
//! Names are case-insensitive. The defaults are what a Postgres 16 server reports, so drivers
//! that probe them (JDBC, psycopg, SQLAlchemy) see familiar values, plus Headwater's own
//! (`real_time_recency`, `real_time_recency_timeout`). Unknown names are refused like
//! Postgres does (42704), except dotted custom names (`app.x`), which Postgres also allows.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The Postgres version Headwater speaks; clients parse it, so it stays a plain `16.x`.
pub const SERVER_VERSION: &str = "16.6";
/// `server_version_num` for [`SERVER_VERSION`].
pub const SERVER_VERSION_NUM: &str = "160006";

/// (name, default value, description) of every known setting.
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("application_name", "", "Name of the application, reported in logs."),
    ("bytea_output", "hex", "Output format of bytea values."),
    ("client_encoding", "UTF8", "The client's character set (only UTF8 is supported)."),
    ("client_min_messages", "notice", "Lowest message level sent to the client."),
    ("datestyle", "ISO, MDY", "Display format of dates."),
    ("default_transaction_isolation", "read committed", "Isolation level of new transactions."),
    ("default_transaction_read_only", "off", "Whether new transactions are read-only."),
    ("default_transaction_deferrable", "off", "Accepted for compatibility."),
    ("extra_float_digits", "1", "Extra digits for float output."),
    ("idle_in_transaction_session_timeout", "0", "Accepted for compatibility."),
    ("integer_datetimes", "on", "Datetimes are 64-bit integers."),
    ("intervalstyle", "postgres", "Display format of intervals."),
    ("is_superuser", "on", "Whether the session user is a superuser."),
    ("jit", "off", "Accepted for compatibility (asyncpg turns it off)."),
    ("lock_timeout", "0", "Accepted for compatibility; Headwater takes no locks."),
    ("max_identifier_length", "63", "Longest identifier."),
    ("real_time_recency", "off", "SELECT waits until sources have applied upstream commits made before it began."),
    ("real_time_recency_timeout", "10s", "Longest wait of a real_time_recency SELECT."),
    ("row_security", "on", "Accepted for compatibility; Headwater has no row security."),
    ("search_path", "\"$user\", public", "Schemas searched for unqualified names."),
    ("server_encoding", "UTF8", "The server's character set."),
    ("session_authorization", "headwater", "The user this session logged in as."),
    ("server_version", SERVER_VERSION, "The Postgres version Headwater is compatible with."),
    ("server_version_num", SERVER_VERSION_NUM, "server_version as a number."),
    ("standard_conforming_strings", "on", "Backslashes in '' strings are literal."),
    (
        "statement_timeout",
        "0",
        "Longest a statement may run, in ms or with a unit ('5s'); 0 means no limit. Longer ones stop with 57014.",
    ),
    (
        "synchronous_commit",
        "on",
        "on: DML returns once durable; off: within --checkpoint-interval (DDL is always durable).",
    ),
    ("timezone", "UTC", "Time zone for displaying and interpreting timestamps."),
    ("transaction_isolation", "read committed", "Isolation level of the current transaction."),
    ("transaction_read_only", "off", "Whether the current transaction is read-only."),
    ("work_mem", "4MB", "Accepted for compatibility."),
];

/// One session's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { values: DEFAULTS.iter().map(|(k, v, _)| (k.to_string(), v.to_string())).collect() }
    }
}

/// Canonical name of a setting, accepting the spellings `SHOW` allows.
fn canonical(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    match n.as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        "names" => "client_encoding".into(),
        _ => n,
    }
}

impl Settings {
    /// The value of a setting, or 42704 if there is no such setting.
    pub fn get(&self, name: &str) -> Result<String> {
        let n = canonical(name);
        self.values.get(&n).cloned().ok_or_else(|| unknown(&n))
    }

    /// Sets a setting after checking its value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let n = canonical(name);
        let is_known = DEFAULTS.iter().any(|(k, _, _)| *k == n);
        if !is_known && !n.contains('.') {
            return Err(unknown(&n));
        }
        let value = match n.as_str() {
            "real_time_recency" | "transaction_read_only" | "default_transaction_read_only" => {
                parse_bool(&n, value)?.to_string()
            }
            "timezone" => match time_zone(value)? {
                Some(tz) => tz,
                None => return self.reset(Some("timezone")),
            },
            "extra_float_digits" => match value.trim().parse::<i8>() {
                Ok(n) if (-15..=3).contains(&n) => n.to_string(),
                _ => {
                    return Err(Error::InvalidParameterValue(format!(
                        "{value} is outside the valid range for parameter \"extra_float_digits\" (-15 .. 3)"
                    )))
                }
            },
            "client_encoding" => {
                let v = value.to_ascii_uppercase().replace('-', "");
                if v != "UTF8" && v != "UNICODE" {
                    return Err(Error::InvalidParameterValue(format!(
                        "client_encoding \"{value}\" is not supported: Headwater speaks UTF8 only"
                    )));
                }
                "UTF8".to_string()
            }
            "real_time_recency_timeout" | "statement_timeout" => {
                parse_duration(value, DurationUnit::Milliseconds).map_err(|_| {
                    Error::InvalidParameterValue(format!(
                        "invalid value for parameter \"{n}\": \"{value}\" (expected a duration like '10s' or '500ms')"
                    ))
                })?;
                value.to_string()
            }
            "server_version"
            | "server_version_num"
            | "server_encoding"
            | "integer_datetimes"
            | "is_superuser"
            | "max_identifier_length"
            | "session_authorization" => {
                return Err(Error::InvalidParameterValue(format!("parameter \"{n}\" cannot be changed")))
            }
            _ => value.to_string(),
        };
        self.values.insert(n, value);
        Ok(())
    }

    /// Records whether the session's user is a superuser (`SHOW is_superuser`), at login.
    pub fn set_superuser(&mut self, superuser: bool) {
        self.values.insert("is_superuser".into(), if superuser { "on" } else { "off" }.into());
    }

    /// Records the user the session logged in as (`session_user`, `SHOW session_authorization`).
    pub fn set_session_user(&mut self, user: &str) {
        self.values.insert("session_authorization".into(), user.to_string());
    }

    /// Restores a setting's default (or all, for `None`).
    pub fn reset(&mut self, name: Option<&str>) -> Result<()> {
        match name {
            None => {
                // RESET ALL (and DISCARD ALL) keep who the session is.
                let user = self.values.get("session_authorization").cloned();
                let superuser = self.values.get("is_superuser").cloned();
                *self = Settings::default();
                if let Some(u) = user {
                    self.set_session_user(&u);
                }
                if let Some(v) = superuser {
                    self.values.insert("is_superuser".into(), v);
                }
            }
            Some(name) => {
                let n = canonical(name);
                match DEFAULTS.iter().find(|(k, _, _)| *k == n) {
                    Some((k, v, _)) => {
                        self.values.insert(k.to_string(), v.to_string());
                    }
                    None if n.contains('.') => {
                        self.values.remove(&n);
                    }
                    None => return Err(unknown(&n)),
                }
            }
        }
        Ok(())
    }

    /// (name, value, description) of every setting, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String, String)> {
        self.values
            .iter()
            .map(|(k, v)| {
                let desc = DEFAULTS.iter().find(|(n, _, _)| n == k).map_or("", |d| d.2);
                (k.clone(), v.clone(), desc.to_string())
            })
            .collect()
    }

    /// False when `synchronous_commit` is `off`: DML then returns before its checkpoint.
    pub fn synchronous_commit(&self) -> bool {
        !matches!(
            self.get("synchronous_commit").unwrap_or_default().to_ascii_lowercase().as_str(),
            "off" | "false" | "0"
        )
    }

    /// The session's `statement_timeout` (`None`: no limit).
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        self.values
            .get("statement_timeout")
            .and_then(|v| parse_duration(v, DurationUnit::Milliseconds).ok())
            .filter(|d| !d.is_zero())
    }

    /// Whether `real_time_recency` is on.
    pub fn real_time_recency(&self) -> bool {
        self.values.get("real_time_recency").is_some_and(|v| v == "on")
    }
}

/// A `SET TIME ZONE` value as a zone name arrow understands, or `None` for `LOCAL`/`DEFAULT`
/// (the server's zone, UTC). Accepts IANA names in any case (`asia/shanghai`), `UTC`/`GMT`,
/// ISO offsets (`+08:00`) and a number of hours (`SET TIME ZONE 8`, `-3.5`), like Postgres
/// except that `'+08:00'` is read as ISO (east of Greenwich), not POSIX.
pub fn time_zone(value: &str) -> Result<Option<String>> {
    use std::str::FromStr;
    let v = value.trim().trim_matches('\'');
    let bad = || {
        Error::InvalidParameterValue(format!(
            "invalid value for parameter \"TimeZone\": \"{value}\" (expected a zone name like 'UTC' or \
             'Europe/Berlin', an offset like '+08:00', or a number of hours)"
        ))
    };
    if v.eq_ignore_ascii_case("local") || v.eq_ignore_ascii_case("default") {
        return Ok(None);
    }
    if v.eq_ignore_ascii_case("utc") || v.eq_ignore_ascii_case("gmt") || v.eq_ignore_ascii_case("z") {
        return Ok(Some("UTC".to_string()));
    }
    if let Ok(hours) = v.parse::<f64>() {
        if !(-15.0..=15.0).contains(&hours) {
            return Err(bad());
        }
        let minutes = (hours * 60.0).round() as i64;
        let sign = if minutes < 0 { '-' } else { '+' };
        return Ok(Some(format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)));
    }
    if v.starts_with(['+', '-']) {
        return datafusion::arrow::array::timezone::Tz::from_str(v).map(|_| Some(v.to_string())).map_err(|_| bad());
    }
    chrono_tz::Tz::from_str_insensitive(v).map(|tz| Some(tz.name().to_string())).map_err(|_| bad())
}

fn unknown(name: &str) -> Error {
    Error::undefined("configuration parameter", name)
}

fn parse_bool(name: &str, v: &str) -> Result<&'static str> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" => Ok("on"),
        "off" | "false" | "no" | "0" | "f" => Ok("off"),
        _ => Err(Error::InvalidParameterValue(format!("parameter \"{name}\" requires a Boolean value, got \"{v}\""))),
    }
}

/// The unit of a duration written as a bare number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    /// Postgres's time settings (`statement_timeout = 500`).
    Milliseconds,
    /// The command line (`--checkpoint-interval 1.5`).
    Seconds,
}

/// The one duration parser: a number (fractions allowed) and a unit as Postgres's time
/// settings take them, `us`, `ms`, `s`, `min`, `h` or `d` (also `sec`, and `m` for minutes as
/// the command line always accepted), with or without a space between; a bare number is in
/// `bare` units. Negative, non-finite and unknown units are refused with a message.
pub fn parse_duration(text: &str, bare: DurationUnit) -> std::result::Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| format!("not a duration: {text:?} (try 250ms, 10s, 2min)"))?;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "" if bare == DurationUnit::Milliseconds => n / 1e3,
        "" => n,
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (use us, ms, s, min, h or d)")),
    };
    std::time::Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_reset() {
        let mut s = Settings::default();
        assert_eq!(s.get("TimeZone").unwrap(), "UTC");
        s.set("real_time_recency", "true").unwrap();
        assert!(s.real_time_recency());
        assert_eq!(s.set("real_time_recency", "maybe").unwrap_err().sqlstate(), "22023");
        assert_eq!(s.set("no_such_thing", "1").unwrap_err().sqlstate(), "42704");
        s.set("myapp.flag", "x").unwrap();
        assert_eq!(s.get("myapp.flag").unwrap(), "x");
        s.reset(Some("real_time_recency")).unwrap();
        assert!(!s.real_time_recency());
        assert_eq!(s.get("transaction isolation level").unwrap(), "read committed");
        s.set("TimeZone", "asia/shanghai").unwrap();
        assert_eq!(s.get("timezone").unwrap(), "Asia/Shanghai");
        s.set("timezone", "-3.5").unwrap();
        assert_eq!(s.get("timezone").unwrap(), "-03:30");
        s.set("timezone", "LOCAL").unwrap();
        assert_eq!(s.get("timezone").unwrap(), "UTC");
        assert_eq!(s.set("timezone", "Mars/Olympus").unwrap_err().sqlstate(), "22023");
        assert_eq!(parse_duration("1.5s", DurationUnit::Milliseconds), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(parse_duration("250", DurationUnit::Milliseconds), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(parse_duration("2 min", DurationUnit::Milliseconds), Ok(std::time::Duration::from_secs(120)));
        assert_eq!(parse_duration("1d", DurationUnit::Seconds), Ok(std::time::Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5", DurationUnit::Seconds), Ok(std::time::Duration::from_millis(1500)));
        assert!(parse_duration("-1", DurationUnit::Milliseconds).is_err());
        assert!(parse_duration("1 parsec", DurationUnit::Seconds).is_err());
    }
}
