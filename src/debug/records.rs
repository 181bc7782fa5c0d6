//! The runner's reading of `Records` messages: every record's table, type, column names and
//! values as ranges into the message's bytes, parsed in one pass without an allocation per
//! value (the host side of `proto::records`).
//!
//! prost decodes a record's `map<string, ValueType>` into a map of owned strings: two
//! allocations per value on the runner's main thread and as many frees on the warehouse's,
//! which was about a third of a 1M-row run's CPU. Here a message's values stay in its bytes
//! until SQLite copies them in (`warehouse` binds them borrowed). Everything is checked as
//! prost checks it: lengths within the message, wire types, UTF-8 where a string is declared.
//!
//! Field numbers are those of the wire contract (`proto/`): `UpdateResponse.record` = 1,
//! `.records` = 6; `Records.records` = 1; `Record`: `schema_name` 1, `table_name` 2, `type` 3,
//! `data` 4 (map entries of `key` 1 and `value` 2); `ValueType`'s members 1 to 16.

use std::ops::Range;

use bytes::Bytes;

/// A `Timestamp`: seconds since the epoch and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

/// One `ValueType`, its text and bytes as ranges into the message.
#[derive(Debug, Clone, PartialEq)]
pub enum WireValue {
    /// No member set (a sender's mistake: a NULL is `null: true`).
    Empty,
    Null,
    Bool(bool),
    Short(i32),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    NaiveDate(Timestamp),
    NaiveDatetime(Timestamp),
    UtcDatetime(Timestamp),
    NaiveTime(Timestamp),
    Decimal(Range<usize>),
    Binary(Range<usize>),
    String(Range<usize>),
    Json(Range<usize>),
    Xml(Range<usize>),
}

/// One column of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: Range<usize>,
    pub value: WireValue,
}

/// One record: where its names and columns are.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub schema: Option<Range<usize>>,
    pub table: Range<usize>,
    /// `RecordType`, as sent.
    pub kind: i32,
    /// Its columns, in `RecordBatch::columns`.
    pub columns: Range<usize>,
}

/// The records of one `UpdateResponse`, and the message they point into.
#[derive(Debug, Clone, Default)]
pub struct RecordBatch {
    bytes: Bytes,
    pub records: Vec<Record>,
    pub columns: Vec<Column>,
}

/// A message that breaks the protobuf encoding or the wire contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a malformed Records message: {0}")]
pub struct Malformed(pub String);

impl RecordBatch {
    /// The records of `message`, an `UpdateResponse` whose operation is `record` or `records`;
    /// `Ok(None)` for any other operation (for prost to decode).
    pub fn parse_response(message: Bytes) -> Result<Option<RecordBatch>, Malformed> {
        let mut batch = RecordBatch {
            bytes: message.clone(),
            records: Vec::new(),
            columns: Vec::new(),
        };
        let mut reader = Reader::new(&message, 0..message.len());
        let mut found = false;
        while let Some((field, wire)) = reader.key()? {
            match (field, wire) {
                (1, LEN) => {
                    let record = reader.bytes()?;
                    batch.record(record)?;
                    found = true;
                }
                (6, LEN) => {
                    let records = reader.bytes()?;
                    let mut inner = Reader::new(&message, records);
                    while let Some((field, wire)) = inner.key()? {
                        match (field, wire) {
                            (1, LEN) => {
                                let record = inner.bytes()?;
                                batch.record(record)?;
                            }
                            _ => inner.skip(wire)?,
                        }
                    }
                    found = true;
                }
                (2..=5 | 7.., _) => return Ok(None),
                _ => reader.skip(wire)?,
            }
        }
        Ok(found.then_some(batch))
    }

    /// `records` as the runner reads them off the wire (encoded by prost, then parsed): for
    /// callers that hold prost's records (tests, the warehouse's one-record `apply`).
    pub fn of_records(records: Vec<crate::proto::Record>) -> Result<RecordBatch, Malformed> {
        use prost::Message as _;
        let message = crate::proto::UpdateResponse {
            operation: Some(crate::proto::update_response::Operation::Records(
                crate::proto::Records { records },
            )),
        };
        Ok(RecordBatch::parse_response(message.encode_to_vec().into())?.unwrap_or_default())
    }

    /// The text at `range` (checked to be UTF-8 when it was parsed).
    pub fn text(&self, range: &Range<usize>) -> &str {
        // SAFETY: every range handed out as text was validated by `Reader::text`.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[range.clone()]) }
    }

    pub fn slice(&self, range: &Range<usize>) -> &[u8] {
        &self.bytes[range.clone()]
    }

    /// The columns of `record`.
    pub fn columns_of(&self, record: &Record) -> &[Column] {
        &self.columns[record.columns.clone()]
    }

    fn record(&mut self, range: Range<usize>) -> Result<(), Malformed> {
        let bytes = self.bytes.clone();
        let mut reader = Reader::new(&bytes, range);
        let first = self.columns.len();
        let mut record = Record {
            schema: None,
            table: 0..0,
            kind: 0,
            columns: first..first,
        };
        while let Some((field, wire)) = reader.key()? {
            match (field, wire) {
                (1, LEN) => record.schema = Some(reader.text()?),
                (2, LEN) => record.table = reader.text()?,
                (3, VARINT) => record.kind = reader.varint()? as i32,
                (4, LEN) => {
                    let entry = reader.bytes()?;
                    let column = map_entry(&bytes, entry)?;
                    self.columns.push(column);
                }
                _ => reader.skip(wire)?,
            }
        }
        record.columns = first..self.columns.len();
        self.records.push(record);
        Ok(())
    }
}

/// One `data` map entry: the column name and its `ValueType`.
fn map_entry(bytes: &[u8], range: Range<usize>) -> Result<Column, Malformed> {
    let mut reader = Reader::new(bytes, range);
    let mut column = Column {
        name: 0..0,
        value: WireValue::Empty,
    };
    while let Some((field, wire)) = reader.key()? {
        match (field, wire) {
            (1, LEN) => column.name = reader.text()?,
            (2, LEN) => {
                let value = reader.bytes()?;
                column.value = value_type(bytes, value)?;
            }
            _ => reader.skip(wire)?,
        }
    }
    Ok(column)
}

/// A `ValueType` message (the last member set wins, as protobuf's oneof does).
fn value_type(bytes: &[u8], range: Range<usize>) -> Result<WireValue, Malformed> {
    let mut reader = Reader::new(bytes, range);
    let mut value = WireValue::Empty;
    while let Some((field, wire)) = reader.key()? {
        value = match (field, wire) {
            (1, VARINT) => {
                reader.varint()?;
                WireValue::Null
            }
            (2, VARINT) => WireValue::Bool(reader.varint()? != 0),
            (3, VARINT) => WireValue::Short(reader.varint()? as i32),
            (4, VARINT) => WireValue::Int(reader.varint()? as i32),
            (5, VARINT) => WireValue::Long(reader.varint()? as i64),
            (6, FIXED32) => WireValue::Float(f32::from_le_bytes(reader.fixed()?)),
            (7, FIXED64) => WireValue::Double(f64::from_le_bytes(reader.fixed()?)),
            (8, LEN) => WireValue::NaiveDate(timestamp(bytes, reader.bytes()?)?),
            (9, LEN) => WireValue::NaiveDatetime(timestamp(bytes, reader.bytes()?)?),
            (10, LEN) => WireValue::UtcDatetime(timestamp(bytes, reader.bytes()?)?),
            (11, LEN) => WireValue::Decimal(reader.text()?),
            (12, LEN) => WireValue::Binary(reader.bytes()?),
            (13, LEN) => WireValue::String(reader.text()?),
            (14, LEN) => WireValue::Json(reader.text()?),
            (15, LEN) => WireValue::Xml(reader.text()?),
            (16, LEN) => WireValue::NaiveTime(timestamp(bytes, reader.bytes()?)?),
            _ => {
                reader.skip(wire)?;
                continue;
            }
        };
    }
    Ok(value)
}

/// A `google.protobuf.Timestamp`.
fn timestamp(bytes: &[u8], range: Range<usize>) -> Result<Timestamp, Malformed> {
    let mut reader = Reader::new(bytes, range);
    let mut at = Timestamp::default();
    while let Some((field, wire)) = reader.key()? {
        match (field, wire) {
            (1, VARINT) => at.seconds = reader.varint()? as i64,
            (2, VARINT) => at.nanos = reader.varint()? as i32,
            _ => reader.skip(wire)?,
        }
    }
    Ok(at)
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Reads protobuf fields from `bytes[range]`, every read bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], range: Range<usize>) -> Self {
        Self {
            bytes,
            at: range.start,
            end: range.end,
        }
    }

    /// The next field's number and wire type; `None` at the end.
    #[inline]
    fn key(&mut self) -> Result<Option<(u32, u8)>, Malformed> {
        if self.at >= self.end {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3)
            .ok()
            .filter(|&f| f > 0)
            .ok_or_else(|| Malformed(format!("field number {}", key >> 3)))?;
        Ok(Some((field, (key & 7) as u8)))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .filter(|_| self.at < self.end)
                .ok_or_else(|| Malformed("a varint runs past its message".into()))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Malformed("a varint longer than ten bytes".into()))
    }

    /// A length-delimited field's contents, as a range.
    #[inline]
    fn bytes(&mut self) -> Result<Range<usize>, Malformed> {
        let length = usize::try_from(self.varint()?)
            .map_err(|_| Malformed("a length beyond memory".into()))?;
        let end = self
            .at
            .checked_add(length)
            .filter(|&end| end <= self.end)
            .ok_or_else(|| Malformed("a length runs past its message".into()))?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    /// A length-delimited string, checked to be UTF-8.
    #[inline]
    fn text(&mut self) -> Result<Range<usize>, Malformed> {
        let range = self.bytes()?;
        simdutf8::basic::from_utf8(&self.bytes[range.clone()])
            .map_err(|_| Malformed("a string that is not UTF-8".into()))?;
        Ok(range)
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let end = self
            .at
            .checked_add(N)
            .filter(|&end| end <= self.end)
            .ok_or_else(|| Malformed("a fixed-width value runs past its message".into()))?;
        let value = self.bytes[self.at..end].try_into().expect("N bytes");
        self.at = end;
        Ok(value)
    }

    fn skip(&mut self, wire: u8) -> Result<(), Malformed> {
        match wire {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.fixed::<8>().map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            FIXED32 => self.fixed::<4>().map(|_| ()),
            other => Err(Malformed(format!("wire type {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::value_type::Inner;
    use crate::proto::{update_response, Records, UpdateResponse, ValueType};
    use prost::Message as _;

    fn value(inner: Inner) -> ValueType {
        ValueType { inner: Some(inner) }
    }

    fn every_kind() -> crate::proto::Record {
        let ts = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        let data = [
            ("a_null", Inner::Null(true)),
            ("b_bool", Inner::Bool(true)),
            ("c_short", Inner::Short(-7)),
            ("d_int", Inner::Int(i32::MIN)),
            ("e_long", Inner::Long(i64::MAX)),
            ("f_float", Inner::Float(0.1)),
            ("g_double", Inner::Double(-2.5e300)),
            ("h_date", Inner::NaiveDate(ts(-62135596800, 0))),
            ("i_datetime", Inner::NaiveDatetime(ts(1, 999_999_000))),
            ("j_utc", Inner::UtcDatetime(ts(-1, 1000))),
            ("k_time", Inner::NaiveTime(ts(3600, 5000))),
            ("l_decimal", Inner::Decimal("-1.10".into())),
            ("m_binary", Inner::Binary(vec![0, 255, 7])),
            ("n_string", Inner::String("Zoë".into())),
            ("o_json", Inner::Json("{\"a\": 1}".into())),
            ("p_xml", Inner::Xml("<a/>".into())),
        ];
        crate::proto::Record {
            schema_name: Some("public".into()),
            table_name: "t".into(),
            r#type: 2,
            data: data
                .into_iter()
                .map(|(k, v)| (k.to_string(), value(v)))
                .collect(),
        }
    }

    /// Every value kind, read back exactly as prost wrote it.
    #[test]
    fn every_value_reads_back_as_prost_encodes_it() {
        let record = every_kind();
        let message = UpdateResponse {
            operation: Some(update_response::Operation::Records(Records {
                records: vec![record.clone(), record.clone()],
            })),
        };
        let batch = RecordBatch::parse_response(message.encode_to_vec().into())
            .unwrap()
            .unwrap();
        assert_eq!(batch.records.len(), 2);
        let parsed = &batch.records[1];
        assert_eq!(batch.text(parsed.schema.as_ref().unwrap()), "public");
        assert_eq!(batch.text(&parsed.table), "t");
        assert_eq!(parsed.kind, 2);
        let columns = batch.columns_of(parsed);
        assert_eq!(columns.len(), record.data.len());
        for (column, (name, expected)) in columns.iter().zip(&record.data) {
            assert_eq!(batch.text(&column.name), name);
            let same = match (&column.value, expected.inner.as_ref().unwrap()) {
                (WireValue::Null, Inner::Null(_)) => true,
                (WireValue::Bool(a), Inner::Bool(b)) => a == b,
                (WireValue::Short(a), Inner::Short(b)) | (WireValue::Int(a), Inner::Int(b)) => {
                    a == b
                }
                (WireValue::Long(a), Inner::Long(b)) => a == b,
                (WireValue::Float(a), Inner::Float(b)) => a.to_bits() == b.to_bits(),
                (WireValue::Double(a), Inner::Double(b)) => a.to_bits() == b.to_bits(),
                (
                    WireValue::NaiveDate(a)
                    | WireValue::NaiveDatetime(a)
                    | WireValue::UtcDatetime(a)
                    | WireValue::NaiveTime(a),
                    Inner::NaiveDate(b)
                    | Inner::NaiveDatetime(b)
                    | Inner::UtcDatetime(b)
                    | Inner::NaiveTime(b),
                ) => a.seconds == b.seconds && a.nanos == b.nanos,
                (WireValue::Binary(r), Inner::Binary(b)) => batch.slice(r) == b.as_slice(),
                (
                    WireValue::Decimal(r)
                    | WireValue::String(r)
                    | WireValue::Json(r)
                    | WireValue::Xml(r),
                    Inner::Decimal(s) | Inner::String(s) | Inner::Json(s) | Inner::Xml(s),
                ) => batch.text(r) == s,
                _ => false,
            };
            assert!(same, "{name}: {:?} vs {expected:?}", column.value);
        }
        // A single record (field 1) reads the same; another operation is left to prost.
        let single = UpdateResponse {
            operation: Some(update_response::Operation::Record(record)),
        };
        let batch = RecordBatch::parse_response(single.encode_to_vec().into())
            .unwrap()
            .unwrap();
        assert_eq!(batch.records.len(), 1);
        let checkpoint = UpdateResponse {
            operation: Some(update_response::Operation::Checkpoint(
                crate::proto::Checkpoint {
                    state_json: "{}".into(),
                },
            )),
        };
        assert!(
            RecordBatch::parse_response(checkpoint.encode_to_vec().into())
                .unwrap()
                .is_none()
        );
    }

    /// Cut short, lying about a length, or carrying a string that is not UTF-8: an error
    /// (never a panic, never a read past the message) wherever the damage is.
    #[test]
    fn malformed_messages_are_refused_wherever_they_break() {
        let message = UpdateResponse {
            operation: Some(update_response::Operation::Records(Records {
                records: vec![every_kind()],
            })),
        }
        .encode_to_vec();
        for cut in 1..message.len() {
            let _ = RecordBatch::parse_response(message[..cut].to_vec().into());
        }
        for at in 0..message.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut broken = message.clone();
                broken[at] ^= flip;
                let _ = RecordBatch::parse_response(broken.into());
            }
        }
        let mut not_utf8 = message.clone();
        let at = not_utf8
            .windows(3)
            .position(|w| w == "Zoë".as_bytes().get(..3).unwrap())
            .unwrap();
        not_utf8[at + 2] = 0xff;
        assert!(RecordBatch::parse_response(not_utf8.into()).is_err());
    }
}
