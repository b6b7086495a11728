//! Every MySQL type and its edge values through both capture paths: rows present before
//! `CREATE SOURCE` arrive through the snapshot, identical rows inserted afterwards through the
//! binlog; both must read back identically, and as documented in docs/types.md.

use crate::common;

use std::time::{Duration, Instant};

use common::mariadb::MariaDb;
use common::{text_rows as rows, TestServer};
use mysql_async::prelude::Queryable;

const COLUMNS: &str = "id INT PRIMARY KEY, \
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED, \
    i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, \
    d DECIMAL(12,2), dbig DECIMAL(38,10), dhuge DECIMAL(65,30), f FLOAT, db DOUBLE, \
    dt DATE, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME, tm6 TIME(6), y YEAR, \
    tm1 TIME(1), tm2 TIME(2), tm4 TIME(4), y0 YEAR, ds DECIMAL(5,3), \
    c CHAR(5), vc VARCHAR(20), tx TEXT, l1 VARCHAR(20) CHARACTER SET latin1, g VARCHAR(10) CHARACTER SET gbk, j JSON, \
    e ENUM('small','medium','large'), st SET('a','b','c'), b1 BIT(1), b8 BIT(8), \
    bin BINARY(4), vb VARBINARY(10), bl BLOB";

/// (values of one row without the id, what a few columns must read as).
const ROWS: &[&str] = &[
    "-128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, \
     -9999999999.99, 1234567890123456789012345678.0123456789, 12345678901234567890123456789012345.123456789012345678901234567890, \
     1.5, 2.718281828459045, '1000-01-01', '9999-12-31 23:59:59', '2024-02-29 12:34:56.123456', '2024-03-01 05:00:01.500', \
     '-838:59:59', '838:59:59.999999', 1901, \
     '-12:34:56.7', '-00:00:00.01', '-838:59:58.9999', 0, -0.005, 'ab', 'héllo 🙂', 'long text', 'héllo €“”Ÿ', '中文', '{\"b\": 1,  \"a\": [1, 2.50]}', 'large', 'a,c', b'1', b'10101010', \
     'ab', 'bytes', 'blob'",
    "NULL",
    "0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '0000-00-00', '0000-00-00 00:00:00', '2000-01-01 00:00:00', \
     '1970-01-01 00:00:01', '00:00:00', '-00:00:01.5', 2155, '00:00:00.5', '-00:00:01.01', '1:00:00', 1970, 99.999, '', '', '', '', '', '[]', 'small', '', b'0', b'0', '', '', ''",
];

/// `NULL` stands for a row of NULLs.
fn expand(values: &str) -> String {
    if values == "NULL" {
        vec!["NULL"; COLUMNS.split(", ").count() - 1].join(", ")
    } else {
        values.to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_decodes_identically_in_snapshot_and_binlog() {
    let db = MariaDb::start().await;
    let mut my = db.root().await;
    // A session time zone far from UTC: TIMESTAMP must still come out in UTC.
    my.query_drop("SET time_zone = '+05:00', sql_mode = ''").await.unwrap();
    my.query_drop(format!("CREATE DATABASE ty; CREATE TABLE ty.t ({COLUMNS})")).await.unwrap();
    for (i, values) in ROWS.iter().enumerate() {
        my.query_drop(format!("INSERT INTO ty.t VALUES ({i}, {})", expand(values))).await.unwrap();
    }
    let server = TestServer::start().await;
    let hw = server.client().await;
    hw.batch_execute(&db.connection_sql("up")).await.unwrap();
    hw.batch_execute("CREATE SOURCE s FROM MYSQL CONNECTION up FOR TABLES (ty.t)").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&hw, "SELECT state FROM hw_catalog.source_tables").await != vec![vec!["streaming".to_string()]] {
        assert!(Instant::now() < deadline, "snapshot did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (i, values) in ROWS.iter().enumerate() {
        my.query_drop(format!("INSERT INTO ty.t VALUES ({}, {})", 100 + i, expand(values))).await.unwrap();
    }
    hw.batch_execute("SET real_time_recency = on").await.unwrap();
    let all = rows(&hw, "SELECT * FROM t ORDER BY id").await;
    assert_eq!(all.len(), ROWS.len() * 2);
    let (snap, bin) = all.split_at(ROWS.len());
    for (s, b) in snap.iter().zip(bin) {
        assert_eq!(s[1..], b[1..], "snapshot row {} and binlog row {} differ", s[0], b[0]);
    }
    let first = &snap[0];
    let col = |name: &str| -> usize {
        COLUMNS.split(", ").position(|c| c.trim().starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}"))
    };
    let expect = [
        ("tiu", "255"),
        ("biu", "18446744073709551615"),
        ("bi", "-9223372036854775808"),
        ("d", "-9999999999.99"),
        ("dbig", "1234567890123456789012345678.0123456789"),
        ("dhuge", "12345678901234567890123456789012345.123456789012345678901234567890"),
        ("dt", "1000-01-01"),
        ("dtm6", "2024-02-29 12:34:56.123456"),
        ("vc", "héllo 🙂"),
        ("l1", "héllo €“”Ÿ"),
        ("g", "中文"),
        ("e", "large"),
        ("st", "a,c"),
        ("b8", "170"),
        ("y", "1901"),
        ("tm1", "-12:34:56.7"),
        ("tm2", "-00:00:00.01"),
        ("tm4", "-838:59:58.9999"),
        ("y0", "0"),
        ("ds", "-0.005"),
        // JSON (MariaDB's LONGTEXT CHECK (json_valid(j))) is jsonb, in its canonical text.
        ("j", "{\"a\": [1, 2.50], \"b\": 1}"),
    ];
    for (name, want) in expect {
        assert_eq!(first[col(name)], want, "column {name}");
    }
    // TIMESTAMP: the instant, in UTC (inserted as 05:00:01.5 at +05:00).
    assert!(first[col("ts")].starts_with("2024-03-01 00:00:01.5"), "ts = {}", first[col("ts")]);
    // Zero dates are NULL.
    assert_eq!(snap[2][col("dt")], "NULL");
    assert_eq!(snap[2][col("dtm")], "NULL");
    // NULL in every column.
    assert!(snap[1][1..].iter().all(|v| v == "NULL"), "{:?}", snap[1]);
    // JSON columns take jsonb's operators, from both paths.
    assert_eq!(
        rows(&hw, "SELECT pg_typeof(j), j -> 'a' ->> 1, j @> '{\"b\": 1}' FROM t WHERE id IN (0, 100) ORDER BY id")
            .await,
        vec![vec!["jsonb".to_string(), "2.50".into(), "t".into()]; 2]
    );
}
