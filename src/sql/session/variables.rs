//! A session's settings from SQL and from the client: `SET`, `SHOW`, and the parameters of
//! the startup packet (libpq's `options` included).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Ident, Set, Value};

use super::Session;
use crate::error::Result;
use crate::sql::result::{text_schema, QueryResult};
use crate::sync::UnpoisonedRw;

impl Session {
    /// Applies what the client sent at startup: its user, and settings such as `TimeZone`,
    /// `DateStyle`, `application_name`, `extra_float_digits` (JDBC sends these). Unknown or
    /// invalid values are ignored, as a startup packet cannot fail a statement.
    pub fn apply_startup(&self, user: Option<&str>, parameters: &HashMap<String, String>) {
        if let Some(u) = user {
            let known = self.engine.users().get(u).is_some();
            self.login_role.store(known, std::sync::atomic::Ordering::Relaxed);
        }
        let mut s = self.settings.write_locked();
        if let Some(u) = user {
            s.set_session_user(u);
            let superuser = crate::sql::access::identity_of(self.engine.users(), Some(u.to_string()), true).superuser;
            s.set_superuser(superuser || !self.logged_in_as_role());
        }
        // `options` carries `-c name=value` (or `--name=value`) pairs, as libpq's PGOPTIONS.
        let from_options = parameters.get("options").map(|o| startup_options(o)).unwrap_or_default();
        let direct = parameters
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "options" | "replication"))
            .map(|(k, v)| (k.clone(), v.clone()));
        for (k, v) in direct.chain(from_options) {
            if let Err(e) = s.set(&k, &v) {
                tracing::debug!("startup parameter {k}={v:?} ignored: {e}");
            }
        }
    }

    pub(super) fn set(&self, set: &Set) -> Result<QueryResult> {
        let mut s = self.settings.write_locked();
        let mut assign = |name: &str, values: &[SqlExpr]| -> Result<()> {
            let value = values.iter().map(setting_value).collect::<Vec<_>>().join(", ");
            if value.eq_ignore_ascii_case("default") {
                s.reset(Some(name))
            } else {
                s.set(name, &value)
            }
        };
        match set {
            Set::SingleAssignment { variable, values, .. } => assign(&variable.to_string(), values)?,
            Set::ParenthesizedAssignments { variables, values } => {
                for (v, e) in variables.iter().zip(values) {
                    assign(&v.to_string(), std::slice::from_ref(e))?;
                }
            }
            Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    assign(&a.name.to_string(), std::slice::from_ref(&a.value))?;
                }
            }
            Set::SetTimeZone { value, .. } => assign("timezone", std::slice::from_ref(value))?,
            Set::SetNames { charset_name, .. } => s.set("client_encoding", &charset_name.value)?,
            Set::SetNamesDefault {} => s.reset(Some("client_encoding"))?,
            // Transaction modes, roles and session authorization are accepted: Headwater has
            // one isolation level (each statement sees the last committed state) and no roles yet.
            _ => {}
        }
        Ok(QueryResult::command("SET"))
    }

    pub(super) fn show(&self, variable: &[Ident]) -> Result<QueryResult> {
        let name = variable.iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(" ");
        let s = self.settings.read_locked();
        if name.eq_ignore_ascii_case("all") {
            let rows = s.all().into_iter().map(|(n, v, d)| vec![n, v, d]).collect();
            return QueryResult::text_rows(&["name", "setting", "description"], rows);
        }
        let value = s.get(&name)?;
        let schema = show_schema(variable);
        let column = schema.field(0).name().clone();
        QueryResult::text_rows(&[column.as_str()], vec![vec![value]])
    }
}

/// The `name=value` pairs of a startup `options` string: `-c a=b -c c=d`, `--a=b`, with
/// `\ ` escaping a space inside a value.
fn startup_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let pair = match w.as_str() {
            "-c" => it.next(),
            _ => w.strip_prefix("--").or_else(|| w.strip_prefix("-c")).map(str::to_string),
        };
        if let Some((k, v)) = pair.as_deref().and_then(|p| p.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_string()));
        }
    }
    out
}

/// The column SHOW returns: named after the setting, like Postgres.
pub(super) fn show_schema(variable: &[Ident]) -> SchemaRef {
    let name = variable.iter().map(|i| i.value.to_ascii_lowercase()).collect::<Vec<_>>().join(" ");
    match name.as_str() {
        "all" => text_schema(&["name", "setting", "description"]),
        "transaction isolation level" => text_schema(&["transaction_isolation"]),
        "time zone" => text_schema(&["TimeZone"]),
        _ => Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)])),
    }
}

fn setting_value(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            Value::Number(n, _) => n.to_string(),
            Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
            other => other.to_string(),
        },
        SqlExpr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}
