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
//!
//! `sync_table` wires the passes of one attempt together ([`TableSync::scan`]: the repeated-keys
//! count, the key snapshot, the export, the NULL-cursor re-read, the cursor scan) and decides
//! after each failure, by `sync::policy`, what comes next. The parts, a module each:
//! - `scan`: the queries of the cursor scan and of the NULL-cursor re-read, and each row's way
//!   into the batch; `null_rescan`: the re-read's own state (the scan's progress it set aside);
//! - `export`: an initial sync or a full pass through UNLOAD; `deletes`: hard deletes by key
//!   snapshot;
//! - `batch`: the records since the last checkpoint, and the commit that sends them with it;
//! - `buffers`: the decoded row and the rows held back; `notices`: what is said or checked once
//!   per Update (and `announce`d before the first attempt); `statistics`: rows, bytes and time.
//!
//! Each pass's state is a type of its own whose steps are functions of it, tested as tables: the
//! scan's `Progress` (`sync::position`, with its model-based tests), the key snapshot's
//! `KeySnapshot` (tests in `deletes`), the export's `ExportState` (tests in `export`), the
//! re-read's `NullRescan` (tests in `null_rescan`); the modules here run the statements between
//! the steps, and the integration tests run them against the database.

mod batch;
mod buffers;
mod deletes;
mod export;
mod notices;
mod null_rescan;
mod scan;
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
use null_rescan::NullRescan;
use scan::{Fetching, RowsPass};
use statistics::Statistics;

pub(super) use deletes::{prepare_work_schema, WorkSchema};
pub(super) use export::{clean_abandoned, new_export_id, readers as export_readers};

const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
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

/// Syncs one table from its state to the end of its rows. Problems that concern only this
/// table end in a Warning and `Ok`; problems of the whole Update in `Err`.
pub(super) async fn sync_table(
    shared: Arc<Shared>,
    plan: Arc<TablePlan>,
) -> Result<Counters, SyncError> {
    let name = &plan.table.name;
    let output = &shared.output;
    let mut table = TableSync::new(&shared, &plan).await;
    table.announce(output).await?;

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
            && table.null_rescan.is_none()
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
    /// re-read, the progress of that re-read, with the scan's own kept in `null_rescan`.
    progress: Progress,
    /// The re-read of the rows whose cursor is NULL, while it is under way (see
    /// `position::null_rescan_due`); `None` otherwise.
    null_rescan: Option<NullRescan>,
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
            null_rescan: start
                .null_rescan
                .is_some()
                .then(|| NullRescan::new(Progress::new(Shape::of(plan), start.position))),
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
        if self.null_rescan.is_some() {
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
