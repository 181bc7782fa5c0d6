//! A table's batch: the records encoded since its last checkpoint, which leave with it.
//!
//! Records are encoded into `encoder` as rows arrive; each finished message waits in
//! `messages` until the batch ends (after a fetch, `batch_size` rows or `max_batch_bytes`), and
//! then the messages, the table's position and a checkpoint are sent together, so resuming from
//! any checkpoint repeats nothing that was sent before it. Committing (the messages, the
//! table's state and the checkpoint) is here too.

use super::*;
use crate::proto::records::{EncodedRecords, RecordEncoder};

pub(super) struct Batch {
    pub encoder: RecordEncoder,
    /// The batch's finished messages, sent with its checkpoint.
    pub messages: Vec<EncodedRecords>,
    /// Their bytes.
    pub bytes: usize,
    /// Rows pushed since the last checkpoint.
    pub uncommitted_rows: u64,
    /// Sent with the table's first records (or alone at its end), before the checkpoint that
    /// first records the table in the state.
    pub truncate_pending: bool,
}

impl Batch {
    pub fn new(encoder: RecordEncoder, truncate_pending: bool) -> Self {
        Self {
            encoder,
            messages: Vec::new(),
            bytes: 0,
            uncommitted_rows: 0,
            truncate_pending,
        }
    }
}

impl TableSync {
    /// Moves the messages the encoder has finished into the batch.
    pub(super) fn collect_finished(&mut self) {
        while let Some(message) = self.batch.encoder.take_ready() {
            self.batch.bytes += message.bytes.len();
            self.batch.messages.push(message);
        }
    }

    /// Sends the batch with a checkpoint of the last row pushed; nothing if nothing was.
    pub(super) async fn commit(&mut self, shared: &Shared) -> Result<(), SyncError> {
        if self.batch.uncommitted_rows == 0 {
            return Ok(());
        }
        self.batch.encoder.finish();
        self.collect_finished();
        // A table with a key stands at its last row; one without moves by cursor value, as
        // `position` tracks it.
        if !self.plan.key.is_empty() {
            let texts = self
                .buffers
                .saved
                .texts(&self.buffers.position_types.iter().collect::<Vec<_>>());
            let (cursor, key) = match self.plan.mode {
                Mode::Incremental { .. } => (texts[0].clone(), &texts[1..]),
                Mode::Full { .. } => (None, &texts[..]),
            };
            self.progress
                .sent(cursor, key.iter().flatten().cloned().collect());
        }
        self.send_with_checkpoint(shared, true).await?;
        self.stats.rows += self.batch.uncommitted_rows;
        self.batch.uncommitted_rows = 0;
        self.batch.bytes = 0;
        self.report();
        Ok(())
    }

    /// Sends the batch's messages and then a checkpoint of the table's state, as one step.
    pub(super) async fn send_with_checkpoint(
        &mut self,
        shared: &Shared,
        in_progress: bool,
    ) -> Result<(), SyncError> {
        let state = self.table_state(in_progress);
        shared
            .checkpoints
            .commit(
                &shared.output,
                self.batch.messages.drain(..),
                &self.plan.table.name,
                state,
                &mut self.stats.counters,
            )
            .await
    }

    /// The table's entry in the state: how it is read and where it stands; for a full pass,
    /// whether it is under way.
    pub(super) fn table_state(&self, in_progress: bool) -> TableState {
        let key_columns = self.plan.key_columns();
        let (table_id, columns) = (self.plan.table.id, Some(self.synced_columns.clone()));
        match self.plan.cursor_column() {
            Some(cursor) => match &self.null_rescan {
                Some(rescan) => TableState::Incremental {
                    cursor_column: cursor.to_string(),
                    key_columns,
                    position: rescan.scan.position().cloned(),
                    export: None,
                    null_rescan: Some(
                        self.progress
                            .position()
                            .map(|p| p.key.clone())
                            .unwrap_or_default(),
                    ),
                    resync: self.resync.clone(),
                    key_snapshot: self.key_snapshot.clone(),
                    table_id,
                    columns,
                },
                None => TableState::Incremental {
                    cursor_column: cursor.to_string(),
                    key_columns,
                    position: self.progress.position().cloned(),
                    export: self.export.clone(),
                    null_rescan: None,
                    resync: self.resync.clone(),
                    key_snapshot: self.key_snapshot.clone(),
                    table_id,
                    columns,
                },
            },
            None => TableState::Full {
                key_columns,
                in_progress,
                position: self.progress.position().cloned().filter(|_| in_progress),
                export: self.export.clone().filter(|_| in_progress),
                table_id,
                columns,
            },
        }
    }

    /// The end of the table: a full pass is complete; a table without rows still sends its
    /// TRUNCATE; a last checkpoint.
    pub(super) async fn finish(&mut self, shared: &Shared) -> Result<(), SyncError> {
        if let Some(resync) = &mut self.resync {
            resync.done = true;
        }
        self.key_snapshot = self.key_snapshot.as_ref().map(KeySnapshot::pass_complete);
        if std::mem::take(&mut self.batch.truncate_pending) {
            self.batch.encoder.push_truncate();
            self.batch.encoder.finish();
            self.collect_finished();
        }
        self.send_with_checkpoint(shared, false).await?;
        tracing::info!(
            table = %self.plan.table.name,
            rows = self.stats.rows,
            rows_per_s = self.stats.rate(),
            seconds = format!("{:.1}", self.stats.started.elapsed().as_secs_f64()),
            "table sync finished"
        );
        Ok(())
    }
}
