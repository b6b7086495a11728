//! Random statements against a live server (issue 30: ~6% of fuzzed statements answered
//! XX000 "internal error" for what were user mistakes). Every statement must get an answer —
//! rows, or an error with a SQLSTATE that is not XX000 — within its deadline, and the server
//! must keep serving. A fixed seed in the test command; more with
//! `HEADWATER_FUZZ_STATEMENTS=100000 HEADWATER_FUZZ_SEED=7 cargo test --test integration sql_fuzz`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{Rng, TestServer};

const COLUMNS: &[(&str, &str)] = &[
    ("id", "INT PRIMARY KEY"),
    ("i", "INT"),
    ("b", "BIGINT"),
    ("s", "SMALLINT"),
    ("n", "NUMERIC(12,2)"),
    ("f", "DOUBLE PRECISION"),
    ("r", "REAL"),
    ("t", "TEXT"),
    ("v", "VARCHAR(10)"),
    ("d", "DATE"),
    ("ts", "TIMESTAMP"),
    ("tz", "TIMESTAMPTZ"),
    ("bo", "BOOLEAN"),
    ("by", "BYTEA"),
];

const LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2147483647",
    "-2147483648",
    "9223372036854775807",
    "-9223372036854775808",
    "32767",
    "1.5",
    "-0.0",
    "1e308",
    "1e-308",
    "'NaN'::float8",
    "'Infinity'::float8",
    "0.01",
    "99999999999999999999.99",
    "''",
    "'abc'",
    "'héllo'",
    "' x '",
    "'%'",
    "'\\'",
    "'2024-02-29'",
    "'1999-12-31 23:59:59'",
    "NULL",
    "TRUE",
    "FALSE",
    "DATE '2024-01-01'",
    "TIMESTAMP '2000-01-01 00:00:00'",
    "INTERVAL '1 day'",
    "'{1,2}'",
    "'\\x00ff'",
    "'1 hour'",
    "'12:00'",
    "'-5'",
];

const TYPES: &[&str] = &[
    "INT",
    "BIGINT",
    "SMALLINT",
    "NUMERIC",
    "NUMERIC(5,2)",
    "NUMERIC(38,0)",
    "DOUBLE PRECISION",
    "REAL",
    "TEXT",
    "VARCHAR(3)",
    "CHAR(2)",
    "DATE",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "BOOLEAN",
    "BYTEA",
    "INTERVAL",
    "TIME",
];

const UNARY_FUNCTIONS: &[&str] = &[
    "abs",
    "round",
    "trunc",
    "ceil",
    "floor",
    "sqrt",
    "cbrt",
    "ln",
    "log",
    "log10",
    "exp",
    "sign",
    "degrees",
    "radians",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "length",
    "char_length",
    "octet_length",
    "bit_length",
    "lower",
    "upper",
    "initcap",
    "reverse",
    "md5",
    "ascii",
    "chr",
    "btrim",
    "ltrim",
    "rtrim",
    "to_hex",
    "date_trunc('month', ",
    "date_part('year', ",
    "extract(epoch FROM ",
    "factorial",
    "isnan",
    "quote_ident",
    "quote_literal",
    "to_timestamp",
    "sha256",
    "encode(",
    "decode(",
    "array_length(",
    "cardinality",
    "pg_typeof",
    "to_char(",
    "date",
    "iszero",
    "gcd(",
    "lcm(",
    "mod(",
    "power(",
    "atan2(",
    "left(",
    "right(",
    "repeat(",
    "lpad(",
    "rpad(",
    "substr(",
    "split_part(",
    "strpos(",
    "starts_with(",
    "replace(",
    "translate(",
    "regexp_replace(",
    "regexp_match(",
    "regexp_like(",
    "concat_ws(",
    "nullif(",
    "coalesce(",
    "greatest(",
    "least(",
    "make_date(",
    "to_date(",
    "string_to_array(",
    "array_to_string(",
    "trunc(",
    "round(",
    "div(",
    "width_bucket(",
    "overlay(",
    "position(",
    "format(",
    "age(",
    "date_bin(",
];

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "array_agg",
    "string_agg",
    "stddev",
    "variance",
    "stddev_pop",
    "var_samp",
    "bit_and",
    "bit_or",
    "every",
    "count(DISTINCT ",
    "sum(DISTINCT ",
    "median",
    "approx_distinct",
    "corr",
    "covar_pop",
    "regr_slope",
];

const WINDOWS: &[&str] = &[
    "row_number()",
    "rank()",
    "dense_rank()",
    "percent_rank()",
    "cume_dist()",
    "ntile(",
    "lag(",
    "lead(",
    "first_value(",
    "last_value(",
    "nth_value(",
];

const BINARY_OPERATORS: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "||",
    "=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "AND",
    "OR",
    "LIKE",
    "ILIKE",
    "NOT LIKE",
    "IS DISTINCT FROM",
    "IS NOT DISTINCT FROM",
    "&",
    "|",
    "#",
    "<<",
    ">>",
    "~",
    "~*",
    "!~",
    "@>",
    "<@",
];

struct Gen(Rng);

impl Gen {
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.0.below(xs.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.0.below(100) < percent
    }

    fn column(&mut self) -> &'static str {
        COLUMNS[self.0.below(COLUMNS.len() as u64) as usize].0
    }

    fn expr(&mut self, depth: u32) -> String {
        if depth == 0 || self.chance(25) {
            return if self.chance(55) { self.column().to_string() } else { self.pick(LITERALS).to_string() };
        }
        let d = depth - 1;
        match self.0.below(12) {
            0..=2 => {
                let op = self.pick(BINARY_OPERATORS);
                format!("({} {op} {})", self.expr(d), self.expr(d))
            }
            3..=5 => {
                let f = self.pick(UNARY_FUNCTIONS);
                if let Some(head) = f.strip_suffix('(') {
                    let args = (0..1 + self.0.below(3)).map(|_| self.expr(d)).collect::<Vec<_>>().join(", ");
                    format!("{head}({args})")
                } else if f.ends_with(", ") || f.ends_with("FROM ") {
                    format!("{f}{})", self.expr(d))
                } else {
                    format!("{f}({})", self.expr(d))
                }
            }
            6 => format!("CAST({} AS {})", self.expr(d), self.pick(TYPES)),
            7 => format!("{}::{}", self.expr(d), self.pick(TYPES)),
            8 => format!("CASE WHEN {} THEN {} ELSE {} END", self.expr(d), self.expr(d), self.expr(d)),
            9 => match self.0.below(5) {
                0 => format!("{} IS NULL", self.expr(d)),
                1 => format!("NOT {}", self.expr(d)),
                2 => format!("-{}", self.expr(d)),
                3 => format!("{} BETWEEN {} AND {}", self.expr(d), self.expr(d), self.expr(d)),
                _ => format!("{} IN ({}, {})", self.expr(d), self.expr(d), self.expr(d)),
            },
            10 => format!("{} IN (SELECT {} FROM fz WHERE {})", self.expr(d), self.column(), self.expr(d)),
            _ => format!("(SELECT {} FROM fz ORDER BY id LIMIT 1)", self.expr(d)),
        }
    }

    fn aggregate(&mut self) -> String {
        let a = self.pick(AGGREGATES);
        let arg = self.expr(1);
        match (a, a.strip_suffix('(')) {
            (_, Some(head)) => format!("{head}({arg})"),
            ("string_agg", _) => format!("string_agg({arg}, ',')"),
            ("corr" | "covar_pop" | "regr_slope", _) => format!("{a}({arg}, {})", self.expr(1)),
            ("count", _) if self.chance(30) => "count(*)".into(),
            _ => format!("{a}({arg})"),
        }
    }

    fn window(&mut self) -> String {
        let w = self.pick(WINDOWS);
        let call = match w.strip_suffix('(') {
            Some("ntile") => format!("ntile({})", self.expr(1)),
            Some("nth_value") => format!("nth_value({}, {})", self.expr(1), self.expr(0)),
            Some(head) if head == "lag" || head == "lead" => format!("{head}({}, {})", self.expr(1), self.expr(0)),
            Some(head) => format!("{head}({})", self.expr(1)),
            None => w.to_string(),
        };
        let frame = if self.chance(30) { " ROWS BETWEEN 1 PRECEDING AND CURRENT ROW" } else { "" };
        format!("{call} OVER (PARTITION BY {} ORDER BY {}{frame})", self.expr(1), self.expr(1))
    }

    fn select(&mut self) -> String {
        let grouped = self.chance(30);
        let items: Vec<String> = (0..1 + self.0.below(3))
            .map(|_| match self.0.below(10) {
                0..=1 if grouped => self.aggregate(),
                2 if !grouped => self.window(),
                _ if grouped => "g".to_string(),
                _ => self.expr(3),
            })
            .collect();
        let mut sql = if grouped {
            format!("SELECT {} FROM (SELECT {} AS g, * FROM fz) q", items.join(", "), self.expr(2))
        } else if self.chance(20) {
            let kind = self.pick(&["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
            format!("SELECT {} FROM fz a {kind} fz b ON a.id = b.{}", items.join(", "), self.column())
                .replace("SELECT id", "SELECT a.id")
        } else {
            format!("SELECT {} FROM fz", items.join(", "))
        };
        if self.chance(50) {
            sql += &format!(" WHERE {}", self.expr(3));
        }
        if grouped {
            sql += " GROUP BY g";
            if self.chance(30) {
                sql += &format!(" HAVING {}", self.aggregate());
            }
        }
        if self.chance(30) {
            sql += &format!(" ORDER BY 1{}", if self.chance(50) { " DESC" } else { "" });
        }
        if self.chance(30) {
            sql += &format!(" LIMIT {}", self.pick(&["0", "1", "5", "-1", "NULL", "1e10", "'x'"]));
        }
        if self.chance(10) {
            let op = self.pick(&["UNION", "UNION ALL", "EXCEPT", "INTERSECT", "EXCEPT ALL", "INTERSECT ALL"]);
            sql = format!("SELECT {} FROM fz {op} SELECT {} FROM fz", self.expr(2), self.expr(2));
        }
        sql
    }

    fn statement(&mut self) -> String {
        match self.0.below(20) {
            0..=12 => self.select(),
            13 => format!("SELECT {}", self.expr(4)),
            14..=15 => {
                let values: Vec<String> = COLUMNS
                    .iter()
                    .map(|(c, _)| if *c == "id" { format!("{}", 1000 + self.0.below(100_000)) } else { self.expr(1) })
                    .collect();
                format!("INSERT INTO fz VALUES ({})", values.join(", "))
            }
            16 => format!("UPDATE fz SET {} = {} WHERE {}", self.column(), self.expr(2), self.expr(2)),
            17 => format!("DELETE FROM fz WHERE {} AND id > 100", self.expr(2)),
            18 => format!("EXPLAIN {}", self.select()),
            _ => format!("SELECT * FROM fz WHERE {} ORDER BY id LIMIT 3", self.expr(3)),
        }
    }
}

#[tokio::test]
async fn random_statements_never_answer_internal_error() {
    let count: usize = std::env::var("HEADWATER_FUZZ_STATEMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let seed: u64 = std::env::var("HEADWATER_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261207);
    let hw = TestServer::start().await;
    let c = hw.client().await;
    let columns: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
    c.batch_execute(&format!("CREATE TABLE fz ({})", columns.join(", "))).await.unwrap();
    c.batch_execute(
        "INSERT INTO fz VALUES
           (1, 1, 10, 1, 1.50, 1.5, 1.5, 'a', 'x', '2024-01-01', '2024-01-01 10:00', '2024-01-01 10:00+00', true, '\\x01'),
           (2, -5, -9223372036854775807, -32768, -99.99, -0.0, 3.4e38, 'héllo wörld', '', '1970-01-01', '1970-01-01', '1970-01-01 00:00+00', false, '\\x'),
           (3, 2147483647, 9223372036854775807, 32767, 9999999999.99, 1e308, 1e-30, '', 'abc', '9999-12-31', '2262-04-11 00:00', '2100-01-01 00:00+00', NULL, NULL),
           (4, NULL, NULL, NULL, NULL, 'NaN', 'Infinity', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (5, 0, 0, 0, 0, 0, 0, '0', '0', '2000-02-29', '2000-02-29 12:34:56.789', '2000-02-29 12:34:56+05', true, '\\xdeadbeef')",
    )
    .await
    .unwrap();
    c.batch_execute("SET statement_timeout = '5s'").await.unwrap();
    let mut g = Gen(Rng(seed | 1));
    let mut internal: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let (mut ok, mut refused) = (0usize, 0usize);
    for _ in 0..count {
        let sql = g.statement();
        let answer = tokio::time::timeout(Duration::from_secs(30), c.simple_query(&sql))
            .await
            .unwrap_or_else(|_| panic!("no answer within 30 s (statement_timeout is 5 s): {sql}"));
        match answer {
            Ok(_) => ok += 1,
            Err(e) => {
                let db = e.as_db_error().unwrap_or_else(|| panic!("the connection broke on: {sql}\n{e:?}"));
                if db.code().code() == "XX000" {
                    // Group by the message's first words, keep one statement per group.
                    let key: String = db.message().chars().take(60).collect();
                    internal.entry(key).or_insert((0, sql.clone())).0 += 1;
                }
                refused += 1;
            }
        }
    }
    let report: Vec<String> =
        internal.iter().map(|(message, (n, sql))| format!("{n} × {message}\n    e.g. {sql}")).collect();
    eprintln!("sql_fuzz: {count} statements (seed {seed}): {ok} answered, {refused} refused");
    assert!(report.is_empty(), "statements answered XX000:\n{}", report.join("\n"));
    // The server still serves a fresh session.
    let fresh = hw.client().await;
    fresh.simple_query("SELECT count(*) FROM fz").await.unwrap();
}
