//! The Update's state, shared by the tables being synced, and the only way records and
//! checkpoints leave.
//!
//! Several tables may be synced at once, each reading and encoding its batches in a task of its
//! own, while a checkpoint claims every table's position. So a table's batch (its encoded
//! `Records` messages), its new position and a checkpoint of the whole state leave through
//! [`Checkpoints::commit`] as one step, under one lock: no other table's checkpoint can fall
//! between a table's records and its position. Every checkpoint then covers exactly the
//! records sent before it, whichever table sent them, so resuming from any checkpoint repeats
//! nothing; and a table's entry (the promise that its TRUNCATE went out) never precedes that
//! TRUNCATE. Only the sending is serialised: reading, decoding and encoding run in parallel.

use tokio::sync::Mutex;

use super::encode::EncodedRecords;
use super::output::{Counters, Output};
use super::SyncError;
use crate::config::TableName;
use crate::state::{SyncState, TableState};

pub struct Checkpoints {
    state: Mutex<SyncState>,
}

impl Checkpoints {
    pub fn new(state: SyncState) -> Self {
        Self {
            state: Mutex::new(state),
        }
    }

    /// The table's progress as last recorded.
    pub async fn table(&self, name: &TableName) -> Option<TableState> {
        self.state.lock().await.table(name).cloned()
    }

    /// Sends a table's batch, records its progress and sends a checkpoint of the whole state,
    /// as one step no other table's sends can split.
    pub async fn commit(
        &self,
        output: &Output,
        batch: impl IntoIterator<Item = EncodedRecords>,
        name: &TableName,
        table_state: TableState,
        counters: &mut Counters,
    ) -> Result<(), SyncError> {
        let mut state = self.state.lock().await;
        for records in batch {
            output.records(records, counters).await?;
        }
        state.set_table(name, table_state);
        output.checkpoint(&state, counters).await
    }

    /// A checkpoint of the state as it is.
    pub async fn checkpoint_current(
        &self,
        output: &Output,
        counters: &mut Counters,
    ) -> Result<(), SyncError> {
        let state = self.state.lock().await;
        output.checkpoint(&state, counters).await
    }
}
