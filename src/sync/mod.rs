//! The Update engine: from configuration, Selection and state to a stream of operations.
//!
//! ```text
//!   catalog ──► plan (Selection) ──► for each table, on a session of its own:
//!                                      TRUNCATE (initial sync / full re-sync only)
//!                                      SELECT … WHERE (cursor, key) > last sent
//!                                           ORDER BY cursor NULLS FIRST, key
//!                                      ┌─ fetch batch_size rows (portal) ◄──────┐
//!                                      │  send them, ≤100 per Records message   │
//!                                      └─ Checkpoint{state: last row sent} ─────┘
//!                                      Checkpoint at the table's end
//! ```
//!
//! Invariants that make a resumed sync lose nothing and repeat little:
//! - A checkpoint's state names the (cursor, key) of the last row sent *before* it, and every
//!   row sent before it precedes that position in the scan order. Rows are read in
//!   (cursor, key) order, so "after the position" is exactly "not sent yet", including rows
//!   that share the cursor value with the last row sent (the key breaks the tie).
//! - Rows whose cursor is NULL sort first and are read whenever the table starts from scratch,
//!   so an initial sync does not drop them (later changes are only seen once the cursor is set).
//! - Tables without a primary key resume at the cursor value itself (`>=`): a bounded re-read
//!   that hosts absorb, since they key such rows by a hash of their values.
//! - Position values are compared in SQL in the column's own type, at full precision.
//! - With `max_parallel_tables` above 1 the tables' records interleave; a table's records, its
//!   position and the checkpoint still leave as one step (see `checkpoints`), so the first
//!   invariant holds for every table at every checkpoint.
//! - After a transient failure the table is re-read on a new session from the last row sent,
//!   so a retry repeats nothing that was delivered.
//!
//! Known gap (redshift.md, "Time and the cursor"): a row committed late with an old cursor
//! value (e.g. `updated_at = SYSDATE` in a long transaction) is behind a position already
//! checkpointed and is not seen by later syncs; see the README's known limits.

mod checkpoints;
mod output;
pub mod plan;
mod table;

use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::config::{Config, TableName};
use crate::proto::{Selection, UpdateResponse};
use crate::source::{catalog, SourceError};
use crate::state::SyncState;

pub use output::MAX_RECORDS_PER_MESSAGE;

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
}

impl SyncError {
    /// The source error underneath, if any.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            Self::Source(source) | Self::Table { source, .. } => Some(source),
            Self::StateMismatch { .. } | Self::HostGone => None,
        }
    }
}

/// Runs one Update: discovers the catalog, plans the selected tables and syncs them,
/// `max_parallel_tables` at a time (in catalog order), sending everything through `tx`.
pub async fn run(
    config: Config,
    selection: Option<Selection>,
    state: SyncState,
    tx: mpsc::Sender<UpdateResponse>,
) -> Result<(), SyncError> {
    let started = Instant::now();
    let mut output = output::Output::new(tx.clone());
    let catalog = {
        let session = table::connect_with_retry(&config.connection).await?;
        catalog::discover(&session.client, &config.sync).await?
    };
    let plans = plan::plan(&catalog, selection.as_ref(), &config.sync);
    // Before the first message: a state that cannot be resumed is the caller's input error.
    for plan in &plans {
        table::check_state(plan, state.table(&plan.table.name)).map_err(|reason| {
            SyncError::StateMismatch {
                table: plan.table.name.clone(),
                reason,
            }
        })?;
    }
    for missing in plan::missing_tables(&catalog, selection.as_ref()) {
        output
            .warning(format!(
                "table {missing} is selected but was not found or is not readable; it was skipped"
            ))
            .await?;
    }
    let checkpoints = checkpoints::Checkpoints::new(state);
    tracing::info!(
        tables = plans.len(),
        parallel = config.sync.max_parallel_tables,
        "update started"
    );
    // Each table sends through its own Output (its own Records batches); the first failure
    // drops the others, which cancels their scans.
    // (By index: a closure over `&TablePlan` trips the compiler's Send check for the task.)
    let mut tables = futures_util::stream::iter(0..plans.len())
        .map(|i| {
            let plan = &plans[i];
            let mut table_output = output::Output::new(tx.clone());
            let (config, checkpoints) = (&config, &checkpoints);
            async move {
                table::sync_table(config, plan, checkpoints, &mut table_output).await?;
                Ok::<_, SyncError>(table_output.counters)
            }
        })
        .buffer_unordered(config.sync.max_parallel_tables);
    while let Some(counters) = tables.next().await {
        output.counters.add(counters?);
    }
    drop(tables);
    if plans.is_empty() {
        output
            .warning(format!(
                "no readable table matches the configuration ({}) and the selection; check `schemas` and `tables`, and the user's grants",
                scope(&config)
            ))
            .await?;
        // Still hand back a state, so the host has something to persist.
        checkpoints.checkpoint_current(&mut output).await?;
    }
    tracing::info!(
        tables = plans.len(),
        records = output.counters.records,
        checkpoints = output.counters.checkpoints,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "update finished"
    );
    Ok(())
}

/// The configured schema and table filters, for messages.
fn scope(config: &Config) -> String {
    let schemas = match &config.sync.schemas {
        Some(schemas) => format!("schemas: {}", schemas.join(", ")),
        None => "all non-system schemas".to_string(),
    };
    match &config.sync.tables {
        Some(tables) => format!(
            "{schemas}; tables: {}",
            tables
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => schemas,
    }
}
