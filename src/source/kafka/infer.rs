//! A Debezium topic's columns from its messages' schema blocks (Kafka Connect's JSON
//! converter with `schemas.enable=true`, its default): the value schema's `after` struct gives
//! the columns and their types, the key schema the primary key. Read from the first message
//! that has them, when `CREATE SOURCE` declares no columns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::source::DeclaredTable;

/// How long `CREATE SOURCE` looks for a message with a schema.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

fn refuse(topic: &str, why: &str) -> Error {
    Error::FeatureNotSupported(format!(
        "inferring the columns of topic {topic}: {why}; declare them: CREATE SOURCE name (id BIGINT PRIMARY KEY, ...) \
         FROM KAFKA ..."
    ))
}

/// The table of the first Debezium message in `topic` that carries schema blocks.
pub fn sample(consumer: &BaseConsumer, topic: &str, partitions: &[i32], table: &str) -> Result<DeclaredTable> {
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        assignment.add_partition_offset(topic, *p, Offset::Beginning).map_err(|e| Error::Internal(e.to_string()))?;
    }
    consumer.assign(&assignment).map_err(|e| Error::Internal(e.to_string()))?;
    let deadline = Instant::now() + SAMPLE_TIMEOUT;
    while Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let Some(value) = message.payload().and_then(|v| serde_json::from_slice::<Value>(v).ok()) else { continue };
        let key = message.key().and_then(|k| serde_json::from_slice::<Value>(k).ok());
        if value.get("schema").is_some() {
            return from_schemas(&value, key.as_ref(), topic, table);
        }
        return Err(refuse(topic, "its messages carry no schema block (schemas.enable=false)"));
    }
    Err(refuse(topic, "no message with a schema block arrived within 10 s"))
}

/// The table a Debezium value (and key) with schema blocks describe.
pub fn from_schemas(value: &Value, key: Option<&Value>, topic: &str, table: &str) -> Result<DeclaredTable> {
    let fields = value["schema"]["fields"].as_array().ok_or_else(|| refuse(topic, "the schema has no fields"))?;
    let image = fields
        .iter()
        .find(|f| f["field"] == "after")
        .or_else(|| fields.iter().find(|f| f["field"] == "before"))
        .ok_or_else(|| refuse(topic, "the schema is not a Debezium envelope (no \"after\")"))?;
    let columns = image["fields"].as_array().ok_or_else(|| refuse(topic, "\"after\" has no fields"))?;
    let mut arrow = Vec::with_capacity(columns.len());
    for c in columns {
        let name = c["field"].as_str().ok_or_else(|| refuse(topic, "a field without a name"))?;
        let t = connect_type(c).ok_or_else(|| {
            refuse(
                topic,
                &format!("field {name} has Kafka Connect type {} ({}), which is not read", c["type"], c["name"]),
            )
        })?;
        let field = Field::new(name, t, c["optional"].as_bool().unwrap_or(true));
        // A MySQL JSON column (Debezium's Json logical type) is jsonb, as the MySQL source has it.
        let json = c["name"].as_str() == Some("io.debezium.data.Json");
        arrow.push(if json { crate::types::PgText::Jsonb.mark(field) } else { field });
    }
    let key_names: Vec<String> = key
        .and_then(|k| k["schema"]["fields"].as_array())
        .map(|fs| fs.iter().filter_map(|f| f["field"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if key_names.is_empty() {
        return Err(refuse(topic, "its message keys carry no key schema (a table without a primary key?)"));
    }
    let key = key_names
        .iter()
        .map(|k| arrow.iter().position(|f| f.name() == k))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| refuse(topic, "a key field is not among the row's fields"))?;
    for &i in &key {
        let f = &arrow[i];
        arrow[i] = f.clone().with_nullable(false);
    }
    let mut items: Vec<String> = arrow
        .iter()
        .map(|f| {
            let null = if f.is_nullable() { "" } else { " NOT NULL" };
            let spelled = match crate::types::PgText::of(f) {
                Some(crate::types::PgText::Jsonb) => "JSONB".to_string(),
                _ => sql_type(f.data_type()),
            };
            format!("{} {spelled}{null}", crate::ident::quote_ident(f.name()))
        })
        .collect();
    items.push(format!(
        "PRIMARY KEY ({})",
        key.iter().map(|&i| crate::ident::quote_ident(arrow[i].name())).collect::<Vec<_>>().join(", ")
    ));
    let create_sql = format!("CREATE TABLE {} ({})", crate::ident::quote_ident(table), items.join(", "));
    Ok(DeclaredTable { schema: Arc::new(Schema::new(arrow)), key: Some(key), create_sql })
}

/// The column type of a Kafka Connect field (its logical `name` first).
fn connect_type(field: &Value) -> Option<DataType> {
    let logical = field["name"].as_str().unwrap_or("");
    Some(match logical {
        "org.apache.kafka.connect.data.Decimal" => {
            let param = |k: &str| field["parameters"][k].as_str().and_then(|v| v.parse::<i64>().ok());
            let scale = param("scale").unwrap_or(0).clamp(0, 38) as i8;
            let precision = param("connect.decimal.precision").unwrap_or(38).clamp(1, 38) as u8;
            DataType::Decimal128(precision.max(scale as u8).max(1), scale)
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => DataType::Date32,
        "io.debezium.time.Timestamp"
        | "io.debezium.time.MicroTimestamp"
        | "io.debezium.time.NanoTimestamp"
        | "org.apache.kafka.connect.data.Timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "io.debezium.time.ZonedTimestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        "io.debezium.time.Time" | "io.debezium.time.MicroTime" | "io.debezium.time.NanoTime" => {
            DataType::Time64(TimeUnit::Microsecond)
        }
        "io.debezium.data.Json" | "io.debezium.data.Enum" | "io.debezium.data.EnumSet" => DataType::Utf8,
        "io.debezium.time.Year" => DataType::Int32,
        _ => match field["type"].as_str()? {
            "int8" | "int16" => DataType::Int16,
            "int32" => DataType::Int32,
            "int64" => DataType::Int64,
            "float32" => DataType::Float32,
            "float64" | "double" => DataType::Float64,
            "boolean" => DataType::Boolean,
            "string" => DataType::Utf8,
            _ => return None,
        },
    })
}

/// The SQL spelling of a column type for `SHOW CREATE TABLE`.
fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Decimal128(p, s) => format!("NUMERIC({p},{s})"),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Time64(_) => "TIME".into(),
        _ => "TEXT".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Shaped as the create event and key of Debezium's MySQL connector documentation
    /// (`inventory.customers`), with a decimal, a date and a timestamp field added.
    #[test]
    fn columns_and_key_from_the_schema_blocks() {
        let fields = json!([
            {"type": "int32", "optional": false, "field": "id"},
            {"type": "string", "optional": false, "field": "first_name"},
            {"type": "string", "optional": true, "field": "email"},
            {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
             "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "balance"},
            {"type": "int32", "optional": true, "name": "io.debezium.time.Date", "field": "since"},
            {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "field": "seen"}
        ]);
        let value = json!({
            "schema": {"type": "struct", "name": "mysql-server-1.inventory.customers.Envelope", "fields": [
                {"type": "struct", "fields": fields, "optional": true, "field": "before"},
                {"type": "struct", "fields": fields, "optional": true, "field": "after"},
                {"type": "string", "optional": false, "field": "op"}]},
            "payload": {"before": null, "after": {"id": 1004}, "op": "c"}
        });
        let key = json!({"schema": {"type": "struct", "name": "mysql-server-1.inventory.customers.Key",
            "fields": [{"type": "int32", "optional": false, "field": "id"}]}, "payload": {"id": 1004}});
        let t = from_schemas(&value, Some(&key), "dbserver1.inventory.customers", "customers").unwrap();
        let types: Vec<String> = t.schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
        assert_eq!(
            types,
            [
                "id Int32",
                "first_name Utf8",
                "email Utf8",
                "balance Decimal128(10, 2)",
                "since Date32",
                "seen Timestamp(µs)"
            ]
        );
        assert_eq!(t.key, Some(vec![0]));
        assert!(!t.schema.field(0).is_nullable() && t.schema.field(2).is_nullable());
        assert_eq!(
            t.create_sql,
            "CREATE TABLE customers (id INTEGER NOT NULL, first_name TEXT NOT NULL, email TEXT, balance NUMERIC(10,2), \
             since DATE, seen TIMESTAMP, PRIMARY KEY (id))"
        );
        assert_eq!(from_schemas(&value, None, "t", "customers").unwrap_err().sqlstate(), "0A000");
    }
}
