//! The buffers a row is decoded into, and what is kept of rows already read: one allocation
//! each for the whole table, reused row after row.
//!
//! A decoded row is its [`Cell`]s, which point into the row's wire bytes or into `scratch`
//! (values the decoder had to rewrite); the cursor's and key's values of the last row pushed
//! are `saved` (the position a checkpoint records); rows of a keyless table that share a cursor
//! value not yet complete are `held` until it is (`position::RowAction`).

use crate::source::types::SqlType;
use crate::source::value::{Cell, DecodedRow, SavedValues};

pub(super) struct RowBuffers {
    /// The row being decoded: its cells.
    pub cells: Vec<Cell>,
    /// Bytes of values the decoder rewrote; cells may point here.
    pub scratch: Vec<u8>,
    /// Rows held back until their cursor value is complete (tables without a key).
    pub held: HeldRows,
    /// The cursor value the held rows share, as bytes.
    pub group_key: Vec<u8>,
    /// The last row pushed: its cursor and key values.
    pub saved: SavedValues,
    /// Where a position's values (the cursor, then the key) are in a row, and their types.
    pub position_indexes: Vec<usize>,
    pub position_types: Vec<SqlType>,
}

impl RowBuffers {
    /// The row just decoded from `body`.
    #[inline]
    pub fn view<'a>(&'a self, body: &'a [u8]) -> DecodedRow<'a> {
        DecodedRow::new(&self.cells, body, &self.scratch)
    }

    pub fn new(position_indexes: Vec<usize>, position_types: Vec<SqlType>) -> Self {
        Self {
            cells: Vec::new(),
            scratch: Vec::new(),
            held: HeldRows::default(),
            group_key: Vec::new(),
            saved: SavedValues::default(),
            position_indexes,
            position_types,
        }
    }
}

/// Rows held back (see `position::RowAction`): their bytes, decoded cells and scratch, to be
/// encoded once their cursor value is complete. Bounded by `position::HoldLimits`.
#[derive(Default)]
pub(super) struct HeldRows {
    bodies: Vec<u8>,
    scratch: Vec<u8>,
    cells: Vec<Cell>,
    /// Per row: where its body, scratch and cells end.
    ends: Vec<(usize, usize, usize)>,
}

impl HeldRows {
    pub(super) fn hold(&mut self, row: DecodedRow<'_>) {
        let (body, scratch) = row.buffers();
        self.bodies.extend_from_slice(body);
        self.scratch.extend_from_slice(scratch);
        self.cells.extend_from_slice(row.cells());
        self.ends
            .push((self.bodies.len(), self.scratch.len(), self.cells.len()));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each held row as the decoder left it.
    pub(super) fn rows(&self) -> impl Iterator<Item = DecodedRow<'_>> {
        let mut start = (0, 0, 0);
        self.ends.iter().map(move |&end| {
            let row = DecodedRow::new(
                &self.cells[start.2..end.2],
                &self.bodies[start.0..end.0],
                &self.scratch[start.1..end.1],
            );
            start = end;
            row
        })
    }

    pub(super) fn clear(&mut self) {
        self.bodies.clear();
        self.scratch.clear();
        self.cells.clear();
        self.ends.clear();
    }
}
