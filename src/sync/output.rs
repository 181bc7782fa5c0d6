//! The outgoing side of an Update: records grouped into `Records` messages, checkpoints,
//! warnings. Sending waits while the bounded channel is full, which is how a slow host holds
//! back the database reads (backpressure); a closed channel means the host went away.

use prost::Message as _;
use tokio::sync::mpsc;

use super::SyncError;
use crate::proto::{
    update_response::Operation, Checkpoint, Record, Records, UpdateResponse, Warning,
};
use crate::state::SyncState;

/// Hosts accept at most 100 records per `Records` message.
pub const MAX_RECORDS_PER_MESSAGE: usize = 100;
/// Keep each message far below the 128 MiB limit even with 16 MB SUPER values.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

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

pub struct Output {
    tx: mpsc::Sender<UpdateResponse>,
    pending: Vec<Record>,
    pending_bytes: usize,
    pub counters: Counters,
}

impl Output {
    pub fn new(tx: mpsc::Sender<UpdateResponse>) -> Self {
        Self {
            tx,
            pending: Vec::with_capacity(MAX_RECORDS_PER_MESSAGE),
            pending_bytes: 0,
            counters: Counters::default(),
        }
    }

    /// Queues a record; full messages go out as they fill.
    pub async fn record(&mut self, record: Record) -> Result<(), SyncError> {
        let bytes = record.encoded_len();
        if !self.pending.is_empty() && self.pending_bytes + bytes > MAX_MESSAGE_BYTES {
            self.flush().await?;
        }
        self.pending_bytes += bytes;
        self.pending.push(record);
        self.counters.records += 1;
        if self.pending.len() >= MAX_RECORDS_PER_MESSAGE {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the queued records, if any.
    pub async fn flush(&mut self) -> Result<(), SyncError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(MAX_RECORDS_PER_MESSAGE),
        );
        self.pending_bytes = 0;
        self.send(Operation::Records(Records { records })).await
    }

    /// Sends every queued record, then the state: the host persists a checkpoint only after
    /// everything sent before it, so the state may claim exactly what was sent.
    pub async fn checkpoint(&mut self, state: &SyncState) -> Result<(), SyncError> {
        self.flush().await?;
        self.counters.checkpoints += 1;
        self.send(Operation::Checkpoint(Checkpoint {
            state_json: state.to_json(),
        }))
        .await
    }

    pub async fn warning(&mut self, message: String) -> Result<(), SyncError> {
        self.flush().await?;
        self.send(Operation::Warning(Warning { message })).await
    }

    /// A handle whose `closed()` completes when the host has gone away (the response stream
    /// was dropped), to watch while the output itself is busy.
    pub fn watcher(&self) -> mpsc::Sender<UpdateResponse> {
        self.tx.clone()
    }

    async fn send(&mut self, operation: Operation) -> Result<(), SyncError> {
        self.counters.messages += 1;
        self.tx
            .send(UpdateResponse {
                operation: Some(operation),
            })
            .await
            .map_err(|_| SyncError::HostGone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_go_out_in_hundreds_and_checkpoints_flush_first() {
        let (tx, mut rx) = mpsc::channel(100);
        let mut output = Output::new(tx);
        for _ in 0..250 {
            output.record(Record::default()).await.unwrap();
        }
        output.checkpoint(&SyncState::new()).await.unwrap();
        drop(output);
        let mut sizes = Vec::new();
        let mut last = None;
        while let Some(message) = rx.recv().await {
            match message.operation {
                Some(Operation::Records(r)) => sizes.push(r.records.len()),
                other => last = other,
            }
        }
        assert_eq!(sizes, [100, 100, 50]);
        assert!(matches!(last, Some(Operation::Checkpoint(_))));
    }

    #[tokio::test]
    async fn a_closed_channel_means_the_host_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut output = Output::new(tx);
        assert!(matches!(
            output.warning("x".into()).await,
            Err(SyncError::HostGone)
        ));
    }
}
