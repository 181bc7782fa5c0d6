//! What a table's sync tells the user once per Update, and the checks it makes once: each flag
//! here turns a Warning or a query that could repeat with every attempt into one. The checks
//! themselves (rows beyond the cursor's bound, repeated key values, a tied cursor group) are
//! here too.

use super::*;

pub(super) struct Notices {
    /// Changes to its columns the table goes on through, for Warnings.
    pub column_notes: Vec<String>,
    /// Why the table is synced from scratch again, for a Warning.
    pub restart_reason: Option<String>,
    /// Warned that more rows share one cursor value than a query may read.
    pub warned_tied: bool,
    /// Counted the rows beyond the cursor's upper bound.
    pub counted_beyond_bound: bool,
    /// Looked for key values more than one row holds (at a pass from scratch).
    pub counted_repeated_keys: bool,
    /// Considered this pass for an UNLOAD export.
    pub export_considered: bool,
}

impl Notices {
    pub fn new(column_notes: Vec<String>, restart_reason: Option<String>) -> Self {
        Self {
            column_notes,
            restart_reason,
            warned_tied: false,
            counted_beyond_bound: false,
            counted_repeated_keys: false,
            export_considered: false,
        }
    }
}

impl TableSync {
    /// Before the table's first attempt: what its plan means for the user (a table synced in
    /// full, and why), and the notes of its plan and of its changed columns.
    pub(super) async fn announce(&mut self, output: &Output) -> Result<(), SyncError> {
        let name = self.plan.table.name.clone();
        if let Mode::Full { reason } = &self.plan.mode {
            let unbounded = if self.plan.key.is_empty() {
                "; without a primary key to resume by, it is read by one query without a row limit"
            } else {
                ""
            };
            let message = format!("table {name} is synced in full on every sync because {reason}; configure `cursor_column` to sync it incrementally{unbounded}");
            self.warning(output, message).await?;
        }
        let plan = Arc::clone(&self.plan);
        for note in &plan.notes {
            self.warning(output, format!("table {name}: {note}"))
                .await?;
        }
        for note in std::mem::take(&mut self.notices.column_notes) {
            self.warning(output, format!("table {name}: {note}"))
                .await?;
        }
        if let Some(reason) = self.notices.restart_reason.take() {
            self.warning(output, format!("table {name}: {reason}"))
                .await?;
        }
        Ok(())
    }

    /// Once the pass is done: a Warning, once per Update, when rows wait beyond the cursor's
    /// upper bound, saying how many and up to when. One query per table and Update.
    pub(super) async fn warn_of_rows_beyond_bound(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        cursor: usize,
        bound: &str,
    ) -> Result<(), SyncError> {
        if std::mem::replace(&mut self.notices.counted_beyond_bound, true) {
            return Ok(());
        }
        let table = &self.plan.table;
        let beyond = match source::scan::beyond_bound(session, table, cursor, bound).await {
            Ok(beyond) => beyond,
            Err(err) => {
                // Only a Warning's worth of information: never a reason to fail the table.
                tracing::warn!(table = %table.name, error = %err, "cannot count the rows beyond the cursor's bound");
                return Ok(());
            }
        };
        if beyond.rows == 0 {
            return Ok(());
        }
        let column = &table.columns[cursor].name;
        let (rows, verb) = match beyond.rows {
            1 => ("1 row".to_string(), "is"),
            n => (format!("{n} rows"), "are"),
        };
        let message = format!(
            "table {}: {rows} with `{column}` later than the database's clock minus `cursor_lag_s` ({bound}) {verb} left for the syncs after that time comes (the latest: {}); rows dated in the future usually come from a typo, a test row, or local time written into a TIMESTAMP column (the clock is read in UTC)",
            table.name,
            beyond.greatest.as_deref().unwrap_or("?"),
        );
        tracing::warn!(table = %table.name, rows = beyond.rows, %bound, "rows beyond the cursor's bound");
        self.warning(&shared.output, message).await
    }

    /// At a pass from scratch of a table with a key: a Warning, once per Update, when key
    /// values repeat (Redshift does not enforce primary keys), saying how many and what the
    /// destination then holds. One aggregate query; never a reason to fail the table.
    pub(super) async fn warn_of_repeated_keys(
        &mut self,
        shared: &Shared,
        session: &mut Session,
    ) -> Result<(), SyncError> {
        if self.plan.key.is_empty()
            || std::mem::replace(&mut self.notices.counted_repeated_keys, true)
        {
            return Ok(());
        }
        let table = &self.plan.table;
        let repeated = match source::scan::repeated_keys(session, table, &self.plan.key).await {
            Ok(repeated) => repeated,
            Err(err) => {
                tracing::warn!(table = %table.name, error = %err, "cannot count repeated key values");
                return Ok(());
            }
        };
        if repeated.values == 0 {
            return Ok(());
        }
        tracing::warn!(table = %table.name, values = repeated.values, rows = repeated.rows, "key values repeat");
        let key = self.plan.key_columns().join(", ");
        let keeps = match self.plan.mode {
            Mode::Incremental { .. } => {
                "the one sent last, which is the one with the latest cursor"
            }
            Mode::Full { .. } => "the one sent last",
        };
        let message = format!(
            "table {}: {} values of its primary key ({key}) are each held by more than one row ({} rows in all); Redshift does not enforce primary keys. Every row is read, and the destination keeps one row per key value: {keeps}. Name columns that are unique in `primary_key`, or remove the duplicates",
            table.name, repeated.values, repeated.rows
        );
        self.warning(&shared.output, message).await
    }

    /// After the rows sharing one cursor value were read by one query without a limit: a
    /// Warning, once, saying why a query read more rows than `max_rows_per_query`.
    pub(super) async fn warn_of_a_tied_group(
        &mut self,
        shared: &Shared,
        query: &NextQuery,
        rows: u64,
        rows_per_query: u64,
    ) -> Result<(), SyncError> {
        let Resume::OnlyCursor(cursor) = &query.resume else {
            return Ok(());
        };
        if rows <= rows_per_query || std::mem::replace(&mut self.notices.warned_tied, true) {
            return Ok(());
        }
        let value = cursor
            .as_deref()
            .map_or("NULL".to_string(), |c| format!("`{c}`"));
        let message = format!(
            "table {} has no primary key and {rows} rows share the cursor value {value}, more than one query may read ({rows_per_query} rows): they were read by one query without a row limit; a primary key (or a finer cursor) keeps every query bounded",
            self.plan.table.name,
        );
        self.warning(&shared.output, message).await
    }
}
