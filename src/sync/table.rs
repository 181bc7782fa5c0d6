//! Syncing one table: where to start, the batched scan, checkpoints, retries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_postgres::Row;

use super::checkpoints::Checkpoints;
use super::output::Output;
use super::plan::{Mode, TablePlan};
use super::SyncError;
use crate::config::{Config, ConnectionConfig};
use crate::proto::{Record, RecordType};
use crate::source::scan::{BatchStream, Resume, ScanSpec};
use crate::source::{self, Session, SourceError};
use crate::state::{Position, TableState};

/// Attempts after a transient failure (connection lost, cluster restart, serialization
/// conflict) before the Update gives up with an error status.
const MAX_RETRIES: u32 = 5;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Connects, retrying transient failures with exponential backoff.
pub(super) async fn connect_with_retry(config: &ConnectionConfig) -> Result<Session, SourceError> {
    let mut attempt = 0;
    loop {
        match source::connect(config).await {
            Ok(session) => return Ok(session),
            Err(err) if err.is_transient() && attempt < MAX_RETRIES => {
                attempt += 1;
                let delay = backoff(attempt);
                tracing::warn!(
                    error = %err,
                    attempt,
                    retry_in_s = delay.as_secs(),
                    "connect failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(err) => return Err(err),
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.min(5))
}

/// How the table starts in this Update.
struct Start {
    /// Send a TRUNCATE first: an initial sync, or a new full pass.
    truncate: bool,
    /// Why the table restarts from scratch although it has state.
    restart_reason: Option<String>,
    state: TableState,
}

fn decide_start(plan: &TablePlan, previous: Option<&TableState>) -> Start {
    let key_columns = plan.key_columns();
    let fresh = |restart_reason: Option<String>| Start {
        truncate: true,
        restart_reason,
        state: match plan.cursor_column() {
            Some(cursor) => TableState::Incremental {
                cursor_column: cursor.to_string(),
                key_columns: key_columns.clone(),
                position: None,
            },
            None => TableState::Full {
                key_columns: key_columns.clone(),
                in_progress: true,
                position: None,
            },
        },
    };
    let Some(previous) = previous else {
        return fresh(None);
    };
    let resume = || Start {
        truncate: false,
        restart_reason: None,
        state: previous.clone(),
    };
    match (previous, plan.cursor_column()) {
        (
            TableState::Incremental {
                cursor_column,
                key_columns: keys,
                ..
            },
            Some(cursor),
        ) if cursor_column == cursor && *keys == key_columns => resume(),
        // A full pass under way resumes after its last key; without a key it cannot.
        (
            TableState::Full {
                key_columns: keys,
                in_progress: true,
                position: Some(p),
            },
            None,
        ) if *keys == key_columns && !p.key.is_empty() => resume(),
        // A finished full pass: the next one starts over, as full mode promises.
        (TableState::Full { .. }, None) => fresh(None),
        _ => fresh(Some(
            "its cursor column or primary key changed since the last sync, so it is re-synced \
             from the start"
                .to_string(),
        )),
    }
}

/// Checks that the state's position for this table fits its columns (the cursor's type, the
/// number and types of key values) wherever the state would be resumed from; a state for other
/// columns is not resumed (the table restarts) and needs no check.
pub(super) fn check_state(plan: &TablePlan, previous: Option<&TableState>) -> Result<(), String> {
    let Some(previous) = previous else {
        return Ok(());
    };
    let start = decide_start(plan, Some(previous));
    if start.truncate {
        return Ok(());
    }
    let position = match &start.state {
        TableState::Incremental { position, .. } | TableState::Full { position, .. } => position,
    };
    let Some(position) = position else {
        return Ok(());
    };
    let columns = &plan.table.columns;
    if !position.key.is_empty() && position.key.len() != plan.key.len() {
        return Err(format!(
            "position has {} key values for {} key columns",
            position.key.len(),
            plan.key.len()
        ));
    }
    if let (Mode::Incremental { cursor }, Some(text)) = (&plan.mode, &position.cursor) {
        columns[*cursor]
            .sql_type
            .check_position_text(text)
            .map_err(|reason| format!("cursor `{}`: {reason}", columns[*cursor].name))?;
    }
    for (&index, text) in plan.key.iter().zip(&position.key) {
        columns[index]
            .sql_type
            .check_position_text(text)
            .map_err(|reason| format!("key `{}`: {reason}", columns[index].name))?;
    }
    Ok(())
}

/// Where the scan resumes, from the table's state.
fn resume_from(state: &TableState) -> Resume {
    match state {
        TableState::Incremental { position: None, .. }
        | TableState::Full { position: None, .. } => Resume::FromStart,
        TableState::Full {
            position: Some(p), ..
        } => Resume::AfterKey(p.key.clone()),
        TableState::Incremental {
            position: Some(p), ..
        } => match &p.cursor {
            // Without a key there is no way to resume among the NULL-cursor rows: re-read them.
            None if p.key.is_empty() => Resume::FromStart,
            None => Resume::AfterNullCursor(p.key.clone()),
            Some(cursor) => Resume::AfterCursor {
                cursor: cursor.clone(),
                key: p.key.clone(),
            },
        },
    }
}

/// Syncs one table from its state to the end of its rows, checkpointing after every batch.
pub(super) async fn sync_table(
    config: &Config,
    plan: &TablePlan,
    checkpoints: &Checkpoints,
    output: &mut Output,
) -> Result<(), SyncError> {
    let name = &plan.table.name;
    let start = decide_start(plan, checkpoints.table(name).await.as_ref());
    if let Mode::Full { reason } = &plan.mode {
        output
            .warning(format!(
                "table {name} is synced in full on every sync because {reason}; configure `cursor_column` to sync it incrementally"
            ))
            .await?;
    }
    if let Some(reason) = &start.restart_reason {
        output.warning(format!("table {name}: {reason}")).await?;
    }
    let mut table_state = start.state;
    // Sent with the table's first records (or alone at its end), in the same step that first
    // records the table in the state.
    let mut truncate_pending = start.truncate;

    let mut progress = Progress::new(plan);
    let mut attempt = 0;
    loop {
        let result = scan_once(
            config,
            plan,
            &mut table_state,
            &mut truncate_pending,
            checkpoints,
            output,
            &mut progress,
        )
        .await;
        match result {
            Ok(()) => break,
            Err(SyncError::Table { source, .. })
                if source.is_transient() && attempt < MAX_RETRIES =>
            {
                attempt += 1;
                let delay = backoff(attempt);
                tracing::warn!(
                    table = %name,
                    error = %source,
                    attempt,
                    retry_in_s = delay.as_secs(),
                    "table scan failed, resuming from the last row sent"
                );
                tokio::time::sleep(delay).await;
                // A keyless full pass cannot resume in the middle: start a new pass.
                if let TableState::Full {
                    key_columns,
                    position: None,
                    ..
                } = &table_state
                {
                    if key_columns.is_empty() && progress.rows > 0 {
                        truncate_pending = true;
                    }
                }
            }
            Err(err) => return Err(err),
        }
    }

    if let TableState::Full {
        in_progress,
        position,
        ..
    } = &mut table_state
    {
        *in_progress = false;
        *position = None;
    }
    let records = truncate_pending
        .then(|| truncate_record(plan))
        .into_iter()
        .collect();
    checkpoints.send(output, records, name, table_state).await?;
    progress.finish();
    Ok(())
}

/// One attempt at reading the table from its current position to the end.
async fn scan_once(
    config: &Config,
    plan: &TablePlan,
    table_state: &mut TableState,
    truncate_pending: &mut bool,
    checkpoints: &Checkpoints,
    output: &mut Output,
    progress: &mut Progress,
) -> Result<(), SyncError> {
    let name = &plan.table.name;
    let in_table = |source: SourceError| SyncError::Table {
        table: name.clone(),
        source,
    };
    let session = connect_with_retry(&config.connection)
        .await
        .map_err(in_table)?;
    let cursor = match plan.mode {
        Mode::Incremental { cursor } => Some(cursor),
        Mode::Full { .. } => None,
    };
    let upper_bound = upper_bound(config, plan);
    let spec = ScanSpec {
        table: &plan.table,
        select: &plan.select,
        cursor,
        key: &plan.key,
        upper_bound: upper_bound.as_deref(),
    };
    let query = spec.query(&resume_from(table_state));
    tracing::debug!(table = %name, sql = %query.sql, "scan query");

    let host_watch = output.watcher();
    let mut batches = BatchStream::start(session, query, config.sync.batch_size);
    loop {
        // Dropping `batches` on any early return cancels the statement and closes the session.
        let next = tokio::select! {
            next = batches.next() => next,
            () = host_watch.closed() => return Err(SyncError::HostGone),
        };
        let rows = match next {
            None => return Ok(()),
            Some(rows) => rows.map_err(in_table)?,
        };
        let mut records = Vec::with_capacity(rows.len() + 1);
        if std::mem::take(truncate_pending) {
            records.push(truncate_record(plan));
        }
        for row in &rows {
            records.push(to_record(plan, row).map_err(in_table)?);
        }
        let last = rows.last().expect("batches are never empty");
        set_position(table_state, position_of(plan, last).map_err(in_table)?);
        checkpoints
            .send(output, records, name, table_state.clone())
            .await?;
        progress.add(rows.len());
    }
}

/// The newest cursor value this scan may read: now minus `cursor_lag_s`, for time cursors.
/// Taken when the scan starts, so a retry may read a little further, never less.
fn upper_bound(config: &Config, plan: &TablePlan) -> Option<String> {
    let Mode::Incremental { cursor } = plan.mode else {
        return None;
    };
    if config.sync.cursor_lag.is_zero() {
        return None;
    }
    let lag = chrono::Duration::from_std(config.sync.cursor_lag).ok()?;
    plan.table.columns[cursor]
        .sql_type
        .time_bound_text(chrono::Utc::now() - lag)
}

fn set_position(table_state: &mut TableState, new: Position) {
    match table_state {
        TableState::Incremental { position, .. } => *position = Some(new),
        TableState::Full { position, .. } => {
            // Keyless full passes cannot resume mid-way; keep no position for them.
            *position = (!new.key.is_empty()).then_some(new);
        }
    }
}

fn truncate_record(plan: &TablePlan) -> Record {
    Record {
        schema_name: Some(plan.table.name.schema.clone()),
        table_name: plan.table.name.table.clone(),
        r#type: RecordType::Truncate as i32,
        data: HashMap::new(),
    }
}

/// An UPSERT of the row's emitted columns (the first `emitted.len()` of the SELECT list).
fn to_record(plan: &TablePlan, row: &Row) -> Result<Record, SourceError> {
    let columns = &plan.table.columns;
    let mut data = HashMap::with_capacity(plan.emitted.len());
    for (position, &index) in plan.emitted.iter().enumerate() {
        let column = &columns[index];
        let value =
            column
                .sql_type
                .decode(row, position)
                .map_err(|reason| SourceError::Decode {
                    table: plan.table.name.to_string(),
                    column: column.name.clone(),
                    reason,
                })?;
        data.insert(column.name.clone(), value);
    }
    Ok(Record {
        schema_name: Some(plan.table.name.schema.clone()),
        table_name: plan.table.name.table.clone(),
        r#type: RecordType::Upsert as i32,
        data,
    })
}

/// The (cursor, key) of a row, as text the next scan casts back.
fn position_of(plan: &TablePlan, row: &Row) -> Result<Position, SourceError> {
    let columns = &plan.table.columns;
    let text = |index: usize| {
        columns[index]
            .sql_type
            .position_text(row, plan.select_position(index))
            .map_err(|reason| SourceError::Decode {
                table: plan.table.name.to_string(),
                column: columns[index].name.clone(),
                reason,
            })
    };
    let cursor = match plan.mode {
        Mode::Incremental { cursor } => text(cursor)?,
        Mode::Full { .. } => None,
    };
    let key = plan
        .key
        .iter()
        .map(|&index| {
            text(index)?.ok_or_else(|| SourceError::Decode {
                table: plan.table.name.to_string(),
                column: columns[index].name.clone(),
                reason: "a primary-key column is NULL; rows need a key to be synced".to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Position { cursor, key })
}

/// Progress log lines for long tables: rows so far and the rate, every few seconds.
struct Progress {
    table: String,
    started: Instant,
    last_report: Instant,
    rows: u64,
}

impl Progress {
    fn new(plan: &TablePlan) -> Self {
        let table = plan.table.name.to_string();
        let mode = match plan.mode {
            Mode::Incremental { .. } => "incremental",
            Mode::Full { .. } => "full",
        };
        tracing::info!(table = %table, mode, "table sync started");
        let now = Instant::now();
        Self {
            table,
            started: now,
            last_report: now,
            rows: 0,
        }
    }

    fn add(&mut self, rows: usize) {
        self.rows += rows as u64;
        if self.last_report.elapsed() >= PROGRESS_INTERVAL {
            self.last_report = Instant::now();
            tracing::info!(
                table = %self.table,
                rows = self.rows,
                rows_per_s = self.rate(),
                "table sync progress"
            );
        }
    }

    fn rate(&self) -> u64 {
        (self.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3)) as u64
    }

    fn finish(&self) {
        tracing::info!(
            table = %self.table,
            rows = self.rows,
            rows_per_s = self.rate(),
            seconds = format!("{:.1}", self.started.elapsed().as_secs_f64()),
            "table sync finished"
        );
    }
}
