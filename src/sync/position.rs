//! Where a table's next query starts, and how many rows it may read: the one owner of a scan's
//! progress. `sync::table` runs the queries this module asks for and reports what each read;
//! `source::scan` writes their SQL; the state only stores the [`Position`] kept here.
//!
//! A table is read in the scan order (its cursor NULLS FIRST, then its primary key) by
//! consecutive queries of at most `rows_per_query` rows, each starting where the rows sent so
//! far end. What "where they end" can say depends on the table's shape:
//!
//! | key | cursor | a query starts | after a query that filled its limit |
//! |---|---|---|---|
//! | yes | yes | strictly after the last row sent, (cursor, key) | the next starts after its last row |
//! | yes | no | strictly after the last key sent | the same |
//! | no | yes | at the last cursor value sent (`>=`: rows sharing it are read again) | the next starts at its last cursor value; if all its rows shared one value, those rows are read by one query without a limit, and the scan goes on strictly after that value |
//! | no | no | at the start: one query without a limit (no order to resume in) | - |
//!
//! Rows whose cursor is NULL sort first; for a table without a key they are one more group of
//! equal values. Why every pass ends, and loses nothing:
//! - With a key, the order is strict (distinct rows never tie, see `source::scan`), every query
//!   but the last reads `rows_per_query` rows and the next starts strictly after the last of
//!   them: each start is past the one before, and nothing between two starts is skipped.
//! - Without a key, a query that fills its limit with rows of at least two cursor values `a < b`
//!   is followed by one starting at `b`, past its own start (which was at most `a`). One whose
//!   rows all share a value `v` is followed by the query for exactly the rows at `v`, without a
//!   limit (finite: it reads one value's rows), and then by one starting after `v`. So starts
//!   strictly increase in cursor value, every row at or after a start is read, and a pass takes
//!   at most twice as many queries as there are distinct cursor values, plus one.
//! - Without a key or cursor, one query reads everything; a failed attempt starts the pass over
//!   with a new TRUNCATE (nothing names how far it got).
//!
//! The tests below run every shape against a model of the database (ties in a new order on
//! every query), with every limit and batch size up to the table's size, resuming from every
//! checkpoint; `tests/scan_shapes.rs` runs the same shapes on the real database.

use crate::config::RowsPerQuery;
use crate::source::scan::Resume;
use crate::source::types::SqlType;
use crate::state::{ExportState, KeySnapshot, Position, PositionKind, ResyncState, TableState};

use super::plan::{Mode, TablePlan};
use super::schema_change::ColumnChanges;

/// The bytes of results one query may leave on Redshift's leader node, which materialises a
/// query's whole result before the first fetch. The smallest cluster's cursor limit for all
/// open queries together is 8,000 MB (single-node dc2.large and ra3.large); a budget of an
/// eighth of it, shared by the tables synced at once, leaves room for everyone else's.
pub const QUERY_RESULT_BUDGET: u64 = 1 << 30;
/// The least budget a query gets, however many tables run at once.
const MIN_QUERY_RESULT_BUDGET: u64 = 64 << 20;
/// The Redshift Data API's cap on one statement's result: AWS's pages have said 100 MB and
/// 500 MB; the smaller holds either way (a query over it fails, and is not cut short).
pub const DATA_API_RESULT_CAP: u64 = 100 << 20;

/// How a table is read, from its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// By cursor, then key: every position is a row.
    KeyedIncremental,
    /// By key only (no usable cursor): each sync is a full pass, resumable after any key.
    KeyedFull,
    /// By cursor only: positions are cursor values, rows sharing one are read again.
    KeylessIncremental,
    /// No key, no cursor: each sync is one query over the whole table.
    KeylessFull,
}

impl Shape {
    pub fn of(plan: &TablePlan) -> Shape {
        match (&plan.mode, plan.key.is_empty()) {
            (Mode::Incremental { .. }, false) => Shape::KeyedIncremental,
            (Mode::Incremental { .. }, true) => Shape::KeylessIncremental,
            (Mode::Full { .. }, false) => Shape::KeyedFull,
            (Mode::Full { .. }, true) => Shape::KeylessFull,
        }
    }
}

/// How a table starts in this Update.
#[derive(Debug, Clone, PartialEq)]
pub struct TableStart {
    /// Send a TRUNCATE first: an initial sync, or a new full pass.
    pub truncate: bool,
    /// Why the table restarts from scratch although it has state.
    pub restart_reason: Option<String>,
    /// Where the first query starts (`None`: at the beginning).
    pub position: Option<Position>,
    /// An UNLOAD export under way, to resume before any query.
    pub export: Option<ExportState>,
    /// Re-read the rows whose cursor is NULL first, after this key (empty: from the first):
    /// see [`null_rescan_due`].
    pub null_rescan: Option<Vec<String>>,
    /// With `delete_capture = resync`: the table's latest sync from scratch (a new one when
    /// this start truncates).
    pub resync: Option<ResyncState>,
    /// The table starts over because its re-sync is due (not a change that needs a Warning).
    pub scheduled_resync: bool,
    /// Changes to its columns it goes on through, for Warnings (see `schema_change`).
    pub column_notes: Vec<String>,
    /// With `delete_capture = keys`: the table's key snapshot (`None` when it starts from
    /// scratch, which the TRUNCATE covers: its pass takes the first).
    pub key_snapshot: Option<KeySnapshot>,
}

/// Whether a table read incrementally is due for its re-sync from scratch: its last one is
/// complete and began at least `every` ago; or none is recorded (the mode was just turned on,
/// or the state is older). One under way is never restarted, however long it takes.
fn resync_due(
    resync: Option<&ResyncState>,
    every: std::time::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let Some(resync) = resync else {
        return true;
    };
    if !resync.done {
        return false;
    }
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    chrono::DateTime::parse_from_rfc3339(&resync.started_at)
        .map_or(true, |started| now.signed_duration_since(started) >= every)
}

/// Whether a sync that resumes from `position` begins by reading again the rows whose cursor
/// is NULL. They come first in the scan order, so a table's initial sync reads them once; but
/// nothing marks when one changes (a loader that never sets `updated_at`, a row inserted
/// before the column was), so once the position is past them every change to them would be
/// lost. Each later sync therefore re-reads them before it goes on (UPSERTs by key: a row sent
/// again is idempotent; without a key, hosts key rows by a hash of their values, so an
/// unchanged row is too). Not while the position is still among them, where the scan itself
/// reads the rest.
pub fn null_rescan_due(position: Option<&Position>) -> bool {
    position.is_some_and(|p| p.cursor.is_some() || p.kind == PositionKind::AfterCursor)
}

/// How the rows whose cursor is NULL are re-read: by key, resumable after any; without a key,
/// by one query.
pub fn null_rescan_shape(shape: Shape) -> Shape {
    match shape {
        Shape::KeyedIncremental | Shape::KeyedFull => Shape::KeyedFull,
        Shape::KeylessIncremental | Shape::KeylessFull => Shape::KeylessFull,
    }
}

/// Decides, from the table's state, whether it resumes or starts over.
pub fn table_start(plan: &TablePlan, previous: Option<&TableState>) -> TableStart {
    table_start_at(plan, previous, chrono::Utc::now())
}

/// [`table_start`] at the time `now`: where its state says, unless its columns changed in a
/// way that needs a re-sync (see `schema_change`).
pub fn table_start_at(
    plan: &TablePlan,
    previous: Option<&TableState>,
    now: chrono::DateTime<chrono::Utc>,
) -> TableStart {
    let start = start_from_state(plan, previous, now);
    let Some(changes) = ColumnChanges::since(plan, previous) else {
        return start;
    };
    let restart_reason = if start.truncate {
        None
    } else if start.export.is_some() && changes.columns_differ() {
        Some(
            "its columns changed while its export was under way, so it is re-synced from the start"
                .to_string(),
        )
    } else {
        changes.restart_reason(plan)
    };
    match restart_reason {
        Some(reason) => TableStart {
            column_notes: changes.notes(plan, true),
            ..fresh_start(plan, now, Some(reason))
        },
        None => TableStart {
            column_notes: changes.notes(plan, start.truncate),
            ..start
        },
    }
}

/// A start from scratch: a TRUNCATE, then every row.
fn fresh_start(
    plan: &TablePlan,
    now: chrono::DateTime<chrono::Utc>,
    restart_reason: Option<String>,
) -> TableStart {
    TableStart {
        truncate: true,
        restart_reason,
        position: None,
        export: None,
        null_rescan: None,
        resync: plan
            .resync_every
            .filter(|_| plan.cursor_column().is_some())
            .map(|_| ResyncState {
                started_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                done: false,
            }),
        scheduled_resync: false,
        column_notes: Vec::new(),
        key_snapshot: None,
    }
}

/// Where the table's state says it goes on (or starts over), its columns aside.
fn start_from_state(
    plan: &TablePlan,
    previous: Option<&TableState>,
    now: chrono::DateTime<chrono::Utc>,
) -> TableStart {
    let fresh = |restart_reason: Option<String>| fresh_start(plan, now, restart_reason);
    let Some(previous) = previous else {
        return fresh(None);
    };
    let key_columns = plan.key_columns();
    match (previous, plan.cursor_column()) {
        (
            TableState::Incremental {
                cursor_column,
                key_columns: keys,
                position,
                export,
                null_rescan,
                resync,
                key_snapshot,
                ..
            },
            Some(cursor),
        ) if cursor_column == cursor && *keys == key_columns => {
            if let Some(every) = plan.resync_every {
                if resync_due(resync.as_ref(), every, now) {
                    return TableStart {
                        scheduled_resync: true,
                        ..fresh(None)
                    };
                }
            }
            let key_snapshot = key_snapshot.clone().filter(|_| plan.capture_deletes);
            if plan.capture_deletes && key_snapshot.is_none() {
                return fresh(Some(
                    "delete_capture = keys has no key snapshot of it (the mode was just turned on, or its snapshot is gone from `work_schema`), so it is re-synced from scratch: the destination then holds no row deleted before"
                        .to_string(),
                ));
            }
            let position = position.clone().filter(|_| export.is_none());
            let null_rescan = match null_rescan {
                Some(after_key) if export.is_none() => Some(after_key.clone()),
                _ if export.is_none() && null_rescan_due(position.as_ref()) => Some(Vec::new()),
                _ => None,
            };
            TableStart {
                truncate: false,
                restart_reason: None,
                position,
                export: export.clone(),
                null_rescan,
                resync: resync.clone().filter(|_| plan.resync_every.is_some()),
                scheduled_resync: false,
                column_notes: Vec::new(),
                key_snapshot,
            }
        }
        // A full pass under way resumes: an export from its files; a scan after its last key
        // (without a key it cannot).
        (
            TableState::Full {
                key_columns: keys,
                in_progress: true,
                export: Some(export),
                ..
            },
            None,
        ) if *keys == key_columns => TableStart {
            truncate: false,
            restart_reason: None,
            position: None,
            export: Some(export.clone()),
            null_rescan: None,
            resync: None,
            scheduled_resync: false,
            column_notes: Vec::new(),
            key_snapshot: None,
        },
        (
            TableState::Full {
                key_columns: keys,
                in_progress: true,
                position: Some(position),
                export: None,
                ..
            },
            None,
        ) if *keys == key_columns && !position.key.is_empty() => TableStart {
            truncate: false,
            restart_reason: None,
            position: Some(position.clone()),
            export: None,
            null_rescan: None,
            resync: None,
            scheduled_resync: false,
            column_notes: Vec::new(),
            key_snapshot: None,
        },
        // A finished full pass: the next one starts over, as full mode promises.
        (TableState::Full { .. }, None) => fresh(None),
        _ => fresh(Some(
            "its cursor column or primary key changed since the last sync, so it is re-synced \
             from the start"
                .to_string(),
        )),
    }
}

/// Checks that the state's position for this table fits its shape and columns (the kind of
/// position, the cursor's type, the number and types of key values, within each column's
/// range) wherever the state would be resumed from; a state for other columns is not resumed
/// (the table restarts) and needs no check.
pub fn check_state(plan: &TablePlan, previous: Option<&TableState>) -> Result<(), String> {
    let start = table_start(plan, previous);
    if let Some(after_key) = start.null_rescan.as_ref().filter(|k| !k.is_empty()) {
        if after_key.len() != plan.key.len() {
            return Err(format!(
                "null_rescan has {} key values where {} belong",
                after_key.len(),
                plan.key.len()
            ));
        }
        check_key_texts(plan, after_key)?;
    }
    if let Some(KeySnapshot::Deleting {
        after: Some(after_key),
        ..
    }) = &start.key_snapshot
    {
        if after_key.len() != plan.key.len() {
            return Err(format!(
                "key_snapshot.after has {} key values where {} belong",
                after_key.len(),
                plan.key.len()
            ));
        }
        check_key_texts(plan, after_key)?;
    }
    let Some(position) = start.position.filter(|_| !start.truncate) else {
        return Ok(());
    };
    let shape = Shape::of(plan);
    let keyed_row = matches!(shape, Shape::KeyedIncremental | Shape::KeyedFull)
        && position.kind == PositionKind::Row;
    let expected_keys = if keyed_row { plan.key.len() } else { 0 };
    if position.key.len() != expected_keys {
        return Err(format!(
            "position has {} key values where {expected_keys} belong",
            position.key.len()
        ));
    }
    let kind_fits = match position.kind {
        PositionKind::Row => true,
        PositionKind::AfterCursor => shape != Shape::KeyedFull,
        PositionKind::Tied => shape == Shape::KeylessIncremental,
    };
    if !kind_fits {
        return Err(format!(
            "a position of kind {:?} does not fit a table read {}",
            position.kind,
            match shape {
                Shape::KeyedFull => "by its primary key alone",
                _ => "by a cursor and a primary key",
            }
        ));
    }
    let columns = &plan.table.columns;
    if let (Mode::Incremental { cursor }, Some(text)) = (&plan.mode, &position.cursor) {
        columns[*cursor]
            .sql_type
            .check_position_text(text)
            .map_err(|reason| format!("cursor `{}`: {reason}", columns[*cursor].name))?;
    }
    check_key_texts(plan, &position.key)
}

/// Each key value of a position fits its column's type and range.
fn check_key_texts(plan: &TablePlan, key: &[String]) -> Result<(), String> {
    let columns = &plan.table.columns;
    for (&index, text) in plan.key.iter().zip(key) {
        columns[index]
            .sql_type
            .check_position_text(text)
            .map_err(|reason| format!("key `{}`: {reason}", columns[index].name))?;
    }
    Ok(())
}

/// A query to run: where it starts and how many rows it may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextQuery {
    pub resume: Resume,
    /// `None`: every row the query selects (a group of equal cursors, or a table with no order).
    pub limit: Option<u64>,
}

/// What the engine does with a row it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAction {
    /// Send it now.
    Send,
    /// Keep it back with the other rows of its cursor value, which may not all be read yet.
    Hold,
    /// The held rows' cursor value is complete: send them (they come before this row), then
    /// hold this one.
    SendHeldThenHold,
    /// The held rows' value has more rows than may be held: drop them and ignore this row;
    /// the query ends at its next batch and a query of that value's own reads them all.
    DropHeld,
    /// Ignore it: the query is ending early and a later query reads it.
    Skip,
}

/// How the engine ends a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryEnd {
    /// Send the rows still held (their value is complete) before committing; otherwise drop
    /// them (the next query reads them again).
    pub send_held: bool,
    pub after: AfterQuery,
}

/// Whether the pass goes on after a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterQuery {
    /// The pass is complete.
    Done,
    /// Another query follows, from [`Progress::next_query`].
    Next,
}

/// The next query would start where the last one did: a defect this module's invariants rule
/// out, reported instead of looping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the scan made no progress: the next query would start where the last did ({0:?})")]
pub struct NoProgress(pub Resume);

/// How much a query may hold back: a group of equal cursor values larger than this is read by
/// a query of its own instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    pub rows: u64,
    pub bytes: u64,
}

/// A table's progress through its pass, and the query under way.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    shape: Shape,
    position: Option<Position>,
    running: Option<Running>,
}

/// The query under way.
#[derive(Debug, Clone, PartialEq)]
struct Running {
    query: NextQuery,
    /// Rows are held back by cursor value: a bounded query of a table without a key.
    holds: bool,
    limits: HoldLimits,
    rows: u64,
    /// Cursor values this query completed and sent.
    groups_sent: u64,
    held: Option<Held>,
    /// The held value outgrew the limits: the query ends at its next batch.
    stopping: bool,
}

/// The rows of one cursor value, held back.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    /// The value's bytes as `source::value::group_key` writes them: equal exactly when the
    /// values compare equal in the scan's order.
    key: Vec<u8>,
    cursor: Option<String>,
    rows: u64,
    bytes: u64,
}

impl Progress {
    pub fn new(shape: Shape, position: Option<Position>) -> Self {
        Self {
            shape,
            position,
            running: None,
        }
    }

    /// What a checkpoint records.
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Where the next query starts, with at most `rows_per_query` rows where a limit applies.
    pub fn next_query(&self, rows_per_query: u64) -> NextQuery {
        let bounded = |resume| NextQuery {
            resume,
            limit: Some(rows_per_query.max(1)),
        };
        let whole = |resume| NextQuery {
            resume,
            limit: None,
        };
        let Some(position) = &self.position else {
            return match self.shape {
                Shape::KeylessFull => whole(Resume::FromStart),
                _ => bounded(Resume::FromStart),
            };
        };
        let cursor = position.cursor.clone();
        match (self.shape, position.kind) {
            (Shape::KeylessFull, _) => whole(Resume::FromStart),
            (Shape::KeyedFull, _) => bounded(Resume::AfterKey(position.key.clone())),
            (_, PositionKind::AfterCursor) => bounded(Resume::AfterCursor(cursor)),
            (Shape::KeyedIncremental, PositionKind::Row) => bounded(match cursor {
                None => Resume::AfterNullCursor(position.key.clone()),
                Some(cursor) => Resume::AfterRow {
                    cursor,
                    key: position.key.clone(),
                },
            }),
            (Shape::KeylessIncremental, PositionKind::Row) => bounded(match cursor {
                // Somewhere among the NULL-cursor rows, which have no order: from the start.
                None => Resume::FromStart,
                Some(cursor) => Resume::AtCursor(cursor),
            }),
            (Shape::KeylessIncremental, PositionKind::Tied) => whole(Resume::OnlyCursor(cursor)),
            // `check_state` refuses this; read the rows at the cursor again rather than skip any.
            (Shape::KeyedIncremental, PositionKind::Tied) => bounded(match cursor {
                None => Resume::FromStart,
                Some(cursor) => Resume::AtCursor(cursor),
            }),
        }
    }

    /// Starts the next query (see [`next_query`](Self::next_query)).
    pub fn start_query(&mut self, rows_per_query: u64, limits: HoldLimits) -> NextQuery {
        let query = self.next_query(rows_per_query);
        let holds = self.shape == Shape::KeylessIncremental
            && !matches!(query.resume, Resume::OnlyCursor(_));
        self.running = Some(Running {
            query: query.clone(),
            holds,
            limits,
            rows: 0,
            groups_sent: 0,
            held: None,
            stopping: false,
        });
        query
    }

    /// Whether rows of the running query are held back by cursor value, so that
    /// [`row`](Self::row) needs their group keys.
    pub fn holds_rows(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.holds)
    }

    /// Whether the running query should end at its next batch.
    pub fn stopping(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.stopping)
    }

    /// A row of the running query was read: what to do with it. `key` is its cursor's group
    /// key and `cursor` its position text (asked only when a new value starts), both only
    /// where [`holds_rows`](Self::holds_rows).
    #[inline]
    pub fn row(
        &mut self,
        key: &[u8],
        row_bytes: u64,
        cursor: impl FnOnce() -> Option<String>,
    ) -> RowAction {
        let running = self.running.as_mut().expect("a query is running");
        running.rows += 1;
        if !running.holds {
            return RowAction::Send;
        }
        if running.stopping {
            return RowAction::Skip;
        }
        let action = match &mut running.held {
            Some(held) if held.key == key => {
                held.rows += 1;
                held.bytes += row_bytes;
                if held.rows > running.limits.rows || held.bytes > running.limits.bytes {
                    running.stopping = true;
                    return RowAction::DropHeld;
                }
                return RowAction::Hold;
            }
            Some(_) => RowAction::SendHeldThenHold,
            None => RowAction::Hold,
        };
        if let Some(done) = running.held.take() {
            // Every row of that value was read: the scan is past it.
            running.groups_sent += 1;
            self.position = Some(Position::after_cursor(done.cursor));
        }
        running.held = Some(Held {
            key: key.to_vec(),
            cursor: cursor(),
            rows: 1,
            bytes: row_bytes,
        });
        action
    }

    /// Rows up to this one (its cursor and key as position texts) went out: the position of a
    /// table with a key. (Tables without one move by cursor value, in [`row`](Self::row).)
    pub fn sent(&mut self, cursor: Option<String>, key: Vec<String>) {
        match self.shape {
            Shape::KeyedFull => self.position = Some(Position::row(None, key)),
            Shape::KeyedIncremental => self.position = Some(Position::row(cursor, key)),
            // Nothing names a place in an unordered pass; a group keeps the group's position.
            Shape::KeylessFull | Shape::KeylessIncremental => {}
        }
    }

    /// The running query ended (its last row read, or ended early at a batch because
    /// [`stopping`](Self::stopping)): what happens to the rows it holds, and whether another
    /// query follows. See the module documentation for why one always makes progress.
    pub fn query_ended(&mut self) -> Result<QueryEnd, NoProgress> {
        let running = self.running.take().expect("a query is running");
        let query = &running.query;
        let filled = query.limit.is_some_and(|limit| running.rows >= limit);
        if let Resume::OnlyCursor(cursor) = &query.resume {
            // The whole group was read and sent: on past it.
            self.position = Some(Position::after_cursor(cursor.clone()));
            return Ok(QueryEnd {
                send_held: false,
                after: AfterQuery::Next,
            });
        }
        if !running.holds {
            let after = if filled {
                AfterQuery::Next
            } else {
                AfterQuery::Done
            };
            return self.checked(query, after, false);
        }
        match running.held {
            // Every row after the start was read: the held value is complete, and the pass.
            // The position stays at that value, inclusive, so that the next sync reads rows
            // that arrive later with the same value.
            Some(held) if !filled && !running.stopping => {
                self.position = Some(Position::row(held.cursor, Vec::new()));
                Ok(QueryEnd {
                    send_held: true,
                    after: AfterQuery::Done,
                })
            }
            // More rows of the held value than may be held, or than were left to this query
            // (it filled its limit with them alone): a query of the value's own reads them.
            Some(held) if running.stopping || running.groups_sent == 0 => {
                self.position = Some(Position::tied(held.cursor));
                self.checked(query, AfterQuery::Next, false)
            }
            // The query filled its limit: the held value may have more rows after it, so they
            // are dropped and the next query starts after the last complete value.
            Some(_) => self.checked(query, AfterQuery::Next, false),
            None => {
                if let Some(Position {
                    cursor,
                    kind: PositionKind::AfterCursor,
                    ..
                }) = &self.position
                {
                    // The end, right after a complete value: at it, inclusive (as above).
                    self.position = Some(Position::row(cursor.clone(), Vec::new()));
                }
                Ok(QueryEnd {
                    send_held: false,
                    after: AfterQuery::Done,
                })
            }
        }
    }

    /// `after`, unless the next query would start where `query` did.
    fn checked(
        &self,
        query: &NextQuery,
        after: AfterQuery,
        send_held: bool,
    ) -> Result<QueryEnd, NoProgress> {
        if after == AfterQuery::Next {
            let next = self.next_query(query.limit.unwrap_or(1));
            if next.resume == query.resume {
                return Err(NoProgress(next.resume));
            }
        }
        Ok(QueryEnd { send_held, after })
    }

    /// An attempt failed after sending `rows_sent` rows of this pass: whether the pass must
    /// start over with a new TRUNCATE (only an unordered pass, which no position can resume).
    pub fn attempt_failed(&mut self, rows_sent: u64) -> bool {
        self.running = None;
        self.shape == Shape::KeylessFull && rows_sent > 0
    }
}

/// How many rows a query may read: the configured number, or as many as fit the result
/// budget at `row_bytes` a row, shared by `parallel` tables, and within the transport's cap on
/// one statement's result (`statement_cap`: the Data API's), if it has one.
pub fn rows_per_query(
    setting: RowsPerQuery,
    parallel: usize,
    row_bytes: u64,
    statement_cap: Option<u64>,
) -> u64 {
    match setting {
        RowsPerQuery::AtMost(rows) => rows.max(1),
        RowsPerQuery::Auto => {
            let shared =
                (QUERY_RESULT_BUDGET / parallel.max(1) as u64).max(MIN_QUERY_RESULT_BUDGET);
            let budget = statement_cap.map_or(shared, |cap| shared.min(cap));
            (budget / row_bytes.max(1)).max(1)
        }
    }
}

/// The cap on one statement's result that `transport` imposes.
pub fn statement_cap(transport: &crate::config::Transport) -> Option<u64> {
    match transport {
        crate::config::Transport::Direct => None,
        crate::config::Transport::DataApi(_) => Some(DATA_API_RESULT_CAP),
    }
}

/// The most bytes a row of the plan's SELECT list may take on the wire, from the declared
/// types (so that a table's first query cannot exceed its budget); later queries use the
/// average the table's rows actually took.
pub fn declared_row_bytes(plan: &TablePlan) -> u64 {
    // DataRow: tag, length, column count; each value: a length word.
    7 + plan
        .select
        .iter()
        .map(|&i| 4 + max_wire_bytes(&plan.table.columns[i].sql_type))
        .sum::<u64>()
}

/// The most bytes one value of a type takes on the wire, as the scan reads it (binary for
/// numbers and timestamps, text or hex text for the rest). Unbounded types count what
/// Redshift's defaults bound them to: a TEXT is a VARCHAR(256), a VARBYTE 64,000 bytes.
fn max_wire_bytes(sql_type: &SqlType) -> u64 {
    const HEX_OF_64K: u64 = 2 * 65_536;
    match sql_type {
        SqlType::Boolean => 1,
        SqlType::SmallInt => 2,
        SqlType::Integer | SqlType::Real => 4,
        SqlType::BigInt | SqlType::Double | SqlType::Timestamp | SqlType::TimestampTz => 8,
        SqlType::Date => 10,
        SqlType::Time => 15,
        SqlType::TimeTz => 21,
        SqlType::Numeric { precision, .. } => u64::from(precision.unwrap_or(38)) + 2,
        SqlType::Char { length } | SqlType::Varchar { length } => length.map_or(256, u64::from),
        SqlType::Text => 256,
        SqlType::Super
        | SqlType::VarByte
        | SqlType::Bytea
        | SqlType::Geometry
        | SqlType::Geography
        | SqlType::HllSketch => HEX_OF_64K,
        SqlType::Other { .. } => 64,
    }
}

#[cfg(test)]
mod tests;
