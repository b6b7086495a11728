//! The applier: one task per source that receives every reader's messages in order, drives
//! each unit through its phases (see the module above) and reconnects with backoff.

use super::*;
use crate::sync::Unpoisoned;

impl Runner {
    pub(super) fn status(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        self.status.locked()
    }

    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let result = tokio::select! {
                r = self.run_once() => r,
                _ = shutdown.changed() => return,
            };
            match result {
                Err(Error::SourceLost(why)) => {
                    let message = format!(
                        "{why}. Re-snapshot every table of the source with: ALTER SOURCE {} RESNAPSHOT",
                        crate::ident::quote_ident(&self.source.name)
                    );
                    tracing::error!(source = %self.source.name, "{message}");
                    {
                        let mut s = self.status();
                        s.state = "error".into();
                        s.last_error = Some(message);
                    }
                    let _ = shutdown.changed().await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(source = %self.source.name, "source stopped: {e}; reconnecting in {backoff:?}");
                    let mut s = self.status();
                    s.state = "reconnecting".into();
                    s.last_error = Some(e.to_string());
                }
                Ok(()) => {
                    // The units changed (a shard joined, a table gained columns): start over
                    // from the stored position.
                    let reloaded = match Arc::get_mut(&mut self.source) {
                        Some(src) => src.reload_specs(),
                        None => Err(Error::Internal("the source is still in use".into())),
                    };
                    if let Err(e) = reloaded {
                        tracing::error!(source = %self.source.name, "cannot restart the source: {e}");
                        {
                            let mut s = self.status();
                            s.state = "error".into();
                            s.last_error = Some(e.to_string());
                        }
                        let _ = shutdown.changed().await;
                        return;
                    }
                    self.units = self.source.units();
                    let fresh = self.source.table_statuses(&self.units);
                    let mut s = self.status();
                    let old = std::mem::replace(&mut s.tables, fresh);
                    for new in s.tables.iter_mut().filter(|t| t.state != "error") {
                        if let Some(o) = old.iter().find(|o| o.upstream == new.upstream) {
                            *new = o.clone();
                        }
                    }
                    backoff = Duration::from_millis(500);
                    continue;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    pub(super) async fn run_once(&self) -> Result<()> {
        let src = &self.source;
        let mut progress = src.load_progress()?;
        let mut conn = mysql_async::Conn::new(src.opts.clone()).await.map_err(upstream)?;
        let start = match progress.position.clone() {
            Some(p) => p,
            None => {
                let p = current_position(&mut conn).await?;
                if !src.options.snapshot {
                    for unit in &self.units {
                        progress.streaming.add(unit.progress_name());
                    }
                }
                progress.position = Some(p.clone());
                src.store.apply(src.progress_batch(&mut progress)?)?;
                p
            }
        };
        if progress.gtid.is_none() {
            // MariaDB maps a position to its GTID state; MySQL has no such function (its
            // GTIDs appear with the first transaction read).
            progress.gtid = conn
                .exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (&start.file, start.pos))
                .await
                .ok()
                .flatten()
                .flatten()
                .filter(|g| !g.is_empty());
        }
        drop(conn);
        // Units whose snapshot had not finished (a crash or reconnect cut it short). A keyed
        // table keeps the chunks it has: each unit resumes after its last stored chunk, or
        // starts afresh if none was stored. A multiset cannot tell copied rows apart: it is
        // emptied and every unit of it is snapshotted again.
        let mut to_snapshot: Vec<(usize, Option<Vec<Vec<u8>>>)> = Vec::new();
        let mut binlog_start = start.clone();
        for (ti, t) in src.tables.iter().enumerate() {
            let units: Vec<usize> = (0..self.units.len()).filter(|&u| self.units[u].table == ti).collect();
            let unfinished: Vec<usize> = units
                .iter()
                .copied()
                .filter(|&u| {
                    let name = self.units[u].progress_name();
                    !progress.streaming.contains(&name) && !progress.failed.contains_key(&name)
                })
                .collect();
            if unfinished.is_empty() {
                continue;
            }
            if snapshot::resume_key(&t.spec).is_some() {
                for u in unfinished {
                    let after = progress.resume.get(&self.units[u].progress_name()).map(|r| {
                        tracing::info!(
                            source = %src.name, table = %t.spec.name, rows = r.rows_copied, at = %r.at,
                            "resuming the snapshot after the last stored chunk"
                        );
                        if r.at < binlog_start {
                            binlog_start = r.at.clone();
                        }
                        r.after.clone()
                    });
                    to_snapshot.push((u, after));
                }
            } else {
                truncate(src, t, &mut WriteBatch::default())?;
                for &u in &units {
                    let name = self.units[u].progress_name();
                    progress.streaming.remove(&name);
                    progress.snapshot_at.remove(&name);
                    progress.resume.remove(&name);
                    to_snapshot.push((u, None));
                }
            }
        }
        let mut phases: Vec<Phase> = Vec::with_capacity(self.units.len());
        for u in 0..self.units.len() {
            let name = self.units[u].progress_name();
            if let Some(why) = progress.failed.get(&name) {
                phases.push(Phase::Failed);
                let mut s = self.status();
                s.tables[u].state = "error".into();
                s.tables[u].last_error = Some(why.clone());
            } else if to_snapshot.iter().any(|(x, _)| *x == u) {
                phases.push(Phase::Pending(Vec::new()));
                let mut s = self.status();
                let ts = &mut s.tables[u];
                let (rows, chunks) = progress.resume.get(&name).map_or((0, 0), |r| (r.rows_copied, r.chunks_done));
                (ts.rows_copied, ts.chunks_done) = (rows, chunks);
            } else {
                // Transactions up to `start` are in the table already, and so are those up to
                // its snapshot position; the binlog may replay them when it starts earlier
                // for a resumed snapshot.
                let at = progress.snapshot_at.get(&name).cloned().into_iter().chain(Some(start.clone())).max();
                phases.push(Phase::Streaming(at.filter(|at| *at > binlog_start)));
                self.status().tables[u].state = "streaming".into();
            }
        }
        {
            let mut s = self.status();
            s.state = if to_snapshot.is_empty() { "streaming" } else { "snapshotting" }.into();
            s.position = Some(start.clone());
            s.gtid = progress.gtid.clone();
        }
        self.applied.send_replace(Some(start.clone()));

        let (tx, mut rx) = mpsc::channel::<Message>(64);
        let mut tasks: JoinSet<Result<()>> = JoinSet::new();
        let units = Arc::new(self.units.clone());
        tasks.spawn(binlog::read(src.opts.clone(), src.options.server_id, binlog_start, units, tx.clone()));
        // Snapshots in progress (each an open transaction on its own connection) and chunk
        // reads in flight: up to 4 tables per read permit take turns chunk by chunk.
        let open = Arc::new(Semaphore::new(src.options.parallelism * 4));
        let reads = Arc::new(Semaphore::new(src.options.parallelism));
        for (u, after) in to_snapshot {
            let (tx, open, reads) = (tx.clone(), open.clone(), reads.clone());
            let unit = self.units[u].clone();
            let schema = src.tables[unit.table].state.schema();
            let task = snapshot::SnapshotTask {
                opts: src.opts.clone(),
                idx: u,
                unit,
                schema,
                chunk_size: src.options.chunk_size,
                after,
                view_position: src.options.snapshot_position,
                parallelism: src.options.parallelism,
            };
            tasks.spawn(async move {
                let _open = open.acquire_owned().await.map_err(|_| Error::Internal("semaphore closed".into()))?;
                snapshot::snapshot_table(task, reads, tx).await
            });
        }
        drop(tx);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => {
                        if let Flow::Restart = self.handle(m, &mut phases, &mut progress)? {
                            return Ok(());
                        }
                        // Bound what waits for the next checkpoint (a fast snapshot or a
                        // binlog catch-up can stage faster than the interval writes).
                        if src.store.staged_bytes() > STAGED_LIMIT {
                            src.store.flush()?;
                        }
                    }
                    None => {
                        // Every reader is gone: report the first one's error.
                        while let Some(done) = tasks.join_next().await {
                            match done {
                                Ok(Err(e)) => return Err(e),
                                Err(e) => return Err(Error::Internal(format!("source task failed: {e}"))),
                                Ok(Ok(())) => {}
                            }
                        }
                        return Err(Error::Internal("all source readers stopped".into()));
                    }
                },
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(e) => return Err(Error::Internal(format!("source task failed: {e}"))),
                    }
                }
            }
        }
    }

    /// Handles one message; units it stopped are recorded in the stored progress.
    pub(super) fn handle(&self, msg: Message, phases: &mut [Phase], progress: &mut Progress) -> Result<Flow> {
        let flow = self.handle_message(msg, phases, progress)?;
        let mut stopped = false;
        for (u, phase) in phases.iter().enumerate() {
            if !matches!(phase, Phase::Failed) {
                continue;
            }
            let name = self.units[u].progress_name();
            if !progress.failed.contains_key(&name) {
                let why = self.status().tables[u].last_error.clone().unwrap_or_default();
                progress.failed.insert(name, why);
                stopped = true;
            }
        }
        if stopped {
            self.source.dataflow.commit(&[], self.source.progress_batch(progress)?)?;
        }
        Ok(flow)
    }

    /// Units of resumed or watermarked snapshots that the binlog has now delivered up to
    /// their snapshot position (or high watermark): a resumed one's stored position moves up
    /// to it; those whose chunks are all in are returned to be finished.
    pub(super) fn caught_up(
        &self,
        phases: &mut [Phase],
        reader_at: &BinlogPosition,
        progress: &mut Progress,
    ) -> Vec<usize> {
        let mut finished = Vec::new();
        for (u, phase) in phases.iter_mut().enumerate() {
            if let Phase::Loading { at, catch_up_from, settles_at, read, .. } = phase {
                let mut moved = false;
                if catch_up_from.is_some() && *reader_at >= *at {
                    *catch_up_from = None;
                    moved = true;
                    if let Some(r) = progress.resume.get_mut(&self.units[u].progress_name()) {
                        r.at = at.clone();
                    }
                }
                if settles_at.as_ref().is_some_and(|high| reader_at >= high) {
                    *settles_at = None;
                    moved = true;
                }
                if moved && *read && catch_up_from.is_none() && settles_at.is_none() {
                    finished.push(u);
                }
            }
        }
        finished
    }

    /// The last chunk is in (and a resumed snapshot has caught up): apply what waited, in
    /// order, and stream from now on.
    pub(super) fn finish_snapshot(&self, phases: &mut [Phase], u: usize, progress: &mut Progress) -> Result<()> {
        let Phase::Loading { at, buffer, .. } = std::mem::replace(&mut phases[u], Phase::Failed) else {
            return Ok(());
        };
        phases[u] = Phase::Streaming(Some(at.clone()));
        let unit = &self.units[u];
        progress.streaming.add(unit.progress_name());
        progress.snapshot_at.insert(unit.progress_name(), at.clone());
        progress.resume.remove(&unit.progress_name());
        // Replay what happened upstream since the snapshot, in order; the last write also
        // records that the unit is now streaming.
        let buffered = buffer.into_iter().map(|(_, b)| b).collect();
        if !self.replay(phases, u, buffered, progress)? {
            return Ok(());
        }
        let mut s = self.status();
        s.tables[u].state = "streaming".into();
        s.tables[u].chunks_total = s.tables[u].chunks_done;
        if phases.iter().all(|p| matches!(p, Phase::Streaming(_) | Phase::Failed)) {
            s.state = "streaming".into();
        }
        drop(s);
        // Wake real_time_recency waiters: a finished snapshot can complete their wait.
        self.applied.send_modify(|_| {});
        Ok(())
    }

    /// Applies buffered changes of unit `u` in binlog order; the last commit also stores
    /// `progress`. False when a TRUNCATE could not be applied (the unit failed).
    pub(super) fn replay(
        &self,
        phases: &mut [Phase],
        u: usize,
        buffered: Vec<Buffered>,
        progress: &mut Progress,
    ) -> Result<bool> {
        let src = &self.source;
        let unit = &self.units[u];
        let t = &src.tables[unit.table];
        let mut segment: Vec<RowChange> = Vec::new();
        for b in buffered {
            match b {
                Buffered::Rows(rows) => segment.extend(rows),
                Buffered::Truncate => {
                    let change = to_batch(t, std::mem::take(&mut segment))?;
                    src.dataflow.commit(&[(t.state.as_ref(), &change)], WriteBatch::default())?;
                    if let Err(message) = truncate_unit(src, unit, &mut WriteBatch::default()) {
                        self.fail_unit(phases, u, message);
                        return Ok(false);
                    }
                }
            }
        }
        let change = to_batch(t, segment)?;
        src.dataflow.commit(&[(t.state.as_ref(), &change)], src.progress_batch(progress)?)?;
        Ok(true)
    }

    pub(super) fn fail_unit(&self, phases: &mut [Phase], u: usize, message: String) {
        tracing::error!(source = %self.source.name, table = %self.units[u].spec.name, "{message}");
        phases[u] = Phase::Failed;
        let mut s = self.status();
        s.tables[u].state = "error".into();
        s.tables[u].last_error = Some(message);
    }
}
