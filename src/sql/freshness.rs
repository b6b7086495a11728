//! Fresh answers: which sources a query waits for under `real_time_recency`, and the
//! warning (or, under `real_time_recency`, the error) for a read of a captured table its
//! source stopped applying changes to.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;

use super::Session;
use crate::error::{Error, Result};

impl Session {
    /// The sources whose tables a plan reads, directly or through (materialized) views.
    pub(super) fn sources_read(&self, plan: &LogicalPlan) -> Result<Vec<String>> {
        let mut sources: Vec<String> = Vec::new();
        for (_, source) in self.captured_read(plan)? {
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        Ok(sources)
    }

    /// The captured tables a plan reads, directly or through (materialized) views, with
    /// their sources.
    fn captured_read(&self, plan: &LogicalPlan) -> Result<Vec<(String, String)>> {
        let mut relations: Vec<String> = Vec::new();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                if scan.table_name.schema().is_none_or(|s| s == "public") {
                    relations.push(scan.table_name.table().to_string());
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut captured = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = relations.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(obj) = self.engine().catalog().get(crate::catalog::Namespace::Relation, &name) else { continue };
            for d in &obj.entry.depends_on {
                match d.strip_prefix("source:") {
                    Some(src) => captured.push((name.clone(), src.to_string())),
                    None if !d.contains(':') => relations.push(d.clone()),
                    None => {}
                }
            }
        }
        Ok(captured)
    }

    /// A read of a captured table its source no longer keeps up to date (issue 30: such a
    /// table answered silently stale): a WARNING per table, or under `real_time_recency`,
    /// which promises fresh answers, an error (55000).
    pub(super) fn warn_stale(&self, plan: &LogicalPlan, recency: bool) -> Result<()> {
        let stale = self.engine().sources().stale_tables();
        if stale.is_empty() {
            return Ok(());
        }
        for (table, source) in self.captured_read(plan)? {
            let Some((_, _, why)) = stale.iter().find(|(s, t, _)| *s == source && *t == table) else { continue };
            let message = format!(
                "table \"{table}\" is stale: source \"{source}\" stopped applying upstream changes to it: {why}"
            );
            if recency {
                return Err(Error::SourceLost(format!("{message} (real_time_recency is on)")));
            }
            self.notice(super::Notice::warning(
                "01000",
                message,
                Some(format!(
                    "The rows are as of when it stopped; SELECT * FROM hw_catalog.source_tables shows the error. \
                     ALTER SOURCE {source} RESNAPSHOT (or DROP TABLE and ADD TABLE) captures it again."
                )),
            ));
        }
        Ok(())
    }
}
