//! Kafka sources against librdkafka's mock cluster: each envelope's messages (Debezium and
//! Canal in their documented shapes) become exact table contents, offsets resume exactly
//! after a restart, and bad messages stop the table with their offset or are skipped.

use crate::common;

use std::time::{Duration, Instant};

use common::kafka::MockKafka;
use common::{exec, joined_rows, sqlstate, text_rows, wait_for_rows, TestServer};

/// Waits until `source` shows `state` and its table's last error contains `error_part`.
async fn wait_source(c: &tokio_postgres::Client, source: &str, state: &str, error_part: &str) -> Vec<String> {
    let sql = format!(
        "SELECT s.state, coalesce(t.last_error, ''), coalesce(s.offsets, '') FROM hw_catalog.sources s \
         JOIN hw_catalog.source_tables t ON t.source = s.name WHERE s.name = '{source}'"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = text_rows(c, &sql).await.pop().unwrap_or_default();
        if row.len() == 3 && row[0] == state && row[1].contains(error_part) {
            return row;
        }
        assert!(Instant::now() < deadline, "source {source} did not reach {state} / {error_part:?}: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_read_exactly_and_offsets_resume_after_a_restart() {
    let kafka = MockKafka::start();
    for t in ["orders", "customers", "canal", "events"] {
        kafka.topic(t, 2);
    }
    // UPSERT: scalar and object keys, an update, a tombstone.
    kafka.produce(
        "orders",
        &[
            (0, Some("1"), Some(r#"{"note": "first", "amount": "10.50"}"#)),
            (1, Some(r#"{"id": 2}"#), Some(r#"{"note": "second", "amount": 7}"#)),
            (0, Some("3"), Some(r#"{"note": "third", "amount": 1.25}"#)),
            (0, Some("1"), Some(r#"{"note": "first, again", "amount": "11.00"}"#)),
            (0, Some("3"), None),
        ],
    );
    let mut server = TestServer::start().await;
    let c = server.client().await;
    exec(&c, &format!("CREATE CONNECTION k TO KAFKA (BROKER '{}')", kafka.bootstrap())).await;
    exec(
        &c,
        "CREATE SOURCE orders (id BIGINT PRIMARY KEY, note TEXT, amount NUMERIC(10,2)) \
         FROM KAFKA CONNECTION k (TOPIC 'orders') FORMAT JSON ENVELOPE UPSERT;
         CREATE MATERIALIZED VIEW order_total AS SELECT count(*) AS n, sum(amount) AS total FROM orders;",
    )
    .await;
    let all = "SELECT id, note, amount FROM orders ORDER BY id";
    wait_for_rows(&c, all, &["1|first, again|11.00", "2|second|7.00"]).await;
    wait_for_rows(&c, "SELECT n, total FROM order_total", &["2|18.00"]).await;
    let show = joined_rows(&c, "SHOW CREATE SOURCE orders").await.join("\n");
    assert!(show.contains("FROM KAFKA CONNECTION \"k\" (TOPIC = 'orders') FORMAT JSON ENVELOPE UPSERT"), "{show}");

    // Debezium (MySQL connector) events with their schema block: decimals as base64 bytes,
    // dates as days, timestamps as epoch milliseconds; a snapshot read, an update, a delete
    // with its tombstone.
    let schema = r#"{"type": "struct", "fields": [{"type": "struct", "field": "after", "fields": [
        {"type": "int32", "field": "id"}, {"type": "string", "field": "name"},
        {"type": "bytes", "field": "balance", "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}},
        {"type": "int32", "field": "since", "name": "io.debezium.time.Date"},
        {"type": "int64", "field": "seen", "name": "io.debezium.time.Timestamp"}]}]}"#;
    let event = |op: &str, before: &str, after: &str| {
        format!(
            r#"{{"schema": {schema}, "payload": {{"before": {before}, "after": {after}, "op": "{op}", "source": {{"connector": "mysql", "file": "mysql-bin.000003", "pos": 805}}, "ts_ms": 1465581029523}}}}"#
        )
    };
    let anne = r#"{"id": 1004, "name": "Anne", "balance": "BNI=", "since": 19000, "seen": 1700000000123}"#;
    let anne2 = r#"{"id": 1004, "name": "Anne Marie", "balance": "+y4=", "since": 19001, "seen": 1700000000456}"#;
    let bob = r#"{"id": 1005, "name": "Bob", "balance": "AA==", "since": 0, "seen": 0}"#;
    let (e1, e2, e3, e4) =
        (event("r", "null", anne), event("c", "null", bob), event("u", anne, anne2), event("d", bob, "null"));
    let key = |id: u32| {
        format!(
            r#"{{"schema": {{"type": "struct", "fields": [{{"type": "int32", "optional": false, "field": "id"}}]}}, "payload": {{"id": {id}}}}}"#
        )
    };
    let (k4, k5) = (key(1004), key(1005));
    kafka.produce(
        "customers",
        &[
            (0, Some(&k4), Some(&e1)),
            (1, Some(&k5), Some(&e2)),
            (0, Some(&k4), Some(&e3)),
            (1, Some(&k5), Some(&e4)),
            (1, Some(&k5), None),
        ],
    );
    exec(
        &c,
        "CREATE SOURCE customers (id INT PRIMARY KEY, name TEXT NOT NULL, balance NUMERIC(12,2), since DATE, seen TIMESTAMP) \
         FROM KAFKA CONNECTION k (TOPIC 'customers') FORMAT JSON ENVELOPE DEBEZIUM",
    )
    .await;
    wait_for_rows(
        &c,
        "SELECT id, name, balance, since, seen FROM customers",
        &["1004|Anne Marie|-12.34|2022-01-09|2023-11-14 22:13:20.456"],
    )
    .await;

    // Without a column list, the columns and key come from the schema blocks.
    exec(&c, "CREATE SOURCE customers_inferred FROM KAFKA CONNECTION k (TOPIC 'customers') ENVELOPE DEBEZIUM").await;
    wait_for_rows(
        &c,
        "SELECT id, name, balance, since, seen FROM customers_inferred",
        &["1004|Anne Marie|-12.34|2022-01-09|2023-11-14 22:13:20.456"],
    )
    .await;
    let show = joined_rows(&c, "SHOW CREATE SOURCE customers_inferred").await.join("\n");
    assert!(show.contains("(id INTEGER NOT NULL, name TEXT, balance NUMERIC(38,2), since DATE, seen TIMESTAMP, PRIMARY KEY (id)) FROM KAFKA"), "{show}");

    // Canal's flat messages: every value a string; an UPDATE that changes the key.
    kafka.produce(
        "canal",
        &[
            (0, None, Some(r#"{"data": [{"id": "13", "qty": "5"}, {"id": "14", "qty": "6"}], "database": "shop", "table": "stock", "isDdl": false, "pkNames": ["id"], "old": null, "type": "INSERT", "es": 1589373515000, "ts": 1589373515477}"#)),
            (0, None, Some(r#"{"data": [{"id": "15", "qty": "5"}], "old": [{"id": "13"}], "isDdl": false, "type": "UPDATE"}"#)),
            (0, None, Some(r#"{"data": null, "isDdl": true, "sql": "ALTER TABLE stock ADD c INT", "type": "ALTER"}"#)),
            (0, None, Some(r#"{"data": [{"id": "14", "qty": "6"}], "isDdl": false, "type": "DELETE"}"#)),
        ],
    );
    exec(
        &c,
        "CREATE SOURCE stock (id INT PRIMARY KEY, qty INT) FROM KAFKA CONNECTION k (TOPIC 'canal') FORMAT JSON ENVELOPE CANAL",
    )
    .await;
    wait_for_rows(&c, "SELECT id, qty FROM stock", &["15|5"]).await;

    // NONE appends: the count tells whether a restart re-reads or loses anything.
    let batch = |from: usize, n: usize| -> Vec<String> {
        (from..from + n).map(|i| format!(r#"{{"id": {i}, "kind": "k{}"}}"#, i % 3)).collect()
    };
    let first = batch(0, 300);
    let msgs: Vec<(i32, Option<&str>, Option<&str>)> =
        first.iter().enumerate().map(|(i, v)| ((i % 2) as i32, None, Some(v.as_str()))).collect();
    kafka.produce("events", &msgs);
    exec(
        &c,
        "CREATE SOURCE events (id BIGINT, kind TEXT) FROM KAFKA CONNECTION k (TOPIC 'events') ENVELOPE NONE;
         CREATE MATERIALIZED VIEW event_kinds AS SELECT kind, count(*) AS n FROM events GROUP BY kind;",
    )
    .await;
    wait_for_rows(&c, "SELECT count(*), count(DISTINCT id) FROM events", &["300|300"]).await;
    // real_time_recency waits for what the topic holds now.
    let more = batch(300, 50);
    let msgs: Vec<(i32, Option<&str>, Option<&str>)> = more.iter().map(|v| (1, None, Some(v.as_str()))).collect();
    kafka.produce("events", &msgs);
    exec(&c, "SET real_time_recency = on").await;
    assert_eq!(joined_rows(&c, "SELECT count(*) FROM events").await, ["350"]);
    exec(&c, "SET real_time_recency = off").await;

    drop(c);
    server.restart().await;
    let c = server.client().await;
    let even = batch(350, 40);
    let msgs: Vec<(i32, Option<&str>, Option<&str>)> = even.iter().map(|v| (0, None, Some(v.as_str()))).collect();
    kafka.produce("events", &msgs);
    wait_for_rows(&c, "SELECT count(*), count(DISTINCT id), max(id) FROM events", &["390|390|389"]).await;
    wait_for_rows(&c, "SELECT sum(n) FROM event_kinds", &["390"]).await;
    wait_for_rows(&c, all, &["1|first, again|11.00", "2|second|7.00"]).await;
    kafka.produce("orders", &[(1, Some("2"), None), (1, Some("4"), Some(r#"{"note": "fourth", "amount": "0.5"}"#))]);
    wait_for_rows(&c, all, &["1|first, again|11.00", "4|fourth|0.50"]).await;
    wait_for_rows(&c, "SELECT n, total FROM order_total", &["2|11.50"]).await;
    let state = wait_source(&c, "events", "streaming", "").await;
    assert!(state[2].contains("0:") && state[2].contains("1:"), "offsets per partition: {state:?}");
    // Lag in messages, in hw_catalog and in Prometheus, is 0 once everything is applied.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lag = joined_rows(&c, "SELECT lag_messages FROM hw_catalog.sources WHERE name = 'events'").await;
        let (_, metrics) = server.http_get("/metrics").await;
        if lag == ["0"] && metrics.contains("source_lag_messages{source=\"events\"} 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag {lag:?}; metrics: {}",
            metrics.lines().filter(|l| l.contains("lag")).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_stop_the_table_with_their_offset_or_are_skipped() {
    let kafka = MockKafka::start();
    kafka.topic("feed", 1);
    kafka.produce(
        "feed",
        &[
            (0, Some("1"), Some(r#"{"v": 1}"#)),
            (0, Some("2"), Some("not json")),
            (0, Some("3"), Some(r#"{"v": "x"}"#)),
            (0, Some("4"), Some(r#"{"v": 4}"#)),
        ],
    );
    let server = TestServer::start().await;
    let c = server.client().await;
    exec(&c, &format!("CREATE CONNECTION k TO KAFKA (BROKER '{}')", kafka.bootstrap())).await;
    exec(&c, "CREATE SOURCE strict (id INT PRIMARY KEY, v INT) FROM KAFKA CONNECTION k (TOPIC 'feed') ENVELOPE UPSERT")
        .await;
    let row = wait_source(&c, "strict", "error", "offset 1").await;
    assert!(row[1].contains("not JSON"), "{row:?}");
    assert_eq!(joined_rows(&c, "SELECT id, v FROM strict").await, ["1|1"], "rows before the bad message are kept");
    exec(
        &c,
        "CREATE SOURCE lenient (id INT PRIMARY KEY, v INT) FROM KAFKA CONNECTION k (TOPIC 'feed') ENVELOPE UPSERT \
         WITH (ON_ERROR = 'skip')",
    )
    .await;
    wait_for_rows(&c, "SELECT id, v FROM lenient ORDER BY id", &["1|1", "4|4"]).await;
    let row = wait_source(&c, "lenient", "streaming", "2 message(s) skipped").await;
    assert!(row[1].contains("offset 2") && row[1].contains("column v"), "{row:?}");

    // Statements a user gets wrong, each with its SQLSTATE.
    let cases = [
        ("CREATE SOURCE s FROM KAFKA CONNECTION k (TOPIC 'feed')", "0A000"),
        ("CREATE SOURCE s (id INT) FROM KAFKA CONNECTION k (TOPIC 'feed') ENVELOPE UPSERT", "22023"),
        ("CREATE SOURCE s (id INT PRIMARY KEY) FROM KAFKA CONNECTION k (TOPIC 'feed') ENVELOPE NONE", "22023"),
        ("CREATE SOURCE s (id INT PRIMARY KEY) FROM KAFKA CONNECTION k (TOPIC 'missing') ENVELOPE UPSERT", "42704"),
        ("CREATE SOURCE s (id INT PRIMARY KEY) FROM KAFKA CONNECTION k ENVELOPE UPSERT", "22023"),
        ("CREATE SOURCE s (id INT PRIMARY KEY) FROM KAFKA CONNECTION k (TOPIC 'feed') FORMAT AVRO", "0A000"),
        (
            "CREATE SOURCE s (id INT PRIMARY KEY, b BYTEA) FROM KAFKA CONNECTION k (TOPIC 'feed') ENVELOPE UPSERT",
            "0A000",
        ),
        ("CREATE SOURCE s FROM MYSQL CONNECTION k FOR ALL TABLES", "42809"),
        ("ALTER SOURCE strict ADD TABLE a.b", "0A000"),
    ];
    for (sql, want) in cases {
        let got = sqlstate(&c, sql).await;
        assert!(got.starts_with(want), "{sql}: {got}");
    }
    exec(&c, "CREATE SOURCE IF NOT EXISTS strict (id INT PRIMARY KEY) FROM KAFKA CONNECTION k (TOPIC 'feed') ENVELOPE UPSERT").await;
    exec(&c, "DROP SOURCE strict CASCADE").await;
    assert!(sqlstate(&c, "SELECT * FROM strict").await.starts_with("42P01"));
}

/// `TOPIC PATTERN`: one table per matching topic (Debezium's `prefix.database.table` topics),
/// columns from each topic's schema blocks; a bad message stops its table only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_pattern_reads_each_topic_into_its_table() {
    let kafka = MockKafka::start();
    for t in ["dbserver1.shop.orders", "dbserver1.shop.items", "dbserver1.other.orders"] {
        kafka.topic(t, 1);
    }
    let event = |fields: &str, after: &str| {
        format!(
            r#"{{"schema": {{"type": "struct", "fields": [{{"type": "struct", "field": "after", "fields": [{fields}]}}]}}, "payload": {{"before": null, "after": {after}, "op": "c"}}}}"#
        )
    };
    let key = |id: i64| {
        format!(
            r#"{{"schema": {{"type": "struct", "fields": [{{"type": "int64", "optional": false, "field": "id"}}]}}, "payload": {{"id": {id}}}}}"#
        )
    };
    let order_fields = r#"{"type": "int64", "optional": false, "field": "id"}, {"type": "string", "field": "note"}"#;
    let item_fields = r#"{"type": "int64", "optional": false, "field": "id"}, {"type": "int32", "field": "qty"}"#;
    let (k1, k2, k3) = (key(1), key(2), key(3));
    let (o1, o2) = (event(order_fields, r#"{"id": 1, "note": "a"}"#), event(order_fields, r#"{"id": 2, "note": "b"}"#));
    let (i1, i_bad) = (event(item_fields, r#"{"id": 1, "qty": 5}"#), event(item_fields, r#"{"id": 2, "qty": "many"}"#));
    kafka.produce("dbserver1.shop.orders", &[(0, Some(&k1), Some(&o1))]);
    kafka.produce("dbserver1.shop.items", &[(0, Some(&k1), Some(&i1)), (0, Some(&k2), Some(&i_bad))]);
    kafka.produce("dbserver1.other.orders", &[(0, Some(&k3), Some(&o1))]);
    let server = TestServer::start().await;
    let c = server.client().await;
    exec(&c, &format!("CREATE CONNECTION k TO KAFKA (BROKER '{}')", kafka.bootstrap())).await;
    exec(&c, r"CREATE SOURCE shop FROM KAFKA CONNECTION k (TOPIC PATTERN 'dbserver1\.shop\..*') ENVELOPE DEBEZIUM")
        .await;
    wait_for_rows(&c, "SELECT id, note FROM orders", &["1|a"]).await;
    wait_for_rows(&c, "SELECT id, qty FROM items", &["1|5"]).await;
    let tables =
        "SELECT table_name, upstream_table, state FROM hw_catalog.source_tables WHERE source = 'shop' ORDER BY 1";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = joined_rows(&c, tables).await;
        if got == ["items|topic dbserver1.shop.items|error", "orders|topic dbserver1.shop.orders|streaming"] {
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other table goes on.
    kafka.produce("dbserver1.shop.orders", &[(0, Some(&k2), Some(&o2))]);
    wait_for_rows(&c, "SELECT id, note FROM orders ORDER BY id", &["1|a", "2|b"]).await;
    let error = joined_rows(&c, "SELECT last_error FROM hw_catalog.source_tables WHERE table_name = 'items'").await;
    assert!(
        error[0].contains("topic dbserver1.shop.items partition 0 offset 1") && error[0].contains("column qty"),
        "{error:?}"
    );
    let show = joined_rows(&c, "SHOW CREATE SOURCE shop").await.join("\n");
    assert!(show.contains(r"(TOPIC_PATTERN = 'dbserver1\.shop\..*') ENVELOPE DEBEZIUM"), "{show}");
    assert!(sqlstate(&c, "CREATE SOURCE none FROM KAFKA CONNECTION k (TOPIC PATTERN 'nothing.*') ENVELOPE DEBEZIUM")
        .await
        .starts_with("42704"));
}
