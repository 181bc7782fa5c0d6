//! What a table's sync tells the user once per Update, and the checks it makes once: each flag
//! here turns a Warning or a query that could repeat with every attempt into one.

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
