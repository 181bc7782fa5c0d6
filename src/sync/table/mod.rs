//! Syncing one table: where to start, the scan, checkpoints, and what each failure means.
//!
//! Rows stream from the portal through the decoder into the table's [`RecordEncoder`]; no row
//! is kept, only the encoded `Records` messages of the current batch. A batch ends with every
//! fetch, and also after `batch_size` rows or `max_batch_bytes` of records within one; then its
//! messages, the table's position and a checkpoint leave together (see `checkpoints`). So memory
//! holds about a batch of encoded records per table whatever the row width, and resuming from
//! any checkpoint repeats nothing.
//!
//! | failure | what happens |
//! |---|---|
//! | transient (connection lost, restart, serialization conflict) | retried on a new session from the last row sent, with backoff; the budget of retries renews whenever rows arrive |
//! | single-node cluster refuses the fetch size | every table fetches 1000 rows at a time from then on |
//! | portal lost after its first batch (leader-node query) | the table is read in one `Execute` per query |
//! | credentials, TLS, database, host | the Update ends with a Task for the user |
//! | anything else about this table (grants, a value that cannot be read, a dropped table, a WLM abort) | a Warning naming the table and why; the other tables sync |

mod batch;
mod buffers;
mod deletes;
mod export;
mod notices;
mod statistics;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeZone as _, Utc};

use super::checkpoints::Checkpoints;
use super::output::{Counters, Output};
use super::plan::{Mode, TablePlan};
use super::policy::{self, Consequence};
use super::position::{self, AfterQuery, HoldLimits, NextQuery, Progress, RowAction, Shape};
use super::retry::Retry;
use super::SyncError;
use crate::config::{Config, ConnectionConfig};
use crate::source::scan::{Resume, ScanEvent, ScanSpec};
use crate::source::session::Canceller;
use crate::source::types::SqlType;
use crate::source::unload::s3::Staging;
use crate::source::value::{group_key, position_text, Cell, DecodedRow, Decoder, RowDecoder};
use crate::source::wire::Format;
use crate::source::{self, Flavour, Session, SourceError};
use crate::state::{ExportState, KeySnapshot, Position, ResyncState, SyncedColumn, TableState};

use batch::Batch;
use buffers::RowBuffers;
use notices::Notices;
use statistics::Statistics;

pub(super) use deletes::{prepare_work_schema, WorkSchema};
pub(super) use export::{clean_abandoned, new_export_id, readers as export_readers};

const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Rows with a NULL cursor, read again by every sync, from which a Warning says so.
const NULL_RESCAN_WARNING_ROWS: u64 = 10_000;
/// Redshift's single-node clusters fetch at most this many rows at a time.
pub const SINGLE_NODE_FETCH_LIMIT: u32 = 1000;

/// What all tables of one Update share.
pub(super) struct Shared {
    pub config: Config,
    pub checkpoints: Checkpoints,
    pub output: Output,
    /// The most rows one fetch may ask for: lowered for every table once the cluster says it
    /// is a single node.
    pub fetch_limit: AtomicU32,
    /// Sessions that finished a table cleanly, for the next tables: a new session costs a TCP
    /// and TLS handshake, a sign-in and its settings (and a backend process on the cluster),
    /// several times the work of a small table.
    pub idle_sessions: std::sync::Mutex<Vec<Session>>,
    /// The id of exports this Update begins: their S3 prefix under `unload_s3_uri`.
    pub export_id: String,
    /// The staging bucket's client, made when the first export needs it.
    pub staging: tokio::sync::OnceCell<Staging>,
    /// Export files held and decoded at once, across all tables (see `export`).
    pub export_readers: Arc<tokio::sync::Semaphore>,
    /// The database's clock as first read in this Update, and when: later readings are derived
    /// from it (see [`Shared::time_bound`]).
    pub clock: tokio::sync::OnceCell<(chrono::DateTime<Utc>, Instant)>,
    /// With `delete_capture = keys`: where the key snapshots are.
    pub work: Option<WorkSchema>,
}

impl Shared {
    /// An idle session, or a new one.
    pub async fn session(&self) -> Result<Session, SyncError> {
        let idle = self.idle_sessions.lock().expect("sessions lock").pop();
        match idle {
            Some(session) => Ok(session),
            None => {
                connect_with_retry(
                    &self.config.connection,
                    self.config.sync.retry_timeout,
                    &self.output,
                )
                .await
            }
        }
    }

    /// The staging bucket's S3 client (only called with `unload_s3_uri` set).
    pub async fn staging(&self) -> Staging {
        self.staging
            .get_or_init(|| async {
                let unload = self
                    .config
                    .sync
                    .unload
                    .as_ref()
                    .expect("an export is configured");
                Staging::new(unload, self.config.connection.aws_region().as_deref()).await
            })
            .await
            .clone()
    }

    /// The newest value of a time cursor a query may read now: the database's clock minus
    /// `cursor_lag_s`, as a position of `sql_type`. The clock is asked once per Update (a
    /// round trip to the leader node per table would add up over thousands of tables) and
    /// advanced by the time elapsed since; `GETDATE()` counts whole seconds, so the derived
    /// time never runs ahead of the database's.
    pub async fn time_bound(
        &self,
        session: &mut Session,
        sql_type: &SqlType,
    ) -> Result<Option<String>, SourceError> {
        let (read, at) = *self
            .clock
            .get_or_try_init(|| async {
                Ok::<_, SourceError>((database_clock(session).await?, Instant::now()))
            })
            .await?;
        let now = chrono::Duration::from_std(at.elapsed())
            .ok()
            .and_then(|elapsed| read.checked_add_signed(elapsed))
            .unwrap_or(read);
        let lag = chrono::Duration::from_std(self.config.sync.cursor_lag)
            .unwrap_or(chrono::Duration::MAX);
        Ok(now
            .checked_sub_signed(lag)
            .and_then(|at| sql_type.time_position(at)))
    }

    /// Rows one fetch asks for: `batch_size`, at most what the cluster allows.
    pub fn fetch_rows(&self) -> u32 {
        self.config
            .sync
            .batch_size
            .min(self.fetch_limit.load(Ordering::Relaxed))
    }

    /// Keeps a session that is between statements (no transaction, no portal) for the next
    /// table; at most one per table synced at once.
    pub fn release(&self, session: Session) {
        let mut idle = self.idle_sessions.lock().expect("sessions lock");
        if idle.len() < self.config.sync.max_parallel_tables {
            idle.push(session);
        }
    }
}

/// Connects, retrying transient failures for up to `retry_timeout` while the host is there.
pub(super) async fn connect_with_retry(
    config: &ConnectionConfig,
    retry_timeout: Duration,
    output: &Output,
) -> Result<Session, SyncError> {
    let mut retry = Retry::new(retry_timeout);
    loop {
        let err = match source::connect(config).await {
            Ok(session) => return Ok(session),
            Err(err) => err,
        };
        match retry.next_delay() {
            Some(delay) if err.is_transient() => {
                tracing::warn!(error = %err, attempt = retry.attempts(), retry_in_ms = delay.as_millis() as u64, "connect failed, retrying");
                pause(delay, output).await?;
            }
            _ => return Err(SyncError::Source(err)),
        }
    }
}

/// Waits `delay`, or returns at once if the host goes away or the server stops meanwhile.
async fn pause(delay: Duration, output: &Output) -> Result<(), SyncError> {
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        () = output.closed() => Err(SyncError::HostGone),
        () = output.stop().raised() => Err(SyncError::ShuttingDown),
    }
}

/// Why one attempt at a table stopped.
enum Stop {
    HostGone,
    ShuttingDown,
    Source(SourceError),
}

impl From<SyncError> for Stop {
    fn from(err: SyncError) -> Self {
        match err {
            SyncError::Source(err) | SyncError::Table { source: err, .. } => Stop::Source(err),
            SyncError::ShuttingDown => Stop::ShuttingDown,
            _ => Stop::HostGone,
        }
    }
}

impl From<source::UnloadError> for Stop {
    fn from(err: source::UnloadError) -> Self {
        Stop::Source(err.into())
    }
}

impl From<SourceError> for Stop {
    fn from(err: SourceError) -> Self {
        Stop::Source(err)
    }
}

/// Which rows a pass of queries reads (see `position` for how each keeps its place).
#[derive(Clone, Copy)]
enum RowsPass<'a> {
    /// The table's rows in cursor (then key) order, up to the cursor's upper bound if any.
    ByCursor { upper_bound: Option<&'a str> },
    /// The rows whose cursor is NULL, read again before the scan goes on (in key order).
    NullCursorRows,
}

/// How a query's rows are fetched from its portal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fetching {
    /// `Execute` with a row limit, batch after batch (the usual way).
    InBatches,
    /// One `Execute` without a limit per query: a leader-node query's portal lasts one batch
    /// (`policy::Consequence::ReadWholeQueries`).
    WholeQueries,
}

/// Syncs one table from its state to the end of its rows. Problems that concern only this
/// table end in a Warning and `Ok`; problems of the whole Update in `Err`.
pub(super) async fn sync_table(
    shared: Arc<Shared>,
    plan: Arc<TablePlan>,
) -> Result<Counters, SyncError> {
    let name = &plan.table.name;
    let output = &shared.output;
    let mut table = TableSync::new(&shared, &plan).await;
    if let Mode::Full { reason } = &plan.mode {
        let unbounded = if plan.key.is_empty() {
            "; without a primary key to resume by, it is read by one query without a row limit"
        } else {
            ""
        };
        table
            .warning(
                output,
                format!("table {name} is synced in full on every sync because {reason}; configure `cursor_column` to sync it incrementally{unbounded}"),
            )
            .await?;
    }
    for note in &plan.notes {
        table
            .warning(output, format!("table {name}: {note}"))
            .await?;
    }
    for note in std::mem::take(&mut table.notices.column_notes) {
        table
            .warning(output, format!("table {name}: {note}"))
            .await?;
    }
    if let Some(reason) = table.notices.restart_reason.take() {
        table
            .warning(output, format!("table {name}: {reason}"))
            .await?;
    }

    let mut fetching = Fetching::InBatches;
    // Once per Update: a table whose columns keep changing is left for the next sync.
    let mut columns_read_again = false;
    let mut retry = Retry::new(shared.config.sync.retry_timeout);
    loop {
        let rows_before = table.stats.rows;
        let stop = match table.scan(&shared, fetching).await {
            Ok(()) => break,
            Err(stop) => stop,
        };
        // Whatever was read before the failure is sent and checkpointed, so a retry repeats
        // nothing that was delivered.
        table.commit(&shared).await?;
        let err = match stop {
            Stop::HostGone => return Err(SyncError::HostGone),
            Stop::ShuttingDown => return Err(SyncError::ShuttingDown),
            Stop::Source(err) => err,
        };
        if table.stats.rows > rows_before {
            retry.renew();
        }
        // Every retry reads on from the last checkpoint; a keyless full pass cannot, and
        // starts over with its TRUNCATE (an export can: from its files).
        // (The re-read of NULL-cursor rows never does: sending them again is idempotent.)
        if table.progress.attempt_failed(table.stats.rows)
            && table.export.is_none()
            && table.after_null_rescan.is_none()
        {
            table.batch.truncate_pending = true;
        }
        let attempt = policy::Attempt {
            fetch_limit_above_single_node: shared.fetch_limit.load(Ordering::Relaxed)
                > SINGLE_NODE_FETCH_LIMIT,
            reading_whole_queries: fetching == Fetching::WholeQueries,
            columns_read_again,
            rows_held: !table.buffers.held.is_empty(),
        };
        match policy::after_failure(&err, attempt) {
            Consequence::LowerFetchLimit => {
                tracing::warn!(table = %name, limit = SINGLE_NODE_FETCH_LIMIT, "single-node cluster: fetching at most 1000 rows at a time");
                shared
                    .fetch_limit
                    .store(SINGLE_NODE_FETCH_LIMIT, Ordering::Relaxed);
            }
            Consequence::ReadWholeQueries => {
                tracing::warn!(table = %name, "the query runs on the leader node, whose portals last one batch: reading each query in one go");
                fetching = Fetching::WholeQueries;
            }
            Consequence::Retry => {
                let Some(delay) = retry.next_delay() else {
                    return Err(SyncError::Table {
                        table: name.clone(),
                        source: err,
                    });
                };
                tracing::warn!(table = %name, error = %err, attempt = retry.attempts(), retry_in_ms = delay.as_millis() as u64, "table scan failed, resuming from the last row sent");
                pause(delay, output).await?;
            }
            Consequence::ReadColumnsAgain => {
                columns_read_again = true;
                tracing::warn!(table = %name, error = %err, "the table's columns changed during its sync: reading them again");
                if let Err(reason) = table.adopt_changed_columns(&shared).await? {
                    table
                        .warning(output, format!("table {name} was skipped: {err}, and the sync cannot go on because {reason}; the next sync starts it again"))
                        .await?;
                    return Ok(table.stats.counters);
                }
            }
            Consequence::EndUpdate => {
                return Err(SyncError::Table {
                    table: name.clone(),
                    source: err,
                })
            }
            Consequence::SkipTable => {
                tracing::warn!(table = %name, error = %err, "table skipped");
                table
                    .warning(output, format!("table {name} was skipped: {err}"))
                    .await?;
                return Ok(table.stats.counters);
            }
        }
    }
    table.finish(&shared).await?;
    Ok(table.stats.counters)
}

/// A table's sync in progress, across attempts: where each pass stands (as last committed), and
/// the parts that serve every pass, each owning its fields (see their modules).
struct TableSync {
    plan: Arc<TablePlan>,
    /// Where the scan stands, as last committed. While the rows whose cursor is NULL are
    /// re-read, the progress of that re-read, with the scan's own kept in `after_null_rescan`.
    progress: Progress,
    /// The scan's progress, while the NULL-cursor rows are re-read first (see
    /// `position::null_rescan_due`); `None` otherwise.
    after_null_rescan: Option<Progress>,
    /// With `delete_capture = resync`: the table's latest sync from scratch.
    resync: Option<ResyncState>,
    /// With `delete_capture = keys`: the table's key snapshot and its pass's stage.
    key_snapshot: Option<KeySnapshot>,
    /// The UNLOAD export under way, as last committed.
    export: Option<ExportState>,
    /// The columns it is synced with, for its entry in the state.
    synced_columns: Vec<SyncedColumn>,
    /// Records encoded since the last checkpoint, sent with it.
    batch: Batch,
    /// The decoded row and what is kept of rows already read.
    buffers: RowBuffers,
    /// What this Update says once, and what it checked once.
    notices: Notices,
    /// Rows, bytes and time, for progress, the summary and query sizing.
    stats: Statistics,
}

impl TableSync {
    async fn new(shared: &Shared, plan: &Arc<TablePlan>) -> Self {
        let start = position::table_start(
            plan,
            shared.checkpoints.table(&plan.table.name).await.as_ref(),
        );
        let (position_indexes, position_types) = position_layout(plan);
        let mode = match plan.mode {
            Mode::Incremental { .. } => "incremental",
            Mode::Full { .. } => "full",
        };
        if start.scheduled_resync {
            tracing::info!(table = %plan.table.name, "re-synced from scratch (delete_capture = resync): its TRUNCATE marks rows deleted in Redshift");
        }
        tracing::info!(table = %plan.table.name, mode, "table sync started");
        let now = Instant::now();
        Self {
            progress: match &start.null_rescan {
                Some(after_key) => Progress::new(
                    position::null_rescan_shape(Shape::of(plan)),
                    (!after_key.is_empty()).then(|| Position::row(None, after_key.clone())),
                ),
                None => Progress::new(Shape::of(plan), start.position.clone()),
            },
            after_null_rescan: start
                .null_rescan
                .is_some()
                .then(|| Progress::new(Shape::of(plan), start.position)),
            resync: start.resync,
            key_snapshot: start.key_snapshot,
            export: start.export,
            synced_columns: super::schema_change::synced_columns(plan),
            batch: Batch::new(
                plan.record_encoder(shared.config.sync.max_batch_bytes as usize),
                start.truncate,
            ),
            buffers: RowBuffers::new(position_indexes, position_types),
            notices: Notices::new(start.column_notes, start.restart_reason),
            stats: Statistics::new(now),
            plan: Arc::clone(plan),
        }
    }

    /// After a query found the table's columns changed under the sync (a column dropped, or
    /// its type changed): reads them again and goes on from the position with the columns
    /// that are left, after a SchemaChange that declares the table as it is now and a Warning
    /// naming what went. `Ok(Err)` says why it cannot go on.
    async fn adopt_changed_columns(
        &mut self,
        shared: &Shared,
    ) -> Result<Result<(), String>, SyncError> {
        let mut session = shared.session().await?;
        let name = &self.plan.table.name;
        let now =
            match source::catalog::discover_table(&mut session, &shared.config.sync, name).await {
                Ok(now) => now,
                Err(err) => return Ok(Err(format!("its columns could not be read again ({err})"))),
            };
        shared.release(session);
        let plan = match self.plan.without_dropped_columns(now) {
            Ok(plan) => plan,
            Err(reason) => return Ok(Err(reason)),
        };
        let after = super::schema_change::synced_columns(&plan);
        if self.synced_columns == after {
            return Ok(Err("the catalog shows no change to its columns".to_string()));
        }
        let dropped: Vec<String> = self
            .synced_columns
            .iter()
            .filter(|old| !after.iter().any(|new| new.0 == old.0))
            .map(|old| old.0.clone())
            .collect();
        let plan = Arc::new(plan);
        shared
            .output
            .schema_change(
                super::schema_change::declaration([&*plan]),
                &mut self.stats.counters,
            )
            .await?;
        if !dropped.is_empty() {
            let (columns, them) = super::schema_change::columns_phrase(&dropped, "was", "were");
            let message = format!(
                "table {name}: {columns} dropped while it was synced; the sync goes on without {them}, and the destination keeps what was written there"
            );
            self.warning(&shared.output, message).await?;
        }
        self.use_plan(plan, shared);
        Ok(Ok(()))
    }

    /// Reads and sends by `plan` from now on (the same cursor and key, other columns).
    fn use_plan(&mut self, plan: Arc<TablePlan>, shared: &Shared) {
        (self.buffers.position_indexes, self.buffers.position_types) = position_layout(&plan);
        self.batch.encoder = plan.record_encoder(shared.config.sync.max_batch_bytes as usize);
        self.synced_columns = super::schema_change::synced_columns(&plan);
        self.buffers.cells.clear();
        self.plan = plan;
    }

    async fn warning(&mut self, output: &Output, message: String) -> Result<(), SyncError> {
        output.warning(message, &mut self.stats.counters).await
    }

    /// One attempt: a session, then the queries `position` asks for until the pass is done.
    async fn scan(&mut self, shared: &Shared, fetching: Fetching) -> Result<(), Stop> {
        let mut session = shared.session().await?;
        // While a statement runs, leaving early (an error, the host gone) cancels it on the
        // server, which would otherwise run the query to its end.
        let mut cancel = CancelOnDrop(Some(session.canceller()));
        if self.batch.truncate_pending {
            self.warn_of_repeated_keys(shared, &mut session).await?;
        }
        self.key_snapshot_phase(shared, &mut session).await?;
        if self.export_phase(shared, &mut session).await? == export::ExportEnd::PassDone {
            cancel.0 = None;
            shared.release(session);
            return Ok(());
        }
        if self.after_null_rescan.is_some() {
            self.run_pass(shared, &mut session, RowsPass::NullCursorRows, fetching)
                .await?;
            self.end_null_rescan(shared).await?;
        }
        let upper_bound = match self.snapshot_bound(shared) {
            Some((bound, _)) => bound,
            None => self.upper_bound(shared, &mut session).await?,
        };
        let rows = RowsPass::ByCursor {
            upper_bound: upper_bound.as_deref(),
        };
        self.run_pass(shared, &mut session, rows, fetching).await?;
        if let (Some(bound), Mode::Incremental { cursor }) = (&upper_bound, &self.plan.mode) {
            if self.plan.table.columns[*cursor].sql_type.is_time() {
                self.warn_of_rows_beyond_bound(shared, &mut session, *cursor, bound)
                    .await?;
            }
        }
        cancel.0 = None;
        shared.release(session);
        Ok(())
    }

    /// Runs the queries `progress` asks for until `pass` is done.
    async fn run_pass(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        pass: RowsPass<'_>,
        fetching: Fetching,
    ) -> Result<(), Stop> {
        let (upper_bound, only_null_cursor) = match pass {
            RowsPass::ByCursor { upper_bound } => (upper_bound, false),
            RowsPass::NullCursorRows => (None, true),
        };
        let config = &shared.config;
        let cursor = match self.plan.mode {
            Mode::Incremental { cursor } => Some(cursor),
            Mode::Full { .. } => None,
        };
        let limits = HoldLimits {
            rows: u64::from(config.sync.batch_size),
            bytes: config.sync.max_batch_bytes,
        };
        let key_snapshot = self.snapshot_bound(shared).map(|(_, snapshot)| snapshot);
        loop {
            let rows_per_query = self.rows_per_query(config);
            let next = self.progress.start_query(rows_per_query, limits);
            let spec = ScanSpec {
                table: &self.plan.table,
                flavour: session.flavour(),
                select: &self.plan.select,
                cursor,
                key: &self.plan.key,
                upper_bound,
                limit: next.limit,
                only_null_cursor,
                key_snapshot: key_snapshot.as_deref(),
            };
            let query = spec.query(&next.resume);
            tracing::debug!(table = %self.plan.table.name, sql = %query.sql, limit = ?next.limit, "scan query");
            let fetch_rows = match fetching {
                Fetching::WholeQueries => 0,
                Fetching::InBatches => shared.fetch_rows(),
            };
            let rows_before = self.stats.rows + self.batch.uncommitted_rows;
            let (after, rows) = self.run_query(shared, session, &query, fetch_rows).await?;
            if only_null_cursor {
                self.stats.null_rescan_rows +=
                    self.stats.rows + self.batch.uncommitted_rows - rows_before;
            }
            self.warn_of_a_tied_group(shared, &next, rows, rows_per_query)
                .await?;
            if after == AfterQuery::Done {
                return Ok(());
            }
        }
    }

    /// The NULL-cursor rows were all read again: the scan goes on from its own position, and
    /// a Warning says what re-reading them costs when they are many.
    async fn end_null_rescan(&mut self, shared: &Shared) -> Result<(), SyncError> {
        let Some(scan) = self.after_null_rescan.take() else {
            return Ok(());
        };
        self.progress = scan;
        let rows = self.stats.null_rescan_rows;
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

    /// Once the pass is done: a Warning, once per Update, when rows wait beyond the cursor's
    /// upper bound, saying how many and up to when. One query per table and Update.
    async fn warn_of_rows_beyond_bound(
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
    async fn warn_of_repeated_keys(
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
    async fn warn_of_a_tied_group(
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

    /// Rows the next query may read: the setting, or as many as fit the result budget at the
    /// average row size seen so far (the declared maximum before the first row).
    fn rows_per_query(&self, config: &Config) -> u64 {
        // A quarter more than the average, for rows wider than those seen so far.
        let row_bytes = match self.stats.wire_bytes.checked_div(self.stats.wire_rows) {
            Some(average) => average * 5 / 4 + 1,
            None => position::declared_row_bytes(&self.plan),
        };
        position::rows_per_query(
            config.sync.max_rows_per_query,
            config.sync.max_parallel_tables,
            row_bytes,
        )
    }

    /// Runs one query to its end (or, when `position` says so, to the end of a batch):
    /// whether the pass goes on, and how many rows the query returned.
    async fn run_query(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        query: &source::scan::ScanQuery,
        fetch_rows: u32,
    ) -> Result<(AfterQuery, u64), Stop> {
        let plan = Arc::clone(&self.plan);
        let mut decoders = Vec::with_capacity(plan.select.len());
        let (mut portal, _columns) = session
            .open_scan(
                query,
                |columns| {
                    if columns.len() != plan.select.len() {
                        return Err(decode_error(
                            &plan,
                            0,
                            "the query describes another number of columns".to_string(),
                        ));
                    }
                    let mut formats = Vec::with_capacity(columns.len());
                    for (position, (column, &index)) in columns.iter().zip(&plan.select).enumerate()
                    {
                        let (decoder, format) = Decoder::for_column(
                            &plan.table.columns[index].sql_type,
                            column.type_oid,
                        )
                        .map_err(|reason| decode_error(&plan, position, reason))?;
                        decoders.push(decoder);
                        formats.push(format);
                    }
                    Ok::<Vec<Format>, SourceError>(formats)
                },
                fetch_rows,
            )
            .await?;
        let decoder = RowDecoder::new(decoders);
        let batch_size = u64::from(shared.config.sync.batch_size);
        let max_batch_bytes = shared.config.sync.max_batch_bytes as usize;
        let mut rows = 0u64;
        loop {
            match portal.next().await? {
                ScanEvent::Row(body) => {
                    decoder
                        .decode(body, &mut self.buffers.cells, &mut self.buffers.scratch)
                        .map_err(|err| decode_error(&plan, err.column, err.reason))?;
                    rows += 1;
                    self.stats.wire_bytes += body.len() as u64;
                    match self.row_action(body) {
                        RowAction::Send => self.push(body)?,
                        RowAction::Hold => {
                            let row =
                                DecodedRow::new(&self.buffers.cells, body, &self.buffers.scratch);
                            self.buffers.held.hold(row);
                        }
                        RowAction::SendHeldThenHold => {
                            self.send_held();
                            let row =
                                DecodedRow::new(&self.buffers.cells, body, &self.buffers.scratch);
                            self.buffers.held.hold(row);
                        }
                        RowAction::DropHeld => self.buffers.held.clear(),
                        RowAction::Skip => {}
                    }
                    if self.batch.uncommitted_rows >= batch_size
                        || self.batch.bytes + self.batch.encoder.pending_bytes() >= max_batch_bytes
                    {
                        self.commit(shared).await?;
                    }
                }
                ScanEvent::BatchEnd => {
                    self.commit(shared).await?;
                    if self.progress.stopping() {
                        portal.close_early().await?;
                        break;
                    }
                }
                ScanEvent::End => break,
            }
        }
        self.stats.wire_rows += rows;
        let end = self.progress.query_ended().map_err(|err| {
            Stop::Source(SourceError::Internal {
                during: "reading a table",
                detail: err.to_string(),
            })
        })?;
        if end.send_held {
            self.send_held();
        }
        self.buffers.held.clear();
        self.commit(shared).await?;
        Ok((end.after, rows))
    }

    /// What `position` says to do with the decoded row.
    #[inline]
    fn row_action(&mut self, row: &[u8]) -> RowAction {
        if !self.progress.holds_rows() {
            return self.progress.row(&[], 0, || None);
        }
        let Mode::Incremental { cursor } = self.plan.mode else {
            unreachable!("rows are held back only when read by a cursor")
        };
        let sql_type = &self.plan.table.columns[cursor].sql_type;
        let cell = self.buffers.cells[self.buffers.position_indexes[0]];
        self.buffers.group_key.clear();
        let decoded = DecodedRow::new(&self.buffers.cells, row, &self.buffers.scratch);
        group_key(sql_type, &cell, &decoded, &mut self.buffers.group_key);
        self.progress
            .row(&self.buffers.group_key, row.len() as u64, || {
                let bytes = decoded.bytes(&cell);
                let cell = match cell {
                    Cell::Row { .. } | Cell::Scratch { .. } => Cell::Row {
                        start: 0,
                        end: bytes.len() as u32,
                    },
                    other => other,
                };
                position_text(sql_type, &cell, bytes)
            })
    }

    /// Encodes the rows held back, whose cursor value is complete.
    fn send_held(&mut self) {
        let emitted = self.plan.emitted.len();
        if self.buffers.held.is_empty() {
            return;
        }
        if std::mem::take(&mut self.batch.truncate_pending) {
            self.batch.encoder.push_truncate();
        }
        for row in self.buffers.held.rows() {
            self.batch.encoder.push_upsert(row.first(emitted));
            self.batch.uncommitted_rows += 1;
            while let Some(message) = self.batch.encoder.take_ready() {
                self.batch.bytes += message.bytes.len();
                self.batch.messages.push(message);
            }
        }
        self.buffers.held.clear();
    }

    /// Encodes the decoded row and remembers its position.
    #[inline]
    fn push(&mut self, row: &[u8]) -> Result<(), SourceError> {
        let key_start = self.buffers.position_indexes.len() - self.plan.key.len();
        if let Some(null_key) = self.buffers.position_indexes[key_start..]
            .iter()
            .position(|&i| self.buffers.cells[i] == Cell::Null)
        {
            return Err(decode_error(
                &self.plan,
                self.buffers.position_indexes[key_start + null_key],
                "a primary-key column is NULL; rows need a key to be synced".to_string(),
            ));
        }
        if std::mem::take(&mut self.batch.truncate_pending) {
            self.batch.encoder.push_truncate();
        }
        let decoded = DecodedRow::new(&self.buffers.cells, row, &self.buffers.scratch);
        let sent = decoded.first(self.plan.emitted.len());
        match &self.plan.soft_delete {
            Some(soft_delete) if soft_delete.marks(sent.cells()) => {
                self.batch.encoder.push_delete(&soft_delete.key, sent);
            }
            _ => self.batch.encoder.push_upsert(sent),
        }
        if !self.plan.key.is_empty() {
            self.buffers
                .saved
                .save(&self.buffers.position_indexes, decoded);
        }
        self.batch.uncommitted_rows += 1;
        self.collect_finished();
        Ok(())
    }

    /// Moves the messages the encoder has finished into the batch.
    fn collect_finished(&mut self) {
        while let Some(message) = self.batch.encoder.take_ready() {
            self.batch.bytes += message.bytes.len();
            self.batch.messages.push(message);
        }
    }

    /// Sends the batch with a checkpoint of the last row pushed; nothing if nothing was.
    async fn commit(&mut self, shared: &Shared) -> Result<(), SyncError> {
        if self.batch.uncommitted_rows == 0 {
            return Ok(());
        }
        self.batch.encoder.finish();
        self.collect_finished();
        // A table with a key stands at its last row; one without moves by cursor value, as
        // `position` tracks it.
        if !self.plan.key.is_empty() {
            let texts = self
                .buffers
                .saved
                .texts(&self.buffers.position_types.iter().collect::<Vec<_>>());
            let (cursor, key) = match self.plan.mode {
                Mode::Incremental { .. } => (texts[0].clone(), &texts[1..]),
                Mode::Full { .. } => (None, &texts[..]),
            };
            self.progress
                .sent(cursor, key.iter().flatten().cloned().collect());
        }
        self.send_with_checkpoint(shared, true).await?;
        self.stats.rows += self.batch.uncommitted_rows;
        self.batch.uncommitted_rows = 0;
        self.batch.bytes = 0;
        self.report();
        Ok(())
    }

    /// Sends the batch's messages and then a checkpoint of the table's state, as one step.
    async fn send_with_checkpoint(
        &mut self,
        shared: &Shared,
        in_progress: bool,
    ) -> Result<(), SyncError> {
        let state = self.table_state(in_progress);
        shared
            .checkpoints
            .commit(
                &shared.output,
                self.batch.messages.drain(..),
                &self.plan.table.name,
                state,
                &mut self.stats.counters,
            )
            .await
    }

    /// The table's entry in the state: how it is read and where it stands; for a full pass,
    /// whether it is under way.
    fn table_state(&self, in_progress: bool) -> TableState {
        let key_columns = self.plan.key_columns();
        let (table_id, columns) = (self.plan.table.id, Some(self.synced_columns.clone()));
        match self.plan.cursor_column() {
            Some(cursor) => match &self.after_null_rescan {
                Some(scan) => TableState::Incremental {
                    cursor_column: cursor.to_string(),
                    key_columns,
                    position: scan.position().cloned(),
                    export: None,
                    null_rescan: Some(
                        self.progress
                            .position()
                            .map(|p| p.key.clone())
                            .unwrap_or_default(),
                    ),
                    resync: self.resync.clone(),
                    key_snapshot: self.key_snapshot.clone(),
                    table_id,
                    columns,
                },
                None => TableState::Incremental {
                    cursor_column: cursor.to_string(),
                    key_columns,
                    position: self.progress.position().cloned(),
                    export: self.export.clone(),
                    null_rescan: None,
                    resync: self.resync.clone(),
                    key_snapshot: self.key_snapshot.clone(),
                    table_id,
                    columns,
                },
            },
            None => TableState::Full {
                key_columns,
                in_progress,
                position: self.progress.position().cloned().filter(|_| in_progress),
                export: self.export.clone().filter(|_| in_progress),
                table_id,
                columns,
            },
        }
    }

    /// The end of the table: a full pass is complete; a table without rows still sends its
    /// TRUNCATE; a last checkpoint.
    async fn finish(&mut self, shared: &Shared) -> Result<(), SyncError> {
        if let Some(resync) = &mut self.resync {
            resync.done = true;
        }
        if let Some(KeySnapshot::Reading { generation, .. }) = self.key_snapshot {
            self.key_snapshot = Some(KeySnapshot::Done { generation });
        }
        if std::mem::take(&mut self.batch.truncate_pending) {
            self.batch.encoder.push_truncate();
            self.batch.encoder.finish();
            self.collect_finished();
        }
        self.send_with_checkpoint(shared, false).await?;
        tracing::info!(
            table = %self.plan.table.name,
            rows = self.stats.rows,
            rows_per_s = self.stats.rate(),
            seconds = format!("{:.1}", self.stats.started.elapsed().as_secs_f64()),
            "table sync finished"
        );
        Ok(())
    }

    /// The newest cursor value this scan may read, for time cursors: the database's clock
    /// minus `cursor_lag_s` (which may be zero), always. Rows dated beyond it wait for their
    /// time: one row dated 2099 (a typo, a test row) would otherwise carry the position past
    /// every current row, and every later change would be skipped until then. Taken when the
    /// attempt starts, so a retry may read a little further, never less.
    async fn upper_bound(
        &self,
        shared: &Shared,
        session: &mut Session,
    ) -> Result<Option<String>, SourceError> {
        let Mode::Incremental { cursor } = self.plan.mode else {
            return Ok(None);
        };
        let sql_type = &self.plan.table.columns[cursor].sql_type;
        if !sql_type.is_time() {
            return Ok(None);
        }
        shared.time_bound(session, sql_type).await
    }

    fn report(&mut self) {
        if self.stats.last_report.elapsed() >= PROGRESS_INTERVAL {
            self.stats.last_report = Instant::now();
            tracing::info!(table = %self.plan.table.name, rows = self.stats.rows, rows_per_s = self.stats.rate(), "table sync progress");
        }
    }
}

/// Where a position's values (the cursor, then the key) are in a row read by `plan`, and
/// their types.
fn position_layout(plan: &TablePlan) -> (Vec<usize>, Vec<SqlType>) {
    plan.position_columns()
        .iter()
        .map(|&i| {
            (
                plan.select_position(i),
                plan.table.columns[i].sql_type.clone(),
            )
        })
        .unzip()
}

/// The database's clock in UTC (sessions run in UTC): Redshift's `GETDATE()`.
async fn database_clock(session: &mut Session) -> Result<chrono::DateTime<Utc>, SourceError> {
    let sql = match session.flavour() {
        Flavour::Redshift => "SELECT GETDATE()",
        Flavour::PostgreSql => "SELECT LOCALTIMESTAMP",
    };
    let text = session.query_value(sql).await?.unwrap_or_default();
    NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S"))
        .map(|at| Utc.from_utc_datetime(&at))
        .map_err(|_| SourceError::UnexpectedAnswer {
            query: "the clock's query",
            detail: format!("it reads `{text}`, not a timestamp"),
        })
}

fn decode_error(plan: &TablePlan, select_position: usize, reason: String) -> SourceError {
    let column = plan
        .select
        .get(select_position)
        .map(|&i| plan.table.columns[i].name.clone())
        .unwrap_or_default();
    SourceError::Decode {
        table: plan.table.name.to_string(),
        column,
        reason,
    }
}

/// Cancels the session's running statement when dropped before the scan ended.
struct CancelOnDrop(Option<Canceller>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(canceller) = self.0.take() {
            if std::thread::panicking() {
                return;
            }
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { canceller.cancel().await });
            }
        }
    }
}
