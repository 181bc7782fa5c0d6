//! A row's values read straight from the bytes of its `DataRow`, and positions written as text.
//!
//! Each result column gets a [`Decoder`] once per query, chosen from its catalog type and the
//! type the server describes: binary for the types whose binary form Redshift shares with
//! PostgreSQL (integers, floats, booleans, character types, timestamps), text for the rest
//! (Redshift's binary NUMERIC is not PostgreSQL's; AWS's drivers make the same choice). Decoding a row then makes
//! one [`Cell`] per column: a plain value, or a byte range into the row, so nothing is copied or
//! allocated per value. Only hex text (VARBYTE, SUPER read as VARBYTE) and text that is not
//! UTF-8 are written out, into a scratch buffer reused from row to row.
//!
//! | catalog type | wire | cell |
//! |---|---|---|
//! | SMALLINT, INTEGER, BIGINT | binary | `Int` |
//! | REAL / DOUBLE PRECISION | binary | `Float` / `Double` |
//! | BOOLEAN | binary | `Bool` |
//! | CHAR, VARCHAR, TEXT | binary (UTF-8) | `Row` |
//! | TIMESTAMP, TIMESTAMPTZ | binary (µs since 2000-01-01) | `Timestamp` |
//! | NUMERIC | text | `Row` (the exact decimal) |
//! | DATE | text `YYYY-MM-DD` | `Timestamp` (midnight) |
//! | VARBYTE, SUPER | text hex | `Scratch` (the bytes; for SUPER the JSON) |
//! | TIME, TIMETZ, GEOMETRY, GEOGRAPHY, HLLSKETCH, others | text | `Row` |

use std::ops::Range;

use chrono::{DateTime, NaiveDate};

use super::types::{is_decimal, SqlType};
use super::wire::{oid, DataRowColumns, Format, WireError};

/// Seconds from 1970-01-01 to PostgreSQL's and Redshift's epoch, 2000-01-01.
const POSTGRES_EPOCH_SECONDS: i64 = 946_684_800;
/// 0001-01-01T00:00:00 and 9999-12-31T23:59:59: what a google.protobuf.Timestamp carries.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// One value of a row. `Copy` and free of lifetimes, so a per-row vector of cells is reused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f32),
    Double(f64),
    /// NAIVE_DATE, NAIVE_DATETIME, UTC_DATETIME: seconds and nanoseconds since 1970 (as UTC).
    Timestamp {
        seconds: i64,
        nanos: i32,
    },
    /// UTF-8 (or, for binary columns, raw) bytes of the row, by offset into the `DataRow` body.
    Row {
        start: u32,
        end: u32,
    },
    /// Bytes decoded into the row's scratch buffer.
    Scratch {
        start: u32,
        end: u32,
    },
}

impl Cell {
    /// The bytes a `Row` or `Scratch` cell refers to.
    #[inline]
    pub fn bytes<'a>(&self, row: &'a [u8], scratch: &'a [u8]) -> &'a [u8] {
        match *self {
            Cell::Row { start, end } => &row[start as usize..end as usize],
            Cell::Scratch { start, end } => &scratch[start as usize..end as usize],
            _ => &[],
        }
    }
}

/// A decoded row: its cells and the two buffers they point into, the row's wire bytes
/// (`Cell::Row`) and the bytes the decoder rewrote (`Cell::Scratch`). Only this view resolves a
/// cell to its bytes, so no caller needs to know which buffer a cell points into.
#[derive(Debug, Clone, Copy)]
pub struct DecodedRow<'a> {
    cells: &'a [Cell],
    body: &'a [u8],
    scratch: &'a [u8],
}

impl<'a> DecodedRow<'a> {
    #[inline]
    pub fn new(cells: &'a [Cell], body: &'a [u8], scratch: &'a [u8]) -> Self {
        Self {
            cells,
            body,
            scratch,
        }
    }

    /// The row's values, in the order of its SELECT list.
    #[inline]
    pub fn cells(&self) -> &'a [Cell] {
        self.cells
    }

    /// The bytes of one of this row's cells (empty for cells that hold their value).
    #[inline]
    pub fn bytes(&self, cell: &Cell) -> &'a [u8] {
        cell.bytes(self.body, self.scratch)
    }

    /// The same row with its first `columns` values only (the ones sent; the rest were read
    /// for the position).
    #[inline]
    pub fn first(&self, columns: usize) -> Self {
        Self {
            cells: &self.cells[..columns],
            ..*self
        }
    }

    /// The row's wire bytes and its scratch, for copying the row (see `HeldRows`).
    #[inline]
    pub fn buffers(&self) -> (&'a [u8], &'a [u8]) {
        (self.body, self.scratch)
    }
}

/// How one result column's bytes become a [`Cell`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    /// Binary timestamp (TIMESTAMP and TIMESTAMPTZ alike: microseconds, UTC for the latter).
    Timestamp,
    /// Text that must be UTF-8 (binary character types share their text form).
    Utf8,
    /// NUMERIC as text: its exact decimal.
    Decimal,
    /// DATE as ISO text.
    Date,
    /// Hex text (VARBYTE's form; PostgreSQL's BYTEA prefixes `\x`): the bytes.
    Hex,
    /// Hex text of JSON (SUPER read through JSON_SERIALIZE_TO_VARBYTE): the JSON text.
    HexJson,
}

impl Decoder {
    /// The decoder and wire format for a column of `sql_type` that the server describes as
    /// `type_oid`, or why the two do not fit (the column changed since the catalog was read).
    pub fn for_column(sql_type: &SqlType, type_oid: u32) -> Result<(Decoder, Format), String> {
        let binary = |decoder, expected: &[u32]| {
            if expected.contains(&type_oid) {
                Ok((decoder, Format::Binary))
            } else {
                Err(format!(
                    "the server describes it as type {type_oid}, not {sql_type:?}; its type changed since the catalog was read"
                ))
            }
        };
        match sql_type {
            SqlType::SmallInt => binary(Decoder::Int2, &[oid::INT2]),
            SqlType::Integer => binary(Decoder::Int4, &[oid::INT4]),
            SqlType::BigInt => binary(Decoder::Int8, &[oid::INT8]),
            SqlType::Real => binary(Decoder::Float4, &[oid::FLOAT4]),
            SqlType::Double => binary(Decoder::Float8, &[oid::FLOAT8]),
            SqlType::Boolean => binary(Decoder::Bool, &[oid::BOOL]),
            SqlType::Timestamp => binary(Decoder::Timestamp, &[oid::TIMESTAMP]),
            SqlType::TimestampTz => binary(Decoder::Timestamp, &[oid::TIMESTAMPTZ]),
            SqlType::Char { .. } | SqlType::Varchar { .. } | SqlType::Text
                if oid::binary_is_trusted(type_oid) =>
            {
                binary(
                    Decoder::Utf8,
                    &[oid::BPCHAR, oid::CHAR, oid::VARCHAR, oid::TEXT, oid::NAME],
                )
            }
            SqlType::Numeric { .. } => Ok((Decoder::Decimal, Format::Text)),
            SqlType::Date => Ok((Decoder::Date, Format::Text)),
            SqlType::VarByte | SqlType::Bytea => Ok((Decoder::Hex, Format::Text)),
            SqlType::Super => Ok((Decoder::HexJson, Format::Text)),
            _ => Ok((Decoder::Utf8, Format::Text)),
        }
    }

    /// Reads one non-NULL value.
    #[inline]
    fn decode(
        self,
        body: &[u8],
        range: Range<usize>,
        scratch: &mut Vec<u8>,
    ) -> Result<Cell, String> {
        let bytes = &body[range.clone()];
        let fixed = |n: usize| -> Result<&[u8], String> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(format!(
                    "{n}-byte value expected, {} bytes arrived",
                    bytes.len()
                ))
            }
        };
        Ok(match self {
            Decoder::Int2 => Cell::Int(i16::from_be_bytes(fixed(2)?.try_into().unwrap()).into()),
            Decoder::Int4 => Cell::Int(i32::from_be_bytes(fixed(4)?.try_into().unwrap()).into()),
            Decoder::Int8 => Cell::Int(i64::from_be_bytes(fixed(8)?.try_into().unwrap())),
            Decoder::Float4 => Cell::Float(f32::from_be_bytes(fixed(4)?.try_into().unwrap())),
            Decoder::Float8 => Cell::Double(f64::from_be_bytes(fixed(8)?.try_into().unwrap())),
            Decoder::Bool => Cell::Bool(fixed(1)?[0] != 0),
            Decoder::Timestamp => {
                let micros = i64::from_be_bytes(fixed(8)?.try_into().unwrap());
                timestamp_from_micros(micros)?
            }
            Decoder::Utf8 => utf8(body, range, scratch),
            Decoder::Decimal => {
                if !is_decimal(bytes) {
                    return Err(NOT_A_DECIMAL.to_string());
                }
                row_cell(range)
            }
            Decoder::Date => {
                let days = parse_date(bytes)?;
                Cell::Timestamp {
                    seconds: days * 86_400,
                    nanos: 0,
                }
            }
            Decoder::Hex => hex_into(bytes, scratch)?,
            Decoder::HexJson => {
                let cell = hex_into(bytes, scratch)?;
                let Cell::Scratch { start, end } = cell else {
                    unreachable!("hex decodes into the scratch buffer")
                };
                // JSON is UTF-8 by definition; repair rather than fail the table if not.
                let decoded = &scratch[start as usize..end as usize];
                if std::str::from_utf8(decoded).is_ok() {
                    cell
                } else {
                    let repaired = String::from_utf8_lossy(decoded).into_owned();
                    scratch.truncate(start as usize);
                    push_scratch(scratch, repaired.as_bytes())
                }
            }
        })
    }
}

/// The decoders of one query's result columns.
#[derive(Debug, Clone)]
pub struct RowDecoder {
    decoders: Vec<Decoder>,
}

/// A value that could not be read, by result column.
#[derive(Debug)]
pub struct DecodeError {
    pub column: usize,
    pub reason: String,
}

impl RowDecoder {
    pub fn new(decoders: Vec<Decoder>) -> Self {
        Self { decoders }
    }

    /// Reads every column of a `DataRow` body into `cells` (cleared first); decoded bytes go
    /// into `scratch` (cleared first).
    #[inline]
    pub fn decode(
        &self,
        body: &[u8],
        cells: &mut Vec<Cell>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), DecodeError> {
        cells.clear();
        scratch.clear();
        let columns = DataRowColumns::new(body).map_err(|err| protocol_error(0, err))?;
        for (index, column) in columns.enumerate() {
            let decoder = *self.decoders.get(index).ok_or_else(|| DecodeError {
                column: index,
                reason: "the row has more columns than the query".to_string(),
            })?;
            let cell = match column.map_err(|err| protocol_error(index, err))? {
                None => Cell::Null,
                Some(range) => {
                    decoder
                        .decode(body, range, scratch)
                        .map_err(|reason| DecodeError {
                            column: index,
                            reason,
                        })?
                }
            };
            cells.push(cell);
        }
        if cells.len() != self.decoders.len() {
            return Err(DecodeError {
                column: cells.len(),
                reason: "the row has fewer columns than the query".to_string(),
            });
        }
        Ok(())
    }
}

fn protocol_error(column: usize, err: WireError) -> DecodeError {
    DecodeError {
        column,
        reason: err.to_string(),
    }
}

#[inline]
fn row_cell(range: Range<usize>) -> Cell {
    Cell::Row {
        start: range.start as u32,
        end: range.end as u32,
    }
}

#[inline]
fn push_scratch(scratch: &mut Vec<u8>, bytes: &[u8]) -> Cell {
    let start = scratch.len();
    scratch.extend_from_slice(bytes);
    Cell::Scratch {
        start: start as u32,
        end: scratch.len() as u32,
    }
}

/// Text as it is when it is UTF-8 (always, from Redshift); otherwise repaired into the scratch
/// buffer with U+FFFD, because hosts cannot decode a message with invalid UTF-8 in a string and
/// one bad value must not stop the table.
#[inline]
fn utf8(body: &[u8], range: Range<usize>, scratch: &mut Vec<u8>) -> Cell {
    let bytes = &body[range.clone()];
    // simdutf8: the std check took 8% of the server's time on a narrow table.
    if simdutf8::basic::from_utf8(bytes).is_ok() {
        row_cell(range)
    } else {
        push_scratch(scratch, String::from_utf8_lossy(bytes).as_bytes())
    }
}

/// Decodes hex text (either case; PostgreSQL's `\x` prefix allowed) into the scratch buffer.
fn hex_into(text: &[u8], scratch: &mut Vec<u8>) -> Result<Cell, String> {
    let digits = text.strip_prefix(b"\\x").unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err("hex text of odd length".to_string());
    }
    let start = scratch.len();
    scratch.reserve(digits.len() / 2);
    for pair in digits.chunks_exact(2) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(high), Some(low)) => scratch.push(high << 4 | low),
            _ => {
                scratch.truncate(start);
                return Err("text that is not hex".to_string());
            }
        }
    }
    Ok(Cell::Scratch {
        start: start as u32,
        end: scratch.len() as u32,
    })
}

#[inline]
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A binary timestamp as a connector timestamp, if a google.protobuf.Timestamp (and hosts) can
/// carry it: years 0001-9999. Redshift stores years from 4713 BC to 294276; such a value fails
/// with the fix rather than being dropped or altered.
fn timestamp_from_micros(micros: i64) -> Result<Cell, String> {
    let seconds = micros
        .div_euclid(1_000_000)
        .saturating_add(POSTGRES_EPOCH_SECONDS);
    let nanos = (micros.rem_euclid(1_000_000) * 1000) as i32;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return Err(out_of_range());
    }
    Ok(Cell::Timestamp { seconds, nanos })
}

/// A timestamp in microseconds since 1970 (as Parquet files carry them), under the same
/// range rule as the wire's.
pub fn timestamp_from_unix_micros(micros: i64) -> Result<Cell, String> {
    const POSTGRES_EPOCH_MICROS: i64 = POSTGRES_EPOCH_SECONDS * 1_000_000;
    match micros.checked_sub(POSTGRES_EPOCH_MICROS) {
        Some(since_2000) => timestamp_from_micros(since_2000),
        None => Err(out_of_range()),
    }
}

/// A date in days since 1970 (Parquet's DATE), under the same range rule as the wire's.
pub fn unix_date_cell(days: i64) -> Result<Cell, String> {
    let seconds = days
        .checked_mul(86_400)
        .filter(|s| (MIN_SECONDS..=MAX_SECONDS).contains(s))
        .ok_or_else(out_of_range)?;
    Ok(Cell::Timestamp { seconds, nanos: 0 })
}

/// Why a value cannot be read. No message quotes the value: row values never reach a Warning,
/// an error or a log (the column and table are named by the caller).
pub const NOT_A_DECIMAL: &str =
    "a value is not a finite decimal number (NaN or an infinity); correct it in the source or deselect the column";

/// A date or timestamp outside what the protocol carries (the value itself is not quoted).
fn out_of_range() -> String {
    "a value is outside the years 0001-9999 that a connector timestamp can carry; correct it in the source or deselect the column".to_string()
}

/// `YYYY-MM-DD` (DateStyle ISO) as days since 1970-01-01. Years before 1 (`... BC`) and after
/// 9999 are outside what a connector timestamp carries.
fn parse_date(text: &[u8]) -> Result<i64, String> {
    let digits = |range: Range<usize>| -> Option<i64> {
        text.get(range)?.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    if text.ends_with(b" BC") || text.iter().take_while(|b| b.is_ascii_digit()).count() > 4 {
        return Err(out_of_range());
    }
    let parsed = (text.len() == 10 && text[4] == b'-' && text[7] == b'-')
        .then(|| Some((digits(0..4)?, digits(5..7)?, digits(8..10)?)))
        .flatten()
        .and_then(|(y, m, d)| NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32));
    match parsed {
        Some(date) if (1..=9999).contains(&chrono::Datelike::year(&date)) => Ok(date
            .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days()),
        Some(_) => Err(out_of_range()),
        None => Err("a value is not an ISO date (YYYY-MM-DD)".to_string()),
    }
}

/// The last row's cursor and key values, copied out of the row (a few bytes) so that a
/// checkpoint can name them after the row's buffer is gone.
#[derive(Debug, Clone, Default)]
pub struct SavedValues {
    cells: Vec<Cell>,
    bytes: Vec<u8>,
}

impl SavedValues {
    /// Copies the cells at `indexes` (and the bytes they refer to).
    #[inline]
    pub fn save(&mut self, indexes: &[usize], row: DecodedRow<'_>) {
        self.cells.clear();
        self.bytes.clear();
        for &index in indexes {
            let cell = row.cells()[index];
            let saved = match cell {
                Cell::Row { .. } | Cell::Scratch { .. } => {
                    push_scratch(&mut self.bytes, row.bytes(&cell))
                }
                other => other,
            };
            self.cells.push(saved);
        }
    }

    /// The saved values as position texts, in the order of `types` (`None` for NULL).
    pub fn texts(&self, types: &[&SqlType]) -> Vec<Option<String>> {
        self.cells
            .iter()
            .zip(types)
            .map(|(cell, sql_type)| position_text(sql_type, cell, &self.bytes))
            .collect()
    }
}

/// A value as the text [`SqlType::param_expr`] casts back: integers and decimals as digits,
/// floats as the shortest text that reads back to the same float, timestamps to the
/// microsecond, text as it is.
pub fn position_text(sql_type: &SqlType, cell: &Cell, bytes: &[u8]) -> Option<String> {
    Some(match *cell {
        Cell::Null => return None,
        Cell::Bool(v) => v.to_string(),
        Cell::Int(v) => v.to_string(),
        Cell::Float(v) => float_text(v.into(), v.to_string()),
        Cell::Double(v) => float_text(v, v.to_string()),
        Cell::Timestamp { seconds, nanos } => {
            let at = DateTime::from_timestamp(seconds, nanos as u32)?.naive_utc();
            match sql_type {
                SqlType::Date => at.format("%Y-%m-%d").to_string(),
                SqlType::TimestampTz => at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
                _ => at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            }
        }
        Cell::Row { .. } => String::from_utf8_lossy(cell.bytes(bytes, &[])).into_owned(),
        Cell::Scratch { .. } => String::from_utf8_lossy(cell.bytes(&[], bytes)).into_owned(),
    })
}

/// Bytes that are equal exactly when two cursor values are equal in the scan's order, so that
/// the rows of one value can be told from the next (`sync::position` holds them back by it): a
/// tag for NULL, then the value. Binary integers, booleans and timestamps are exact as they
/// are; floats are equal at -0 and 0 (as SQL compares them); decimals equal at `1.5` and `1.50`
/// (PostgreSQL keeps the scale of an unconstrained NUMERIC; Redshift's is always declared);
/// text by its bytes (the scan orders the text cursor of a table without a key by its bytes,
/// see `source::scan`).
pub fn group_key(sql_type: &SqlType, cell: &Cell, row: &DecodedRow<'_>, out: &mut Vec<u8>) {
    out.push(u8::from(*cell != Cell::Null));
    match *cell {
        Cell::Null => {}
        Cell::Bool(v) => out.push(u8::from(v)),
        Cell::Int(v) => out.extend_from_slice(&v.to_be_bytes()),
        Cell::Float(v) => out.extend_from_slice(&canonical_float(f64::from(v)).to_be_bytes()),
        Cell::Double(v) => out.extend_from_slice(&canonical_float(v).to_be_bytes()),
        Cell::Timestamp { seconds, nanos } => {
            out.extend_from_slice(&seconds.to_be_bytes());
            out.extend_from_slice(&nanos.to_be_bytes());
        }
        Cell::Row { .. } | Cell::Scratch { .. } => {
            let bytes = row.bytes(cell);
            match sql_type {
                SqlType::Numeric { .. } => out.extend_from_slice(canonical_decimal(bytes)),
                _ => out.extend_from_slice(bytes),
            }
        }
    }
}

/// The bits of a float, one per value SQL tells apart: -0 is 0, every NaN is one NaN.
fn canonical_float(value: f64) -> u64 {
    if value == 0.0 {
        0
    } else if value.is_nan() {
        f64::NAN.to_bits()
    } else {
        value.to_bits()
    }
}

/// A decimal's text without trailing fractional zeros (`-1.500` -> `-1.5`, `2.00` -> `2`,
/// `-0.0` -> `0`).
fn canonical_decimal(text: &[u8]) -> &[u8] {
    let trimmed = match text.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let end = text.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1);
            let end = if end == dot + 1 { dot } else { end.max(dot) };
            &text[..end]
        }
        None => text,
    };
    match trimmed {
        b"-0" => b"0",
        other => other,
    }
}

/// Rust prints the shortest text that reads back to the same float, which the server parses
/// exactly; only the special values are spelled differently, and -0 is written 0 (equal in
/// SQL, so one value has one position).
fn float_text(value: f64, shortest: String) -> String {
    if value == 0.0 {
        "0".to_string()
    } else if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        shortest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(decoder: Decoder, bytes: &[u8]) -> (Result<Cell, String>, Vec<u8>) {
        let mut scratch = Vec::new();
        let cell = decoder.decode(bytes, 0..bytes.len(), &mut scratch);
        (cell, scratch)
    }

    #[test]
    fn binary_values_decode() {
        assert_eq!(
            decode_one(Decoder::Int2, &(-7i16).to_be_bytes()).0,
            Ok(Cell::Int(-7))
        );
        assert_eq!(
            decode_one(Decoder::Int8, &i64::MIN.to_be_bytes()).0,
            Ok(Cell::Int(i64::MIN))
        );
        assert_eq!(decode_one(Decoder::Bool, &[1]).0, Ok(Cell::Bool(true)));
        assert_eq!(
            decode_one(Decoder::Float8, &f64::NAN.to_be_bytes())
                .0
                .map(|c| matches!(c, Cell::Double(v) if v.is_nan())),
            Ok(true)
        );
        assert!(decode_one(Decoder::Int4, &[0, 1]).0.is_err());
    }

    #[test]
    fn timestamps_are_microseconds_since_2000() {
        assert_eq!(
            decode_one(Decoder::Timestamp, &0i64.to_be_bytes()).0,
            Ok(Cell::Timestamp {
                seconds: 946_684_800,
                nanos: 0
            })
        );
        // One microsecond before the epoch.
        assert_eq!(
            decode_one(Decoder::Timestamp, &(-1i64).to_be_bytes()).0,
            Ok(Cell::Timestamp {
                seconds: 946_684_799,
                nanos: 999_999_000
            })
        );
        let infinity = decode_one(Decoder::Timestamp, &i64::MAX.to_be_bytes()).0;
        assert!(infinity.unwrap_err().contains("0001-9999"));
    }

    #[test]
    fn dates_parse_and_years_outside_1_to_9999_are_refused() {
        assert_eq!(parse_date(b"1970-01-02"), Ok(1));
        assert_eq!(parse_date(b"0001-01-01"), Ok(-719_162));
        assert!(parse_date(b"9999-12-31").is_ok());
        assert!(parse_date(b"0001-03-04 BC")
            .unwrap_err()
            .contains("0001-9999"));
        assert!(parse_date(b"10000-01-01")
            .unwrap_err()
            .contains("deselect the column"));
        assert!(parse_date(b"01/02/2024")
            .unwrap_err()
            .contains("not an ISO date"));
    }

    #[test]
    fn hex_text_decodes_with_or_without_the_bytea_prefix() {
        let (cell, scratch) = decode_one(Decoder::Hex, b"00ff7F");
        assert_eq!(cell.unwrap().bytes(&[], &scratch), [0x00, 0xff, 0x7f]);
        let (cell, scratch) = decode_one(Decoder::Hex, b"\\xdeadbeef");
        assert_eq!(cell.unwrap().bytes(&[], &scratch), [0xde, 0xad, 0xbe, 0xef]);
        assert!(decode_one(Decoder::Hex, b"0g").0.is_err());
        assert!(decode_one(Decoder::Hex, b"abc").0.is_err());
    }

    #[test]
    fn json_from_hex_and_text_that_is_not_utf8_are_repaired_not_refused() {
        let (cell, scratch) = decode_one(Decoder::HexJson, b"5b312c2261225d");
        assert_eq!(cell.unwrap().bytes(&[], &scratch), b"[1,\"a\"]");
        let (cell, scratch) = decode_one(Decoder::HexJson, b"22ff22");
        assert_eq!(
            std::str::from_utf8(cell.unwrap().bytes(&[], &scratch)).unwrap(),
            "\"\u{fffd}\""
        );
        let bytes = b"caf\xe9";
        let (cell, scratch) = decode_one(Decoder::Utf8, bytes);
        assert_eq!(
            std::str::from_utf8(cell.unwrap().bytes(bytes, &scratch)).unwrap(),
            "caf\u{fffd}"
        );
    }

    #[test]
    fn decimals_are_kept_as_text_and_checked() {
        let bytes = b"-12.50";
        assert_eq!(
            decode_one(Decoder::Decimal, bytes).0,
            Ok(Cell::Row { start: 0, end: 6 })
        );
        assert!(decode_one(Decoder::Decimal, b"NaN").0.is_err());
    }

    #[test]
    fn formats_follow_the_trusted_binary_types() {
        let int = Decoder::for_column(&SqlType::Integer, oid::INT4).unwrap();
        assert_eq!(int, (Decoder::Int4, Format::Binary));
        let numeric = SqlType::Numeric {
            precision: Some(10),
            scale: Some(2),
        };
        assert_eq!(
            Decoder::for_column(&numeric, oid::NUMERIC).unwrap(),
            (Decoder::Decimal, Format::Text)
        );
        assert_eq!(
            Decoder::for_column(&SqlType::Super, oid::VARBYTE).unwrap(),
            (Decoder::HexJson, Format::Text)
        );
        assert_eq!(
            Decoder::for_column(&SqlType::Geometry, oid::GEOMETRY).unwrap(),
            (Decoder::Utf8, Format::Text)
        );
        // A column whose type changed since the catalog was read.
        assert!(Decoder::for_column(&SqlType::Integer, oid::INT8).is_err());
    }

    #[test]
    fn group_keys_are_equal_exactly_for_values_sql_finds_equal() {
        let key = |sql_type: &SqlType, cell: Cell, row: &[u8]| {
            let mut out = Vec::new();
            group_key(sql_type, &cell, &DecodedRow::new(&[], row, &[]), &mut out);
            out
        };
        let double = |v| key(&SqlType::Double, Cell::Double(v), &[]);
        assert_eq!(double(0.0), double(-0.0));
        assert_eq!(double(f64::NAN), double(-f64::NAN));
        assert_ne!(double(1.0), double(1.0 + f64::EPSILON));
        let numeric = SqlType::Numeric {
            precision: None,
            scale: None,
        };
        let decimal = |text: &[u8]| {
            key(
                &numeric,
                Cell::Row {
                    start: 0,
                    end: text.len() as u32,
                },
                text,
            )
        };
        assert_eq!(decimal(b"1.50"), decimal(b"1.5"));
        assert_eq!(decimal(b"2.000"), decimal(b"2"));
        assert_eq!(decimal(b"-0.00"), decimal(b"0"));
        assert_eq!(decimal(b"10"), decimal(b"10.0"));
        assert_ne!(decimal(b"10"), decimal(b"1"));
        assert_ne!(decimal(b"0.10"), decimal(b"0.01"));
        // NULL is neither an empty text nor a zero.
        let empty = key(&SqlType::Text, Cell::Row { start: 0, end: 0 }, b"");
        assert_ne!(key(&SqlType::Text, Cell::Null, b""), empty);
        assert_ne!(
            key(&SqlType::Integer, Cell::Null, b""),
            key(&SqlType::Integer, Cell::Int(0), b"")
        );
    }

    #[test]
    fn saved_values_render_as_positions() {
        let row = b"xxabc";
        let cells = [
            Cell::Int(42),
            Cell::Row { start: 2, end: 5 },
            Cell::Timestamp {
                seconds: 1_704_067_200,
                nanos: 1000,
            },
            Cell::Null,
        ];
        let mut saved = SavedValues::default();
        saved.save(&[2, 1, 0, 3], DecodedRow::new(&cells, row, &[]));
        let types = [
            &SqlType::Timestamp,
            &SqlType::Text,
            &SqlType::Integer,
            &SqlType::Integer,
        ];
        assert_eq!(
            saved.texts(&types),
            vec![
                Some("2024-01-01 00:00:00.000001".to_string()),
                Some("abc".to_string()),
                Some("42".to_string()),
                None
            ]
        );
    }
}
