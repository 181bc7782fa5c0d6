//! The Update's state, shared by the tables being synced, and the only way checkpoints leave.
//!
//! Several tables may be synced at once, their records interleaving on the stream, while a
//! checkpoint claims every table's position. So every send goes through [`Checkpoints::send`]:
//! a table's records, its new position and a checkpoint of the whole state leave under one lock.
//! Every checkpoint then covers exactly the records sent before it, whichever table sent them,
//! and a table's entry (the promise that its TRUNCATE went out) never precedes that TRUNCATE.

use tokio::sync::Mutex;

use super::output::Output;
use super::SyncError;
use crate::config::TableName;
use crate::proto::Record;
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

    /// Sends `records` (in messages of at most 100), records the table's progress and sends a
    /// checkpoint of the whole state, as one step no other table's sends can split.
    pub async fn send(
        &self,
        output: &mut Output,
        records: Vec<Record>,
        name: &TableName,
        table_state: TableState,
    ) -> Result<(), SyncError> {
        let mut state = self.state.lock().await;
        for record in records {
            output.record(record).await?;
        }
        state.set_table(name, table_state);
        output.checkpoint(&state).await
    }

    /// A checkpoint of the state as it is.
    pub async fn checkpoint_current(&self, output: &mut Output) -> Result<(), SyncError> {
        output.flush().await?;
        let state = self.state.lock().await;
        output.checkpoint(&state).await
    }
}
