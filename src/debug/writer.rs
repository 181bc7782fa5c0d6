//! The warehouse on a thread of its own, so that SQLite's writes run beside the gRPC stream's
//! decoding (and, in process, the connector's own work) instead of after it: a run's speed is
//! then the slower of the two, not their sum.
//!
//! ```text
//!  runner (async) ──jobs, in order (bounded)──► writer thread: Warehouse (SQLite)
//!       ▲                                          │
//!       └───── replies: declare, commit, rollback ◄┘
//! ```
//!
//! Jobs run in the order they were sent, so a commit covers exactly the records sent before
//! it: the invariant of `runner` (a state is saved only after the commit that holds its
//! records) is kept by awaiting the commit's reply before saving. Records are applied without
//! a reply; the first failure is kept and returned by the next job that replies, and the
//! records after it are not applied (the run ends there and rolls back).

use tokio::sync::{mpsc, oneshot};

use super::error::DebugError;
use super::records::RecordBatch;
use super::warehouse::layout::{TableDef, TableKey};
use super::warehouse::{Declared, Warehouse, WarehouseError};

/// Messages of records queued at most: about 6,400 records, a few MB.
const QUEUED_MESSAGES: usize = 64;

enum Job {
    Apply(RecordBatch),
    Declare(TableKey, TableDef, Reply<Declared>),
    Commit(Reply<()>),
    /// Builds the key indexes set aside while tables loaded (see `warehouse`), then commits.
    FinishAndCommit(Reply<usize>),
    Rollback(Reply<()>),
}

type Reply<T> = oneshot::Sender<Result<T, WarehouseError>>;

/// A commit queued on the writer thread (see [`WarehouseWriter::start_commit`]).
pub struct PendingCommit(oneshot::Receiver<Result<(), WarehouseError>>);

impl PendingCommit {
    /// Waits until it is durable; an earlier failure to apply records is returned here.
    pub async fn done(self) -> Result<(), DebugError> {
        WarehouseWriter::answer(self.0).await
    }
}

/// The handle of the writer thread, which owns the warehouse until [`WarehouseWriter::finish`].
pub struct WarehouseWriter {
    jobs: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<Warehouse>,
}

impl WarehouseWriter {
    pub fn start(warehouse: Warehouse) -> Result<Self, DebugError> {
        let (jobs, queue) = mpsc::channel(QUEUED_MESSAGES);
        let thread = std::thread::Builder::new()
            .name("warehouse".into())
            .spawn(move || write(warehouse, queue))
            .map_err(DebugError::WriterStart)?;
        Ok(Self { jobs, thread })
    }

    /// Queues records to apply; waits only while the queue is full.
    pub async fn apply(&self, records: RecordBatch) -> Result<(), DebugError> {
        self.send(Job::Apply(records)).await
    }

    pub async fn declare(&self, key: TableKey, def: TableDef) -> Result<Declared, DebugError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Declare(key, def, reply)).await?;
        Self::answer(answer).await
    }

    /// Commits everything sent before; an earlier failure to apply records is returned here.
    pub async fn commit(&self) -> Result<(), DebugError> {
        self.start_commit().await?.done().await
    }

    /// Queues a commit of everything sent before, without waiting for it: records sent after
    /// it are applied after it. Await the returned commit before relying on it.
    pub async fn start_commit(&self) -> Result<PendingCommit, DebugError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Commit(reply)).await?;
        Ok(PendingCommit(answer))
    }

    /// Builds the key indexes set aside while tables loaded, and commits: the end of a run.
    pub async fn finish_and_commit(&self) -> Result<usize, DebugError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::FinishAndCommit(reply)).await?;
        Self::answer(answer).await
    }

    /// Drops every write since the last commit (what a crash would do).
    pub async fn rollback(&self) -> Result<(), DebugError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Rollback(reply)).await?;
        Self::answer(answer).await
    }

    /// Ends the thread once it has done every job, and hands the warehouse back.
    pub fn finish(self) -> Result<Warehouse, DebugError> {
        drop(self.jobs);
        self.thread.join().map_err(|_| DebugError::WriterGone)
    }

    async fn send(&self, job: Job) -> Result<(), DebugError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| DebugError::WriterGone)
    }

    async fn answer<T>(
        answer: oneshot::Receiver<Result<T, WarehouseError>>,
    ) -> Result<T, DebugError> {
        Ok(answer.await.map_err(|_| DebugError::WriterGone)??)
    }
}

/// The thread's loop: every job in order, until the handle is dropped.
fn write(mut warehouse: Warehouse, mut queue: mpsc::Receiver<Job>) -> Warehouse {
    let mut failed: Option<WarehouseError> = None;
    while let Some(job) = queue.blocking_recv() {
        match job {
            Job::Apply(records) => {
                if failed.is_none() {
                    if let Err(err) = warehouse.apply_batch(&records) {
                        failed = Some(err);
                    }
                }
            }
            Job::Declare(key, def, reply) => {
                let result = match failed.take() {
                    Some(err) => Err(err),
                    None => warehouse.declare(&key, def),
                };
                let _ = reply.send(result);
            }
            Job::Commit(reply) => {
                let result = match failed.take() {
                    Some(err) => Err(err),
                    None => warehouse.commit(),
                };
                let _ = reply.send(result);
            }
            Job::FinishAndCommit(reply) => {
                let result = match failed.take() {
                    Some(err) => Err(err),
                    None => warehouse
                        .build_key_indexes()
                        .and_then(|built| warehouse.commit().map(|()| built)),
                };
                let _ = reply.send(result);
            }
            Job::Rollback(reply) => {
                failed = None;
                let _ = reply.send(warehouse.rollback());
            }
        }
    }
    warehouse
}
