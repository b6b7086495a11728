//! Upstream `ALTER TABLE`: what a change of a table's description does to the captured table.

use mysql_async::prelude::Queryable;

use super::*;

/// What an upstream `ALTER TABLE` does to a captured table, from its description before and
/// after (see [`evolve`]).
#[derive(Debug, PartialEq)]
pub enum Evolution {
    /// Nothing the local table holds changed (an index, a comment, an engine).
    Unchanged,
    /// The table gains the columns `added` (local indexes, appended after the old ones), or
    /// only the upstream details of old columns changed (a wider VARCHAR, nullability):
    /// `spec` is the new local description. `present`: columns a shard lacked
    /// ([`TableSpec::absent`]) that it now has upstream.
    Changed { spec: Box<TableSpec>, added: Vec<usize>, present: Vec<usize> },
}

/// Compares a captured table's (or shard's) description with the upstream table's now.
/// Columns may be added anywhere (they are appended locally, see
/// [`TableSpec::upstream_positions`]; the table-name column keeps its place); every old
/// column must still be there with the same kind, and the primary key must not change —
/// otherwise the reason, worded for `hw_catalog.source_tables.last_error`. A column the shard
/// lacked may appear (with the merged table's kind) or stay absent.
pub fn evolve(old: &TableSpec, now: &TableSpec) -> std::result::Result<Evolution, String> {
    let mut columns = old.columns.clone();
    // Per local column read from upstream, its position upstream.
    let mut position: Vec<Option<usize>> = vec![None; old.columns.len()];
    let mut absent = Vec::new();
    let mut present = Vec::new();
    for (i, c) in old.columns.iter().enumerate() {
        if Some(i) == old.table_name_index() {
            continue;
        }
        let lacked = old.absent.iter().find(|(a, _)| *a == i);
        let Some(p) = now.columns.iter().position(|n| n.name == c.name) else {
            match lacked {
                Some(a) => absent.push(a.clone()),
                None => return Err(format!("column {} was dropped or renamed upstream", quote_ident(&c.name))),
            }
            continue;
        };
        let n = &now.columns[p];
        // Text converted to UTF-8 (CONVERT TO CHARACTER SET utf8mb4) is the same text: only
        // how the binlog's bytes are decoded changes. Other conversions may have replaced
        // characters upstream without row events.
        let to_utf8 = match (&c.kind, &n.kind) {
            (Kind::Text { .. }, Kind::Text { latin1: false, charset, .. }) => {
                charset.as_deref().is_none_or(Charset::is_utf8)
            }
            _ => false,
        };
        if lacked.is_some() {
            // Another shard gave the merged table this column first: this one must agree.
            if n.kind != c.kind || n.nullable != c.nullable {
                return Err(format!(
                    "column {} was added upstream as {}{}, but the merged table has it as {}{} (from another shard)",
                    quote_ident(&c.name),
                    n.mysql_type,
                    if n.nullable { "" } else { " NOT NULL" },
                    c.mysql_type,
                    if c.nullable { "" } else { " NOT NULL" },
                ));
            }
            present.push(i);
        } else if (n.kind != c.kind && !to_utf8) || !widens(&c.mysql_type, &n.mysql_type) {
            // Narrowing (VARCHAR(20) → VARCHAR(10)) or a nullability change can rewrite rows
            // upstream without row events (truncation, NULL → 0), and views compiled over a
            // NOT NULL column cannot take NULLs: such a table is captured again instead.
            return Err(format!(
                "column {} changed type upstream from {} to {}",
                quote_ident(&c.name),
                c.mysql_type,
                n.mysql_type
            ));
        } else if n.nullable != c.nullable {
            let now = if n.nullable { "nullable" } else { "NOT NULL" };
            return Err(format!("column {} became {now} upstream", quote_ident(&c.name)));
        }
        columns[i] = n.clone();
        position[i] = Some(p);
    }
    let name_at = old.table_name_index();
    let key_names = |spec: &TableSpec| {
        spec.key.iter().filter(|&&k| Some(k) != name_at).map(|&k| spec.columns[k].name.clone()).collect::<Vec<_>>()
    };
    if key_names(old) != now.key.iter().map(|&k| now.columns[k].name.clone()).collect::<Vec<_>>() {
        return Err("the primary key changed upstream".into());
    }
    let mut added = Vec::new();
    for (p, n) in now.columns.iter().enumerate() {
        if !position.contains(&Some(p)) {
            added.push(columns.len());
            columns.push(n.clone());
            position.push(Some(p));
        }
    }
    let positions: Vec<usize> = position.into_iter().flatten().collect();
    let in_order = positions.iter().enumerate().all(|(i, &p)| i == p);
    let upstream_positions = if in_order { Vec::new() } else { positions };
    // New columns go after the table-name column, which stays where it is.
    let table_name_at = if added.is_empty() { old.table_name_at } else { name_at };
    if columns == old.columns && upstream_positions == old.upstream_positions && absent == old.absent {
        return Ok(Evolution::Unchanged);
    }
    let spec = TableSpec { columns, upstream_positions, table_name_at, absent, ..old.clone() };
    Ok(Evolution::Changed { spec: Box::new(spec), added, present })
}

/// A merged table's description after one of its shards followed an upstream `ALTER TABLE`
/// at `at`: `old` described the shard before, `evolved` (from [`evolve`]) after, `values` are
/// what the ALTER gave the shard's rows in the `present` columns, then in the `added` ones.
///
/// A shard that gains columns the table lacks (the first shard altered) makes them the
/// table's: the table is described by that shard from now on, and every other shard gets a
/// description of its own in which the new columns are [`TableSpec::absent`], filled with
/// the values the ALTER gave (so a shard altered alike later agrees with the rows it has).
/// A shard that gains columns the table has (a later shard altered) must give them the same
/// values. Returns the new description and the values the table's rows get in the columns
/// it gains (empty when it gains none), or why the shard cannot follow.
#[allow(clippy::too_many_arguments)]
pub fn merge_shard_change(
    table: &TableSpec,
    shards: &[String],
    shard: &str,
    old: &TableSpec,
    mut evolved: TableSpec,
    added: &[usize],
    present: &[usize],
    values: &[Cell],
    at: &BinlogPosition,
) -> std::result::Result<(TableSpec, Vec<Cell>), String> {
    for (&i, value) in present.iter().zip(values) {
        let given = old.absent.iter().find(|(a, _)| *a == i).map(|(_, v)| v);
        if given != Some(value) {
            return Err(format!(
                "column {} was added to this shard with the value {} for existing rows, but another shard added it                  with {} and this shard's rows hold that: give each shard the same default, or re-read the table                  with ALTER SOURCE ... RESNAPSHOT",
                quote_ident(&old.columns[i].name),
                value.describe(),
                given.map_or("nothing".into(), Cell::describe),
            ));
        }
    }
    let new_values = values[present.len()..].to_vec();
    evolved.since = Some(at.clone());
    evolved.shard_specs.clear();
    if added.is_empty() {
        let mut merged = table.clone();
        merged.shard_specs.insert(shard.to_string(), evolved);
        return Ok((merged, Vec::new()));
    }
    if !evolved.absent.is_empty() {
        let names = |idx: &mut dyn Iterator<Item = usize>| {
            idx.map(|i| quote_ident(&evolved.columns[i].name)).collect::<Vec<_>>().join(", ")
        };
        return Err(format!(
            "the shard gained columns ({}) before the columns ({}) other shards of {} gained first: give every shard              the same columns, in the same order of ALTER TABLEs",
            names(&mut added.iter().copied()),
            names(&mut evolved.absent.iter().map(|(i, _)| *i)),
            quote_ident(&table.name),
        ));
    }
    let mut merged = TableSpec {
        columns: evolved.columns.clone(),
        upstream_positions: evolved.upstream_positions.clone(),
        since: evolved.since.clone(),
        table_name_at: evolved.table_name_at,
        absent: Vec::new(),
        shard_specs: table.shard_specs.clone(),
        ..table.clone()
    };
    merged.shard_specs.remove(shard);
    for other in shards.iter().filter(|s| *s != shard) {
        let mut lagging = table
            .shard_specs
            .get(other)
            .cloned()
            .unwrap_or_else(|| TableSpec { shard_specs: Default::default(), ..table.clone() });
        let name_at = lagging.table_name_index();
        lagging.columns.extend(added.iter().map(|&i| evolved.columns[i].clone()));
        if lagging.table_name_column {
            lagging.table_name_at = name_at;
        }
        lagging.absent.extend(added.iter().copied().zip(new_values.iter().cloned()));
        merged.shard_specs.insert(other.clone(), lagging);
    }
    Ok((merged, new_values))
}

/// The values MySQL gave the existing rows in `columns`, just added by `ALTER TABLE`: their
/// constant defaults, or a NOT NULL column's implicit default. MariaDB shows a default as a
/// SQL literal (`'it''s'`, `1.50`, `b'101'`), which is evaluated by the server and read as
/// the snapshot reads values; MySQL shows it as its text. `None` when a value is not a
/// constant (`DEFAULT CURRENT_TIMESTAMP`, generated and AUTO_INCREMENT columns): only a new
/// snapshot knows what each row got.
pub async fn added_values(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
    columns: &[ColumnSpec],
) -> Result<Option<Vec<Cell>>> {
    conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4").await.map_err(upstream)?;
    // mysql_common reads MariaDB's `5.5.5-10.x` handshake as 10.x; MySQL is below 10.
    let mariadb = conn.server_version() >= (10, 0, 0);
    let described: Vec<(String, Option<String>, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .map_err(upstream)?;
    let mut values: Vec<Cell> = Vec::with_capacity(columns.len());
    let mut evaluate: Vec<(usize, &ColumnSpec, &str)> = Vec::new();
    for c in columns {
        let Some((_, default, extra)) = described.iter().find(|(n, ..)| *n == c.name) else {
            return Err(Error::Internal(format!("column {} is not described upstream", c.name)));
        };
        let extra = extra.to_ascii_uppercase();
        if extra.contains("GENERATED") || extra.contains("AUTO_INCREMENT") {
            return Ok(None);
        }
        match default.as_deref() {
            None | Some("NULL") if c.nullable => values.push(Cell::Null),
            None | Some("NULL") => match implicit_default(&c.kind) {
                Some(v) => values.push(v),
                None => return Ok(None),
            },
            // MariaDB shows expressions as written (`current_timestamp()`).
            Some(d) if mariadb && !is_literal(d) => return Ok(None),
            Some(d) if mariadb => {
                evaluate.push((values.len(), c, d));
                values.push(Cell::Null);
            }
            Some(d) if d.starts_with("b'") || d.starts_with("0x") => return Ok(None),
            Some(d) => values.push(cell_from_text(&c.kind, Some(d.as_bytes()))?),
        }
    }
    if !evaluate.is_empty() {
        let literals: Vec<&str> = evaluate.iter().map(|(_, _, d)| *d).collect();
        let row: Option<mysql_async::Row> =
            conn.query_first(format!("SELECT {}", literals.join(", "))).await.map_err(upstream)?;
        let row = row.ok_or_else(|| Error::Internal("evaluating column defaults returned no row".into()))?;
        for (i, (slot, c, _)) in evaluate.into_iter().enumerate() {
            let raw = match row.as_ref(i) {
                Some(mysql_async::Value::Bytes(b)) => Some(b.as_slice()),
                _ => None,
            };
            values[slot] = cell_from_text(&c.kind, raw)?;
        }
    }
    Ok(Some(values))
}

/// Whether upstream column type `new` holds every value of `old` unchanged: the same type,
/// a longer length (`varchar(10)` → `varchar(20)`), a bigger TEXT/BLOB, or an integer
/// display width dropped or changed (MySQL 8 no longer shows them).
fn widens(old: &str, new: &str) -> bool {
    let (old, new) = (old.to_ascii_lowercase(), new.to_ascii_lowercase());
    if old == new {
        return true;
    }
    let split = |t: &str| -> (String, Option<u64>, String) {
        match (t.find('('), t.find(')')) {
            (Some(a), Some(b)) if a < b => {
                (t[..a].to_string(), t[a + 1..b].parse().ok(), t[b + 1..].trim().to_string())
            }
            _ => {
                let (base, rest) = t.split_once(' ').unwrap_or((t, ""));
                (base.to_string(), None, rest.trim().to_string())
            }
        }
    };
    let ((ob, ol, orest), (nb, nl, nrest)) = (split(&old), split(&new));
    let rank = |b: &str| {
        ["tiny", "", "medium", "long"].iter().position(|p| b == format!("{p}text") || b == format!("{p}blob"))
    };
    let family = |b: &str| if b.ends_with("text") { 0 } else { 1 };
    if let (Some(o), Some(n)) = (rank(&ob), rank(&nb)) {
        return family(&ob) == family(&nb) && n >= o && orest == nrest;
    }
    if ob != nb || orest != nrest {
        return false;
    }
    let integer = ["tinyint", "smallint", "mediumint", "int", "integer", "bigint"].contains(&ob.as_str());
    match (ol, nl) {
        (Some(o), Some(n)) => n >= o || integer,
        _ => integer,
    }
}

/// Whether MariaDB's `COLUMN_DEFAULT` text is a literal rather than an expression.
fn is_literal(d: &str) -> bool {
    d.starts_with('\'') || d.starts_with("b'") || d.starts_with("x'") || d.starts_with("0x") || d.parse::<f64>().is_ok()
}

/// What MySQL puts in existing rows for a NOT NULL column added without a DEFAULT; `None`
/// for kinds where that value is not one Headwater stores as such (zero dates).
fn implicit_default(kind: &Kind) -> Option<Cell> {
    Some(match kind {
        Kind::Int16 | Kind::Int32 | Kind::MediumInt | Kind::Int64 => Cell::Int(0),
        Kind::Decimal { .. } => Cell::Text("0".into()),
        Kind::Float32 => Cell::Float(0.0),
        Kind::Float64 => Cell::Double(0.0),
        Kind::Bit => Cell::UInt(0),
        Kind::Text { .. } | Kind::Set { .. } => Cell::Text(String::new()),
        Kind::Enum { labels } => Cell::Text(labels.first()?.clone()),
        Kind::Binary => Cell::Bytes(Vec::new()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::discovery::add_table_name_column;
    use super::*;

    fn col(name: &str, kind: Kind, mysql_type: &str) -> ColumnSpec {
        ColumnSpec { name: name.into(), kind, nullable: true, mysql_type: mysql_type.into() }
    }

    fn spec(columns: Vec<ColumnSpec>, key: Vec<usize>) -> TableSpec {
        TableSpec::new("d", "t", "t", columns, key)
    }

    #[test]
    fn evolution_appends_new_columns_and_refuses_the_rest() {
        let id = col("id", Kind::Int32, "int(11)");
        let v = col("v", Kind::Int64, "bigint(20)");
        let note = col("note", Kind::Text { latin1: false, charset: None, json: false }, "varchar(20)");
        let old = spec(vec![id.clone(), v.clone()], vec![0]);
        // Same columns (an index was added): nothing to do.
        assert_eq!(evolve(&old, &old.clone()), Ok(Evolution::Unchanged));
        // Appended at the end: same order.
        let now = spec(vec![id.clone(), v.clone(), note.clone()], vec![0]);
        let Ok(Evolution::Changed { spec: s, added, .. }) = evolve(&old, &now) else { panic!() };
        assert_eq!((s.columns.len(), added, s.upstream_positions.len()), (3, vec![2], 0));
        // Added FIRST: appended locally, read from position 0 of the row images.
        let now = spec(vec![note.clone(), id.clone(), v.clone()], vec![1]);
        let Ok(Evolution::Changed { spec: s, added, .. }) = evolve(&old, &now) else { panic!() };
        assert_eq!(s.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "v", "note"]);
        assert_eq!((added, s.upstream_positions.clone(), s.key.clone()), (vec![2], vec![1, 2, 0], vec![0]));
        assert_eq!((0..3).map(|i| s.upstream_position(i)).collect::<Vec<_>>(), [1, 2, 0]);
        // A wider VARCHAR keeps the kind: only the description changes.
        let wider = col("note", Kind::Text { latin1: false, charset: None, json: false }, "varchar(40)");
        let now3 = spec(vec![id.clone(), v.clone(), wider], vec![0]);
        let base = spec(vec![id.clone(), v.clone(), note.clone()], vec![0]);
        assert!(matches!(evolve(&base, &now3), Ok(Evolution::Changed { added, .. }) if added.is_empty()));
        // Text converted to UTF-8: followed, decoded as UTF-8 from then on; to gbk: refused.
        let gbk = col("note", Kind::Text { latin1: false, charset: Some("gbk".into()), json: false }, "varchar(20)");
        let from_gbk = spec(vec![id.clone(), v.clone(), gbk.clone()], vec![0]);
        let Ok(Evolution::Changed { spec: s, added, .. }) = evolve(&from_gbk, &base) else { panic!() };
        assert_eq!((s.columns[2].kind.clone(), added.len()), (note.kind.clone(), 0));
        assert!(evolve(&base, &from_gbk).is_err());
        // Dropped, retyped, re-keyed: refused with the reason.
        assert!(evolve(&old, &spec(vec![id.clone()], vec![0])).unwrap_err().contains("dropped"));
        let retyped = spec(vec![id.clone(), col("v", Kind::Int32, "int(11)")], vec![0]);
        assert!(evolve(&old, &retyped).unwrap_err().contains("changed type upstream from bigint(20) to int(11)"));
        assert!(evolve(&old, &spec(vec![id.clone(), v.clone()], vec![0, 1])).unwrap_err().contains("primary key"));
        // Narrower text, a nullability change, a conversion away from UTF-8: refused.
        let narrower = col("note", Kind::Text { latin1: false, charset: None, json: false }, "varchar(10)");
        assert!(evolve(&base, &spec(vec![id.clone(), v.clone(), narrower], vec![0])).is_err());
        let not_null = ColumnSpec { nullable: false, ..note.clone() };
        assert!(evolve(&base, &spec(vec![id.clone(), v.clone(), not_null], vec![0])).unwrap_err().contains("NOT NULL"));
        let latin1 = col("note", Kind::Text { latin1: true, charset: None, json: false }, "varchar(20)");
        assert!(evolve(&base, &spec(vec![id, v, latin1], vec![0])).is_err());
    }

    /// Shards `a`, `b`, `c` merged with a table-name column: `a` gains a column first, `b`
    /// follows alike (the column in another place upstream), `c` with another value stops.
    #[test]
    fn shards_gain_columns_one_after_another() {
        let id = col("id", Kind::Int32, "int(11)");
        let v = col("v", Kind::Int64, "bigint(20)");
        let note = col("note", Kind::Text { latin1: false, charset: None, json: false }, "varchar(20)");
        let mut table = spec(vec![id.clone(), v.clone()], vec![0]);
        table.shards = vec!["a".into(), "b".into(), "c".into()];
        add_table_name_column(&mut table, "shard").unwrap();
        let shards = table.shards.clone();
        let at = |pos| BinlogPosition { file: "bin.000001".into(), pos };
        let none = Cell::Text("none".into());

        // `a` gains `note` after the table-name column, which keeps its place.
        let now = spec(vec![id.clone(), v.clone(), note.clone()], vec![0]);
        let Ok(Evolution::Changed { spec: a, added, present }) = evolve(&table, &now) else { panic!() };
        assert_eq!((added.clone(), present.clone(), a.table_name_index()), (vec![3], vec![], Some(2)));
        assert_eq!(a.upstream_indexes(), [0, 1, 3]);
        assert_eq!(a.key, [0, 2]);
        let (merged, values) = merge_shard_change(
            &table,
            &shards,
            "a",
            &table,
            *a,
            &added,
            &present,
            std::slice::from_ref(&none),
            &at(100),
        )
        .unwrap();
        assert_eq!(values, std::slice::from_ref(&none));
        assert_eq!(merged.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "v", "shard", "note"]);
        assert_eq!((merged.since.clone(), merged.shard_specs.len()), (Some(at(100)), 2));
        let b = merged.for_shard("b").unwrap();
        assert_eq!(
            (b.absent.clone(), b.upstream_indexes(), b.since.clone()),
            (vec![(3, none.clone())], vec![0, 1], None)
        );
        assert_eq!(b.fixed_cells("b"), [(2, Cell::Text("b".into())), (3, none.clone())]);
        assert!(merged.for_shard("a").is_none(), "the table describes the shard that led");

        // `b` gains it FIRST upstream with the same default: it follows, the table keeps its width.
        let now_b = spec(vec![note.clone(), id.clone(), v.clone()], vec![1]);
        let Ok(Evolution::Changed { spec: b2, added, present }) = evolve(b, &now_b) else { panic!() };
        assert_eq!((added.clone(), present.clone(), b2.absent.len()), (vec![], vec![3], 0));
        assert_eq!(b2.upstream_positions, [1, 2, 0]);
        let (merged2, values) =
            merge_shard_change(&merged, &shards, "b", b, *b2, &added, &present, std::slice::from_ref(&none), &at(200))
                .unwrap();
        assert!(values.is_empty());
        assert_eq!(merged2.columns, merged.columns);
        let b = merged2.for_shard("b").unwrap();
        assert_eq!((b.absent.len(), b.since.clone(), b.upstream_position(2)), (0, Some(at(200)), 0));

        // `c` gains it with another default: refused, naming both values.
        let c = merged2.for_shard("c").unwrap();
        let Ok(Evolution::Changed { spec: c2, added, present }) = evolve(c, &now) else { panic!() };
        let other = Cell::Text("other".into());
        let why = merge_shard_change(&merged2, &shards, "c", c, *c2, &added, &present, &[other], &at(300)).unwrap_err();
        assert!(why.contains("'other'") && why.contains("'none'") && why.contains("same default"), "{why}");
        // ... or with a column the table does not have before the one it lacks: refused.
        let extra = col("extra", Kind::Int32, "int(11)");
        let now_c = spec(vec![id.clone(), v.clone(), extra], vec![0]);
        let Ok(Evolution::Changed { spec: c3, added, present }) = evolve(c, &now_c) else { panic!() };
        let why =
            merge_shard_change(&merged2, &shards, "c", c, *c3, &added, &present, &[Cell::Null], &at(300)).unwrap_err();
        assert!(why.contains("same columns"), "{why}");
        // A shard lacking a column may lose nothing else: dropping `v` is still refused.
        assert!(evolve(c, &spec(vec![id], vec![0])).unwrap_err().contains("dropped"));
    }

    #[test]
    fn widening_types() {
        for (old, new) in [
            ("varchar(10)", "varchar(20)"),
            ("text", "mediumtext"),
            ("blob", "longblob"),
            ("int(11)", "int"),
            ("bigint(20) unsigned", "bigint unsigned"),
            ("VARCHAR(5)", "varchar(5)"),
        ] {
            assert!(widens(old, new), "{old} -> {new}");
        }
        for (old, new) in
            [("varchar(20)", "varchar(10)"), ("mediumtext", "text"), ("text", "blob"), ("char(5)", "varchar(5)")]
        {
            assert!(!widens(old, new), "{old} -> {new}");
        }
    }

    #[test]
    fn literal_defaults() {
        for d in ["'it''s'", "1.50", "-3", "b'101'", "0x1F"] {
            assert!(is_literal(d), "{d}");
        }
        for d in ["current_timestamp()", "uuid()", "(1 + 1)"] {
            assert!(!is_literal(d), "{d}");
        }
        assert_eq!(implicit_default(&Kind::Int32), Some(Cell::Int(0)));
        assert_eq!(
            implicit_default(&Kind::Enum { labels: vec!["a".into(), "b".into()] }),
            Some(Cell::Text("a".into()))
        );
        assert_eq!(implicit_default(&Kind::Date), None);
    }
}
