//! A table's figures in this Update: rows for progress and the summary, wire bytes per row to
//! size the next query, and the time it started.

use std::time::Instant;

use crate::sync::output::Counters;

pub(super) struct Statistics {
    /// Rows sent in this Update (across attempts).
    pub rows: u64,
    /// `DataRow` bytes and rows read so far: the average sizes the next query.
    pub wire_bytes: u64,
    pub wire_rows: u64,
    pub counters: Counters,
    pub started: Instant,
    pub last_report: Instant,
}

impl Statistics {
    pub fn new(now: Instant) -> Self {
        Self {
            rows: 0,
            wire_bytes: 0,
            wire_rows: 0,
            counters: Counters::default(),
            started: now,
            last_report: now,
        }
    }

    /// Rows a second since the table's sync started.
    pub fn rate(&self) -> u64 {
        (self.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3)) as u64
    }
}
