//! `Records` messages encoded straight from the rows' cells, as the bytes of an
//! `UpdateResponse` ready for the wire.
//!
//! The same message through prost costs a `HashMap` per row with its column names cloned, a
//! `ValueType` per value, a length computation at every level and about 16 allocations a row
//! (benches/README.md). Here everything that is the same for every row of a table is computed
//! once: each column's map-entry key (`0x0A len name`) and the field of `ValueType` its values
//! go in. A row is then two passes over its cells: sizes first (every length prefix must be
//! known before what it prefixes), then bytes, appended to the message being built.
//!
//! ```text
//!  UpdateResponse  6: Records ─ 1: Record ─ 1: schema_name, 2: table_name, [3: type]
//!                                         └ 4: map entry ─ 1: column name (precomputed)
//!                                                        └ 2: ValueType ─ one field
//! ```
//!
//! The message buffer keeps room in front for the `UpdateResponse` header, whose length is
//! known only when the message is complete, so finishing a message copies nothing.
//! `tests::prop_encoded_records_decode_to_what_prost_builds` proves the bytes decode to exactly
//! the message prost's types would have built.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use crate::proto::{DataType, RecordType};
use crate::source::value::{Cell, DecodedRow};

/// Hosts accept at most 100 records per `Records` message.
pub const MAX_RECORDS_PER_MESSAGE: usize = 100;

/// The most bytes an `UpdateResponse` header (tag and length of its `Records`) takes.
const HEADROOM: usize = 6;

/// Field numbers of the wire contract.
const UPDATE_RESPONSE_RECORDS: u32 = 6;
const RECORDS_RECORD: u32 = 1;
const RECORD_SCHEMA: u32 = 1;
const RECORD_TABLE: u32 = 2;
const RECORD_TYPE: u32 = 3;
const RECORD_DATA: u32 = 4;
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;
const VALUE_NULL: u32 = 1;
const TIMESTAMP_SECONDS: u32 = 1;
const TIMESTAMP_NANOS: u32 = 2;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

/// One emitted column: its map-entry key, and the `ValueType` field its values use.
struct Column {
    key: Vec<u8>,
    field: u32,
}

/// A finished message: the `UpdateResponse` bytes and the records it carries.
#[derive(Debug, Clone)]
pub struct EncodedRecords {
    pub bytes: Bytes,
    pub records: usize,
}

/// Builds one table's `Records` messages.
pub struct RecordEncoder {
    /// `schema_name` and `table_name` fields, the start of every record of the table.
    header: Vec<u8>,
    columns: Vec<Column>,
    max_message_bytes: usize,
    /// The message being built: [`HEADROOM`] bytes, then `Records.records` entries.
    message: BytesMut,
    records: usize,
    ready: VecDeque<EncodedRecords>,
    /// Per-row scratch: each column's `ValueType` length.
    sizes: Vec<usize>,
    /// Capacity a new message starts with: the size of the last one, so that a table's
    /// messages are built without growing (and copying) their buffer as records arrive.
    initial_capacity: usize,
}

/// The least and most a new message reserves up front. Larger messages (wide rows) grow
/// by the record, reserving each record's exact size.
const MIN_INITIAL_CAPACITY: usize = 4096;
const MAX_INITIAL_CAPACITY: usize = 1 << 20;

impl RecordEncoder {
    /// `columns`: name and DataType of the emitted columns, in the order of a row's cells.
    /// A message is finished at 100 records, or before a record that would take it past
    /// `max_message_bytes` (a single larger record goes alone).
    pub fn new(
        schema: &str,
        table: &str,
        columns: &[(&str, DataType)],
        max_message_bytes: usize,
    ) -> Self {
        let mut header = Vec::new();
        put_bytes_field(&mut header, RECORD_SCHEMA, schema.as_bytes());
        put_bytes_field(&mut header, RECORD_TABLE, table.as_bytes());
        let columns = columns
            .iter()
            .map(|(name, data_type)| {
                let mut key = Vec::new();
                put_bytes_field(&mut key, ENTRY_KEY, name.as_bytes());
                Column {
                    key,
                    field: value_field(*data_type),
                }
            })
            .collect::<Vec<_>>();
        let mut encoder = Self {
            header,
            sizes: Vec::with_capacity(columns.len()),
            columns,
            max_message_bytes,
            message: BytesMut::new(),
            records: 0,
            ready: VecDeque::new(),
            initial_capacity: MIN_INITIAL_CAPACITY,
        };
        encoder.start_message();
        encoder
    }

    /// Appends an UPSERT of a row: its value `i` is column `i`'s.
    #[inline]
    pub fn push_upsert(&mut self, row: DecodedRow<'_>) {
        let cells = row.cells();
        debug_assert_eq!(cells.len(), self.columns.len());
        self.sizes.clear();
        let mut record_len = self.header.len();
        for (column, cell) in self.columns.iter().zip(cells) {
            let value_len = value_len(column.field, cell, &row);
            self.sizes.push(value_len);
            record_len += entry_size(column.key.len(), value_len);
        }
        let start = self.make_room(record_len);
        let mut out = RecordWriter::new(&mut self.message[start..]);
        out.put_tag(RECORDS_RECORD, LENGTH_DELIMITED);
        out.put_varint(record_len as u64);
        out.put_slice(&self.header);
        for ((column, cell), &value_len) in self.columns.iter().zip(cells).zip(&self.sizes) {
            out.put_entry(column, value_len, cell, &row);
        }
        out.done();
        self.record_added();
    }

    /// Appends a DELETE of the row: only the columns at `key` (indexes into its values, which
    /// are laid out as for [`push_upsert`](Self::push_upsert)), as hosts expect of a DELETE.
    pub fn push_delete(&mut self, key: &[usize], row: DecodedRow<'_>) {
        let cells = row.cells();
        self.sizes.clear();
        let mut record_len = self.header.len() + 2;
        for &i in key {
            let column = &self.columns[i];
            let value_len = value_len(column.field, &cells[i], &row);
            self.sizes.push(value_len);
            record_len += entry_size(column.key.len(), value_len);
        }
        let start = self.make_room(record_len);
        let mut out = RecordWriter::new(&mut self.message[start..]);
        out.put_tag(RECORDS_RECORD, LENGTH_DELIMITED);
        out.put_varint(record_len as u64);
        out.put_slice(&self.header);
        out.put_tag(RECORD_TYPE, VARINT);
        out.put_varint(RecordType::Delete as u64);
        for (&i, &value_len) in key.iter().zip(&self.sizes) {
            out.put_entry(&self.columns[i], value_len, &cells[i], &row);
        }
        out.done();
        self.record_added();
    }

    /// Appends the table's TRUNCATE record.
    pub fn push_truncate(&mut self) {
        let record_len = self.header.len() + 2;
        let start = self.make_room(record_len);
        let mut out = RecordWriter::new(&mut self.message[start..]);
        out.put_tag(RECORDS_RECORD, LENGTH_DELIMITED);
        out.put_varint(record_len as u64);
        out.put_slice(&self.header);
        out.put_tag(RECORD_TYPE, VARINT);
        out.put_varint(RecordType::Truncate as u64);
        out.done();
        self.record_added();
    }

    /// Finished messages, oldest first.
    pub fn take_ready(&mut self) -> Option<EncodedRecords> {
        self.ready.pop_front()
    }

    /// Finishes the message being built, if it holds any record; then [`take_ready`] has it.
    ///
    /// [`take_ready`]: Self::take_ready
    pub fn finish(&mut self) {
        if self.records == 0 {
            return;
        }
        let body_len = self.message.len() - HEADROOM;
        self.initial_capacity = (self.message.len() + self.message.len() / 8)
            .clamp(MIN_INITIAL_CAPACITY, MAX_INITIAL_CAPACITY);
        let mut header = [0u8; HEADROOM];
        let mut at = 0;
        header[at] = tag(UPDATE_RESPONSE_RECORDS, LENGTH_DELIMITED) as u8;
        at += 1;
        at += write_varint(&mut header[at..], body_len as u64);
        let mut message = self.message.split();
        let start = HEADROOM - at;
        message[start..HEADROOM].copy_from_slice(&header[..at]);
        let _ = message.split_to(start);
        self.ready.push_back(EncodedRecords {
            bytes: message.freeze(),
            records: self.records,
        });
        self.start_message();
    }

    /// Bytes of the message being built.
    pub fn pending_bytes(&self) -> usize {
        self.message.len() - HEADROOM
    }

    fn start_message(&mut self) {
        self.records = 0;
        self.message.reserve(self.initial_capacity);
        self.message.put_bytes(0, HEADROOM);
    }

    /// Finishes the current message first if the next record would take it past the limit,
    /// then appends room for the record, returning where it starts.
    #[inline]
    fn make_room(&mut self, record_len: usize) -> usize {
        let record_size = 1 + varint_len(record_len as u64) + record_len;
        if self.records > 0 && self.pending_bytes() + record_size > self.max_message_bytes {
            self.finish();
        }
        let start = self.message.len();
        self.message.resize(start + record_size, 0);
        start
    }

    #[inline]
    fn record_added(&mut self) {
        self.records += 1;
        if self.records >= MAX_RECORDS_PER_MESSAGE {
            self.finish();
        }
    }
}

/// Fills the room [`RecordEncoder::make_room`] made for one record.
///
/// Writing into a slice sized in advance keeps every byte a plain store: `BytesMut::put_u8`
/// checks capacity and calls `memcpy` for each byte, which took a sixth of the server's time.
struct RecordWriter<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl<'a> RecordWriter<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Self { out, at: 0 }
    }

    #[inline]
    fn put_u8(&mut self, byte: u8) {
        self.out[self.at] = byte;
        self.at += 1;
    }

    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    #[inline]
    fn put_varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.put_u8(value as u8);
    }

    #[inline]
    fn put_tag(&mut self, field: u32, wire_type: u32) {
        self.put_varint(u64::from(tag(field, wire_type)));
    }

    /// One `data` map entry: the column's precomputed key, then its value of `value_len` bytes.
    #[inline]
    fn put_entry(&mut self, column: &Column, value_len: usize, cell: &Cell, row: &DecodedRow<'_>) {
        let entry_len = column.key.len() + 1 + varint_len(value_len as u64) + value_len;
        self.put_tag(RECORD_DATA, LENGTH_DELIMITED);
        self.put_varint(entry_len as u64);
        self.put_slice(&column.key);
        self.put_tag(ENTRY_VALUE, LENGTH_DELIMITED);
        self.put_varint(value_len as u64);
        self.put_value(column.field, cell, row);
    }

    #[inline]
    fn put_value(&mut self, field: u32, cell: &Cell, row: &DecodedRow<'_>) {
        match *cell {
            Cell::Null => {
                self.put_tag(VALUE_NULL, VARINT);
                self.put_u8(1);
            }
            Cell::Bool(v) => {
                self.put_tag(field, VARINT);
                self.put_u8(u8::from(v));
            }
            Cell::Int(v) => {
                self.put_tag(field, VARINT);
                self.put_varint(int_varint(field, v));
            }
            Cell::Float(v) => {
                self.put_tag(field, FIXED32);
                self.put_slice(&v.to_le_bytes());
            }
            Cell::Double(v) => {
                self.put_tag(field, FIXED64);
                self.put_slice(&v.to_le_bytes());
            }
            Cell::Timestamp { seconds, nanos } => {
                self.put_tag(field, LENGTH_DELIMITED);
                self.put_varint(timestamp_len(seconds, nanos) as u64);
                if seconds != 0 {
                    self.put_tag(TIMESTAMP_SECONDS, VARINT);
                    self.put_varint(seconds as u64);
                }
                if nanos != 0 {
                    self.put_tag(TIMESTAMP_NANOS, VARINT);
                    self.put_varint(nanos as i64 as u64);
                }
            }
            Cell::Row { .. } | Cell::Scratch { .. } => {
                let bytes = row.bytes(cell);
                self.put_tag(field, LENGTH_DELIMITED);
                self.put_varint(bytes.len() as u64);
                self.put_slice(bytes);
            }
        }
    }

    /// The sizes computed before writing must have been exact: a gap would be zeros on the wire.
    #[inline]
    fn done(self) {
        debug_assert_eq!(self.at, self.out.len(), "record size computed wrongly");
    }
}

/// The `ValueType` field a column's values use, from its declared DataType.
fn value_field(data_type: DataType) -> u32 {
    match data_type {
        DataType::Boolean => 2,
        DataType::Short => 3,
        DataType::Int => 4,
        DataType::Long => 5,
        DataType::Float => 6,
        DataType::Double => 7,
        DataType::NaiveDate => 8,
        DataType::NaiveDatetime => 9,
        DataType::UtcDatetime => 10,
        DataType::Decimal => 11,
        DataType::Binary => 12,
        DataType::Json => 14,
        DataType::Xml => 15,
        DataType::NaiveTime => 16,
        DataType::String | DataType::Unspecified => 13,
    }
}

/// Bytes of a map entry (tag, length, key, value tag, value length, value) in a record.
#[inline]
fn entry_size(key_len: usize, value_len: usize) -> usize {
    let entry_len = key_len + 1 + varint_len(value_len as u64) + value_len;
    1 + varint_len(entry_len as u64) + entry_len
}

/// The length of a cell's `ValueType` message.
#[inline]
fn value_len(field: u32, cell: &Cell, row: &DecodedRow<'_>) -> usize {
    let field_tag = tag_len(field);
    match *cell {
        Cell::Null => tag_len(VALUE_NULL) + 1,
        Cell::Bool(_) => field_tag + 1,
        Cell::Int(v) => field_tag + varint_len(int_varint(field, v)),
        Cell::Float(_) => field_tag + 4,
        Cell::Double(_) => field_tag + 8,
        Cell::Timestamp { seconds, nanos } => {
            let len = timestamp_len(seconds, nanos);
            field_tag + varint_len(len as u64) + len
        }
        Cell::Row { .. } | Cell::Scratch { .. } => {
            let len = row.bytes(cell).len();
            field_tag + varint_len(len as u64) + len
        }
    }
}

/// An integer as its varint: int32 fields (`short`, `int`) sign-extend a negative value to 64
/// bits, as protobuf requires.
#[inline]
fn int_varint(field: u32, value: i64) -> u64 {
    match field {
        5 => value as u64,
        _ => i64::from(value as i32) as u64,
    }
}

/// A google.protobuf.Timestamp's length: zero fields are not written.
#[inline]
fn timestamp_len(seconds: i64, nanos: i32) -> usize {
    let mut len = 0;
    if seconds != 0 {
        len += 1 + varint_len(seconds as u64);
    }
    if nanos != 0 {
        len += 1 + varint_len(nanos as i64 as u64);
    }
    len
}

#[inline]
const fn tag(field: u32, wire_type: u32) -> u32 {
    field << 3 | wire_type
}

#[inline]
fn tag_len(field: u32) -> usize {
    varint_len(u64::from(tag(field, 0)))
}

fn put_bytes_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    let mut scratch = [0u8; 10];
    let n = write_varint(&mut scratch, u64::from(tag(field, LENGTH_DELIMITED)));
    buf.extend_from_slice(&scratch[..n]);
    let n = write_varint(&mut scratch, bytes.len() as u64);
    buf.extend_from_slice(&scratch[..n]);
    buf.extend_from_slice(bytes);
}

#[inline]
fn varint_len(value: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn write_varint(out: &mut [u8], mut value: u64) -> usize {
    let mut n = 0;
    while value >= 0x80 {
        out[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    out[n] = value as u8;
    n + 1
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;
    use crate::proto::update_response::Operation;
    use crate::proto::value_type::Inner;
    use crate::proto::{Record, Records, UpdateResponse, ValueType};

    /// The value prost's types hold for a cell of a column of `data_type`: the reference the
    /// encoder is checked against.
    fn reference_value(data_type: DataType, cell: &Cell, row: &[u8], scratch: &[u8]) -> ValueType {
        let text = || String::from_utf8(cell.bytes(row, scratch).to_vec()).unwrap();
        let timestamp = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        let inner = match (*cell, data_type) {
            (Cell::Null, _) => Inner::Null(true),
            (Cell::Bool(v), _) => Inner::Bool(v),
            (Cell::Int(v), DataType::Short) => Inner::Short(v as i32),
            (Cell::Int(v), DataType::Int) => Inner::Int(v as i32),
            (Cell::Int(v), _) => Inner::Long(v),
            (Cell::Float(v), _) => Inner::Float(v),
            (Cell::Double(v), _) => Inner::Double(v),
            (Cell::Timestamp { seconds, nanos }, DataType::NaiveDate) => {
                Inner::NaiveDate(timestamp(seconds, nanos))
            }
            (Cell::Timestamp { seconds, nanos }, DataType::UtcDatetime) => {
                Inner::UtcDatetime(timestamp(seconds, nanos))
            }
            (Cell::Timestamp { seconds, nanos }, _) => {
                Inner::NaiveDatetime(timestamp(seconds, nanos))
            }
            (_, DataType::Decimal) => Inner::Decimal(text()),
            (_, DataType::Binary) => Inner::Binary(cell.bytes(row, scratch).to_vec()),
            (_, DataType::Json) => Inner::Json(text()),
            (_, _) => Inner::String(text()),
        };
        ValueType { inner: Some(inner) }
    }

    /// A column type and a strategy for its cells (a quarter of them NULL), with the bytes the
    /// byte cells refer to.
    fn column_and_cells() -> impl Strategy<Value = (DataType, Vec<(Cell, Vec<u8>)>)> {
        let text = || ".*".prop_map(|s: String| s.into_bytes());
        let with_null = |cells: BoxedStrategy<(Cell, Vec<u8>)>| {
            prop_oneof![1 => Just((Cell::Null, Vec::new())), 3 => cells].boxed()
        };
        let seconds = -62_135_596_800i64..=253_402_300_799i64;
        let nanos = 0i32..1_000_000_000;
        // Columns of `types`, each of up to 3 cells from `cells`.
        let column = move |types: BoxedStrategy<DataType>,
                           cells: BoxedStrategy<(Cell, Vec<u8>)>| {
            (types, prop::collection::vec(with_null(cells), 0..4))
        };
        let one = |t: DataType| Just(t).boxed();
        prop_oneof![
            column(
                one(DataType::Boolean),
                any::<bool>().prop_map(|v| (Cell::Bool(v), vec![])).boxed()
            ),
            column(
                one(DataType::Short),
                any::<i16>()
                    .prop_map(|v| (Cell::Int(v.into()), vec![]))
                    .boxed()
            ),
            column(
                one(DataType::Int),
                any::<i32>()
                    .prop_map(|v| (Cell::Int(v.into()), vec![]))
                    .boxed()
            ),
            column(
                one(DataType::Long),
                any::<i64>().prop_map(|v| (Cell::Int(v), vec![])).boxed()
            ),
            column(
                one(DataType::Float),
                any::<f32>()
                    .prop_filter("NaN != NaN", |v| !v.is_nan())
                    .prop_map(|v| (Cell::Float(v), vec![]))
                    .boxed()
            ),
            column(
                one(DataType::Double),
                any::<f64>()
                    .prop_filter("NaN != NaN", |v| !v.is_nan())
                    .prop_map(|v| (Cell::Double(v), vec![]))
                    .boxed()
            ),
            column(
                prop_oneof![
                    Just(DataType::NaiveDate),
                    Just(DataType::NaiveDatetime),
                    Just(DataType::UtcDatetime)
                ]
                .boxed(),
                (seconds, nanos)
                    .prop_map(|(seconds, nanos)| (Cell::Timestamp { seconds, nanos }, vec![]))
                    .boxed()
            ),
            column(
                prop_oneof![
                    Just(DataType::String),
                    Just(DataType::Decimal),
                    Just(DataType::Json)
                ]
                .boxed(),
                text()
                    .prop_map(|b| (Cell::Row { start: 0, end: 0 }, b))
                    .boxed()
            ),
            column(
                one(DataType::Binary),
                prop::collection::vec(any::<u8>(), 0..300)
                    .prop_map(|b| (Cell::Scratch { start: 0, end: 0 }, b))
                    .boxed()
            ),
        ]
    }

    /// Lays rows out as the decoder would: `Row` bytes in a row buffer, `Scratch` bytes in a
    /// scratch buffer, each cell pointing at its bytes.
    fn lay_out(values: &[(Cell, Vec<u8>)]) -> (Vec<Cell>, Vec<u8>, Vec<u8>) {
        let (mut row, mut scratch, mut cells) = (vec![0xEEu8; 3], Vec::new(), Vec::new());
        for (cell, bytes) in values {
            cells.push(match cell {
                Cell::Row { .. } => {
                    let start = row.len() as u32;
                    row.extend_from_slice(bytes);
                    Cell::Row {
                        start,
                        end: row.len() as u32,
                    }
                }
                Cell::Scratch { .. } => {
                    let start = scratch.len() as u32;
                    scratch.extend_from_slice(bytes);
                    Cell::Scratch {
                        start,
                        end: scratch.len() as u32,
                    }
                }
                other => *other,
            });
        }
        (cells, row, scratch)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Rows of up to six columns of any types, with NULLs, extremes and any text, encoded
        /// by the encoder, decode to exactly the `UpdateResponse`s prost builds from the same
        /// values, in messages of at most 100 records.
        #[test]
        fn prop_encoded_records_decode_to_what_prost_builds(
            columns in prop::collection::vec(column_and_cells(), 1..6),
            rows in 1usize..260,
            schema in "[a-zA-Z_ .\"é]{0,12}",
            table in "[a-zA-Z_ .\"日]{1,12}",
            truncate_first in any::<bool>(),
        ) {
            let names: Vec<String> = (0..columns.len()).map(|i| format!("col {i} ✓")).collect();
            let declared: Vec<(&str, DataType)> = columns
                .iter()
                .zip(&names)
                .map(|((data_type, _), name)| (name.as_str(), *data_type))
                .collect();
            let mut encoder = RecordEncoder::new(&schema, &table, &declared, 64 * 1024);
            let mut expected = Vec::new();
            if truncate_first {
                encoder.push_truncate();
                expected.push(Record {
                    schema_name: Some(schema.clone()),
                    table_name: table.clone(),
                    r#type: RecordType::Truncate as i32,
                    data: Default::default(),
                });
            }
            for r in 0..rows {
                // Row r takes each column's sample r modulo the samples (NULL if none).
                let values: Vec<(Cell, Vec<u8>)> = columns
                    .iter()
                    .map(|(_, samples)| samples.get(r % samples.len().max(1)).cloned().unwrap_or((Cell::Null, vec![])))
                    .collect();
                let (cells, row, scratch) = lay_out(&values);
                // Every third row a DELETE carrying the first column (as its key) alone.
                let delete = r % 3 == 2 && !cells.is_empty();
                if delete {
                    encoder.push_delete(&[0], DecodedRow::new(&cells, &row, &scratch));
                } else {
                    encoder.push_upsert(DecodedRow::new(&cells, &row, &scratch));
                }
                expected.push(Record {
                    schema_name: Some(schema.clone()),
                    table_name: table.clone(),
                    r#type: if delete { RecordType::Delete } else { RecordType::Upsert } as i32,
                    data: declared
                        .iter()
                        .zip(&cells)
                        .take(if delete { 1 } else { cells.len() })
                        .map(|((name, data_type), cell)| (name.to_string(), reference_value(*data_type, cell, &row, &scratch)))
                        .collect(),
                });
            }
            encoder.finish();
            let mut decoded = Vec::new();
            while let Some(message) = encoder.take_ready() {
                let response = UpdateResponse::decode(message.bytes.clone()).expect("the bytes decode");
                let Some(Operation::Records(Records { records })) = response.operation else {
                    panic!("not a Records message: {response:?}");
                };
                prop_assert!(!records.is_empty() && records.len() <= MAX_RECORDS_PER_MESSAGE);
                prop_assert_eq!(records.len(), message.records);
                // And prost, encoding what it decoded, agrees on every byte's worth of length.
                let reencoded = UpdateResponse { operation: Some(Operation::Records(Records { records: records.clone() })) };
                prop_assert_eq!(reencoded.encoded_len(), message.bytes.len());
                decoded.extend(records);
            }
            prop_assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn a_record_larger_than_the_limit_goes_in_a_message_of_its_own() {
        let mut encoder = RecordEncoder::new("s", "t", &[("v", DataType::Binary)], 1000);
        let big = vec![7u8; 5000];
        let small = [1u8; 10];
        for bytes in [&small[..], &big[..], &small[..]] {
            let cell = Cell::Scratch {
                start: 0,
                end: bytes.len() as u32,
            };
            encoder.push_upsert(DecodedRow::new(&[cell], &[], bytes));
        }
        encoder.finish();
        let counts: Vec<usize> = std::iter::from_fn(|| encoder.take_ready())
            .map(|m| m.records)
            .collect();
        assert_eq!(counts, [1, 1, 1]);
    }

    #[test]
    fn varint_lengths() {
        for (value, len) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(value), len, "{value}");
            let mut buf = [0u8; 10];
            assert_eq!(write_varint(&mut buf, value), len);
        }
    }
}
