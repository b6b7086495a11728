//! `COPY ... TO STDOUT` and `COPY ... FROM STDIN`, in Postgres's text and CSV formats.
//!
//! - `TO STDOUT` runs `SELECT cols FROM table` (or the query) and the wire writes each row
//!   as one line ([`CopyFormat::line`]) from the same text values a query would send.
//! - `FROM STDIN` names the table and columns; the wire collects the client's data and
//!   [`copy_in`] reads it ([`CopyFormat::parse`]), casts each column's text to the column's
//!   type and inserts every row in one atomic write, as `INSERT` does (23505, 22P02, 22001
//!   and the rest as for INSERT). A column left out of the list is NULL.
//!
//! Files and programs (`COPY t TO '/tmp/x'`) are the server's file system: refused (0A000),
//! use `STDIN`/`STDOUT` (psql's `\copy`). `FORMAT binary` is refused too.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BinaryArray, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, Statement,
};

use super::{QueryResult, Session};
use crate::catalog::{Namespace, Relation};
use crate::error::{Error, Result};

/// The text layout of COPY data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: char,
    /// How NULL is written (`\N` in text, the empty string in CSV).
    pub null: String,
    /// CSV: a first line of column names.
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

impl Default for CopyFormat {
    fn default() -> Self {
        CopyFormat { csv: false, delimiter: '\t', null: "\\N".into(), header: false, quote: '"', escape: '"' }
    }
}

/// A `COPY ... FROM STDIN` waiting for its data.
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub table: String,
    /// The columns the data has, in order.
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

fn unsupported(what: &str) -> Error {
    Error::FeatureNotSupported(what.to_string())
}

fn format_of(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut f = CopyFormat::default();
    let mut null = None;
    let mut delimiter = None;
    for o in options {
        match o {
            CopyOption::Format(name) => match name.value.to_lowercase().as_str() {
                "text" => f.csv = false,
                "csv" => f.csv = true,
                "binary" => return Err(unsupported("COPY in binary format (use text or csv)")),
                other => return Err(Error::InvalidParameterValue(format!("COPY format \"{other}\" not recognized"))),
            },
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => f.header = *h,
            CopyOption::Quote(c) => f.quote = *c,
            CopyOption::Escape(c) => f.escape = *c,
            CopyOption::Encoding(e) if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
            other => return Err(unsupported(&format!("COPY option {other}"))),
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => return Err(unsupported("COPY in binary format (use text or csv)")),
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Csv(csv) => {
                f.csv = true;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => f.header = true,
                        CopyLegacyCsvOption::Quote(q) => f.quote = *q,
                        CopyLegacyCsvOption::Escape(e) => f.escape = *e,
                        other => return Err(unsupported(&format!("COPY option {other}"))),
                    }
                }
            }
            other => return Err(unsupported(&format!("COPY option {other}"))),
        }
    }
    if f.csv {
        f.delimiter = ',';
        f.null = String::new();
    }
    if let Some(d) = delimiter {
        f.delimiter = d;
    }
    if let Some(n) = null {
        f.null = n;
    }
    if f.header && !f.csv {
        return Err(unsupported("COPY HEADER in text format (Postgres 15+; use CSV)"));
    }
    Ok(f)
}

fn name_of(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// `COPY`: the rows to send (`TO STDOUT`) or the target waiting for data (`FROM STDIN`).
pub(super) async fn copy(s: &Session, stmt: &Statement) -> Result<QueryResult> {
    let Statement::Copy { source, to, target, options, legacy_options, values } = stmt else {
        return Err(Error::Internal("not a COPY".into()));
    };
    let format = format_of(options, legacy_options)?;
    match (target, *to) {
        (CopyTarget::Stdout, true) => {
            let query = match source {
                CopySource::Query(q) => q.to_string(),
                CopySource::Table { table_name, columns } if columns.is_empty() => {
                    format!("SELECT * FROM {table_name}")
                }
                CopySource::Table { table_name, columns } => {
                    let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
                    format!("SELECT {} FROM {table_name}", cols.join(", "))
                }
            };
            let inner = match s.engine().parser().parse(&query)?.pop() {
                Some(super::parser::HwStatement::Sql(inner)) => *inner,
                _ => return Err(Error::Internal("COPY's query did not parse".into())),
            };
            match Box::pin(s.execute_prepared(&inner, None)).await? {
                QueryResult::Rows { schema, stream } => Ok(QueryResult::CopyOut { format, schema, stream }),
                _ => Err(Error::Internal("COPY's query gave no rows".into())),
            }
        }
        (CopyTarget::Stdin, false) => {
            let CopySource::Table { table_name, columns } = source else {
                return Err(Error::Syntax("COPY FROM needs a table, not a query".into()));
            };
            let table = super::ddl::relation_name(table_name)?;
            let schema = target_schema(s, &table)?;
            let columns: Vec<String> = if columns.is_empty() {
                schema.fields().iter().map(|f| f.name().clone()).collect()
            } else {
                columns.iter().map(name_of).collect()
            };
            for c in &columns {
                if schema.index_of(c).is_err() {
                    return Err(Error::UndefinedColumn(format!(
                        "column \"{c}\" of relation \"{table}\" does not exist"
                    )));
                }
            }
            super::access::require_insert(s, &table)?;
            let copy = CopyIn { table, columns, format };
            if !values.is_empty() {
                // Data written inline after the statement (a script run as one query).
                let text: String =
                    values.iter().map(|v| v.clone().unwrap_or_else(|| "\\N".into())).collect::<Vec<_>>().join("\t");
                let n = copy_in(s, &copy, text.as_bytes()).await?;
                return Ok(QueryResult::Command { tag: "COPY".into(), rows: Some(n) });
            }
            Ok(QueryResult::CopyIn(copy))
        }
        (CopyTarget::File { .. } | CopyTarget::Program { .. }, _) => {
            Err(unsupported("COPY to or from a server file or program (use STDIN / STDOUT, e.g. psql's \\copy)"))
        }
        (_, true) => Err(Error::Syntax("COPY TO needs STDOUT".into())),
        (_, false) => Err(Error::Syntax("COPY FROM needs STDIN".into())),
    }
}

/// The schema of the local table `name`; captured tables and views refuse writes.
fn target_schema(s: &Session, name: &str) -> Result<SchemaRef> {
    let object = s.engine().catalog().get(Namespace::Relation, name);
    if let Some(source) =
        object.as_ref().and_then(|o| o.entry.depends_on.iter().find_map(|d| d.strip_prefix("source:")))
    {
        return Err(Error::WrongObjectType {
            name: format!("{name} (captured by source {source})"),
            expected: "local table: a captured table changes only with its upstream table",
        });
    }
    match object.and_then(|o| o.relation) {
        Some(Relation::Table { state, .. }) => Ok(state.schema()),
        Some(_) => Err(Error::WrongObjectType { name: name.to_string(), expected: "table (views are read-only)" }),
        None => Err(Error::UndefinedTable(name.to_string())),
    }
}

/// Reads `data` (the whole of the client's COPY data) into `copy.table`; the rows written.
pub(super) async fn copy_in(s: &Session, copy: &CopyIn, data: &[u8]) -> Result<usize> {
    let text = std::str::from_utf8(data).map_err(|e| Error::DataException {
        sqlstate: "22021",
        message: format!("invalid byte sequence for encoding \"UTF8\" in COPY data at byte {}", e.valid_up_to()),
    })?;
    let rows = copy.format.parse(text, copy.columns.len())?;
    let schema = target_schema(s, &copy.table)?;
    let n = rows.len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let Some(at) = copy.columns.iter().position(|c| c == field.name()) else {
            columns.push(new_null_array(field.data_type(), n));
            continue;
        };
        let texts: StringArray = rows.iter().map(|r| r[at].as_deref()).collect();
        columns.push(from_text(&texts, field.data_type(), field.name(), &rows, at)?);
    }
    let batch =
        RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(schema.fields().clone())), columns)?;
    super::dml::insert_rows(s, &copy.table, batch).await
}

/// A column of text values as `to` (22P02 naming the line for a value that does not parse).
fn from_text(
    texts: &StringArray,
    to: &DataType,
    column: &str,
    rows: &[Vec<Option<String>>],
    at: usize,
) -> Result<ArrayRef> {
    if matches!(to, DataType::Utf8) {
        return Ok(Arc::new(texts.clone()));
    }
    if matches!(to, DataType::Binary) {
        let mut out = Vec::with_capacity(texts.len());
        for (i, v) in texts.iter().enumerate() {
            out.push(match v {
                None => None,
                Some(t) => Some(crate::types::bytea_in(t).ok_or_else(|| bad_value(column, "bytea", i, t))?),
            });
        }
        return Ok(Arc::new(out.into_iter().collect::<BinaryArray>()));
    }
    let strict = CastOptions { safe: false, ..Default::default() };
    cast_with_options(texts, to, &strict).map_err(|_| {
        // Find the first value that does not parse, for the message.
        let loose = CastOptions { safe: true, ..Default::default() };
        let converted = cast_with_options(texts, to, &loose).ok();
        let line = (0..texts.len())
            .find(|&i| !texts.is_null(i) && converted.as_ref().is_none_or(|c| c.is_null(i)))
            .unwrap_or(0);
        let value = rows.get(line).and_then(|r| r[at].clone()).unwrap_or_default();
        bad_value(column, &super::dml::pg_type_name(to), line, &value)
    })
}

fn bad_value(column: &str, type_name: &str, line: usize, value: &str) -> Error {
    Error::DataException {
        sqlstate: "22P02",
        message: format!(
            "invalid input syntax for type {type_name}: \"{value}\" (COPY, line {}, column {column})",
            line + 1
        ),
    }
}

impl CopyFormat {
    /// One output line of `values` (text values as a query sends them; `None` is NULL).
    pub fn line(&self, values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.iter().map(|v| v.map_or(2, <[u8]>::len) + 1).sum());
        let mut delimiter = [0u8; 4];
        let delimiter = self.delimiter.encode_utf8(&mut delimiter).as_bytes();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(delimiter);
            }
            match v {
                None => out.extend_from_slice(self.null.as_bytes()),
                Some(v) if self.csv => self.csv_value(v, delimiter, &mut out),
                Some(v) => {
                    for &b in *v {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b if delimiter == [b] => {
                                out.push(b'\\');
                                out.push(b);
                            }
                            b => out.push(b),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
        out
    }

    fn csv_value(&self, v: &[u8], delimiter: &[u8], out: &mut Vec<u8>) {
        let quote = self.quote as u8;
        let needs = v.is_empty() && !self.null.is_empty()
            || v == self.null.as_bytes()
            || v.windows(delimiter.len()).any(|w| w == delimiter)
            || v.iter().any(|&b| b == quote || b == b'\n' || b == b'\r' || b == self.escape as u8);
        // The empty string is quoted so it is not read back as NULL.
        if !needs && !v.is_empty() {
            out.extend_from_slice(v);
            return;
        }
        out.push(quote);
        for &b in v {
            if b == quote || b == self.escape as u8 {
                out.push(self.escape as u8);
            }
            out.push(b);
        }
        out.push(quote);
    }

    /// The header line of `names` (CSV with HEADER).
    pub fn header_line(&self, names: &[&str]) -> Option<Vec<u8>> {
        let values: Vec<Option<&[u8]>> = names.iter().map(|n| Some(n.as_bytes())).collect();
        self.header.then(|| self.line(&values))
    }

    /// Rows of `width` text values (`None`: NULL) from COPY data.
    pub fn parse(&self, text: &str, width: usize) -> Result<Vec<Vec<Option<String>>>> {
        let mut rows = if self.csv { self.parse_csv(text)? } else { self.parse_text(text)? };
        if self.header && !rows.is_empty() {
            rows.remove(0);
        }
        for (i, r) in rows.iter().enumerate() {
            if r.len() != width {
                let what =
                    if r.len() < width { "missing data for a column" } else { "extra data after last expected column" };
                return Err(Error::DataException {
                    sqlstate: "22P04",
                    message: format!("{what} (COPY, line {})", i + 1 + usize::from(self.header)),
                });
            }
        }
        Ok(rows)
    }

    fn parse_text(&self, text: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line == "\\." {
                break;
            }
            let mut row = Vec::new();
            for raw in line.split(self.delimiter) {
                if raw == self.null {
                    row.push(None);
                } else {
                    row.push(Some(unescape(raw)?));
                }
            }
            rows.push(row);
        }
        // The data's final newline ends the last line; it does not start another.
        if rows.last().is_some_and(|r| r.len() == 1 && r[0].as_deref() == Some("")) && text.ends_with('\n') {
            rows.pop();
        }
        Ok(rows)
    }

    fn parse_csv(&self, text: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        let mut row: Vec<Option<String>> = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut chars = text.chars().peekable();
        let mut at_line_start = true;
        while let Some(c) = chars.next() {
            if at_line_start && c == '\\' && chars.peek() == Some(&'.') {
                let rest: String = chars.clone().take(2).collect();
                if rest == "." || rest == ".\n" || rest.starts_with(".\r") {
                    break;
                }
            }
            at_line_start = false;
            if in_quotes {
                if c == self.escape && chars.peek() == Some(&self.quote) && self.escape != self.quote {
                    field.push(self.quote);
                    chars.next();
                } else if c == self.quote {
                    if self.escape == self.quote && chars.peek() == Some(&self.quote) {
                        field.push(self.quote);
                        chars.next();
                    } else {
                        in_quotes = false;
                    }
                } else {
                    field.push(c);
                }
                continue;
            }
            if c == self.quote {
                in_quotes = true;
                quoted = true;
            } else if c == self.delimiter {
                row.push(self.csv_field(std::mem::take(&mut field), quoted));
                quoted = false;
            } else if c == '\n' || c == '\r' {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                row.push(self.csv_field(std::mem::take(&mut field), quoted));
                quoted = false;
                rows.push(std::mem::take(&mut row));
                at_line_start = true;
            } else {
                field.push(c);
            }
        }
        if in_quotes {
            return Err(Error::DataException { sqlstate: "22P04", message: "unterminated CSV quoted field".into() });
        }
        if !field.is_empty() || quoted || !row.is_empty() {
            row.push(self.csv_field(field, quoted));
            rows.push(row);
        }
        Ok(rows)
    }

    fn csv_field(&self, value: String, quoted: bool) -> Option<String> {
        (quoted || value != self.null).then_some(value)
    }
}

/// A text-format value with its backslash escapes read.
fn unescape(raw: &str) -> Result<String> {
    if !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut hex = String::new();
                while hex.len() < 2 && chars.peek().is_some_and(char::is_ascii_hexdigit) {
                    hex.extend(chars.next());
                }
                let v = u8::from_str_radix(&hex, 16).map_err(|_| Error::DataException {
                    sqlstate: "22P02",
                    message: "invalid \\x escape in COPY data".into(),
                })?;
                out.push(char::from(v));
            }
            Some(d @ '0'..='7') => {
                let mut oct = d.to_string();
                while oct.len() < 3 && chars.peek().is_some_and(|c| ('0'..='7').contains(c)) {
                    oct.extend(chars.next());
                }
                out.push(char::from(u8::from_str_radix(&oct, 8).unwrap_or(0)));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_escape_and_read_back() {
        let f = CopyFormat::default();
        let line = f.line(&[Some(b"a\tb\\c\nd"), None, Some(b"")]);
        assert_eq!(line, b"a\\tb\\\\c\\nd\t\\N\t\n");
        let rows = f.parse(std::str::from_utf8(&line).unwrap(), 3).unwrap();
        assert_eq!(rows, vec![vec![Some("a\tb\\c\nd".to_string()), None, Some(String::new())]]);
        assert_eq!(f.parse("1\tx\n2\ty\n\\.\n", 2).unwrap().len(), 2);
        assert_eq!(f.parse("1\n", 2).unwrap_err().sqlstate(), "22P04");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let f = CopyFormat { csv: true, delimiter: ',', null: String::new(), ..Default::default() };
        let line = f.line(&[Some(b"a,b"), None, Some(b""), Some(b"say \"hi\""), Some(b"plain")]);
        assert_eq!(std::str::from_utf8(&line).unwrap(), "\"a,b\",,\"\",\"say \"\"hi\"\"\",plain\n");
        let rows = f.parse(std::str::from_utf8(&line).unwrap(), 5).unwrap();
        assert_eq!(
            rows,
            vec![vec![Some("a,b".into()), None, Some(String::new()), Some("say \"hi\"".into()), Some("plain".into())]]
        );
        let multi = f.parse("1,\"two\nlines\"\r\n2,x\n", 2).unwrap();
        assert_eq!(multi[0][1].as_deref(), Some("two\nlines"));
        assert_eq!(multi.len(), 2);
    }
}
