//! The re-read of the rows whose cursor is NULL. Nothing says when such a row changed, so a table
//! read by its cursor reads them again, in key order, before its scan goes on
//! (`position::null_rescan_due` says when). While it runs, the table's `progress` is the
//! re-read's, and the scan's own waits here, to be taken up again when the re-read ends; a
//! checkpoint in between records both (`null_rescan` in the state), so a resumed sync finishes
//! the re-read and then goes on exactly where the scan stood. Sending the re-read rows again is
//! idempotent, so a failed attempt never restarts the table.

use super::*;

/// Rows with a NULL cursor, read again by every sync, from which a Warning says so.
const NULL_RESCAN_WARNING_ROWS: u64 = 10_000;

/// A NULL-cursor re-read under way: the scan's progress it interrupted, and the rows it sent in
/// this Update.
pub(super) struct NullRescan {
    /// The cursor scan's progress, taken up again when the re-read ends.
    pub scan: Progress,
    /// Rows the re-read sent in this Update (across attempts).
    pub rows: u64,
}

impl NullRescan {
    pub fn new(scan: Progress) -> Self {
        Self { scan, rows: 0 }
    }
}

impl TableSync {
    /// The NULL-cursor rows were all read again: the scan goes on from its own position, and
    /// a Warning says what re-reading them costs when they are many.
    pub(super) async fn end_null_rescan(&mut self, shared: &Shared) -> Result<(), SyncError> {
        let Some(rescan) = self.null_rescan.take() else {
            return Ok(());
        };
        self.progress = rescan.scan;
        let rows = rescan.rows;
        tracing::info!(table = %self.plan.table.name, rows, "rows with a NULL cursor read again");
        if rows < NULL_RESCAN_WARNING_ROWS {
            return Ok(());
        }
        let column = self.plan.cursor_column().unwrap_or_default();
        let message = format!(
            "table {}: {rows} rows have a NULL `{column}`; nothing says when such a row changes, so they are read again on every sync; set `{column}` when rows are written (or choose another `cursor_column`) to sync only what changed",
            self.plan.table.name
        );
        self.warning(&shared.output, message).await
    }
}

#[cfg(test)]
mod tests {
    /// When a sync re-reads the NULL-cursor rows first, as a table: from scratch no (the scan reads
    /// them first), among them no (the scan reads the rest), past them yes.
    #[test]
    fn the_null_cursor_rows_are_read_again_once_the_position_is_past_them() {
        use crate::state::Position;
        let cases = [
            (None, false),
            (Some(Position::row(None, vec!["7".into()])), false),
            (Some(Position::tied(None)), false),
            (Some(Position::after_cursor(None)), true),
            (
                Some(Position::row(Some("2024".into()), vec!["7".into()])),
                true,
            ),
            (Some(Position::tied(Some("2024".into()))), true),
        ];
        for (position, due) in cases {
            assert_eq!(
                crate::sync::position::null_rescan_due(position.as_ref()),
                due,
                "{position:?}"
            );
        }
    }
}
