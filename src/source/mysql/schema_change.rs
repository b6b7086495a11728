//! Following upstream `ALTER TABLE`: a captured table takes its new description, keeping its
//! rows where it can and snapshotting again where it cannot.

use super::*;

impl Runner {
    /// Gives unit `u`'s table its new description `spec` (upstream ADD COLUMN): a streaming
    /// table keeps its rows, which get `values` in the new columns; a table whose snapshot is
    /// not past the ALTER, or whose new values are not constants, is emptied and snapshotted
    /// again with the new columns. One atomic write: the rows, the catalog entry and — with
    /// `position`, for the last table of the ALTER — the source's position after it.
    pub(super) fn change_schema(
        &self,
        phases: &mut [Phase],
        u: usize,
        mut spec: TableSpec,
        values: Option<Vec<Cell>>,
        position: Option<(&BinlogPosition, &Option<String>)>,
        progress: &mut Progress,
    ) -> Result<()> {
        let src = &self.source;
        let unit = &self.units[u];
        let t = &src.tables[unit.table];
        let catalog = src.catalog.upgrade().ok_or_else(|| Error::Internal("the catalog is gone".into()))?;
        if matches!(phases[u], Phase::Failed) {
            // A stopped table keeps its shape; only the position moves past the ALTER.
            if position.is_some() {
                move_past(progress, position);
                src.dataflow.commit(&[], src.progress_batch(progress)?)?;
            }
            return Ok(());
        }
        let after = |at: &BinlogPosition| spec.since.as_ref().is_some_and(|since| since > at);
        let streaming_past = matches!(&phases[u], Phase::Streaming(at) if at.as_ref().is_none_or(after));
        let old_width = t.spec.columns.len();
        if spec.columns.len() > old_width {
            spec.widened.push((catalog.next_id(), old_width));
        }
        let new_columns = &spec.columns[old_width..];
        if (values.is_none() || !streaming_past) && !src.options.snapshot {
            return Err(Error::FeatureNotSupported(
                "the table needs a new snapshot to get its new columns, and this source was created with \
                 SNAPSHOT = 'never'"
                    .into(),
            ));
        }
        let arrays = match values.filter(|_| streaming_past) {
            Some(values) => one_row(new_columns, values)?,
            None => {
                tracing::info!(source = %src.name, table = %spec.name, "snapshotting the table again with its new columns");
                // The emptied table is stored as not snapshotted, in the same write: a crash
                // before the new columns are stored snapshots it again (and meets the ALTER
                // again, since the position has not moved past it).
                let name = unit.progress_name();
                progress.streaming.remove(&name);
                progress.snapshot_at.remove(&name);
                progress.resume.remove(&name);
                truncate(src, t, &mut src.progress_batch(progress)?)?;
                new_columns.iter().map(|c| datafusion::arrow::array::new_null_array(&c.kind.data_type(), 1)).collect()
            }
        };
        self.store_spec(t, &spec, &arrays, position, progress)?;
        tracing::info!(
            source = %src.name, table = %spec.name, columns = new_columns.len(),
            "the table follows an upstream ALTER TABLE"
        );
        Ok(())
    }

    /// Gives the merged table of shard unit `u` its new description `spec` after an upstream
    /// ALTER TABLE of the shard (see [`schema::merge_shard_change`]): when the table gains
    /// columns, every row gets `values` in them (the other shards' rows too, as their
    /// descriptions say); one atomic write with the catalog entry and — with `position` — the
    /// source's position after the ALTER. A shard whose snapshot is not past the ALTER read
    /// its rows without the new columns: with the table-name column its rows are removed and
    /// it is snapshotted again; without, it stops.
    pub(super) fn change_shard_schema(
        &self,
        phases: &mut [Phase],
        u: usize,
        mut spec: TableSpec,
        values: Vec<Cell>,
        position: Option<(&BinlogPosition, &Option<String>)>,
        progress: &mut Progress,
    ) -> Result<()> {
        let src = &self.source;
        let unit = &self.units[u];
        let t = &src.tables[unit.table];
        let catalog = src.catalog.upgrade().ok_or_else(|| Error::Internal("the catalog is gone".into()))?;
        if matches!(phases[u], Phase::Failed) {
            move_past(progress, position);
            return src.dataflow.commit(&[], src.progress_batch(progress)?);
        }
        let since = spec.for_shard(&unit.upstream_table).unwrap_or(&spec).since.clone();
        let past = |at: &BinlogPosition| since.as_ref().is_some_and(|since| since > at);
        if !matches!(&phases[u], Phase::Streaming(at) if at.as_ref().is_none_or(past)) {
            if !src.options.snapshot {
                return Err(Error::FeatureNotSupported(
                    "the shard needs a new snapshot to get its new columns, and this source was created with \
                     SNAPSHOT = 'never'"
                        .into(),
                ));
            }
            // Removed and marked not snapshotted in one write (the position stays before the
            // ALTER): a crash here snapshots the shard again and meets the ALTER again.
            tracing::info!(source = %src.name, shard = %unit.upstream_table, "snapshotting the shard again with its new columns");
            let name = unit.progress_name();
            progress.streaming.remove(&name);
            progress.snapshot_at.remove(&name);
            progress.resume.remove(&name);
            truncate_unit(src, unit, &mut src.progress_batch(progress)?).map_err(|why| {
                Error::FeatureNotSupported(format!(
                    "the shard's snapshot did not include the ALTER TABLE, and its rows cannot be read again: {why}"
                ))
            })?;
        }
        let old_width = t.spec.columns.len();
        if spec.columns.len() > old_width {
            spec.widened.push((catalog.next_id(), old_width));
        }
        let arrays = one_row(&spec.columns[old_width..], values)?;
        self.store_spec(t, &spec, &arrays, position, progress)?;
        tracing::info!(
            source = %src.name, table = %spec.name, shard = %unit.upstream_table, columns = arrays.len(),
            "the merged table follows an upstream ALTER TABLE of a shard"
        );
        Ok(())
    }

    /// Stores table `t`'s new description `spec` in one atomic write with — given `position`
    /// — the source's position after the ALTER, and gives every row `arrays` (one value
    /// each) in the columns the table gains.
    pub(super) fn store_spec(
        &self,
        t: &CapturedTable,
        spec: &TableSpec,
        arrays: &[datafusion::arrow::array::ArrayRef],
        position: Option<(&BinlogPosition, &Option<String>)>,
        progress: &mut Progress,
    ) -> Result<()> {
        let src = &self.source;
        let catalog = src.catalog.upgrade().ok_or_else(|| Error::Internal("the catalog is gone".into()))?;
        let mut entry = t.catalog_entry(&catalog)?;
        entry.create_sql = spec.create_sql();
        entry.details = Some(serde_json::to_value(spec).map_err(|e| Error::Internal(e.to_string()))?);
        let mut batch = WriteBatch::default();
        Catalog::write_entry(&entry, &mut batch)?;
        move_past(progress, position);
        batch.extend(src.progress_batch(progress)?);
        if arrays.is_empty() {
            src.dataflow.commit(&[], batch)?;
        } else {
            src.dataflow.widen_table(&t.state, CapturedTable::schema(spec), arrays, batch)?;
        }
        catalog.replace_entry(entry);
        Ok(())
    }
}

/// `values` as one-row arrays of `columns` (what every existing row gets in added columns).
fn one_row(columns: &[schema::ColumnSpec], values: Vec<Cell>) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
    columns
        .iter()
        .zip(values)
        .map(|(c, v)| {
            let mut b = types::ColumnBuilder::new(&c.kind)?;
            b.append(v)?;
            Ok(b.finish())
        })
        .collect()
}
