//! What a failure leads to: one pure function, asked by every caller, so that the meaning of an
//! error is decided in one place (and tested here as a table).
//!
//! ```text
//!  a table's attempt failed ──► after_failure(err, attempt) ──► LowerFetchLimit | ReadWholeQueries
//!                                                              | Retry | ReadColumnsAgain
//!                                                              | SkipTable | EndUpdate
//!  the Update ended         ──► ending(err)                ──► Task (the user must act)
//!                                                              | Status (the host may retry)
//! ```
//!
//! The order of the rules matters and is the point of this module:
//! 1. Redshift's shapes that the query can adapt to come first (a single-node cluster's fetch
//!    limit, a leader-node query whose portal lasts one batch): each is adapted to once.
//! 2. Transient failures are retried from the last checkpoint within `retry_timeout_s` (the
//!    caller holds the budget; a spent budget ends the Update with the error).
//! 3. Columns that changed under the scan are read again, once per Update, unless rows of a
//!    cursor value are held for sending (their encoding belongs to the old columns).
//! 4. What only the user can fix ends the Update (a `Task` says what to fix), as does a server
//!    that broke the protocol; a missing grant on one table is not that: it skips the table.
//! 5. Anything else skips the table with a Warning; the next sync tries it again.

use crate::source::SourceError;

/// What the table's attempt knows besides the error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempt {
    /// The fetch size is still above a single-node cluster's limit.
    pub fetch_limit_above_single_node: bool,
    /// Queries are already read whole (the leader-node adaptation was made).
    pub reading_whole_queries: bool,
    /// The table's columns were already read again in this Update.
    pub columns_read_again: bool,
    /// Rows sharing a cursor value are held, waiting to be sent.
    pub rows_held: bool,
}

/// What a failed attempt of a table's sync leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consequence {
    /// Fetch at most a single-node cluster's 1000 rows at a time, and try again.
    LowerFetchLimit,
    /// Read each query in one go (its portal lasts one batch), and try again.
    ReadWholeQueries,
    /// Try again from the last checkpoint after a pause, within the retry budget.
    Retry,
    /// Read the table's columns again and go on with them.
    ReadColumnsAgain,
    /// Skip the table for this sync, with a Warning.
    SkipTable,
    /// End the Update with this error.
    EndUpdate,
}

/// How an Update that ended with an error says so to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A `Task` with the error's message: only the user can fix it; the host does not retry.
    Task,
    /// An error status; the host may retry from the last checkpoint.
    Status,
}

/// What `err`, met by a table's attempt in the state `attempt` describes, leads to.
pub fn after_failure(err: &SourceError, attempt: Attempt) -> Consequence {
    match err {
        SourceError::FetchSizeRefused { .. } if attempt.fetch_limit_above_single_node => {
            Consequence::LowerFetchLimit
        }
        SourceError::PortalLost { .. } if !attempt.reading_whole_queries => {
            Consequence::ReadWholeQueries
        }
        err if err.is_transient() => Consequence::Retry,
        SourceError::ColumnsChanged { .. } if !attempt.columns_read_again && !attempt.rows_held => {
            Consequence::ReadColumnsAgain
        }
        SourceError::PermissionDenied { .. } => Consequence::SkipTable,
        SourceError::ProtocolViolation { .. } => Consequence::EndUpdate,
        err if err.needs_user_action() => Consequence::EndUpdate,
        _ => Consequence::SkipTable,
    }
}

/// How an Update that failed with `err` (the source's error, if it was one) ends.
pub fn ending(err: Option<&SourceError>) -> Ending {
    match err {
        Some(err) if err.needs_user_action() => Ending::Task,
        _ => Ending::Status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::IamError;

    fn database(code: &str, transient: bool) -> SourceError {
        SourceError::Database {
            code: code.to_string(),
            message: "m".to_string(),
            transient,
        }
    }

    fn fresh() -> Attempt {
        Attempt {
            fetch_limit_above_single_node: true,
            ..Attempt::default()
        }
    }

    /// Every rule, as a table: the error, the attempt, what follows.
    #[test]
    fn failures_lead_to_their_consequences() {
        use Consequence::*;
        let adapted = Attempt {
            fetch_limit_above_single_node: false,
            reading_whole_queries: true,
            columns_read_again: true,
            rows_held: false,
        };
        let held = Attempt {
            rows_held: true,
            ..fresh()
        };
        let cases: Vec<(SourceError, Attempt, Consequence)> = vec![
            (
                SourceError::FetchSizeRefused {
                    message: "m".into(),
                },
                fresh(),
                LowerFetchLimit,
            ),
            // Adapted once; refused again, it is not the fetch size.
            (
                SourceError::FetchSizeRefused {
                    message: "m".into(),
                },
                adapted,
                SkipTable,
            ),
            (
                SourceError::PortalLost {
                    message: "m".into(),
                },
                fresh(),
                ReadWholeQueries,
            ),
            (
                SourceError::PortalLost {
                    message: "m".into(),
                },
                adapted,
                SkipTable,
            ),
            (
                SourceError::ConnectionLost { reason: "r".into() },
                fresh(),
                Retry,
            ),
            (database("40001", true), adapted, Retry),
            (
                SourceError::ColumnsChanged {
                    message: "m".into(),
                },
                fresh(),
                ReadColumnsAgain,
            ),
            (
                SourceError::ColumnsChanged {
                    message: "m".into(),
                },
                adapted,
                SkipTable,
            ),
            (
                SourceError::ColumnsChanged {
                    message: "m".into(),
                },
                held,
                SkipTable,
            ),
            // A grant missing on one table skips it; the others go on.
            (
                SourceError::PermissionDenied {
                    message: "m".into(),
                },
                fresh(),
                SkipTable,
            ),
            (
                SourceError::AuthenticationFailed {
                    user: "u".into(),
                    from: crate::source::PasswordFrom::Configuration,
                },
                fresh(),
                EndUpdate,
            ),
            (
                SourceError::ProtocolViolation { reason: "r".into() },
                fresh(),
                EndUpdate,
            ),
            (
                SourceError::WorkSchema {
                    message: "m".into(),
                },
                fresh(),
                EndUpdate,
            ),
            (
                SourceError::Iam(Box::new(IamError::AccessDenied {
                    action: "redshift:GetClusterCredentials",
                    needs: "n".into(),
                    message: "m".into(),
                })),
                fresh(),
                EndUpdate,
            ),
            (database("42P01", false), fresh(), SkipTable),
            (
                SourceError::Decode {
                    table: "t".into(),
                    column: "c".into(),
                    reason: "r".into(),
                },
                fresh(),
                SkipTable,
            ),
            (
                SourceError::QueryCancelled {
                    message: "m".into(),
                },
                fresh(),
                SkipTable,
            ),
            (
                SourceError::UnexpectedAnswer {
                    query: "COUNT(*)",
                    detail: "d".into(),
                },
                fresh(),
                SkipTable,
            ),
            (
                SourceError::Internal {
                    during: "d",
                    detail: "d".into(),
                },
                fresh(),
                SkipTable,
            ),
        ];
        for (err, attempt, expected) in cases {
            assert_eq!(
                after_failure(&err, attempt),
                expected,
                "{err:?} {attempt:?}"
            );
        }
    }

    #[test]
    fn an_update_ends_with_a_task_only_for_what_the_user_must_fix() {
        let auth = SourceError::AuthenticationFailed {
            user: "u".into(),
            from: crate::source::PasswordFrom::Configuration,
        };
        assert_eq!(ending(Some(&auth)), Ending::Task);
        assert_eq!(
            ending(Some(&SourceError::PermissionDenied {
                message: "m".into()
            })),
            Ending::Task
        );
        assert_eq!(
            ending(Some(&SourceError::ProtocolViolation { reason: "r".into() })),
            Ending::Status
        );
        assert_eq!(ending(Some(&database("40001", true))), Ending::Status);
        assert_eq!(ending(None), Ending::Status);
    }
}
