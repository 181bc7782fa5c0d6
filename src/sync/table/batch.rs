//! A table's batch: the records encoded since its last checkpoint, which leave with it.
//!
//! Records are encoded into `encoder` as rows arrive; each finished message waits in
//! `messages` until the batch ends (after a fetch, `batch_size` rows or `max_batch_bytes`), and
//! then the messages, the table's position and a checkpoint are sent together, so resuming from
//! any checkpoint repeats nothing that was sent before it.

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
