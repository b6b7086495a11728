//! What one Kafka message means for the table, per envelope: rows to upsert (+1) or whose
//! key to remove (−1), in order.
//!
//! - `NONE`: the value is a row (or an array of rows), appended; a message without a value
//!   is nothing.
//! - `UPSERT`: the key names the row (a JSON object of the key columns, or one scalar for a
//!   one-column key); the value is the whole row, a null value (tombstone) removes the key.
//! - `DEBEZIUM`: `{"before", "after", "op", "source", ...}`, bare or wrapped in
//!   `{"schema", "payload"}` (the schema's logical types then decode decimals, dates and
//!   timestamps exactly); `c`/`r` upsert `after`, `u` removes `before`'s key and upserts
//!   `after`, `d` removes `before`'s key, `t` empties the table; tombstones are nothing.
//! - `CANAL` (Canal's flat message): `{"type", "data": [...], "old": [...], "isDdl", ...}`;
//!   INSERT upserts each row of `data`, UPDATE removes the old key when `old` changes a key
//!   column and upserts each row, DELETE removes each row's key; DDL and other types are
//!   nothing. One message (one upstream transaction's rows of one table) is one commit.

use serde_json::{Map, Value};

use super::decode::{Hint, Hints, Row};

/// How a topic's messages are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    None,
    Upsert,
    Debezium,
    Canal,
}

impl Envelope {
    pub fn parse(text: &str) -> Option<Envelope> {
        Some(match text.to_ascii_uppercase().as_str() {
            "NONE" => Envelope::None,
            "UPSERT" => Envelope::Upsert,
            "DEBEZIUM" => Envelope::Debezium,
            "CANAL" => Envelope::Canal,
            _ => return None,
        })
    }

    /// True when rows have a key (the table needs a PRIMARY KEY); `NONE` appends.
    pub fn keyed(self) -> bool {
        self != Envelope::None
    }

    pub fn name(self) -> &'static str {
        match self {
            Envelope::None => "NONE",
            Envelope::Upsert => "UPSERT",
            Envelope::Debezium => "DEBEZIUM",
            Envelope::Canal => "CANAL",
        }
    }
}

/// One message's effect.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// Rows with +1 (upsert / append) or −1 (remove the row's key), in order.
    pub rows: Vec<(Row, i64)>,
    /// Field types from the message's schema block (Debezium).
    pub hints: Hints,
    /// Remove every row first (Debezium's truncate).
    pub truncate: bool,
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the {what} is not JSON: {e}"))
}

fn object(v: Value, what: &str) -> Result<Row, String> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(format!("the {what} is not a JSON object but {}", kind_of(&other))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes one message. `key_columns`: the table's key column names (UPSERT's scalar keys).
pub fn decode(
    envelope: Envelope,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    key_columns: &[String],
) -> Result<Decoded, String> {
    match envelope {
        Envelope::None => none(value),
        Envelope::Upsert => upsert(key, value, key_columns),
        Envelope::Debezium => debezium(value),
        Envelope::Canal => canal(value, key_columns),
    }
}

fn none(value: Option<&[u8]>) -> Result<Decoded, String> {
    let Some(value) = value else { return Ok(Decoded::default()) };
    let rows = match parse_json(value, "value")? {
        Value::Array(items) => {
            items.into_iter().map(|v| object(v, "array element").map(|r| (r, 1))).collect::<Result<_, _>>()?
        }
        v => vec![(object(v, "value")?, 1)],
    };
    Ok(Decoded { rows, ..Decoded::default() })
}

fn upsert(key: Option<&[u8]>, value: Option<&[u8]>, key_columns: &[String]) -> Result<Decoded, String> {
    let key = key.ok_or("the message has no key (ENVELOPE UPSERT reads each row's key from the message key)")?;
    let key_row = match serde_json::from_slice::<Value>(key) {
        Ok(Value::Object(m)) => m,
        Ok(Value::Null) => return Err("the message key is null".into()),
        Ok(scalar @ (Value::Number(_) | Value::String(_) | Value::Bool(_))) => scalar_key(scalar, key_columns)?,
        Ok(other) => return Err(format!("the message key is {}", kind_of(&other))),
        // A key that is not JSON: its text is the one key column's value.
        Err(_) => match std::str::from_utf8(key) {
            Ok(text) => scalar_key(Value::String(text.to_string()), key_columns)?,
            Err(_) => return Err("the message key is neither JSON nor UTF-8 text".into()),
        },
    };
    let rows = match value {
        None => vec![(key_row, -1)],
        Some(v) => match parse_json(v, "value")? {
            Value::Null => vec![(key_row, -1)],
            v => {
                let mut row = object(v, "value")?;
                // The key's fields are the row's key, whatever the value says.
                row.extend(key_row);
                vec![(row, 1)]
            }
        },
    };
    Ok(Decoded { rows, ..Decoded::default() })
}

fn scalar_key(v: Value, key_columns: &[String]) -> Result<Row, String> {
    match key_columns {
        [one] => Ok(Map::from_iter([(one.clone(), v)])),
        _ => Err(format!(
            "the message key is a single value but the table's key has {} columns: send a JSON object",
            key_columns.len()
        )),
    }
}

fn debezium(value: Option<&[u8]>) -> Result<Decoded, String> {
    // A tombstone follows each delete (for log compaction): nothing to do.
    let Some(value) = value else { return Ok(Decoded::default()) };
    let mut envelope = match parse_json(value, "value")? {
        Value::Null => return Ok(Decoded::default()),
        v => object(v, "value")?,
    };
    let mut hints = Hints::new();
    if envelope.contains_key("payload") && envelope.contains_key("schema") {
        hints = schema_hints(envelope.get("schema"));
        envelope = match envelope.remove("payload") {
            Some(Value::Null) | None => return Ok(Decoded::default()),
            Some(p) => object(p, "payload")?,
        };
    }
    let op = envelope.get("op").and_then(Value::as_str).ok_or("the Debezium event has no \"op\"")?.to_string();
    let mut image = |field: &str| -> Result<Option<Row>, String> {
        match envelope.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => object(v, field).map(Some),
        }
    };
    let rows = match op.as_str() {
        "c" | "r" => vec![(image("after")?.ok_or("a create event without \"after\"")?, 1)],
        "u" => {
            let after = image("after")?.ok_or("an update event without \"after\"")?;
            match image("before")? {
                Some(before) => vec![(before, -1), (after, 1)],
                None => vec![(after, 1)],
            }
        }
        "d" => vec![(image("before")?.ok_or("a delete event without \"before\"")?, -1)],
        "t" => return Ok(Decoded { truncate: true, ..Decoded::default() }),
        // Debezium's heartbeat and schema-change topics use other shapes; "m" is a message.
        "m" => Vec::new(),
        other => return Err(format!("unknown Debezium op \"{other}\"")),
    };
    Ok(Decoded { rows, hints, truncate: false })
}

/// The logical types of the `after` (else `before`) struct's fields in a Debezium schema.
fn schema_hints(schema: Option<&Value>) -> Hints {
    let mut hints = Hints::new();
    let fields = schema.and_then(|s| s.get("fields")).and_then(Value::as_array);
    let image = fields.and_then(|fs| {
        fs.iter()
            .find(|f| f.get("field").and_then(Value::as_str) == Some("after"))
            .or_else(|| fs.iter().find(|f| f.get("field").and_then(Value::as_str) == Some("before")))
    });
    for f in image.and_then(|i| i.get("fields")).and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = f.get("field").and_then(Value::as_str) else { continue };
        let scale = f
            .get("parameters")
            .and_then(|p| p.get("scale"))
            .and_then(|s| s.as_str().and_then(|s| s.parse().ok()).or_else(|| s.as_i64().map(|n| n as i8)));
        let logical = f.get("name").and_then(Value::as_str).map(str::to_string);
        if logical.is_some() || scale.is_some() {
            hints.insert(name.to_string(), Hint { logical, scale });
        }
    }
    hints
}

fn canal(value: Option<&[u8]>, key_columns: &[String]) -> Result<Decoded, String> {
    let Some(value) = value else { return Ok(Decoded::default()) };
    let mut message = object(parse_json(value, "value")?, "value")?;
    if message.get("isDdl").and_then(Value::as_bool) == Some(true) {
        return Ok(Decoded::default());
    }
    let kind = message.get("type").and_then(Value::as_str).ok_or("the Canal message has no \"type\"")?.to_string();
    let mut rows_of = |field: &str| -> Result<Vec<Row>, String> {
        match message.remove(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items.into_iter().map(|v| object(v, field)).collect(),
            Some(other) => Err(format!("\"{field}\" is {}, not an array", kind_of(&other))),
        }
    };
    let data = rows_of("data")?;
    let rows = match kind.as_str() {
        "INSERT" => data.into_iter().map(|r| (r, 1)).collect(),
        "DELETE" => data.into_iter().map(|r| (r, -1)).collect(),
        "UPDATE" => {
            let old = rows_of("old")?;
            let mut rows = Vec::with_capacity(data.len() * 2);
            for (i, new) in data.into_iter().enumerate() {
                // `old` holds the changed columns' previous values: a changed key column
                // means the row moved from its old key.
                if let Some(changed) = old.get(i) {
                    if changed.keys().any(|k| key_columns.iter().any(|c| c.eq_ignore_ascii_case(k))) {
                        let mut before = new.clone();
                        before.extend(changed.clone());
                        rows.push((before, -1));
                    }
                }
                rows.push((new, 1));
            }
            rows
        }
        // CREATE, ALTER, ERASE, QUERY, ...: not row changes.
        _ => Vec::new(),
    };
    Ok(Decoded { rows, ..Decoded::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn ids(d: &Decoded) -> Vec<(Value, i64)> {
        d.rows.iter().map(|(r, w)| (r.get("id").cloned().unwrap_or(Value::Null), *w)).collect()
    }

    /// Shaped as the update event in Debezium's MySQL connector documentation ("Change event
    /// values", `inventory.customers`), with its schema block cut to the fields read here and a
    /// decimal column added.
    #[test]
    fn debezium_documented_update_with_schema() {
        let event = json!({
            "schema": {"type": "struct", "fields": [
                {"type": "struct", "field": "before", "fields": [
                    {"type": "int32", "optional": false, "field": "id"},
                    {"type": "string", "optional": false, "field": "first_name"}]},
                {"type": "struct", "field": "after", "fields": [
                    {"type": "int32", "optional": false, "field": "id"},
                    {"type": "string", "optional": false, "field": "first_name"},
                    {"type": "bytes", "optional": true, "field": "balance",
                     "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}]}]},
            "payload": {
                "before": {"id": 1004, "first_name": "Anne"},
                "after": {"id": 1004, "first_name": "Anne Marie", "balance": "BNI="},
                "source": {"version": "2.7.0.Final", "name": "mysql-server-1", "connector": "mysql",
                           "ts_ms": 1465581029100_i64, "snapshot": false, "db": "inventory",
                           "table": "customers", "server_id": 223344, "file": "mysql-bin.000003", "pos": 484, "row": 0},
                "op": "u",
                "ts_ms": 1465581029523_i64
            }
        });
        let d = decode(Envelope::Debezium, None, Some(&bytes(event)), &[]).unwrap();
        assert_eq!(ids(&d), vec![(json!(1004), -1), (json!(1004), 1)]);
        assert_eq!(d.rows[1].0["first_name"], "Anne Marie");
        assert_eq!(d.hints["balance"].scale, Some(2));
        // Without the schema wrapper, a delete, a tombstone, a snapshot read and a truncate.
        let del = json!({"before": {"id": 7}, "after": null, "op": "d"});
        assert_eq!(ids(&decode(Envelope::Debezium, None, Some(&bytes(del)), &[]).unwrap()), vec![(json!(7), -1)]);
        assert_eq!(decode(Envelope::Debezium, Some(b"{\"id\":7}"), None, &[]).unwrap(), Decoded::default());
        let read = json!({"before": null, "after": {"id": 8}, "op": "r"});
        assert_eq!(ids(&decode(Envelope::Debezium, None, Some(&bytes(read)), &[]).unwrap()), vec![(json!(8), 1)]);
        assert!(decode(Envelope::Debezium, None, Some(&bytes(json!({"op": "t"}))), &[]).unwrap().truncate);
        assert!(decode(Envelope::Debezium, None, Some(b"{\"op\": \"x\"}"), &[]).is_err());
        assert!(decode(Envelope::Debezium, None, Some(b"not json"), &[]).is_err());
    }

    /// Canal's flat message as its documentation shows one (`canal.mq.flatMessage = true`).
    #[test]
    fn canal_flat_messages() {
        let insert = json!({"data": [{"id": "13", "name": "a"}, {"id": "14", "name": "b"}], "database": "test",
            "es": 1589373515000_i64, "id": 3, "isDdl": false, "mysqlType": {"id": "bigint(20)", "name": "varchar(20)"},
            "old": null, "pkNames": ["id"], "sql": "", "sqlType": {"id": -5, "name": 12}, "table": "xdual",
            "ts": 1589373515477_i64, "type": "INSERT"});
        let keys = ["id".to_string()];
        let d = decode(Envelope::Canal, None, Some(&bytes(insert)), &keys).unwrap();
        assert_eq!(ids(&d), vec![(json!("13"), 1), (json!("14"), 1)]);
        let moved =
            json!({"data": [{"id": "15", "name": "a"}], "old": [{"id": "13"}], "isDdl": false, "type": "UPDATE"});
        assert_eq!(
            ids(&decode(Envelope::Canal, None, Some(&bytes(moved)), &keys).unwrap()),
            vec![(json!("13"), -1), (json!("15"), 1)]
        );
        let renamed =
            json!({"data": [{"id": "15", "name": "c"}], "old": [{"name": "a"}], "isDdl": false, "type": "UPDATE"});
        assert_eq!(ids(&decode(Envelope::Canal, None, Some(&bytes(renamed)), &keys).unwrap()), vec![(json!("15"), 1)]);
        let ddl = json!({"data": null, "isDdl": true, "sql": "ALTER TABLE xdual ADD c INT", "type": "ALTER"});
        assert_eq!(decode(Envelope::Canal, None, Some(&bytes(ddl)), &keys).unwrap(), Decoded::default());
    }

    #[test]
    fn upsert_keys_and_tombstones() {
        let keys = ["id".to_string()];
        let d = decode(Envelope::Upsert, Some(b"5"), Some(b"{\"name\": \"x\"}"), &keys).unwrap();
        assert_eq!(ids(&d), vec![(json!(5), 1)]);
        let d = decode(Envelope::Upsert, Some(b"{\"id\": 5}"), None, &keys).unwrap();
        assert_eq!(ids(&d), vec![(json!(5), -1)]);
        let d = decode(Envelope::Upsert, Some(b"abc"), Some(b"{}"), &keys).unwrap();
        assert_eq!(ids(&d), vec![(json!("abc"), 1)]);
        assert!(decode(Envelope::Upsert, None, Some(b"{}"), &keys).is_err());
        assert!(decode(Envelope::Upsert, Some(b"5"), Some(b"{}"), &["a".into(), "b".into()]).is_err());
        assert!(decode(Envelope::Upsert, Some(b"5"), Some(b"[1]"), &keys).is_err());
    }

    #[test]
    fn append_only_rows() {
        let d = decode(Envelope::None, None, Some(b"[{\"id\": 1}, {\"id\": 2}]"), &[]).unwrap();
        assert_eq!(ids(&d), vec![(json!(1), 1), (json!(2), 1)]);
        assert_eq!(decode(Envelope::None, None, None, &[]).unwrap(), Decoded::default());
        assert!(decode(Envelope::None, None, Some(b"3"), &[]).is_err());
    }
}
