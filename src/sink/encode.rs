//! Rows to Kafka messages: the JSON encoding of every SQL type and the two envelopes.
//!
//! - `ENVELOPE UPSERT`: one message per changed key and commit; the value is the row's new
//!   contents as a JSON object, or null (a tombstone) when the key's row was deleted.
//! - `ENVELOPE DEBEZIUM`: `{"before", "after", "op", "source", "ts_ms"}` with `op` `r`
//!   (snapshot), `c`, `u` or `d`; an update of a key is one `u` message.
//!
//! The message key is the JSON object of the KEY columns (null for a keyless Debezium sink).
//! Types: integers and floats are JSON numbers (NaN and ±Infinity as strings), booleans are
//! booleans, DECIMAL is a string (exact) or a number (`DECIMAL_FORMAT = 'number'`), dates and
//! timestamps are ISO-8601 strings (`timestamptz` with its offset), bytes are base64 strings,
//! everything else is the text Postgres clients see. `docs/sinks.md` has the table.

use std::collections::HashMap;
use std::fmt::Write;

use base64::Engine as _;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, LargeBinaryArray, LargeStringArray, StringArray,
    StringViewArray,
};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::change::{ChangeBatch, CommitOrigin};
use crate::error::{Error, Result};

/// How a sink wraps each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    Upsert,
    Debezium,
}

/// How DECIMAL values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalFormat {
    /// A JSON string: exact for every precision.
    String,
    /// A JSON number: what most consumers want, exact only if they parse it as a decimal.
    Number,
}

/// One Kafka message; `None` value is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Encodes one relation's rows and changes for one sink.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub envelope: Envelope,
    pub decimal: DecimalFormat,
    /// Column indexes of the message key (`None`: keyless).
    pub key: Option<Vec<usize>>,
    pub schema: SchemaRef,
    /// The relation's name (Debezium `source.table`).
    pub relation: String,
}

/// Reads the values of one batch's columns as JSON.
struct Columns<'a> {
    arrays: &'a [ArrayRef],
    formatters: Vec<ArrayFormatter<'a>>,
    names: Vec<String>,
    decimal: DecimalFormat,
}

impl<'a> Columns<'a> {
    fn new(batch: &'a RecordBatch, options: &'a FormatOptions<'a>, decimal: DecimalFormat) -> Result<Self> {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let names = batch.schema().fields().iter().map(|f| json_string(f.name())).collect();
        Ok(Columns { arrays: batch.columns(), formatters, names, decimal })
    }

    /// `{"a": 1, "b": "x"}` of `columns` at `row`.
    fn object(&self, row: usize, columns: impl Iterator<Item = usize>, out: &mut String) {
        out.push('{');
        for (n, c) in columns.enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&self.names[c]);
            out.push(':');
            self.value(c, row, out);
        }
        out.push('}');
    }

    fn value(&self, c: usize, row: usize, out: &mut String) {
        let array = &self.arrays[c];
        if array.is_null(row) {
            out.push_str("null");
            return;
        }
        match array.data_type() {
            DataType::Boolean => {
                out.push_str(if array.as_any().downcast_ref::<BooleanArray>().is_some_and(|a| a.value(row)) {
                    "true"
                } else {
                    "false"
                })
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => {
                let _ = write!(out, "{}", self.formatters[c].value(row));
            }
            DataType::Float32 => {
                let v = array.as_primitive::<Float32Type>().value(row);
                if v.is_finite() {
                    // f32's own shortest form: 0.1, not 0.10000000149011612.
                    let _ = write!(out, "{v}");
                } else {
                    float(v as f64, out);
                }
            }
            DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row), out),
            DataType::Decimal128(..) | DataType::Decimal256(..) if self.decimal == DecimalFormat::Number => {
                let _ = write!(out, "{}", self.formatters[c].value(row));
            }
            DataType::Utf8 => {
                out.push_str(&json_string(array.as_any().downcast_ref::<StringArray>().map_or("", |a| a.value(row))))
            }
            DataType::LargeUtf8 => out
                .push_str(&json_string(array.as_any().downcast_ref::<LargeStringArray>().map_or("", |a| a.value(row)))),
            DataType::Utf8View => out
                .push_str(&json_string(array.as_any().downcast_ref::<StringViewArray>().map_or("", |a| a.value(row)))),
            DataType::Binary => base64_string(array.as_any().downcast_ref::<BinaryArray>().map(|a| a.value(row)), out),
            DataType::LargeBinary => {
                base64_string(array.as_any().downcast_ref::<LargeBinaryArray>().map(|a| a.value(row)), out)
            }
            _ => out.push_str(&json_string(&self.formatters[c].value(row).to_string())),
        }
    }
}

fn float(v: f64, out: &mut String) {
    if v.is_finite() {
        let _ =
            write!(out, "{}", serde_json::Number::from_f64(v).map_or_else(|| "null".to_string(), |n| n.to_string()));
    } else if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v > 0.0 {
        out.push_str("\"Infinity\"");
    } else {
        out.push_str("\"-Infinity\"");
    }
}

fn base64_string(bytes: Option<&[u8]>, out: &mut String) {
    out.push('"');
    out.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes.unwrap_or_default()));
    out.push('"');
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// ISO-8601 everywhere: `2024-05-01T10:00:00.123456`, `...+00:00` for timestamptz.
fn format_options() -> FormatOptions<'static> {
    FormatOptions::default().with_null("null")
}

/// The Debezium `op` of a change.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Create,
    Update,
    Delete,
}

impl Encoder {
    /// The messages that publish `rows` as the relation's initial contents.
    pub fn snapshot(&self, rows: &RecordBatch, origin: &CommitOrigin) -> Result<Vec<Message>> {
        let options = format_options();
        let cols = Columns::new(rows, &options, self.decimal)?;
        let mut out = Vec::with_capacity(rows.num_rows());
        for r in 0..rows.num_rows() {
            let key = self.key_of(&cols, r);
            let value = match self.envelope {
                Envelope::Upsert => Some(self.row_json(&cols, r).into_bytes()),
                Envelope::Debezium => Some(self.debezium(&cols, None, Some(r), Op::Read, origin)),
            };
            out.push(Message { key, value });
        }
        Ok(out)
    }

    /// The messages of one commit's delta of the relation, in the order consumers apply them:
    /// per key, removals and additions are paired into one message.
    pub fn delta(&self, change: &ChangeBatch, origin: &CommitOrigin) -> Result<Vec<Message>> {
        let options = format_options();
        let cols = Columns::new(&change.data, &options, self.decimal)?;
        let mut out = Vec::new();
        if self.key.is_none() {
            // Keyless (Debezium only): every copy of every row is its own message.
            for (r, w) in change.weights.iter().enumerate() {
                let op = if *w < 0 { Op::Delete } else { Op::Create };
                for _ in 0..w.unsigned_abs() {
                    let (before, after) = if *w < 0 { (Some(r), None) } else { (None, Some(r)) };
                    out.push(Message { key: None, value: Some(self.debezium(&cols, before, after, op, origin)) });
                }
            }
            return Ok(out);
        }
        // Group by key, in order of first appearance.
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut groups: HashMap<Vec<u8>, (Vec<usize>, Vec<usize>)> = HashMap::new();
        for (r, w) in change.weights.iter().enumerate() {
            let key = self.key_of(&cols, r).unwrap_or_default();
            let slot = groups.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (Vec::new(), Vec::new())
            });
            let list = if *w < 0 { &mut slot.0 } else { &mut slot.1 };
            for _ in 0..w.unsigned_abs() {
                list.push(r);
            }
        }
        for key in order {
            let (removed, added) = &groups[&key];
            match self.envelope {
                Envelope::Upsert => {
                    let value = added.last().map(|r| self.row_json(&cols, *r).into_bytes());
                    out.push(Message { key: Some(key), value });
                }
                Envelope::Debezium => {
                    if removed.len() == 1 && added.len() == 1 {
                        let value = self.debezium(&cols, Some(removed[0]), Some(added[0]), Op::Update, origin);
                        out.push(Message { key: Some(key), value: Some(value) });
                        continue;
                    }
                    for r in removed {
                        let value = self.debezium(&cols, Some(*r), None, Op::Delete, origin);
                        out.push(Message { key: Some(key.clone()), value: Some(value) });
                    }
                    for r in added {
                        let value = self.debezium(&cols, None, Some(*r), Op::Create, origin);
                        out.push(Message { key: Some(key.clone()), value: Some(value) });
                    }
                }
            }
        }
        Ok(out)
    }

    fn key_of(&self, cols: &Columns<'_>, row: usize) -> Option<Vec<u8>> {
        let key = self.key.as_ref()?;
        let mut s = String::new();
        cols.object(row, key.iter().copied(), &mut s);
        Some(s.into_bytes())
    }

    fn row_json(&self, cols: &Columns<'_>, row: usize) -> String {
        let mut s = String::new();
        cols.object(row, 0..self.schema.fields().len(), &mut s);
        s
    }

    fn debezium(
        &self,
        cols: &Columns<'_>,
        before: Option<usize>,
        after: Option<usize>,
        op: Op,
        origin: &CommitOrigin,
    ) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        s.push_str("{\"before\":");
        match before {
            Some(r) => cols.object(r, 0..self.schema.fields().len(), &mut s),
            None => s.push_str("null"),
        }
        s.push_str(",\"after\":");
        match after {
            Some(r) => cols.object(r, 0..self.schema.fields().len(), &mut s),
            None => s.push_str("null"),
        }
        let op = match op {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        };
        let source = serde_json::json!({
            "connector": "headwater",
            "name": origin.source,
            "table": self.relation,
            "file": origin.file,
            "pos": origin.pos,
            "ts_ms": origin.ts_ms,
            "snapshot": origin.snapshot || op == "r",
        });
        let _ = write!(s, ",\"op\":\"{op}\",\"source\":{source},\"ts_ms\":{}}}", crate::change::now_ms());
        s.into_bytes()
    }
}

/// Frames messages for the outbox: per message, key and value as `u32 length` (u32::MAX
/// for null) followed by the bytes.
pub fn frame(messages: &[Message]) -> Vec<u8> {
    let size: usize =
        messages.iter().map(|m| 8 + m.key.as_ref().map_or(0, Vec::len) + m.value.as_ref().map_or(0, Vec::len)).sum();
    let mut out = Vec::with_capacity(size);
    for m in messages {
        for part in [&m.key, &m.value] {
            match part {
                Some(b) => {
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
            }
        }
    }
    out
}

/// The messages [`frame`] wrote.
pub fn unframe(mut bytes: &[u8]) -> Result<Vec<Message>> {
    fn part(bytes: &mut &[u8]) -> Result<Option<Vec<u8>>> {
        let corrupt = || Error::Storage("sink outbox entry is truncated".into());
        let len = u32::from_le_bytes(bytes.get(..4).ok_or_else(corrupt)?.try_into().expect("4 bytes"));
        *bytes = &bytes[4..];
        if len == u32::MAX {
            return Ok(None);
        }
        let b = bytes.get(..len as usize).ok_or_else(corrupt)?.to_vec();
        *bytes = &bytes[len as usize..];
        Ok(Some(b))
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = part(&mut bytes)?;
        let value = part(&mut bytes)?;
        out.push(Message { key, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use proptest::prelude::*;

    use super::*;
    use crate::change::ApplyMode;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("v", DataType::Utf8, true)]))
    }

    fn batch(rows: &[(i64, Option<String>)]) -> RecordBatch {
        let ids = Int64Array::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
        let vs = StringArray::from(rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>());
        RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(vs)]).unwrap()
    }

    fn encoder(envelope: Envelope) -> Encoder {
        Encoder { envelope, decimal: DecimalFormat::String, key: Some(vec![0]), schema: schema(), relation: "t".into() }
    }

    /// A consumer: applies messages to a key → row map.
    fn consume(state: &mut BTreeMap<String, serde_json::Value>, messages: &[Message], envelope: Envelope) {
        for m in messages {
            let key = String::from_utf8(m.key.clone().unwrap()).unwrap();
            let value: Option<serde_json::Value> = m.value.as_ref().map(|v| serde_json::from_slice(v).unwrap());
            let row = match (envelope, value) {
                (Envelope::Upsert, v) => v,
                (Envelope::Debezium, Some(v)) => Some(v["after"].clone()).filter(|a| !a.is_null()),
                (Envelope::Debezium, None) => None,
            };
            match row {
                Some(r) => state.insert(key, r),
                None => state.remove(&key),
            };
        }
    }

    fn expected(table: &BTreeMap<i64, Option<String>>) -> BTreeMap<String, serde_json::Value> {
        table
            .iter()
            .map(|(id, v)| (serde_json::json!({ "id": id }).to_string(), serde_json::json!({ "id": id, "v": v })))
            .collect()
    }

    proptest! {
        /// Delta algebra of the envelopes: a consumer that applies the snapshot, then each
        /// commit's messages, holds exactly the relation after every commit (random inserts,
        /// updates, deletes, NULLs, several changes per commit).
        #[test]
        fn consumers_converge_to_the_relation(
            initial in proptest::collection::btree_map(0i64..20, proptest::option::of("[a-c]{0,2}"), 0..10),
            commits in proptest::collection::vec(
                proptest::collection::btree_map(0i64..20, proptest::option::of(proptest::option::of("[a-c]{0,2}")), 1..5),
                1..12),
        ) {
            for envelope in [Envelope::Upsert, Envelope::Debezium] {
                let enc = encoder(envelope);
                let origin = CommitOrigin::default();
                let mut table = initial.clone();
                let mut consumer = BTreeMap::new();
                let rows: Vec<(i64, Option<String>)> = table.iter().map(|(k, v)| (*k, v.clone())).collect();
                consume(&mut consumer, &enc.snapshot(&batch(&rows), &origin).unwrap(), envelope);
                prop_assert_eq!(&consumer, &expected(&table));
                for commit in &commits {
                    // The exact delta: −old +new per changed key (None = delete the key).
                    let mut delta = Vec::new();
                    let mut weights = Vec::new();
                    for (id, new) in commit {
                        let old = table.get(id).cloned();
                        if old.as_ref() == new.as_ref() {
                            continue;
                        }
                        if let Some(o) = old {
                            delta.push((*id, o));
                            weights.push(-1);
                        }
                        match new {
                            Some(n) => {
                                delta.push((*id, n.clone()));
                                weights.push(1);
                                table.insert(*id, n.clone());
                            }
                            None => {
                                table.remove(id);
                            }
                        }
                    }
                    let change = ChangeBatch { data: batch(&delta), weights, mode: ApplyMode::Delta };
                    consume(&mut consumer, &enc.delta(&change, &origin).unwrap(), envelope);
                    prop_assert_eq!(&consumer, &expected(&table));
                }
            }
        }
    }

    #[test]
    fn floats_keep_their_shortest_form() {
        use datafusion::arrow::array::{Float32Array, Float64Array};
        let schema = Arc::new(Schema::new(vec![
            Field::new("r", DataType::Float32, true),
            Field::new("d", DataType::Float64, true),
        ]));
        let data = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Float32Array::from(vec![0.1f32, f32::NAN])),
                Arc::new(Float64Array::from(vec![0.1, f64::NEG_INFINITY])),
            ],
        )
        .unwrap();
        let enc = Encoder {
            envelope: Envelope::Upsert,
            decimal: DecimalFormat::String,
            key: Some(vec![0]),
            schema,
            relation: "f".into(),
        };
        let values: Vec<String> = enc
            .snapshot(&data, &CommitOrigin::default())
            .unwrap()
            .into_iter()
            .map(|m| String::from_utf8(m.value.unwrap()).unwrap())
            .collect();
        assert_eq!(values, [r#"{"r":0.1,"d":0.1}"#, r#"{"r":"NaN","d":"-Infinity"}"#]);
    }

    #[test]
    fn frames_round_trip() {
        let messages = vec![
            Message { key: Some(b"{\"id\":1}".to_vec()), value: None },
            Message { key: None, value: Some(b"{}".to_vec()) },
            Message { key: Some(Vec::new()), value: Some(Vec::new()) },
        ];
        assert_eq!(unframe(&frame(&messages)).unwrap(), messages);
        assert!(unframe(&frame(&messages)[..5]).is_err());
    }
}
