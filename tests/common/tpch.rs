//! TPC-H for tests and benchmarks: the schema (MariaDB DDL), data from `tpchgen` (the
//! maintained Rust port of dbgen) loaded upstream, the 22 queries with the specification's
//! validation parameters in a text both MariaDB and Headwater accept (Q15's view written as a
//! CTE, Q13's derived column list as aliases), the refresh functions, and a comparison of
//! result sets that tolerates the last digits of divisions (MariaDB keeps 4 more decimals,
//! Postgres and Headwater more).

// Shared by the test and the benchmark, which use different parts.
#![allow(dead_code)]

use mysql_async::prelude::Queryable;

/// MariaDB DDL of the eight tables, with the foreign-key indexes the specification allows
/// (without them MariaDB's own answers to Q2, Q17 and Q20 take minutes at scale 0.1).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE nation (n_nationkey INT PRIMARY KEY, n_name CHAR(25), n_regionkey INT, n_comment VARCHAR(152))",
    "CREATE TABLE region (r_regionkey INT PRIMARY KEY, r_name CHAR(25), r_comment VARCHAR(152))",
    "CREATE TABLE part (p_partkey INT PRIMARY KEY, p_name VARCHAR(55), p_mfgr CHAR(25), p_brand CHAR(10), \
     p_type VARCHAR(25), p_size INT, p_container CHAR(10), p_retailprice DECIMAL(15,2), p_comment VARCHAR(23))",
    "CREATE TABLE supplier (s_suppkey INT PRIMARY KEY, s_name CHAR(25), s_address VARCHAR(40), s_nationkey INT, \
     s_phone CHAR(15), s_acctbal DECIMAL(15,2), s_comment VARCHAR(101))",
    "CREATE TABLE partsupp (ps_partkey INT, ps_suppkey INT, ps_availqty INT, ps_supplycost DECIMAL(15,2), \
     ps_comment VARCHAR(199), PRIMARY KEY (ps_partkey, ps_suppkey), KEY (ps_suppkey))",
    "CREATE TABLE customer (c_custkey INT PRIMARY KEY, c_name VARCHAR(25), c_address VARCHAR(40), c_nationkey INT, \
     c_phone CHAR(15), c_acctbal DECIMAL(15,2), c_mktsegment CHAR(10), c_comment VARCHAR(117))",
    "CREATE TABLE orders (o_orderkey INT PRIMARY KEY, o_custkey INT, o_orderstatus CHAR(1), \
     o_totalprice DECIMAL(15,2), o_orderdate DATE, o_orderpriority CHAR(15), o_clerk CHAR(15), \
     o_shippriority INT, o_comment VARCHAR(79), KEY (o_custkey))",
    "CREATE TABLE lineitem (l_orderkey INT, l_partkey INT, l_suppkey INT, l_linenumber INT, \
     l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), \
     l_returnflag CHAR(1), l_linestatus CHAR(1), l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, \
     l_shipinstruct CHAR(25), l_shipmode CHAR(10), l_comment VARCHAR(44), PRIMARY KEY (l_orderkey, l_linenumber), \
     KEY (l_partkey, l_suppkey), KEY (l_suppkey))",
];

/// Rows per INSERT statement when loading.
const BATCH: usize = 2000;

/// Generates the eight tables at `scale` and inserts them into `db` (which must exist).
pub async fn load(conn: &mut mysql_async::Conn, db: &str, scale: f64) {
    use tpchgen::generators::*;
    conn.query_drop(format!("USE {db}")).await.unwrap();
    for ddl in SCHEMA {
        conn.query_drop(*ddl).await.unwrap_or_else(|e| panic!("{ddl}: {e}"));
    }
    insert(conn, "nation", NationGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
    insert(conn, "region", RegionGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
    insert(conn, "part", PartGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
    insert(conn, "supplier", SupplierGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
    insert(conn, "partsupp", PartSuppGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
    insert(conn, "customer", CustomerGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
    insert(conn, "orders", OrderGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
    insert(conn, "lineitem", LineItemGenerator::new(scale, 1, 1).iter().map(|r| r.to_string())).await;
}

/// Inserts `.tbl` lines (`a|b|c|`) into `table`, every value as a quoted literal.
async fn insert(conn: &mut mysql_async::Conn, table: &str, lines: impl Iterator<Item = String>) {
    let mut values = Vec::with_capacity(BATCH);
    let flush = |values: &mut Vec<String>| {
        let sql = format!("INSERT INTO {table} VALUES {}", values.join(","));
        values.clear();
        sql
    };
    for line in lines {
        let fields: Vec<String> = line
            .trim_end_matches('|')
            .split('|')
            .map(|f| format!("'{}'", f.replace('\\', "\\\\").replace('\'', "''")))
            .collect();
        values.push(format!("({})", fields.join(",")));
        if values.len() == BATCH {
            let sql = flush(&mut values);
            conn.query_drop(sql).await.unwrap();
        }
    }
    if !values.is_empty() {
        let sql = flush(&mut values);
        conn.query_drop(sql).await.unwrap();
    }
}

/// The 22 queries (validation parameters; Q11's fraction is 0.0001 / scale).
pub fn queries(scale: f64) -> Vec<(&'static str, String)> {
    let q11_fraction = 0.0001 / scale;
    vec![
        ("q1", "select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price, \
            sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, \
            sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge, avg(l_quantity) as avg_qty, \
            avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc, count(*) as count_order \
            from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day \
            group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus".into()),
        ("q2", "select s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment \
            from part, supplier, partsupp, nation, region \
            where p_partkey = ps_partkey and s_suppkey = ps_suppkey and p_size = 15 and p_type like '%BRASS' \
            and s_nationkey = n_nationkey and n_regionkey = r_regionkey and r_name = 'EUROPE' \
            and ps_supplycost = (select min(ps_supplycost) from partsupp, supplier, nation, region \
              where p_partkey = ps_partkey and s_suppkey = ps_suppkey and s_nationkey = n_nationkey \
              and n_regionkey = r_regionkey and r_name = 'EUROPE') \
            order by s_acctbal desc, n_name, s_name, p_partkey limit 100".into()),
        ("q3", "select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority \
            from customer, orders, lineitem \
            where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey \
            and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15' \
            group by l_orderkey, o_orderdate, o_shippriority order by revenue desc, o_orderdate limit 10".into()),
        ("q4", "select o_orderpriority, count(*) as order_count from orders \
            where o_orderdate >= date '1993-07-01' and o_orderdate < date '1993-07-01' + interval '3' month \
            and exists (select * from lineitem where l_orderkey = o_orderkey and l_commitdate < l_receiptdate) \
            group by o_orderpriority order by o_orderpriority".into()),
        ("q5", "select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue \
            from customer, orders, lineitem, supplier, nation, region \
            where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey \
            and c_nationkey = s_nationkey and s_nationkey = n_nationkey and n_regionkey = r_regionkey \
            and r_name = 'ASIA' and o_orderdate >= date '1994-01-01' \
            and o_orderdate < date '1994-01-01' + interval '1' year \
            group by n_name order by revenue desc".into()),
        ("q6", "select sum(l_extendedprice * l_discount) as revenue from lineitem \
            where l_shipdate >= date '1994-01-01' and l_shipdate < date '1994-01-01' + interval '1' year \
            and l_discount between 0.06 - 0.01 and 0.06 + 0.01 and l_quantity < 24".into()),
        ("q7", "select supp_nation, cust_nation, l_year, sum(volume) as revenue from ( \
              select n1.n_name as supp_nation, n2.n_name as cust_nation, extract(year from l_shipdate) as l_year, \
              l_extendedprice * (1 - l_discount) as volume \
              from supplier, lineitem, orders, customer, nation n1, nation n2 \
              where s_suppkey = l_suppkey and o_orderkey = l_orderkey and c_custkey = o_custkey \
              and s_nationkey = n1.n_nationkey and c_nationkey = n2.n_nationkey \
              and ((n1.n_name = 'FRANCE' and n2.n_name = 'GERMANY') or (n1.n_name = 'GERMANY' and n2.n_name = 'FRANCE')) \
              and l_shipdate between date '1995-01-01' and date '1996-12-31') as shipping \
            group by supp_nation, cust_nation, l_year order by supp_nation, cust_nation, l_year".into()),
        ("q8", "select o_year, sum(case when nation = 'BRAZIL' then volume else 0 end) / sum(volume) as mkt_share \
            from (select extract(year from o_orderdate) as o_year, l_extendedprice * (1 - l_discount) as volume, \
              n2.n_name as nation from part, supplier, lineitem, orders, customer, nation n1, nation n2, region \
              where p_partkey = l_partkey and s_suppkey = l_suppkey and l_orderkey = o_orderkey \
              and o_custkey = c_custkey and c_nationkey = n1.n_nationkey and n1.n_regionkey = r_regionkey \
              and r_name = 'AMERICA' and s_nationkey = n2.n_nationkey \
              and o_orderdate between date '1995-01-01' and date '1996-12-31' \
              and p_type = 'ECONOMY ANODIZED STEEL') as all_nations \
            group by o_year order by o_year".into()),
        ("q9", "select nation, o_year, sum(amount) as sum_profit from ( \
              select n_name as nation, extract(year from o_orderdate) as o_year, \
              l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity as amount \
              from part, supplier, lineitem, partsupp, orders, nation \
              where s_suppkey = l_suppkey and ps_suppkey = l_suppkey and ps_partkey = l_partkey \
              and p_partkey = l_partkey and o_orderkey = l_orderkey and s_nationkey = n_nationkey \
              and p_name like '%green%') as profit \
            group by nation, o_year order by nation, o_year desc".into()),
        ("q10", "select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, c_acctbal, n_name, \
            c_address, c_phone, c_comment from customer, orders, lineitem, nation \
            where c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate >= date '1993-10-01' \
            and o_orderdate < date '1993-10-01' + interval '3' month and l_returnflag = 'R' \
            and c_nationkey = n_nationkey \
            group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment \
            order by revenue desc limit 20".into()),
        ("q11", format!("select ps_partkey, sum(ps_supplycost * ps_availqty) as value from partsupp, supplier, nation \
            where ps_suppkey = s_suppkey and s_nationkey = n_nationkey and n_name = 'GERMANY' \
            group by ps_partkey having sum(ps_supplycost * ps_availqty) > ( \
              select sum(ps_supplycost * ps_availqty) * {q11_fraction} from partsupp, supplier, nation \
              where ps_suppkey = s_suppkey and s_nationkey = n_nationkey and n_name = 'GERMANY') \
            order by value desc")),
        ("q12", "select l_shipmode, \
            sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1 else 0 end) as high_line_count, \
            sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1 else 0 end) as low_line_count \
            from orders, lineitem where o_orderkey = l_orderkey and l_shipmode in ('MAIL', 'SHIP') \
            and l_commitdate < l_receiptdate and l_shipdate < l_commitdate and l_receiptdate >= date '1994-01-01' \
            and l_receiptdate < date '1994-01-01' + interval '1' year \
            group by l_shipmode order by l_shipmode".into()),
        ("q13", "select c_count, count(*) as custdist from ( \
              select c_custkey, count(o_orderkey) as c_count from customer left outer join orders \
              on c_custkey = o_custkey and o_comment not like '%special%requests%' group by c_custkey) as c_orders \
            group by c_count order by custdist desc, c_count desc".into()),
        ("q14", "select 100.00 * sum(case when p_type like 'PROMO%' then l_extendedprice * (1 - l_discount) else 0 end) \
            / sum(l_extendedprice * (1 - l_discount)) as promo_revenue from lineitem, part \
            where l_partkey = p_partkey and l_shipdate >= date '1995-09-01' \
            and l_shipdate < date '1995-09-01' + interval '1' month".into()),
        ("q15", "with revenue0 as (select l_suppkey as supplier_no, sum(l_extendedprice * (1 - l_discount)) as total_revenue \
              from lineitem where l_shipdate >= date '1996-01-01' and l_shipdate < date '1996-01-01' + interval '3' month \
              group by l_suppkey) \
            select s_suppkey, s_name, s_address, s_phone, total_revenue from supplier, revenue0 \
            where s_suppkey = supplier_no and total_revenue = (select max(total_revenue) from revenue0) \
            order by s_suppkey".into()),
        ("q16", "select p_brand, p_type, p_size, count(distinct ps_suppkey) as supplier_cnt from partsupp, part \
            where p_partkey = ps_partkey and p_brand <> 'Brand#45' and p_type not like 'MEDIUM POLISHED%' \
            and p_size in (49, 14, 23, 45, 19, 3, 36, 9) \
            and ps_suppkey not in (select s_suppkey from supplier where s_comment like '%Customer%Complaints%') \
            group by p_brand, p_type, p_size order by supplier_cnt desc, p_brand, p_type, p_size".into()),
        ("q17", "select sum(l_extendedprice) / 7.0 as avg_yearly from lineitem, part \
            where p_partkey = l_partkey and p_brand = 'Brand#23' and p_container = 'MED BOX' \
            and l_quantity < (select 0.2 * avg(l_quantity) from lineitem where l_partkey = p_partkey)".into()),
        ("q18", "select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity) \
            from customer, orders, lineitem \
            where o_orderkey in (select l_orderkey from lineitem group by l_orderkey having sum(l_quantity) > 300) \
            and c_custkey = o_custkey and o_orderkey = l_orderkey \
            group by c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice \
            order by o_totalprice desc, o_orderdate limit 100".into()),
        ("q19", "select sum(l_extendedprice * (1 - l_discount)) as revenue from lineitem, part \
            where (p_partkey = l_partkey and p_brand = 'Brand#12' \
              and p_container in ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG') and l_quantity >= 1 and l_quantity <= 1 + 10 \
              and p_size between 1 and 5 and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON') \
            or (p_partkey = l_partkey and p_brand = 'Brand#23' \
              and p_container in ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK') and l_quantity >= 10 \
              and l_quantity <= 10 + 10 and p_size between 1 and 10 and l_shipmode in ('AIR', 'AIR REG') \
              and l_shipinstruct = 'DELIVER IN PERSON') \
            or (p_partkey = l_partkey and p_brand = 'Brand#34' \
              and p_container in ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG') and l_quantity >= 20 \
              and l_quantity <= 20 + 10 and p_size between 1 and 15 and l_shipmode in ('AIR', 'AIR REG') \
              and l_shipinstruct = 'DELIVER IN PERSON')".into()),
        ("q20", "select s_name, s_address from supplier, nation where s_suppkey in ( \
              select ps_suppkey from partsupp where ps_partkey in (select p_partkey from part where p_name like 'forest%') \
              and ps_availqty > (select 0.5 * sum(l_quantity) from lineitem where l_partkey = ps_partkey \
                and l_suppkey = ps_suppkey and l_shipdate >= date '1994-01-01' \
                and l_shipdate < date '1994-01-01' + interval '1' year)) \
            and s_nationkey = n_nationkey and n_name = 'CANADA' order by s_name".into()),
        ("q21", "select s_name, count(*) as numwait from supplier, lineitem l1, orders, nation \
            where s_suppkey = l1.l_suppkey and o_orderkey = l1.l_orderkey and o_orderstatus = 'F' \
            and l1.l_receiptdate > l1.l_commitdate \
            and exists (select * from lineitem l2 where l2.l_orderkey = l1.l_orderkey and l2.l_suppkey <> l1.l_suppkey) \
            and not exists (select * from lineitem l3 where l3.l_orderkey = l1.l_orderkey \
              and l3.l_suppkey <> l1.l_suppkey and l3.l_receiptdate > l3.l_commitdate) \
            and s_nationkey = n_nationkey and n_name = 'SAUDI ARABIA' \
            group by s_name order by numwait desc, s_name limit 100".into()),
        ("q22", "select cntrycode, count(*) as numcust, sum(c_acctbal) as totacctbal from ( \
              select substring(c_phone from 1 for 2) as cntrycode, c_acctbal from customer \
              where substring(c_phone from 1 for 2) in ('13', '31', '23', '29', '30', '18', '17') \
              and c_acctbal > (select avg(c_acctbal) from customer where c_acctbal > 0.00 \
                and substring(c_phone from 1 for 2) in ('13', '31', '23', '29', '30', '18', '17')) \
              and not exists (select * from orders where o_custkey = c_custkey)) as custsale \
            group by cntrycode order by cntrycode".into()),
    ]
}

/// RF1 (new sales), round `round`: `orders` new orders, each a copy of an existing order under
/// a new key with its line items (MariaDB statements, one transaction).
pub fn refresh_insert(round: u32, orders: u32) -> String {
    format!("START TRANSACTION; {}; COMMIT", new_sales(round, orders))
}

/// RF2 (old sales removed): deletes the `orders` oldest original orders left and their line
/// items (one transaction).
pub fn refresh_delete(orders: u32) -> String {
    format!("START TRANSACTION; {}; COMMIT", old_sales_removed(orders))
}

/// RF1's statements, without their transaction.
pub fn new_sales(round: u32, orders: u32) -> String {
    let base = 10_000_000 * (round as i64 + 1);
    format!(
        "INSERT INTO orders SELECT o_orderkey + {base}, o_custkey, o_orderstatus, o_totalprice, \
           o_orderdate + INTERVAL {round} DAY, o_orderpriority, o_clerk, o_shippriority, o_comment \
           FROM orders WHERE o_orderkey < {base} ORDER BY o_orderkey LIMIT {orders}; \
         INSERT INTO lineitem SELECT l_orderkey + {base}, l_partkey, l_suppkey, l_linenumber, l_quantity, \
           l_extendedprice, l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate + INTERVAL {round} DAY, \
           l_commitdate, l_receiptdate, l_shipinstruct, l_shipmode, l_comment \
           FROM lineitem WHERE l_orderkey IN (SELECT o_orderkey - {base} FROM orders WHERE o_orderkey > {base})"
    )
}

/// RF2's statements, without their transaction.
pub fn old_sales_removed(orders: u32) -> String {
    format!(
        "CREATE TEMPORARY TABLE IF NOT EXISTS rf2_keys (k INT PRIMARY KEY); DELETE FROM rf2_keys; \
         INSERT INTO rf2_keys SELECT o_orderkey FROM orders WHERE o_orderkey < 10000000 \
           ORDER BY o_orderkey LIMIT {orders}; \
         DELETE FROM lineitem WHERE l_orderkey IN (SELECT k FROM rf2_keys); \
         DELETE FROM orders WHERE o_orderkey IN (SELECT k FROM rf2_keys)"
    )
}

/// Updates in place: prices, discounts, quantities and supply costs move.
pub const REFRESH_UPDATE: &str = "START TRANSACTION; \
    UPDATE lineitem SET l_discount = 0.07, l_quantity = l_quantity + 1 WHERE l_orderkey % 97 = 3; \
    UPDATE partsupp SET ps_supplycost = ps_supplycost + 1.5, ps_availqty = ps_availqty + 7 WHERE ps_partkey % 53 = 1; \
    UPDATE customer SET c_acctbal = -c_acctbal WHERE c_custkey % 41 = 2; \
    UPDATE part SET p_size = 15 WHERE p_partkey % 61 = 5; \
    COMMIT";

/// Why two result sets differ, or `None` when they are equal: the same rows, where numbers
/// with a fraction may differ in the last digits (|a − b| ≤ 1e-4 + 1e-12·|a|).
pub fn compare(got: &[String], want: &[String]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!(
            "{} rows, expected {}; first rows {:?} vs {:?}",
            got.len(),
            want.len(),
            head(got),
            head(want)
        ));
    }
    // Text fields (and dates) pair the rows; numbers are compared within pairs ("25" and
    // "25.00" are the same number).
    let exact = |row: &str| -> String {
        row.split('|').map(|f| if number(f).is_some() { "~" } else { f }).collect::<Vec<_>>().join("|")
    };
    let mut want_by: std::collections::HashMap<String, Vec<&String>> = std::collections::HashMap::new();
    for w in want {
        want_by.entry(exact(w)).or_default().push(w);
    }
    for g in got {
        let Some(candidates) = want_by.get_mut(&exact(g)) else {
            return Some(format!("unexpected row {g}; expected rows start {:?}", head(want)));
        };
        let Some(i) = candidates.iter().position(|w| close(g, w)) else {
            return Some(format!("row {g} differs from {:?}", candidates.first()));
        };
        candidates.swap_remove(i);
    }
    None
}

fn head(rows: &[String]) -> Vec<&String> {
    rows.iter().take(3).collect()
}

/// The value of a numeric field.
fn number(field: &str) -> Option<f64> {
    field.parse().ok().filter(|v: &f64| v.is_finite())
}

fn close(a: &str, b: &str) -> bool {
    a.split('|').zip(b.split('|')).all(|(x, y)| match (number(x), number(y)) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-4 + 1e-12 * x.abs().max(y.abs()),
        _ => x == y,
    })
}
