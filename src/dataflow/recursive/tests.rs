//! The recursion against DataFusion's own evaluation of the same `WITH RECURSIVE`, over
//! random commits ([`crate::dataflow::testing`]): graphs with cycles (`UNION`), pointer chains
//! bounded by depth (`UNION ALL`), deletions and updates of edges and seeds.

#[tokio::test]
async fn recursion_equals_recomputation() {
    let queries = [
        // Reachability over u's edges g → v, cycles included, from t's values.
        "WITH RECURSIVE r(node) AS (SELECT v FROM t WHERE k % 40 = 0 UNION \
         SELECT u.v FROM r JOIN u ON r.node = u.g WHERE u.k % 7 = 0) SELECT * FROM r",
        // Paths by depth: a bag, each path a row, bounded so that cycles end.
        "WITH RECURSIVE r(node, depth) AS (SELECT v, 0 FROM t WHERE g = 1 UNION ALL \
         SELECT u.v, r.depth + 1 FROM r JOIN u ON r.node = u.g WHERE r.depth < 2 AND u.k % 3 = 0) \
         SELECT node, depth FROM r",
        // The kept side of a left join, and a filter on the recursion's rows.
        "WITH RECURSIVE r(node, hops) AS (SELECT g, 0 FROM t WHERE v > 6 UNION \
         SELECT coalesce(u.v, -1), r.hops + 1 FROM r LEFT JOIN u ON r.node = u.g AND u.v < 3 WHERE r.hops < 3) \
         SELECT * FROM r",
        // An aggregate over the recursion.
        "WITH RECURSIVE r(node) AS (SELECT g FROM t UNION SELECT u.v FROM r JOIN u ON r.node = u.g WHERE u.v < 5) \
         SELECT count(*) AS n, min(node) AS lo FROM r",
    ];
    for (i, sql) in queries.into_iter().enumerate() {
        crate::dataflow::testing::check(sql, 71 + i as u64, crate::dataflow::testing::STEPS).await;
    }
}
