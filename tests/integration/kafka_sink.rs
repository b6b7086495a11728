//! Kafka sinks against a real Kafka protocol peer (librdkafka's mock cluster): every topic is
//! consumed back and its exact contents and per-key order are asserted.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::kafka::{MockKafka, Record};
use common::{exec, sqlstate, text_rows, TestServer};
use serde_json::{json, Value};

/// Waits until sink `name` is running with nothing pending and has sent at least `min`
/// messages.
async fn wait_sent(c: &tokio_postgres::Client, name: &str, min: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = text_rows(
            c,
            &format!(
                "SELECT state, pending_commits, messages_sent, last_error FROM hw_catalog.sinks WHERE name = '{name}'"
            ),
        )
        .await;
        let row = rows.first().cloned().unwrap_or_default();
        if row.len() == 4 && row[0] == "running" && row[1] == "0" && row[2].parse::<u64>().unwrap_or(0) >= min {
            return;
        }
        assert!(Instant::now() < deadline, "sink {name} did not send {min} messages within 60s: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the last message per key (None: tombstone), and every key's history.
type ByKey<T> = BTreeMap<String, T>;

fn per_key(records: &[Record]) -> (ByKey<Option<Value>>, ByKey<Vec<Option<Value>>>) {
    let mut last = BTreeMap::new();
    let mut history: BTreeMap<String, Vec<Option<Value>>> = BTreeMap::new();
    for r in records {
        let k = r.key.as_ref().map(|k| k.to_string()).unwrap_or_default();
        last.insert(k.clone(), r.value.clone());
        history.entry(k).or_default().push(r.value.clone());
    }
    (last, history)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_sink_publishes_snapshot_then_changes_in_key_order() {
    let kafka = MockKafka::start();
    kafka.topic("orders", 3);
    kafka.topic("revenue", 2);
    let mut server = TestServer::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE TABLE orders (id INT PRIMARY KEY, day TEXT, amount NUMERIC(10,2), note TEXT, paid BOOLEAN);
             INSERT INTO orders VALUES (1, 'mon', 10.50, 'a', true), (2, 'mon', 5.25, NULL, false), (3, 'tue', 7, 'c', true);
             CREATE MATERIALIZED VIEW revenue AS SELECT day, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY day;
             CREATE CONNECTION k TO KAFKA (BROKER '{}');",
            kafka.bootstrap()
        ),
    )
    .await;
    exec(&c, "CREATE SINK orders_out FROM orders INTO KAFKA CONNECTION k (TOPIC 'orders', PARTITIONS 3, REPLICATION_FACTOR 1) FORMAT JSON ENVELOPE UPSERT").await;
    exec(&c, "CREATE SINK revenue_out FROM revenue INTO KAFKA CONNECTION k (TOPIC 'revenue', PARTITIONS 2, REPLICATION_FACTOR 1) KEY (day) ENVELOPE UPSERT").await;
    exec(&c, "CREATE SINK IF NOT EXISTS orders_out FROM orders INTO KAFKA CONNECTION k (TOPIC 'x')").await;
    wait_sent(&c, "orders_out", 3).await;
    wait_sent(&c, "revenue_out", 2).await;
    // Changes: updates of one key in sequence, a delete, a key moving between groups.
    for i in 1..=5 {
        exec(&c, &format!("UPDATE orders SET amount = amount + {i} WHERE id = 1")).await;
    }
    exec(&c, "DELETE FROM orders WHERE id = 2; INSERT INTO orders VALUES (4, 'wed', 1, 'd', false)").await;
    exec(&c, "UPDATE orders SET day = 'wed' WHERE id = 3; INSERT INTO orders VALUES (5, 'thu', 0.01, 'é😀', NULL)")
        .await;
    wait_sent(&c, "orders_out", 3 + 5 + 4).await;
    wait_sent(&c, "revenue_out", 2).await;

    let records = kafka.consume_all("orders", true);
    let (last, history) = per_key(&records);
    let table = text_rows(&c, "SELECT id, day, amount::text, note, paid FROM orders ORDER BY id").await;
    let live: BTreeMap<String, Option<Value>> = table
        .iter()
        .map(|r| {
            let cell = |s: &str| if s == "NULL" { Value::Null } else { json!(s) };
            let paid = match r[4].as_str() {
                "NULL" => Value::Null,
                v => json!(v == "t" || v == "true"),
            };
            let id: i64 = r[0].parse().unwrap();
            (
                json!({ "id": id }).to_string(),
                Some(json!({ "id": id, "day": cell(&r[1]), "amount": cell(&r[2]), "note": cell(&r[3]), "paid": paid })),
            )
        })
        .collect();
    let mut expected = live.clone();
    expected.insert(json!({"id": 2}).to_string(), None);
    assert_eq!(last, expected, "the topic's final state per key is the table plus a tombstone for id 2");
    // Key 1's history: the snapshot value, then each update in order; all in one partition.
    let amounts: Vec<String> =
        history[&json!({"id": 1}).to_string()].iter().map(|v| v.as_ref().unwrap()["amount"].to_string()).collect();
    assert_eq!(amounts, ["\"10.50\"", "\"11.50\"", "\"13.50\"", "\"16.50\"", "\"20.50\"", "\"25.50\""]);
    let parts: std::collections::HashSet<i32> =
        records.iter().filter(|r| r.key == Some(json!({"id": 1}))).map(|r| r.partition).collect();
    assert_eq!(parts.len(), 1, "one key, one partition");

    // The view's topic converges to the view.
    let (last, _) = per_key(&kafka.consume_all("revenue", true));
    let view = text_rows(&c, "SELECT day, orders, revenue::text FROM revenue ORDER BY day").await;
    let want: BTreeMap<String, Option<Value>> = view
        .iter()
        .map(|r| {
            (
                json!({ "day": r[0] }).to_string(),
                Some(json!({ "day": r[0], "orders": r[1].parse::<i64>().unwrap(), "revenue": r[2] })),
            )
        })
        .collect();
    let live_last: BTreeMap<String, Option<Value>> = last.into_iter().filter(|(_, v)| v.is_some()).collect();
    assert_eq!(live_last, want);

    // Restart: exactly-once, nothing is sent twice, changes go on.
    let before = kafka.consume_all("orders", true).len();
    server.restart().await;
    let c = server.client().await;
    exec(&c, "UPDATE orders SET note = 'after restart' WHERE id = 4").await;
    wait_sent(&c, "orders_out", 1).await;
    let after = kafka.consume_all("orders", true);
    assert_eq!(after.len(), before + 1, "one new message after a restart, none repeated");
    let four = after.iter().rfind(|r| r.key == Some(json!({"id": 4}))).unwrap();
    assert_eq!(four.value.as_ref().unwrap()["note"], json!("after restart"));

    // DROP TABLE needs CASCADE while a sink reads it; DROP SINK removes it.
    assert!(sqlstate(&c, "DROP TABLE orders").await.starts_with("2BP01"));
    exec(&c, "DROP SINK revenue_out").await;
    assert_eq!(text_rows(&c, "SHOW SINKS").await, vec![vec!["orders_out".to_string()]]);
    exec(&c, "DROP TABLE orders CASCADE").await;
    assert!(text_rows(&c, "SELECT name FROM hw_catalog.sinks").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_sink_reports_every_operation() {
    let kafka = MockKafka::start();
    kafka.topic("shop.t", 1);
    kafka.topic("bag", 1);
    let server = TestServer::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT, f DOUBLE, b BYTEA, ts TIMESTAMP, d DATE);
             INSERT INTO t VALUES (1, 'one', 1.5, decode('0102', 'hex'), '2024-05-01 10:00:00.25', '2024-05-01');
             CREATE TABLE bag (x INT);
             INSERT INTO bag VALUES (7), (7);
             CREATE CONNECTION k TO KAFKA (BROKER '{}');
             CREATE SINK t_cdc FROM t INTO KAFKA CONNECTION k (TOPIC 'shop.t', PARTITIONS 1, REPLICATION_FACTOR 1) FORMAT JSON ENVELOPE DEBEZIUM WITH (DELIVERY = 'at_least_once');
             CREATE SINK bag_cdc FROM bag INTO KAFKA CONNECTION k (TOPIC 'bag', PARTITIONS 1, REPLICATION_FACTOR 1);",
            kafka.bootstrap()
        ),
    )
    .await;
    wait_sent(&c, "t_cdc", 1).await;
    exec(&c, "INSERT INTO t VALUES (2, 'two', 'NaN', NULL, NULL, NULL)").await;
    exec(&c, "UPDATE t SET v = 'uno' WHERE id = 1").await;
    exec(&c, "DELETE FROM t WHERE id = 2").await;
    exec(&c, "DELETE FROM bag WHERE x = 7").await;
    wait_sent(&c, "t_cdc", 4).await;
    wait_sent(&c, "bag_cdc", 4).await;
    let records = kafka.consume_all("shop.t", false);
    let ops: Vec<&str> = records.iter().map(|r| r.value.as_ref().unwrap()["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["r", "c", "u", "d"]);
    let v = |i: usize| records[i].value.clone().unwrap();
    assert_eq!(
        v(0)["after"],
        json!({"id": 1, "v": "one", "f": 1.5, "b": "AQI=", "ts": "2024-05-01T10:00:00.250", "d": "2024-05-01"})
    );
    assert_eq!(v(0)["before"], Value::Null);
    assert_eq!(v(0)["source"]["snapshot"], json!(true));
    assert_eq!(v(1)["after"]["f"], json!("NaN"));
    assert_eq!(v(2)["before"]["v"], json!("one"));
    assert_eq!(v(2)["after"]["v"], json!("uno"));
    assert_eq!(v(3)["before"]["id"], json!(2));
    assert_eq!(v(3)["after"], Value::Null);
    assert_eq!(records[1].key, Some(json!({"id": 2})));
    // A multiset: each copy is its own message, keyless.
    let bag: Vec<(Option<Value>, String)> = kafka
        .consume_all("bag", true)
        .into_iter()
        .map(|r| (r.key, r.value.unwrap()["op"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(bag, [(None, "r".into()), (None, "r".into()), (None, "d".into()), (None, "d".into())]);
    // The same counts for Prometheus.
    let (status, metrics) = server.http_get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "headwater_sink_messages_total{sink=\"t_cdc\",relation=\"t\"} 4",
        "headwater_sink_messages_total{sink=\"bag_cdc\",relation=\"bag\"} 4",
        "headwater_sink_pending_commits{sink=\"t_cdc\",relation=\"t\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l.starts_with(line)), "no {line:?} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sink_errors_are_clear() {
    let server = TestServer::start().await;
    let c = server.client().await;
    exec(
        &c,
        "CREATE TABLE t (id INT PRIMARY KEY, g TEXT, v INT);
         CREATE TABLE nokey (a INT);
         CREATE VIEW plain AS SELECT * FROM t;
         CREATE MATERIALIZED VIEW agg AS SELECT g, count(*) AS n FROM t GROUP BY g;
         CREATE CONNECTION k TO KAFKA (BROKER '127.0.0.1:1');
         CREATE CONNECTION m TO MYSQL (HOST '127.0.0.1');",
    )
    .await;
    let cases = [
        ("CREATE SINK s FROM t INTO KAFKA CONNECTION nope (TOPIC 'x')", "42704"),
        ("CREATE SINK s FROM t INTO KAFKA CONNECTION m (TOPIC 'x')", "22023"),
        ("CREATE SINK s FROM missing INTO KAFKA CONNECTION k (TOPIC 'x')", "42P01"),
        ("CREATE SINK s FROM plain INTO KAFKA CONNECTION k (TOPIC 'x')", "0A000"),
        ("CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 'x') KEY (g) ENVELOPE UPSERT", "42P10"),
        ("CREATE SINK s FROM agg INTO KAFKA CONNECTION k (TOPIC 'x') KEY (n) ENVELOPE UPSERT", "42P10"),
        ("CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 'x') KEY (nope)", "42703"),
        ("CREATE SINK s FROM nokey INTO KAFKA CONNECTION k (TOPIC 'x') ENVELOPE UPSERT", "22023"),
        ("CREATE SINK s FROM t INTO KAFKA CONNECTION k (NOPE 'x')", "22023"),
        ("CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 'x') WITH (DELIVERY = 'maybe')", "22023"),
        ("CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 'x') FORMAT AVRO", "0A000"),
    ];
    for (sql, code) in cases {
        let got = sqlstate(&c, sql).await;
        assert!(got.starts_with(code), "{sql}: expected {code}, got {got}");
    }
    // Keys a view is unique on, or asserted: accepted.
    exec(&c, "CREATE SINK a FROM agg INTO KAFKA CONNECTION k (TOPIC 'agg') ENVELOPE UPSERT").await;
    exec(&c, "CREATE SINK b FROM t INTO KAFKA CONNECTION k (TOPIC 'x') KEY (g) NOT ENFORCED ENVELOPE UPSERT").await;
    assert!(sqlstate(&c, "CREATE SINK a FROM t INTO KAFKA CONNECTION k (TOPIC 'x')").await.starts_with("42710"));
    // A transactional id is a sink's identity in Kafka: one sink each.
    exec(&c, "CREATE SINK c FROM t INTO KAFKA CONNECTION k (TOPIC 'x') WITH (TRANSACTIONAL_ID = 'fixed-id')").await;
    let got =
        sqlstate(&c, "CREATE SINK d FROM t INTO KAFKA CONNECTION k (TOPIC 'y') WITH (TRANSACTIONAL_ID = 'fixed-id')")
            .await;
    assert!(got.starts_with("22023") && got.contains("fixed-id"), "{got}");
    // The broker is unreachable: the sink says so and keeps trying; writes are not refused.
    exec(&c, "INSERT INTO t VALUES (1, 'x', 1)").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows =
            text_rows(&c, "SELECT state, last_error, pending_commits FROM hw_catalog.sinks WHERE name = 'b'").await;
        if rows[0][0] == "retrying" && rows[0][1] != "NULL" && rows[0][2] == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "sink did not report the broker as unreachable: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = text_rows(&c, "SHOW CREATE SINK b").await;
    assert!(shown[0][1].contains("TRANSACTIONAL_ID"), "{shown:?}");
    exec(&c, "DROP SINK a, b, c").await;
}

/// MySQL → Kafka: an upstream transaction's changes carry its binlog position and arrive
/// together; the topic's final state is the upstream table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_changes_flow_to_kafka_with_their_binlog_position() {
    use mysql_async::prelude::Queryable;
    let db = common::mariadb::MariaDb::start().await;
    let mut my = db.root().await;
    my.query_drop(
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, amount DECIMAL(12,2), note VARCHAR(20));
         INSERT INTO shop.orders VALUES (1, 1.00, 'a'), (2, 2.00, 'b')",
    )
    .await
    .unwrap();
    let kafka = MockKafka::start();
    kafka.topic("shop.orders", 2);
    let server = TestServer::start().await;
    let c = server.client().await;
    exec(&c, &db.connection_sql("shop_db")).await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE shop FROM MYSQL CONNECTION shop_db FOR TABLES (shop.orders) WITH (SERVER_ID = 5411);
             CREATE CONNECTION k TO KAFKA (BROKER '{}');
             CREATE SINK orders_cdc FROM orders INTO KAFKA CONNECTION k (TOPIC 'shop.orders') ENVELOPE DEBEZIUM;",
            kafka.bootstrap()
        ),
    )
    .await;
    common::wait_for_rows(&c, "SELECT state FROM hw_catalog.source_tables", &["streaming"]).await;
    my.query_drop(
        "BEGIN; UPDATE shop.orders SET amount = amount * 10; INSERT INTO shop.orders VALUES (3, 3.00, 'c');
         DELETE FROM shop.orders WHERE id = 2; COMMIT",
    )
    .await
    .unwrap();
    common::wait_for_rows(&c, "SELECT count(*) FROM orders", &["2"]).await;
    wait_sent(&c, "orders_cdc", 5).await;
    let records = kafka.consume_all("shop.orders", true);
    let changes: Vec<&Value> =
        records.iter().filter_map(|r| r.value.as_ref()).filter(|v| v["source"]["snapshot"] == false).collect();
    // The source's snapshot rows (copied after the sink started) are flagged as snapshot.
    assert_eq!(changes.len(), 3, "{records:?}");
    let positions: std::collections::BTreeSet<String> =
        changes.iter().map(|v| format!("{}:{}", v["source"]["file"], v["source"]["pos"])).collect();
    assert_eq!(positions.len(), 1, "one upstream transaction, one binlog position: {positions:?}");
    assert!(changes.iter().all(|v| v["source"]["name"] == "shop" && v["source"]["pos"].as_u64().unwrap() > 4));
    let mut ops: Vec<String> = changes
        .iter()
        .map(|v| {
            format!(
                "{}{}",
                v["op"].as_str().unwrap(),
                v["before"]["id"].as_i64().or(v["after"]["id"].as_i64()).unwrap()
            )
        })
        .collect();
    ops.sort();
    assert_eq!(ops, ["c3", "d2", "u1"]);
    let u1 = changes.iter().find(|v| v["op"] == "u").unwrap();
    assert_eq!((u1["before"]["amount"].clone(), u1["after"]["amount"].clone()), (json!("1.00"), json!("10.00")));
}

/// The broker goes away under a running sink: the sink says so, keeps the changes, and
/// delivers each exactly once when the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_is_visible_and_loses_nothing() {
    let kafka = MockKafka::start();
    kafka.topic("out", 2);
    let server = TestServer::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE TABLE t (id INT PRIMARY KEY, v INT);
             INSERT INTO t VALUES (0, 0);
             CREATE CONNECTION k TO KAFKA (BROKER '{}');
             CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 'out') ENVELOPE UPSERT;",
            kafka.bootstrap()
        ),
    )
    .await;
    wait_sent(&c, "s", 1).await;
    kafka.cluster.broker_down(1).expect("broker down");
    for i in 1..=20 {
        exec(&c, &format!("INSERT INTO t VALUES ({i}, {i})")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = text_rows(&c, "SELECT state, pending_commits, last_error FROM hw_catalog.sinks").await;
        if rows[0][0] == "retrying" && rows[0][2] != "NULL" {
            assert!(rows[0][1].parse::<u64>().unwrap() >= 1, "{rows:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the outage is not visible in hw_catalog.sinks: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kafka.cluster.broker_up(1).expect("broker up");
    wait_sent(&c, "s", 21).await;
    let records = kafka.consume_all("out", true);
    let mut ids: Vec<i64> = records.iter().map(|r| r.value.as_ref().unwrap()["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..=20).collect::<Vec<_>>(), "every row exactly once after the outage");
}

/// A sink from a view whose query fails on a row pauses (hw_catalog.sinks: `paused` with the
/// error), holds what the view commits meanwhile, and once the row is fixed sends it all,
/// exactly once: the topic converges to the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_from_an_errored_view_pauses_and_resumes_exactly_once() {
    let kafka = MockKafka::start();
    kafka.topic("ratios", 1);
    let server = TestServer::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE TABLE t (id INT PRIMARY KEY, a INT, b INT); INSERT INTO t VALUES (1, 10, 2);
             CREATE MATERIALIZED VIEW ratios AS SELECT id, a / b AS r FROM t;
             CREATE CONNECTION k TO KAFKA (BROKER '{}');
             CREATE SINK ratios_out FROM ratios INTO KAFKA CONNECTION k (TOPIC 'ratios') KEY (id) ENVELOPE UPSERT;",
            kafka.bootstrap()
        ),
    )
    .await;
    wait_sent(&c, "ratios_out", 1).await;
    exec(&c, "INSERT INTO t VALUES (2, 5, 0)").await;
    common::wait_for_rows(
        &c,
        "SELECT state, last_error LIKE 'division by zero%' FROM hw_catalog.sinks WHERE name = 'ratios_out'",
        &["paused|t"],
    )
    .await;
    // Changes the view commits while errored wait in the outbox.
    exec(&c, "INSERT INTO t VALUES (3, 9, 3); UPDATE t SET a = 20 WHERE id = 1").await;
    common::wait_for_rows(&c, "SELECT pending_commits > 0 FROM hw_catalog.sinks", &["t"]).await;
    let sent = kafka.consume_all("ratios", true).len();
    assert_eq!(sent, 1, "nothing is sent while the view is errored");
    exec(&c, "UPDATE t SET b = 1 WHERE id = 2").await;
    wait_sent(&c, "ratios_out", 4).await;
    let records = kafka.consume_all("ratios", true);
    let (last, _) = per_key(&records);
    let want: BTreeMap<String, Option<Value>> = [(1, 10), (2, 5), (3, 3)]
        .into_iter()
        .map(|(id, r)| (json!({ "id": id }).to_string(), Some(json!({ "id": id, "r": r }))))
        .collect();
    assert_eq!(last, want, "the topic converges to the view");
    assert_eq!(records.len(), 4, "the snapshot row, then 3 changes, each once: {records:?}");
}
