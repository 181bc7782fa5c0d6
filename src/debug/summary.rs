//! What a run did, counted the way the hosts' testers count it, and its printed form.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::warehouse::layout::TableKey;
use crate::proto::RecordType;

/// Operations applied to one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub upserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub truncates: u64,
}

impl Counts {
    /// Row operations (a TRUNCATE is not a row).
    pub fn rows(&self) -> u64 {
        self.upserts + self.updates + self.deletes
    }

    fn add(&mut self, other: &Counts) {
        self.upserts += other.upserts;
        self.updates += other.updates;
        self.deletes += other.deletes;
        self.truncates += other.truncates;
    }
}

/// The outcome of one successful run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Per table (`schema.table`), every selected table even when nothing happened to it.
    pub tables: BTreeMap<String, Counts>,
    pub checkpoints: u64,
    pub schema_changes: u64,
    pub warnings: Vec<String>,
    pub elapsed: Duration,
    pub server: String,
    pub warehouse: PathBuf,
    pub state: PathBuf,
}

impl Summary {
    pub fn add_table(&mut self, table: &TableKey) {
        self.tables.entry(table.to_string()).or_default();
    }

    pub fn count(&mut self, table: &TableKey, record_type: RecordType, n: u64) {
        let counts = self.tables.entry(table.to_string()).or_default();
        match record_type {
            RecordType::Upsert => counts.upserts += n,
            RecordType::Update => counts.updates += n,
            RecordType::Delete => counts.deletes += n,
            RecordType::Truncate => counts.truncates += n,
        }
    }

    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        for counts in self.tables.values() {
            total.add(counts);
        }
        total
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        let seconds = self.elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            total.rows() as f64 / seconds
        } else {
            0.0
        };
        writeln!(f, "Sync SUCCEEDED in {seconds:.2} s ({rate:.0} rows/s)")?;
        writeln!(f)?;
        let width = self
            .tables
            .keys()
            .map(|name| name.chars().count())
            .chain(["table".len(), "total".len()])
            .max()
            .unwrap_or(5);
        let row = |f: &mut fmt::Formatter<'_>, name: &str, c: &Counts| {
            writeln!(
                f,
                "  {name:<width$}  {:>10}  {:>10}  {:>10}  {:>10}",
                c.upserts, c.updates, c.deletes, c.truncates
            )
        };
        writeln!(
            f,
            "  {:<width$}  {:>10}  {:>10}  {:>10}  {:>10}",
            "table", "upserts", "updates", "deletes", "truncates"
        )?;
        for (name, counts) in &self.tables {
            row(f, name, counts)?;
        }
        writeln!(f, "  {}", "-".repeat(width + 4 * 12))?;
        row(f, "total", &total)?;
        writeln!(f)?;
        writeln!(
            f,
            "  checkpoints: {}   schema changes: {}   warnings: {}",
            self.checkpoints,
            self.schema_changes,
            self.warnings.len()
        )?;
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        writeln!(f, "  server:    {}", self.server)?;
        writeln!(f, "  warehouse: {}", self.warehouse.display())?;
        let state = if self.checkpoints > 0 {
            "saved at the last checkpoint"
        } else {
            "unchanged: no checkpoint in this run"
        };
        write!(f, "  state:     {} ({state})", self.state.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_table_and_in_total() {
        let mut summary = Summary::default();
        let customers = TableKey::new(Some("public"), "customers");
        let orders = TableKey::new(Some("public"), "orders");
        summary.add_table(&orders);
        summary.count(&customers, RecordType::Truncate, 1);
        for _ in 0..3 {
            summary.count(&customers, RecordType::Upsert, 1);
        }
        summary.count(&customers, RecordType::Delete, 1);
        summary.checkpoints = 2;
        summary.elapsed = Duration::from_secs(2);
        let total = summary.total();
        assert_eq!((total.upserts, total.deletes, total.truncates), (3, 1, 1));
        assert_eq!(total.rows(), 4);
        let text = summary.to_string();
        assert!(
            text.starts_with("Sync SUCCEEDED in 2.00 s (2 rows/s)"),
            "{text}"
        );
        assert!(text.contains("public.orders"), "{text}");
        assert!(text.contains("checkpoints: 2"), "{text}");
        assert!(text.contains("saved at the last checkpoint"), "{text}");
    }
}
