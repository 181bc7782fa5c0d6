//! The outgoing side of an Update: what the engine hands to the gRPC layer, bounded in bytes.
//!
//! Records leave as finished `UpdateResponse` bytes (see `encode`); checkpoints, warnings and
//! tasks as prost messages. Every message holds a share of a byte budget while it is queued
//! and until the gRPC layer has encoded it, so however wide the rows, the engine never gets
//! more than [`Output::budget`] ahead of the host: a slow host holds the reads back
//! (backpressure), and a closed stream means the host went away.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::SyncError;
use crate::proto::records::EncodedRecords;
use crate::proto::{update_response::Operation, Checkpoint, UpdateResponse, Warning};
use crate::state::SyncState;

/// Messages queued at most, whatever their size (the byte budget usually binds first).
const QUEUE_DEPTH: usize = 64;
/// The budget is counted in KiB, so a permit count fits a `u32` for any message.
const UNIT: usize = 1024;

/// One message of the Update stream, ready for the wire.
pub struct Outgoing {
    pub message: OutgoingMessage,
    /// The message's share of the byte budget, returned when it is dropped (after encoding).
    _budget: Option<OwnedSemaphorePermit>,
}

impl Outgoing {
    /// A message outside the budget: the one that ends a stream (a Task).
    pub fn unbudgeted(message: OutgoingMessage) -> Self {
        Self {
            message,
            _budget: None,
        }
    }
}

pub enum OutgoingMessage {
    /// A `Records` message, already encoded as `UpdateResponse` bytes.
    Encoded(Bytes),
    /// Any other operation, for prost to encode.
    Message(UpdateResponse),
}

/// Counts of what one Update sent, for its closing log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub records: u64,
    pub messages: u64,
    pub checkpoints: u64,
}

impl Counters {
    pub fn add(&mut self, other: Counters) {
        self.records += other.records;
        self.messages += other.messages;
        self.checkpoints += other.checkpoints;
    }
}

/// The server's request that running Updates stop (SIGTERM): each table stops at its next
/// checkpoint, so the host holds the position of everything it received.
#[derive(Clone, Debug)]
pub struct StopRequest(tokio::sync::watch::Receiver<bool>);

impl StopRequest {
    /// A request that the sender raises by sending `true`.
    pub fn new(receiver: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(receiver)
    }

    /// A request never raised (for callers that stop Updates otherwise).
    pub fn never() -> Self {
        // One sender for the process, never dropped, so no receiver sees the channel closed
        // (forgetting a sender per call leaked one each time).
        static NEVER: std::sync::OnceLock<tokio::sync::watch::Sender<bool>> =
            std::sync::OnceLock::new();
        Self(
            NEVER
                .get_or_init(|| tokio::sync::watch::channel(false).0)
                .subscribe(),
        )
    }

    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the request is raised.
    pub async fn raised(&self) {
        let mut receiver = self.0.clone();
        if receiver.wait_for(|raised| *raised).await.is_err() {
            // The server dropped its sender without a request: none will come.
            std::future::pending::<()>().await;
        }
    }
}

/// A handle on the Update's stream; cheap to clone, one per table task.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::Sender<Outgoing>,
    budget: Arc<Semaphore>,
    budget_units: u32,
    stop: StopRequest,
}

impl Output {
    /// A stream whose queued messages hold at most `budget_bytes` (a single larger message
    /// waits until nothing else is queued, then goes alone).
    pub fn channel(budget_bytes: usize) -> (Output, mpsc::Receiver<Outgoing>) {
        Self::stoppable(budget_bytes, StopRequest::never())
    }

    /// [`channel`](Self::channel), for an Update that stops at its next checkpoint once `stop`
    /// is raised.
    pub fn stoppable(budget_bytes: usize, stop: StopRequest) -> (Output, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let budget_units = u32::try_from(budget_bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        let output = Output {
            tx,
            budget: Arc::new(Semaphore::new(budget_units as usize)),
            budget_units,
            stop,
        };
        (output, rx)
    }

    /// The server's request that this Update stop.
    pub fn stop(&self) -> &StopRequest {
        &self.stop
    }

    /// The most bytes queued between the engine and the host.
    pub fn budget(&self) -> usize {
        self.budget_units as usize * UNIT
    }

    pub async fn records(
        &self,
        records: EncodedRecords,
        counters: &mut Counters,
    ) -> Result<(), SyncError> {
        let (size, count) = (records.bytes.len(), records.records as u64);
        self.send(OutgoingMessage::Encoded(records.bytes), size, counters)
            .await?;
        counters.records += count;
        Ok(())
    }

    /// Sends the state: the host persists a checkpoint only after everything sent before it.
    /// Returns the size of the state sent.
    pub async fn checkpoint(
        &self,
        state: &SyncState,
        counters: &mut Counters,
    ) -> Result<usize, SyncError> {
        let state_json = state.to_json();
        let size = state_json.len();
        self.operation(
            Operation::Checkpoint(Checkpoint { state_json }),
            size,
            counters,
        )
        .await?;
        counters.checkpoints += 1;
        Ok(size)
    }

    /// Declares tables whose columns changed, before any of their records.
    pub async fn schema_change(
        &self,
        change: crate::proto::SchemaChange,
        counters: &mut Counters,
    ) -> Result<(), SyncError> {
        let size = prost::Message::encoded_len(&change);
        self.operation(Operation::SchemaChange(change), size, counters)
            .await
    }

    pub async fn warning(&self, message: String, counters: &mut Counters) -> Result<(), SyncError> {
        let size = message.len();
        self.operation(Operation::Warning(Warning { message }), size, counters)
            .await
    }

    async fn operation(
        &self,
        operation: Operation,
        size: usize,
        counters: &mut Counters,
    ) -> Result<(), SyncError> {
        let message = OutgoingMessage::Message(UpdateResponse {
            operation: Some(operation),
        });
        self.send(message, size, counters).await
    }

    async fn send(
        &self,
        message: OutgoingMessage,
        size: usize,
        counters: &mut Counters,
    ) -> Result<(), SyncError> {
        let units = u32::try_from(size.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.budget_units);
        let budget = tokio::select! {
            permit = Arc::clone(&self.budget).acquire_many_owned(units) => {
                permit.expect("the budget semaphore is never closed")
            }
            () = self.tx.closed() => return Err(SyncError::HostGone),
        };
        self.tx
            .send(Outgoing {
                message,
                _budget: Some(budget),
            })
            .await
            .map_err(|_| SyncError::HostGone)?;
        counters.messages += 1;
        Ok(())
    }

    /// Completes when the host has gone away (the response stream was dropped).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_bytes_stay_within_the_budget() {
        let (output, mut rx) = Output::channel(10 * 1024);
        let mut counters = Counters::default();
        let record = |kib: usize| EncodedRecords {
            bytes: Bytes::from(vec![0u8; kib * 1024]),
            records: 1,
        };
        output.records(record(6), &mut counters).await.unwrap();
        // 6 + 6 KiB would exceed 10 KiB: the second send waits for the first to be taken.
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            output.records(record(6), &mut counters),
        )
        .await;
        assert!(
            second.is_err(),
            "the budget did not hold the second message back"
        );
        drop(rx.recv().await.unwrap());
        output.records(record(6), &mut counters).await.unwrap();
        // A message larger than the whole budget still goes, alone.
        drop(rx.recv().await.unwrap());
        output.records(record(50), &mut counters).await.unwrap();
        assert_eq!(counters.records, 3);
    }

    #[tokio::test]
    async fn a_closed_stream_means_the_host_is_gone() {
        let (output, rx) = Output::channel(1024);
        drop(rx);
        let mut counters = Counters::default();
        assert!(matches!(
            output.warning("x".into(), &mut counters).await,
            Err(SyncError::HostGone)
        ));
    }
}
