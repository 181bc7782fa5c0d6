//! The core of `debug`: one sync, played the way a host plays it.
//!
//! ```text
//!  ConfigurationForm ─► Test (each listed test) ─► Schema ─► Update(selection, state)
//!                                                              │ stream
//!     Record/Records ─► counted, queued to the writer thread ◄─┤  (`writer`: SQLite
//!     SchemaChange   ─► create/alter tables (same transaction) ◄┤   applies them in order,
//!     Checkpoint     ─► COMMIT queued; its state_json saved    ◄┤   beside the stream)
//!                        once it is durable
//!     Warning        ─► shown, counted; Task ─► run fails ◄─────┘
//! ```
//!
//! The invariant that makes a killed run safe: the state file never covers operations the
//! warehouse has not committed. Operations after the last checkpoint are committed at the
//! stream's normal end (replaying them is harmless: they are idempotent by key) and rolled
//! back on failure. So whenever the process dies, the next run resumes from a state the
//! warehouse already holds, and the replay brings it level with the source.
//!
//! A commit and a state save cost three `fsync`s, so not every checkpoint is made durable:
//! the first of a run is, then at most one per [`RunOptions::commit_interval`], and the last
//! at the stream's end. A state saved less often is an older one, which the invariant allows:
//! a kill then replays a little more. A commit is queued behind the records it covers and the
//! stream is read on while it runs; its state is saved when it is durable (at the next due
//! checkpoint, or the end), so the pipeline never drains to wait for one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use tonic::codec::Streaming;

use super::catalog::Catalog;
use super::client::{Connection, ServerTarget};
use super::error::DebugError;
use super::progress::{Progress, ProgressMode};
use super::records::RecordBatch;
use super::state_file::StateFile;
use super::summary::Summary;
use super::warehouse::layout::TableKey;
use super::warehouse::{Declared, Warehouse};
use super::writer::{PendingCommit, WarehouseWriter};
use crate::proto::{self, test_response, update_response};

/// Hosts reject a `Records` message with more records than this (wire contract).
const MAX_RECORDS_PER_MESSAGE: usize = 100;

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The connector configuration, as sent to the server.
    pub configuration: HashMap<String, String>,
    pub server: ServerTarget,
    pub state: PathBuf,
    pub warehouse: PathBuf,
    /// Only these tables (`schema.table`); `None` = every table Schema lists.
    pub tables: Option<Vec<String>>,
    /// Delete the state and the warehouse first: a full re-sync.
    pub reset: bool,
    pub progress: ProgressMode,
    /// For tests: end the run at this point as a kill would (see [`StopPoint`]).
    pub stop: Option<StopPoint>,
    /// The least time between two commits of the warehouse (each with its state saved);
    /// zero commits at every checkpoint.
    pub commit_interval: std::time::Duration,
}

/// How often a run makes its progress durable by default: a kill loses at most about a second
/// of work, and a sync of small batches is not bound by `fsync`.
pub const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl RunOptions {
    /// Defaults for everything but the configuration and the two files.
    pub fn new(configuration: HashMap<String, String>, state: PathBuf, warehouse: PathBuf) -> Self {
        Self {
            configuration,
            server: ServerTarget::InProcess,
            state,
            warehouse,
            tables: None,
            reset: false,
            progress: ProgressMode::Quiet,
            stop: None,
            commit_interval: COMMIT_INTERVAL,
        }
    }
}

/// Where a test wants the run to die, to prove the next run recovers. The run then ends with
/// [`DebugError::Stopped`], leaving files exactly as a kill at that moment would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPoint {
    /// Right after the Nth checkpoint was handled (its state saved, or left for a later one).
    AfterCheckpoint(u64),
    /// After the Nth checkpoint's operations were committed but before its state was saved
    /// (when it is one that is saved; otherwise as `AfterCheckpoint`).
    BeforeStateSaved(u64),
    /// After N records were applied, uncommitted (the transaction is rolled back).
    AfterRecords(u64),
}

/// Runs one sync and returns what it did.
pub async fn run_sync(options: &RunOptions) -> Result<Summary, DebugError> {
    let started = Instant::now();
    if options.reset {
        reset(&options.state, &options.warehouse)?;
    }
    let state_file = StateFile::new(&options.state);
    let state = state_file.load()?;
    let new_warehouse = NewWarehouse::before_open(&options.warehouse);
    let warehouse = Warehouse::open(&options.warehouse)?;
    let mut connection = Connection::open(&options.server).await?;
    let writer = WarehouseWriter::start(warehouse)?;
    let mut progress = Progress::new(options.progress);
    let mut run = Run {
        options,
        writer: &writer,
        state_file: &state_file,
        progress: &mut progress,
        summary: Summary {
            server: connection.address().to_string(),
            warehouse: options.warehouse.clone(),
            state: options.state.clone(),
            ..Summary::default()
        },
        records: 0,
        unsaved_state: None,
        last_commit: None,
        in_flight: None,
    };
    let result = run.sync(&mut connection, state).await;
    // A run that failed (not one a test stops as a kill would) still saves the state of its
    // last commit once that is durable: the next run replays less.
    if matches!(&result, Err(err) if !matches!(err, DebugError::Stopped { .. })) {
        let _ = run.settle_commit().await;
    }
    let mut summary = run.summary;
    progress.finish();
    connection.close().await;
    if result.is_err() {
        // What a crash would lose; the next run replays it from the saved state.
        let _ = writer.rollback().await;
    }
    let warehouse = writer.finish()?;
    if result.is_err() && summary.checkpoints == 0 {
        // Nothing was synced: a warehouse this run created holds no data, only tables.
        drop(warehouse);
        new_warehouse.remove();
    }
    result?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Deletes the state file and the warehouse with its SQLite side files: what `debug --reset`
/// and `reset` do.
pub fn reset(state: &Path, warehouse: &Path) -> Result<(), DebugError> {
    let mut paths = vec![state.to_path_buf()];
    paths.extend(warehouse_files(warehouse));
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DebugError::Reset { path, source }),
        }
    }
    Ok(())
}

/// The warehouse file and its SQLite side files.
fn warehouse_files(warehouse: &Path) -> Vec<PathBuf> {
    let mut paths = vec![warehouse.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = warehouse.as_os_str().to_os_string();
        side.push(suffix);
        paths.push(PathBuf::from(side));
    }
    paths
}

/// What a run creates when the warehouse does not exist yet, so that a failed first run can
/// take it away again instead of leaving an empty warehouse (and folder) behind.
struct NewWarehouse {
    /// The warehouse path, when this run creates the file.
    file: Option<PathBuf>,
    /// The folders this run creates for it, innermost first.
    dirs: Vec<PathBuf>,
}

impl NewWarehouse {
    fn before_open(warehouse: &Path) -> Self {
        if warehouse.exists() {
            return Self {
                file: None,
                dirs: Vec::new(),
            };
        }
        let dirs = warehouse
            .ancestors()
            .skip(1)
            .take_while(|dir| !dir.as_os_str().is_empty() && !dir.exists())
            .map(Path::to_path_buf)
            .collect();
        Self {
            file: Some(warehouse.to_path_buf()),
            dirs,
        }
    }

    /// Best effort: a file that cannot be removed is left, as a failed run would leave it.
    fn remove(self) {
        let Some(file) = self.file else { return };
        for path in warehouse_files(&file) {
            let _ = std::fs::remove_file(path);
        }
        for dir in self.dirs {
            // Only if empty: the state file, or the user's files, may have been put there.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// One run in progress: the warehouse, the state file and the counts.
struct Run<'a> {
    options: &'a RunOptions,
    writer: &'a WarehouseWriter,
    state_file: &'a StateFile,
    progress: &'a mut Progress,
    summary: Summary,
    records: u64,
    /// The latest checkpoint's state, while it waits for the next commit.
    unsaved_state: Option<String>,
    /// When this run last committed at a checkpoint.
    last_commit: Option<Instant>,
    /// A commit under way and the state to save once it is durable: the stream is read on
    /// meanwhile, so the pipeline (server, client, writer) does not drain at every commit.
    in_flight: Option<(PendingCommit, String)>,
}

impl Run<'_> {
    async fn sync(
        &mut self,
        connection: &mut Connection,
        state: Option<String>,
    ) -> Result<(), DebugError> {
        let configuration = &self.options.configuration;
        self.progress.phase("running the configuration tests");
        run_configuration_tests(connection, configuration).await?;

        self.progress.phase("reading the schema");
        let catalog = Catalog::from_schema_response(connection.schema(configuration).await?)?;
        let (selection, chosen) = catalog.select(self.options.tables.as_deref())?;
        for (key, def) in catalog.definitions(|key| chosen.contains(key))? {
            self.summary.add_table(&key);
            self.writer.declare(key, def).await?;
        }
        self.writer.commit().await?;

        self.progress.phase("syncing");
        let request = proto::UpdateRequest {
            configuration: configuration.clone(),
            selection: Some(selection),
            state_json: state,
        };
        let mut stream = connection.update(request).await?;
        let result = self.consume(&mut stream).await;
        // Dropping the stream cancels the call, so the server stops producing.
        drop(stream);
        result?;
        self.settle_commit().await?;
        self.progress
            .phase("indexing the loaded tables by their keys");
        self.writer.finish_and_commit().await?;
        if let Some(state_json) = self.unsaved_state.take() {
            self.state_file.save(&state_json)?;
        }
        Ok(())
    }

    async fn consume(&mut self, stream: &mut Streaming<Bytes>) -> Result<(), DebugError> {
        while let Some(message) = stream.message().await.map_err(DebugError::rpc("Update"))? {
            // Records are read from the message's bytes; any other operation by prost.
            if let Some(batch) = RecordBatch::parse_response(message.clone())
                .map_err(|err| DebugError::Protocol(err.to_string()))?
            {
                if batch.records.len() > MAX_RECORDS_PER_MESSAGE {
                    return Err(DebugError::Protocol(format!(
                        "a Records message carries {} records; hosts take at most {MAX_RECORDS_PER_MESSAGE}",
                        batch.records.len()
                    )));
                }
                self.records(batch).await?;
                continue;
            }
            let response = proto::UpdateResponse::decode(message).map_err(|err| {
                DebugError::Protocol(format!("an UpdateResponse prost cannot decode: {err}"))
            })?;
            let Some(operation) = response.operation else {
                return Err(DebugError::Protocol(
                    "an UpdateResponse with no operation".into(),
                ));
            };
            match operation {
                update_response::Operation::Record(_) | update_response::Operation::Records(_) => {
                    unreachable!("records were read from the message's bytes")
                }
                update_response::Operation::SchemaChange(change) => {
                    self.schema_change(change).await?;
                }
                update_response::Operation::Checkpoint(checkpoint) => {
                    self.checkpoint(&checkpoint.state_json).await?;
                }
                update_response::Operation::Warning(warning) => {
                    self.progress
                        .println(&format!("warning: {}", warning.message));
                    self.summary.warnings.push(warning.message);
                }
                update_response::Operation::Task(task) => {
                    return Err(DebugError::Task {
                        message: task.message,
                    })
                }
            }
        }
        Ok(())
    }

    /// Counts the records of one message and queues them for the warehouse (up to a test's
    /// stop point, if it lies inside).
    async fn records(&mut self, mut batch: RecordBatch) -> Result<(), DebugError> {
        if let Some(StopPoint::AfterRecords(n)) = self.options.stop {
            if n > self.records {
                batch
                    .records
                    .truncate(usize::try_from(n - self.records).unwrap_or(usize::MAX));
            }
        }
        for (table, record_type, count) in tally(&batch) {
            self.summary.count(&table, record_type, count);
            if record_type != proto::RecordType::Truncate {
                self.progress.rows(&table, count);
            }
        }
        self.records += batch.records.len() as u64;
        self.writer.apply(batch).await?;
        if self.options.stop == Some(StopPoint::AfterRecords(self.records)) {
            return Err(self.stopped());
        }
        Ok(())
    }

    async fn schema_change(&mut self, change: proto::SchemaChange) -> Result<(), DebugError> {
        let catalog = Catalog::from_schema_change(change)?;
        for (key, def) in catalog.definitions(|_| true)? {
            self.summary.add_table(&key);
            let outcome = self.writer.declare(key.clone(), def).await?;
            let note = match outcome {
                Declared::Created => format!("schema change: table {key} created"),
                Declared::ColumnsAdded(columns) => format!(
                    "schema change: table {key} gained column(s) {}",
                    columns.join(", ")
                ),
                Declared::Unchanged => format!("schema change: table {key} unchanged"),
            };
            self.progress.println(&note);
        }
        self.summary.schema_changes += 1;
        Ok(())
    }

    /// Commit first, then save the state: the order the whole recovery story rests on.
    async fn checkpoint(&mut self, state_json: &str) -> Result<(), DebugError> {
        match serde_json::from_str::<serde_json::Value>(state_json) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return Err(DebugError::Protocol(
                    "a Checkpoint whose state_json is not a JSON object".into(),
                ))
            }
        }
        let number = self.summary.checkpoints + 1;
        let due = self
            .last_commit
            .is_none_or(|at| at.elapsed() >= self.options.commit_interval);
        if due {
            // The commit before this one has long been durable: its state goes to the file
            // now, and this one's commit is queued behind the records it covers. The run's
            // first is awaited and saved at once: it records that the run's first records
            // (a table's TRUNCATE) went out.
            let first = self.last_commit.is_none();
            self.settle_commit().await?;
            let commit = self.writer.start_commit().await?;
            if self.options.stop == Some(StopPoint::BeforeStateSaved(number)) {
                commit.done().await?;
                return Err(self.stopped());
            }
            self.in_flight = Some((commit, state_json.to_string()));
            if first {
                self.settle_commit().await?;
            }
            self.unsaved_state = None;
            self.last_commit = Some(Instant::now());
        } else {
            self.unsaved_state = Some(state_json.to_string());
            if self.options.stop == Some(StopPoint::BeforeStateSaved(number)) {
                return Err(self.stopped());
            }
        }
        self.summary.checkpoints = number;
        self.progress.checkpoint();
        if self.options.stop == Some(StopPoint::AfterCheckpoint(number)) {
            return Err(self.stopped());
        }
        Ok(())
    }

    /// Waits for the commit under way, if any, and then saves the state it covers.
    async fn settle_commit(&mut self) -> Result<(), DebugError> {
        if let Some((commit, state_json)) = self.in_flight.take() {
            commit.done().await?;
            self.state_file.save(&state_json)?;
        }
        Ok(())
    }

    fn stopped(&self) -> DebugError {
        DebugError::Stopped {
            checkpoints: self.summary.checkpoints,
            records: self.records,
        }
    }
}

/// How many records of each type a message holds per table, run by run (unknown types, which
/// the warehouse refuses, are not counted).
fn tally(batch: &RecordBatch) -> Vec<(TableKey, proto::RecordType, u64)> {
    let mut runs: Vec<(TableKey, proto::RecordType, u64)> = Vec::new();
    for record in &batch.records {
        let Ok(record_type) = proto::RecordType::try_from(record.kind) else {
            continue;
        };
        match runs.last_mut() {
            Some((table, kind, count))
                if *kind == record_type && table.is_named_by(batch, record) =>
            {
                *count += 1;
            }
            _ => runs.push((TableKey::of_record(batch, record), record_type, 1)),
        }
    }
    runs
}

/// ConfigurationForm, then each test it lists, in order; the first failure ends the run.
async fn run_configuration_tests(
    connection: &mut Connection,
    configuration: &HashMap<String, String>,
) -> Result<(), DebugError> {
    let form = connection.configuration_form().await?;
    for test in form.tests {
        let response = connection.test(&test.name, configuration).await?;
        match response.response {
            Some(test_response::Response::Success(true)) => {}
            Some(test_response::Response::Failure(reason)) => {
                return Err(DebugError::TestFailed {
                    name: test.name,
                    label: test.label,
                    reason,
                })
            }
            Some(test_response::Response::Success(false)) | None => {
                return Err(DebugError::TestFailed {
                    name: test.name,
                    label: test.label,
                    reason: "the test answered neither success nor a failure reason".into(),
                })
            }
        }
    }
    Ok(())
}
