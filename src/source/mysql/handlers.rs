//! One handler per message the readers send the applier ([`Message`]).

use super::*;

impl Runner {
    /// Hands one message to its handler.
    pub(super) fn handle_message(&self, msg: Message, phases: &mut [Phase], progress: &mut Progress) -> Result<Flow> {
        match msg {
            Message::Transaction { end, timestamp, gtid, changes } => {
                self.on_transaction(phases, progress, end, timestamp, gtid, changes)
            }
            Message::Heartbeat { position, between_transactions } => {
                self.on_heartbeat(phases, progress, position, between_transactions)
            }
            Message::Ddl { end, table: u, statement, truncate: is_truncate } => {
                self.on_ddl(phases, progress, end, u, statement, is_truncate)
            }
            Message::TableError { table, message } => {
                self.fail_unit(phases, table, message);
                Ok(Flow::Continue)
            }
            Message::SnapshotStart { table: u, position, replay_from, chunks_total, rows_estimate, ranges } => {
                self.status().tables[u].snapshot_ranges = ranges;
                self.on_snapshot_start(phases, progress, u, position, replay_from, chunks_total, rows_estimate)
            }
            Message::SnapshotRows { table: u, batch, last_key } => {
                self.on_snapshot_rows(phases, progress, u, batch, last_key)
            }
            Message::SnapshotDone { table: u } => self.on_snapshot_done(phases, progress, u),
            Message::SchemaChange { end, gtid, tables } => self.on_schema_change(phases, progress, end, gtid, tables),
            Message::NewShard { end, table, shard, rejected } => {
                self.on_new_shard(progress, end, table, shard, rejected)
            }
        }
    }

    /// A transaction: rows of streaming units are committed, in commit order, with the position after it; rows of the other units are buffered.
    fn on_transaction(
        &self,
        phases: &mut [Phase],
        progress: &mut Progress,
        end: BinlogPosition,
        timestamp: u32,
        gtid: Option<String>,
        changes: Vec<(usize, RowChange)>,
    ) -> Result<Flow> {
        let src = &self.source;
        // Rows for streaming units, grouped per captured table in commit order;
        // rows for the other units are buffered per unit.
        let mut per_table: BTreeMap<usize, Vec<RowChange>> = BTreeMap::new();
        let mut buffered: BTreeMap<usize, Vec<RowChange>> = BTreeMap::new();
        for (u, c) in changes {
            match &phases[u] {
                Phase::Streaming(Some(at)) if end <= *at => {}
                Phase::Streaming(_) => per_table.entry(self.units[u].table).or_default().push(c),
                Phase::Pending(_) => buffered.entry(u).or_default().push(c),
                Phase::Loading { at, .. } if end > *at => buffered.entry(u).or_default().push(c),
                Phase::Loading { catch_up_from: Some(from), .. } if end > *from => {
                    per_table.entry(self.units[u].table).or_default().push(c)
                }
                Phase::Loading { .. } | Phase::Failed => {}
            }
        }
        for (u, rows) in buffered {
            if let Phase::Pending(buf) | Phase::Loading { buffer: buf, .. } = &mut phases[u] {
                buf.push((end.clone(), Buffered::Rows(rows)));
            }
        }
        let mut batches = Vec::with_capacity(per_table.len());
        for (t, rows) in per_table {
            batches.push((t, to_batch(&src.tables[t], rows)?));
        }
        // The binlog may replay from before the stored position (a resumed snapshot
        // needs it); the position never goes back.
        if progress.position.as_ref().is_none_or(|p| end > *p) {
            progress.position = Some(end.clone());
            if gtid.is_some() {
                progress.gtid = gtid;
            }
        }
        // Resumed snapshots whose catch-up this transaction completes.
        let caught_up = self.caught_up(phases, &end, progress);
        let refs: Vec<(&TableState, &ChangeBatch)> =
            batches.iter().map(|(t, b)| (src.tables[*t].state.as_ref(), b)).collect();
        let origin = CommitOrigin {
            source: Some(src.name.clone()),
            file: Some(end.file.clone()),
            pos: Some(end.pos),
            ts_ms: timestamp as i64 * 1000,
            snapshot: false,
        };
        src.dataflow.commit_from(&refs, src.progress_batch(progress)?, &origin)?;
        for u in caught_up {
            self.finish_snapshot(phases, u, progress)?;
        }
        let lag = (chrono::Utc::now().timestamp() - timestamp as i64).max(0) as f64;
        {
            let mut s = self.status();
            s.position = progress.position.clone();
            s.gtid = progress.gtid.clone();
            s.lag_seconds = Some(lag);
            s.last_error = None;
            if s.state == "reconnecting" || s.state == "starting" {
                s.state = if phases.iter().all(|p| matches!(p, Phase::Streaming(_) | Phase::Failed)) {
                    "streaming".into()
                } else {
                    "snapshotting".into()
                };
            }
        }
        self.applied.send_replace(progress.position.clone());
        Ok(Flow::Continue)
    }

    /// The upstream is idle: the stored position may move.
    fn on_heartbeat(
        &self,
        phases: &mut [Phase],
        progress: &mut Progress,
        position: BinlogPosition,
        between_transactions: bool,
    ) -> Result<Flow> {
        let src = &self.source;
        // An idle upstream whose binlog rotated (FLUSH LOGS, max_binlog_size) moves
        // the stored position to the new file: a restart then does not ask for a file
        // that may have been purged meanwhile, and real_time_recency sees the source
        // caught up with a position in the new file.
        let advanced = between_transactions && progress.position.as_ref().is_none_or(|p| position > *p);
        if advanced {
            progress.position = Some(position.clone());
        }
        let caught_up = self.caught_up(phases, &position, progress);
        if advanced || !caught_up.is_empty() {
            src.dataflow.commit(&[], src.progress_batch(progress)?)?;
        }
        for u in caught_up {
            self.finish_snapshot(phases, u, progress)?;
        }
        {
            let mut s = self.status();
            s.lag_seconds = Some(0.0);
            s.position = progress.position.clone();
        }
        if advanced {
            self.applied.send_replace(progress.position.clone());
        } else {
            self.applied.send_modify(|_| {});
        }
        Ok(Flow::Continue)
    }

    /// Upstream DDL on a unit's table: TRUNCATE is applied, anything else stops the unit.
    fn on_ddl(
        &self,
        phases: &mut [Phase],
        progress: &mut Progress,
        end: BinlogPosition,
        u: usize,
        statement: String,
        is_truncate: bool,
    ) -> Result<Flow> {
        let src = &self.source;
        let unit = &self.units[u];
        if is_truncate {
            match &mut phases[u] {
                Phase::Streaming(Some(at)) if end <= *at => {}
                Phase::Streaming(_) => {
                    let mut batch = src.progress_batch(progress)?;
                    if let Err(message) = truncate_unit(src, unit, &mut batch) {
                        self.fail_unit(phases, u, message);
                        // The position and what else changed are stored all the same.
                        src.dataflow.commit(&[], batch)?;
                    }
                }
                Phase::Pending(buf) => buf.push((end, Buffered::Truncate)),
                Phase::Loading { at, buffer, .. } if end > *at => buffer.push((end, Buffered::Truncate)),
                Phase::Loading { catch_up_from: Some(from), .. } if end > *from => {
                    if let Err(message) = truncate_unit(src, unit, &mut WriteBatch::default()) {
                        self.fail_unit(phases, u, message);
                    }
                }
                Phase::Loading { .. } => {}
                Phase::Failed => {}
            }
        } else {
            let message = format!(
                "upstream DDL on {}: {statement} — the table is frozen at binlog position {end}; \
                 recreate the source (DROP SOURCE ...; CREATE SOURCE ...) to capture the new schema",
                schema::quote_upstream(&unit.spec.database, &unit.upstream_table)
            );
            self.fail_unit(phases, u, message);
        }
        Ok(Flow::Continue)
    }

    /// A unit's snapshot view is open: it starts loading.
    #[allow(clippy::too_many_arguments)] // the message's fields, one by one
    fn on_snapshot_start(
        &self,
        phases: &mut [Phase],
        progress: &mut Progress,
        u: usize,
        position: BinlogPosition,
        replay_from: Option<BinlogPosition>,
        chunks_total: u64,
        rows_estimate: Option<u64>,
    ) -> Result<Flow> {
        let src = &self.source;
        if let Some(n) = rows_estimate {
            src.tables[self.units[u].table].state.expect_rows(n as usize);
        }
        let name = self.units[u].progress_name();
        let resumed_from = progress.resume.get(&name).map(|r| r.at.clone());
        // Bracketed by watermarks, a keyed table's view lies somewhere after
        // `replay_from`: every change after it is applied after the chunks (row images
        // are idempotent on a keyed table), and the snapshot is not finished before
        // the binlog is past `position`.
        let settles_at = replay_from.is_some().then(|| position.clone());
        let position = replay_from.unwrap_or(position);
        if let Phase::Pending(buf) = std::mem::replace(&mut phases[u], Phase::Failed) {
            // Changes after `position` wait for the last chunk. A resumed snapshot
            // also owes the table what happened between its first and this position
            // (to the rows already copied; for the others the new read has it, and
            // replaying row images is idempotent on a keyed table).
            // Changes past `position` already here: the binlog has delivered the
            // whole catch-up.
            let delivered = buf.iter().any(|(p, _)| *p >= position);
            let mut catch_up = Vec::new();
            let mut kept = Vec::new();
            for (p, b) in buf {
                if p > position {
                    kept.push((p, b));
                } else if resumed_from.as_ref().is_some_and(|from| p > *from) {
                    catch_up.push(b);
                }
            }
            // The rest of the catch-up arrives with the binlog (it may lag behind).
            let catch_up_from = resumed_from.clone().filter(|from| *from < position && !delivered);
            if catch_up_from.is_none() {
                if let Some(r) = progress.resume.get_mut(&name) {
                    r.at = position.clone();
                }
            }
            if resumed_from.is_some() && !self.replay(phases, u, catch_up, progress)? {
                return Ok(Flow::Continue);
            }
            let reader_at = progress.position.as_ref();
            phases[u] = Phase::Loading {
                at: position,
                buffer: kept,
                started: Instant::now(),
                catch_up_from,
                settles_at: settles_at.filter(|high| reader_at.is_none_or(|r| r < high)),
                read: false,
            };
        }
        let mut s = self.status();
        let ts = &mut s.tables[u];
        ts.state = "snapshotting".into();
        ts.chunks_total = chunks_total.max(ts.chunks_done);
        Ok(Flow::Continue)
    }

    /// A snapshot chunk: committed with where a resumed snapshot would continue.
    fn on_snapshot_rows(
        &self,
        phases: &mut [Phase],
        progress: &mut Progress,
        u: usize,
        batch: RecordBatch,
        last_key: Option<Vec<Vec<u8>>>,
    ) -> Result<Flow> {
        let src = &self.source;
        let n = batch.num_rows() as u64;
        let change = ChangeBatch { weights: vec![1; batch.num_rows()], data: batch, mode: ApplyMode::Upsert };
        let state = &src.tables[self.units[u].table].state;
        // Until a resumed snapshot has caught up, its stored position stays the old one.
        let (elapsed, at) = match &phases[u] {
            Phase::Loading { at, started, catch_up_from, .. } => {
                (started.elapsed().as_secs_f64(), Some(catch_up_from.as_ref().unwrap_or(at).clone()))
            }
            _ => (0.0, None),
        };
        let (rows_copied, chunks_done) = {
            let mut s = self.status();
            let ts = &mut s.tables[u];
            ts.rows_copied += n;
            ts.chunks_done += 1;
            ts.chunks_total = ts.chunks_total.max(ts.chunks_done);
            if elapsed > 0.0 {
                ts.rows_per_second = ts.rows_copied as f64 / elapsed;
            }
            (ts.rows_copied, ts.chunks_done)
        };
        // The chunk and how far the snapshot got are stored together.
        let extra = match (last_key, at) {
            (Some(after), Some(at)) => {
                let r = SnapshotResume { at, after, rows_copied, chunks_done };
                progress.resume.insert(self.units[u].progress_name(), r);
                src.progress_batch(progress)?
            }
            _ => WriteBatch::default(),
        };
        let origin = CommitOrigin {
            source: Some(src.name.clone()),
            snapshot: true,
            ts_ms: crate::change::now_ms(),
            ..CommitOrigin::default()
        };
        src.dataflow.commit_from(&[(state.as_ref(), &change)], extra, &origin)?;
        Ok(Flow::Continue)
    }

    /// A unit's last snapshot chunk arrived.
    fn on_snapshot_done(&self, phases: &mut [Phase], progress: &mut Progress, u: usize) -> Result<Flow> {
        let mut ready = false;
        if let Phase::Loading { read, catch_up_from, settles_at, .. } = &mut phases[u] {
            *read = true;
            ready = catch_up_from.is_none() && settles_at.is_none();
        }
        if ready {
            self.finish_snapshot(phases, u, progress)?;
        }
        Ok(Flow::Continue)
    }

    /// An upstream ALTER the captured tables follow: their new descriptions, then a restart of the read.
    fn on_schema_change(
        &self,
        phases: &mut [Phase],
        progress: &mut Progress,
        end: BinlogPosition,
        gtid: Option<String>,
        tables: Vec<(usize, TableSpec, Option<Vec<Cell>>)>,
    ) -> Result<Flow> {
        let last = tables.len() - 1;
        for (i, (u, spec, values)) in tables.into_iter().enumerate() {
            let position = (i == last).then_some((&end, &gtid));
            if matches!(phases[u], Phase::Failed) && position.is_none() {
                continue;
            }
            let changed = if self.units[u].spec.shards.is_empty() {
                self.change_schema(phases, u, spec, values, position, progress)
            } else {
                self.change_shard_schema(phases, u, spec, values.unwrap_or_default(), position, progress)
            };
            if let Err(e) = changed {
                self.fail_unit(phases, u, format!("cannot follow the upstream ALTER TABLE at {end}: {e}"));
            }
        }
        Ok(Flow::Restart)
    }

    /// A new upstream table matching a shard pattern.
    fn on_new_shard(
        &self,
        progress: &mut Progress,
        end: BinlogPosition,
        table: usize,
        shard: String,
        rejected: Option<String>,
    ) -> Result<Flow> {
        let src = &self.source;
        let name = &src.tables[table].spec.name;
        let upstream = format!("{}.{}", src.tables[table].spec.database, shard);
        if let Some(why) = rejected {
            tracing::warn!(source = %src.name, table = %name, "{why}");
            let mut s = self.status();
            if !s.tables.iter().any(|t| t.upstream == upstream) {
                s.tables.push(rejected_shard_status(name.clone(), upstream.clone(), why.clone()));
            }
            drop(s);
            progress.rejected_shards.insert(upstream, (name.clone(), why));
            src.dataflow.commit(&[], src.progress_batch(progress)?)?;
            return Ok(Flow::Continue);
        }
        tracing::info!(source = %src.name, table = %name, %shard, "a new upstream shard joins the table");
        let spec = src.tables[table].spec.clone();
        let unit = Unit { table, spec: spec.clone(), table_spec: spec, upstream_table: shard.clone() };
        progress.new_shards.entry_or_default(name).push(shard);
        progress.streaming.add(unit.progress_name());
        // Everything before the CREATE TABLE is applied (messages arrive in order).
        if progress.position.as_ref().is_none_or(|p| end > *p) {
            progress.position = Some(end);
        }
        src.dataflow.commit(&[], src.progress_batch(progress)?)?;
        Ok(Flow::Restart)
    }
}

/// Applies an upstream TRUNCATE of one unit: the whole table, or for a shard only its rows,
/// which needs the table-name column to tell them apart.
pub(super) fn truncate_unit(src: &MySqlSource, unit: &Unit, extra: &mut WriteBatch) -> std::result::Result<(), String> {
    let t = &src.tables[unit.table];
    if unit.spec.shards.is_empty() {
        return truncate(src, t, extra).map_err(|e| e.to_string());
    }
    let Some(name_at) = unit.table_spec.table_name_index() else {
        return Err(format!(
            "TRUNCATE of shard {} cannot be applied to the merged table {} without INCLUDE TABLE NAME; \
             recreate the source with INCLUDE TABLE NAME AS <column>",
            unit.upstream_table, unit.spec.name
        ));
    };
    let all = t.state.snapshot().map_err(|e| e.to_string())?;
    let names = all.column(name_at);
    let mask: datafusion::arrow::array::BooleanArray = names
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .ok_or("the table-name column is not text")?
        .iter()
        .map(|n| Some(n == Some(unit.upstream_table.as_str())))
        .collect();
    let rows = datafusion::arrow::compute::filter_record_batch(&all, &mask).map_err(|e| e.to_string())?;
    let change = ChangeBatch { weights: vec![-1; rows.num_rows()], data: rows, mode: ApplyMode::Upsert };
    src.dataflow.commit(&[(t.state.as_ref(), &change)], std::mem::take(extra)).map_err(|e| e.to_string())
}

/// Deletes every row of a captured table (upstream TRUNCATE, snapshot restart).
pub(super) fn truncate(src: &MySqlSource, t: &CapturedTable, extra: &mut WriteBatch) -> Result<()> {
    let all = t.state.snapshot()?;
    let change = ChangeBatch { weights: vec![-1; all.num_rows()], data: all, mode: ApplyMode::Upsert };
    src.dataflow.commit(&[(t.state.as_ref(), &change)], std::mem::take(extra))
}

/// Row images → an upsert change batch: −before, +after, in order (the cells move into the
/// Arrow builders).
pub(super) fn to_batch(t: &CapturedTable, rows: Vec<RowChange>) -> Result<ChangeBatch> {
    let mut builders = snapshot::new_builders(&t.spec)?;
    let mut weights = Vec::with_capacity(rows.len() * 2);
    let key = &t.spec.key;
    for mut r in rows {
        // An update that keeps its key needs only the new image: the batch is applied as
        // upserts, and the table knows the row it replaces (a key changed by collation only,
        // 'a' → 'A', differs here and keeps its delete).
        if let (Some(before), Some(after)) = (&r.before, &r.after) {
            if !key.is_empty() && key.iter().all(|&k| before.get(k) == after.get(k)) {
                r.before = None;
            }
        }
        for (cells, w) in [(r.before, -1), (r.after, 1)] {
            let Some(cells) = cells else { continue };
            for (b, c) in builders.iter_mut().zip(cells) {
                b.append(c)?;
            }
            weights.push(w);
        }
    }
    let data = snapshot::finish(&t.state.schema(), &mut builders)?;
    Ok(ChangeBatch { data, weights, mode: ApplyMode::Upsert })
}
