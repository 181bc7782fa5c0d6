//! The core of `debug`: one sync, played the way a host plays it.
//!
//! ```text
//!  ConfigurationForm ─► Test (each listed test) ─► Schema ─► Update(selection, state)
//!                                                              │ stream
//!     Record/Records ─► warehouse transaction (open) ◄─────────┤
//!     SchemaChange   ─► create/alter tables (same transaction) ◄┤
//!     Checkpoint     ─► COMMIT, then save state_json ◄──────────┤
//!     Warning        ─► shown, counted; Task ─► run fails ◄─────┘
//! ```
//!
//! The invariant that makes a killed run safe: the state file never covers operations the
//! warehouse has not committed. Operations after the last checkpoint are committed at the
//! stream's normal end (replaying them is harmless: they are idempotent by key) and rolled
//! back on failure. So whenever the process dies, the next run resumes from a state the
//! warehouse already holds, and the replay brings it level with the source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tonic::codec::Streaming;

use super::catalog::Catalog;
use super::client::{Connection, ServerTarget};
use super::error::DebugError;
use super::progress::{Progress, ProgressMode};
use super::state_file::StateFile;
use super::summary::Summary;
use super::warehouse::{Declared, Warehouse};
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
}

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
        }
    }
}

/// Where a test wants the run to die, to prove the next run recovers. The run then ends with
/// [`DebugError::Stopped`], leaving files exactly as a kill at that moment would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopPoint {
    /// Right after the Nth checkpoint's state was saved.
    AfterCheckpoint(u64),
    /// After the Nth checkpoint's operations were committed but before its state was saved.
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
    let mut warehouse = Warehouse::open(&options.warehouse)?;
    let mut connection = Connection::open(&options.server).await?;
    let mut progress = Progress::new(options.progress);
    let mut run = Run {
        options,
        warehouse: &mut warehouse,
        state_file: &state_file,
        progress: &mut progress,
        summary: Summary {
            server: connection.address().to_string(),
            warehouse: options.warehouse.clone(),
            state: options.state.clone(),
            ..Summary::default()
        },
        records: 0,
    };
    let result = run.sync(&mut connection, state).await;
    let mut summary = run.summary;
    progress.finish();
    connection.close().await;
    if result.is_err() {
        // What a crash would lose; the next run replays it from the saved state.
        let _ = warehouse.rollback();
        if summary.checkpoints == 0 {
            // Nothing was synced: a warehouse this run created holds no data, only tables.
            drop(warehouse);
            new_warehouse.remove();
        }
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
    warehouse: &'a mut Warehouse,
    state_file: &'a StateFile,
    progress: &'a mut Progress,
    summary: Summary,
    records: u64,
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
            self.warehouse.declare(&key, def)?;
            self.summary.add_table(&key);
        }
        self.warehouse.commit()?;

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
        self.warehouse.commit()?;
        Ok(())
    }

    async fn consume(
        &mut self,
        stream: &mut Streaming<proto::UpdateResponse>,
    ) -> Result<(), DebugError> {
        while let Some(response) = stream.message().await.map_err(DebugError::rpc("Update"))? {
            let Some(operation) = response.operation else {
                return Err(DebugError::Protocol(
                    "an UpdateResponse with no operation".into(),
                ));
            };
            match operation {
                update_response::Operation::Record(record) => self.record(&record)?,
                update_response::Operation::Records(batch) => {
                    if batch.records.len() > MAX_RECORDS_PER_MESSAGE {
                        return Err(DebugError::Protocol(format!(
                            "a Records message carries {} records; hosts take at most {MAX_RECORDS_PER_MESSAGE}",
                            batch.records.len()
                        )));
                    }
                    for record in &batch.records {
                        self.record(record)?;
                    }
                }
                update_response::Operation::SchemaChange(change) => self.schema_change(change)?,
                update_response::Operation::Checkpoint(checkpoint) => {
                    self.checkpoint(&checkpoint.state_json)?;
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

    fn record(&mut self, record: &proto::Record) -> Result<(), DebugError> {
        let (table, record_type) = self.warehouse.apply(record)?;
        self.summary.count(&table, record_type);
        if record_type != proto::RecordType::Truncate {
            self.progress.rows(&table, 1);
        }
        self.records += 1;
        if self.options.stop == Some(StopPoint::AfterRecords(self.records)) {
            return Err(self.stopped());
        }
        Ok(())
    }

    fn schema_change(&mut self, change: proto::SchemaChange) -> Result<(), DebugError> {
        let catalog = Catalog::from_schema_change(change)?;
        for (key, def) in catalog.definitions(|_| true)? {
            let outcome = self.warehouse.declare(&key, def)?;
            self.summary.add_table(&key);
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
    fn checkpoint(&mut self, state_json: &str) -> Result<(), DebugError> {
        match serde_json::from_str::<serde_json::Value>(state_json) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => {
                return Err(DebugError::Protocol(
                    "a Checkpoint whose state_json is not a JSON object".into(),
                ))
            }
        }
        self.warehouse.commit()?;
        let number = self.summary.checkpoints + 1;
        if self.options.stop == Some(StopPoint::BeforeStateSaved(number)) {
            return Err(self.stopped());
        }
        self.state_file.save(state_json)?;
        self.summary.checkpoints = number;
        self.progress.checkpoint();
        if self.options.stop == Some(StopPoint::AfterCheckpoint(number)) {
            return Err(self.stopped());
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
