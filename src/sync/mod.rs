//! The Update engine: from configuration, Selection and state to a stream of operations.
//!
//! ```text
//!   catalog ──► plan (Selection) ──► per table, in a task and on a session of its own:
//!                                      TRUNCATE (initial sync / full re-sync only)
//!                                      SELECT … WHERE (cursor, key) > last sent
//!                                           ORDER BY cursor NULLS FIRST, key
//!                                           LIMIT max_rows_per_query     ◄─── next query
//!                                      ┌─ fetch batch_size rows (portal) ◄──────┐     │
//!                                      │  rows → cells → Records bytes, ≤100 a  │     │
//!                                      │  message, sent as they fill            │     │
//!                                      └─ Checkpoint{state: last row sent} ─────┘ ────┘
//!                                      Checkpoint at the table's end
//! ```
//!
//! Invariants that make a resumed sync lose nothing and repeat little:
//! - A checkpoint's state names the (cursor, key) of the last row sent *before* it, and every
//!   row sent before it precedes that position in the scan order. Rows are read in a strict
//!   (cursor, key) order, so "after the position" is exactly "not sent yet", including rows
//!   that share the cursor value with the last row sent (the key breaks the tie, compared so
//!   that distinct keys never tie: see `source::scan`).
//! - Rows whose cursor is NULL sort first and are read whenever the table starts from scratch,
//!   so an initial sync does not drop them (later changes are only seen once the cursor is set).
//! - Tables without a primary key resume at the cursor value itself (`>=`): a bounded re-read
//!   that hosts absorb, since they key such rows by a hash of their values.
//! - Position values are compared in SQL in the column's own type, at full precision.
//! - With `max_parallel_tables` above 1 the tables run in tasks of their own, on several cores,
//!   and their records interleave; a table commits its position only after its records went
//!   out (see `checkpoints`), so the first invariant holds for every table at every checkpoint.
//! - After a failure the rows read so far are sent and checkpointed, and the table is re-read
//!   on a new session from there, so a retry repeats nothing that was delivered.
//! - A query reads time cursors only up to the database's clock minus `cursor_lag_s` (which may
//!   be zero), so a row committed late with an older cursor value (docs/design.md,
//!   "Late commits") is still ahead of every checkpoint when it becomes visible, and a row dated in the
//!   future waits for its time instead of carrying the position past every current row.

mod checkpoints;
pub mod output;
pub mod plan;
pub mod policy;
pub mod position;
mod retry;
pub mod schema_change;
mod table;

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::config::{Config, TableName};
use crate::proto::Selection;
use crate::source::{catalog, SourceError};
use crate::state::SyncState;

pub use crate::proto::records::MAX_RECORDS_PER_MESSAGE;
pub use output::{Outgoing, OutgoingMessage, Output, StopRequest};

/// After the server was asked to stop, how long a table may take to reach its next checkpoint
/// (a query that sends nothing for minutes, a retry's wait) before its task is ended; its
/// statement is cancelled, and what it sent after its last checkpoint is sent again next time.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// Why an Update stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("syncing {table}: {source}")]
    Table {
        table: TableName,
        #[source]
        source: SourceError,
    },
    #[error("state_json does not fit table {table}: {reason}; send the state_json of a checkpoint this connector emitted, or {{}} to re-sync from scratch")]
    StateMismatch { table: TableName, reason: String },
    /// The host closed the stream; there is nobody left to tell.
    #[error("the host went away")]
    HostGone,
    /// The server was asked to stop (SIGTERM): the Update stopped at its tables' last
    /// checkpoints, which the host holds.
    #[error("the connector is shutting down, so the sync stopped at its last checkpoint; the next sync resumes from there")]
    ShuttingDown,
    #[error("a table's sync stopped unexpectedly: {0}")]
    Internal(String),
}

impl SyncError {
    /// The source error underneath, if any.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            Self::Source(source) | Self::Table { source, .. } => Some(source),
            Self::StateMismatch { .. }
            | Self::HostGone
            | Self::ShuttingDown
            | Self::Internal(_) => None,
        }
    }
}

/// How many bytes of messages may wait between the engine and the host: two batches, so one
/// can be encoded while the other is on its way.
pub fn output_budget(config: &Config) -> usize {
    2 * config.sync.max_batch_bytes as usize
}

/// Checks the state against the tables the Update would sync, before anything is sent: a
/// state that cannot be resumed is the caller's input error. Needs the catalog.
fn check_states(plans: &[plan::TablePlan], state: &SyncState) -> Result<(), SyncError> {
    for plan in plans {
        position::check_state(plan, state.table(&plan.table.name)).map_err(|reason| {
            SyncError::StateMismatch {
                table: plan.table.name.clone(),
                reason,
            }
        })?;
    }
    Ok(())
}

/// Runs one Update: discovers the catalog, plans the selected tables and syncs them,
/// `max_parallel_tables` at a time (in catalog order), sending everything through `output`.
pub async fn run(
    config: Config,
    selection: Option<Selection>,
    state: SyncState,
    output: Output,
) -> Result<(), SyncError> {
    let started = Instant::now();
    let mut counters = output::Counters::default();
    let mut session =
        table::connect_with_retry(&config.connection, config.sync.retry_timeout, &output).await?;
    let catalog = catalog::discover(&mut session, &config.sync).await?;
    let plans = plan::plan(&catalog, selection.as_ref(), &config.sync);
    let mut state = state;
    let work = match &config.sync.key_snapshot_schema {
        Some(schema) => Some(
            table::prepare_work_schema(&mut session, &schema.resolved(), &plans, &mut state)
                .await?,
        ),
        None => None,
    };
    check_states(&plans, &state)?;
    // Tables whose columns differ from what the host was told are declared again first, so
    // the destination has every column before a record carries it.
    let changed: Vec<&plan::TablePlan> = plans
        .iter()
        .filter(|plan| {
            schema_change::ColumnChanges::since(plan, state.table(&plan.table.name))
                .is_some_and(|changes| changes.columns_differ())
        })
        .collect();
    if !changed.is_empty() {
        tracing::info!(
            tables = changed.len(),
            "columns changed: declaring them first"
        );
        output
            .schema_change(schema_change::declaration(changed), &mut counters)
            .await?;
    }
    for missing in plan::missing_tables(&catalog, selection.as_ref()) {
        output
            .warning(
                format!("table {missing} is selected but was not found or is not readable; it was skipped"),
                &mut counters,
            )
            .await?;
    }
    let parallel = config.sync.max_parallel_tables;
    tracing::info!(tables = plans.len(), parallel, "update started");
    let table_count = plans.len();
    let exports_in_use: Vec<String> = state
        .tables
        .values()
        .flat_map(|tables| tables.values())
        .filter_map(|table| table.export().map(|export| export.url.clone()))
        .collect();
    let shared = Arc::new(table::Shared {
        config,
        checkpoints: checkpoints::Checkpoints::new(state),
        output: output.clone(),
        fetch_limit: AtomicU32::new(u32::MAX),
        idle_sessions: std::sync::Mutex::new(Vec::new()),
        export_id: table::new_export_id(),
        staging: tokio::sync::OnceCell::new(),
        export_readers: Arc::new(tokio::sync::Semaphore::new(table::export_readers())),
        clock: tokio::sync::OnceCell::new(),
        work,
    });
    shared.release(session);
    // Exports left by abandoned syncs go, beside the tables' sync; any export a table's state
    // names (selected or not) stays. The clean-up is bounded and ends with the Update: it is
    // awaited below, or aborted when the task is dropped.
    let cleanup = match shared.config.sync.unload.clone() {
        Some(unload) => {
            let staging = shared.staging().await;
            Some(AbortOnDrop(tokio::spawn(async move {
                table::clean_abandoned(&staging, &unload, &exports_in_use).await
            })))
        }
        None => None,
    };

    let mut result = sync_tables(&shared, plans, &mut counters).await;
    if let (Ok(()), Some(mut cleanup)) = (&result, cleanup) {
        if let Ok(Some(problem)) = (&mut cleanup.0).await {
            result = output.warning(problem, &mut counters).await;
        }
    }
    if result.is_ok() && table_count == 0 {
        output
            .warning(
                format!(
                    "no readable table matches the configuration ({}) and the selection; check `schemas` and `tables`, and the user's grants",
                    scope(&shared.config)
                ),
                &mut counters,
            )
            .await?;
    }
    // What was sent is checkpointed, also before a failure ends the stream: a retry resumes
    // from there. (Checkpoints go out at a bounded rate meanwhile, see `checkpoints`.) An
    // Update that changed nothing still hands back a state for the host to persist.
    if !matches!(result, Err(SyncError::HostGone)) {
        shared.checkpoints.finish(&output, &mut counters).await?;
    }
    result?;
    tracing::info!(
        tables = table_count,
        records = counters.records,
        checkpoints = counters.checkpoints,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "update finished"
    );
    Ok(())
}

/// A task that ends with its owner: no background work outlives the Update that started it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Syncs the planned tables, each in a task of its own, at most `max_parallel_tables` at once,
/// started in catalog order. The first failure of the Update aborts the others, which cancels
/// their statements.
async fn sync_tables(
    shared: &Arc<table::Shared>,
    plans: Vec<plan::TablePlan>,
    counters: &mut output::Counters,
) -> Result<(), SyncError> {
    let output = &shared.output;
    let parallel = shared.config.sync.max_parallel_tables;
    let mut plans = plans.into_iter().map(Arc::new);
    let mut tasks = JoinSet::new();
    for plan in plans.by_ref().take(parallel) {
        tasks.spawn(table::sync_table(Arc::clone(shared), plan));
    }
    let stopped = async {
        output.stop().raised().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::pin!(stopped);
    loop {
        let finished = tokio::select! {
            finished = tasks.join_next() => finished,
            () = output.closed() => return Err(SyncError::HostGone),
            // Tables that did not reach a checkpoint within the grace are ended (dropping the
            // set aborts them, and their statements are cancelled).
            () = &mut stopped => return Err(SyncError::ShuttingDown),
        };
        let Some(finished) = finished else { break };
        match finished {
            Ok(Ok(table_counters)) => counters.add(table_counters),
            Ok(Err(err)) => return Err(err),
            Err(join_error) => return Err(SyncError::Internal(join_error.to_string())),
        }
        if output.stop().is_raised() {
            return Err(SyncError::ShuttingDown);
        }
        if let Some(plan) = plans.next() {
            tasks.spawn(table::sync_table(Arc::clone(shared), plan));
        }
    }
    Ok(())
}

/// The configured schema and table filters, for messages.
fn scope(config: &Config) -> String {
    let join = |items: Vec<String>| items.join(", ");
    let schemas = match &config.sync.schemas {
        Some(schemas) => format!(
            "schemas: {}",
            join(schemas.iter().map(ToString::to_string).collect())
        ),
        None => "all non-system schemas".to_string(),
    };
    match &config.sync.tables {
        Some(tables) => format!(
            "{schemas}; tables: {}",
            join(tables.iter().map(ToString::to_string).collect())
        ),
        None => schemas,
    }
}
