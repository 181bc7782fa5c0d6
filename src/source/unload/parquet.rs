//! Rows of an UNLOAD part file, as the cells the direct path makes of a `DataRow` (see
//! `source::value`), so one encoder serves both paths and a value arrives the same by either.
//!
//! The file is decoded by the `parquet` crate's Arrow reader a batch of rows at a time; each
//! column's array is matched to its type once per batch, then every value becomes a `Cell`:
//! numbers, booleans and timestamps as they are, text (and SUPER's JSON) copied into the row's
//! scratch buffer, decimals written there as their exact text. Nothing is allocated per value.
//!
//! Types are read from the file's own schema, never assumed: Redshift's TIMESTAMP columns may
//! be milli- or microseconds; TIMESTAMPTZ arrives as a timestamp without a zone, holding UTC.
//! A decimal may be Parquet's DECIMAL (Redshift's NUMERIC(p,s)) or text.

use std::io::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, PrimitiveArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::super::types::{is_decimal, SqlType};
use super::super::value::{timestamp_from_unix_micros, unix_date_cell, Cell};

/// Rows decoded per Arrow batch.
const BATCH_ROWS: usize = 4096;

/// Why a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The result column (`None`: the file as a whole).
    pub column: Option<usize>,
    pub reason: String,
}

impl FileError {
    fn file(reason: impl Into<String>) -> Self {
        Self {
            column: None,
            reason: reason.into(),
        }
    }
}

/// Decodes every row of `file`, whose columns are `types` in order, calling `row` with each
/// row's cells and scratch bytes (see [`Cell::bytes`], with an empty row). Returns the rows.
pub fn read_rows<E>(
    file: Bytes,
    types: &[SqlType],
    mut row: impl FnMut(&[Cell], &[u8]) -> Result<(), E>,
) -> Result<Result<u64, E>, FileError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|err| FileError::file(format!("not a Parquet file: {err}")))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|err| FileError::file(err.to_string()))?;
    let mut cells = Vec::with_capacity(types.len());
    let mut scratch = Vec::new();
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|err| FileError::file(err.to_string()))?;
        let columns = typed_columns(&batch, types)?;
        for index in 0..batch.num_rows() {
            cells.clear();
            scratch.clear();
            for (position, column) in columns.iter().enumerate() {
                let cell = column
                    .cell(index, &mut scratch)
                    .map_err(|reason| FileError {
                        column: Some(position),
                        reason,
                    })?;
                cells.push(cell);
            }
            if let Err(err) = row(&cells, &scratch) {
                return Ok(Err(err));
            }
            rows += 1;
        }
    }
    Ok(Ok(rows))
}

/// One column of a batch, matched to its type once.
enum Typed<'a> {
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Bool(&'a arrow_array::BooleanArray),
    Date(&'a PrimitiveArray<Date32Type>),
    Seconds(&'a PrimitiveArray<TimestampSecondType>),
    Millis(&'a PrimitiveArray<TimestampMillisecondType>),
    Micros(&'a PrimitiveArray<TimestampMicrosecondType>),
    Nanos(&'a PrimitiveArray<TimestampNanosecondType>),
    Decimal(&'a PrimitiveArray<Decimal128Type>, i8),
    /// Text (or JSON text); `decimal`: checked to be an exact decimal.
    Text(&'a arrow_array::StringArray, bool),
    LargeText(&'a arrow_array::LargeStringArray, bool),
    TextView(&'a arrow_array::StringViewArray, bool),
    /// Text stored as bytes (JSON written as binary): checked to be UTF-8.
    Binary(&'a arrow_array::BinaryArray),
}

struct Column<'a> {
    /// The column's validity bitmap, taken once per batch (asking the array for each value
    /// is a virtual call per cell: 9% of the read path's CPU in the profile).
    nulls: Option<&'a arrow_buffer::NullBuffer>,
    typed: Typed<'a>,
}

fn typed_columns<'a>(
    batch: &'a RecordBatch,
    types: &[SqlType],
) -> Result<Vec<Column<'a>>, FileError> {
    if batch.num_columns() != types.len() {
        return Err(FileError::file(format!(
            "the file has {} columns, the export {}",
            batch.num_columns(),
            types.len()
        )));
    }
    batch
        .columns()
        .iter()
        .zip(types)
        .enumerate()
        .map(|(position, (array, sql_type))| {
            let decimal = matches!(sql_type, SqlType::Numeric { .. });
            let typed = match array.data_type() {
                DataType::Int8 => Typed::I8(array.as_primitive()),
                DataType::Int16 => Typed::I16(array.as_primitive()),
                DataType::Int32 => Typed::I32(array.as_primitive()),
                DataType::Int64 => Typed::I64(array.as_primitive()),
                DataType::Float32 => Typed::F32(array.as_primitive()),
                DataType::Float64 => Typed::F64(array.as_primitive()),
                DataType::Boolean => Typed::Bool(array.as_boolean()),
                DataType::Date32 => Typed::Date(array.as_primitive()),
                DataType::Timestamp(TimeUnit::Second, _) => Typed::Seconds(array.as_primitive()),
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    Typed::Millis(array.as_primitive())
                }
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    Typed::Micros(array.as_primitive())
                }
                DataType::Timestamp(TimeUnit::Nanosecond, _) => Typed::Nanos(array.as_primitive()),
                DataType::Decimal128(_, scale) => Typed::Decimal(array.as_primitive(), *scale),
                DataType::Utf8 => Typed::Text(array.as_string(), decimal),
                DataType::LargeUtf8 => Typed::LargeText(array.as_string(), decimal),
                DataType::Utf8View => Typed::TextView(array.as_string_view(), decimal),
                DataType::Binary => Typed::Binary(array.as_binary()),
                other => {
                    return Err(FileError {
                        column: Some(position),
                        reason: format!("Parquet type {other} cannot be read as {sql_type:?}"),
                    })
                }
            };
            Ok(Column {
                nulls: array.nulls(),
                typed,
            })
        })
        .collect()
}

impl Column<'_> {
    #[inline]
    fn cell(&self, row: usize, scratch: &mut Vec<u8>) -> Result<Cell, String> {
        if self.nulls.is_some_and(|nulls| nulls.is_null(row)) {
            return Ok(Cell::Null);
        }
        Ok(match &self.typed {
            Typed::I8(a) => Cell::Int(a.value(row).into()),
            Typed::I16(a) => Cell::Int(a.value(row).into()),
            Typed::I32(a) => Cell::Int(a.value(row).into()),
            Typed::I64(a) => Cell::Int(a.value(row)),
            Typed::F32(a) => Cell::Float(a.value(row)),
            Typed::F64(a) => Cell::Double(a.value(row)),
            Typed::Bool(a) => Cell::Bool(a.value(row)),
            Typed::Date(a) => unix_date_cell(a.value(row).into())?,
            Typed::Seconds(a) => timestamp_from_unix_micros(
                a.value(row)
                    .checked_mul(1_000_000)
                    .ok_or("a timestamp out of range")?,
            )?,
            Typed::Millis(a) => timestamp_from_unix_micros(
                a.value(row)
                    .checked_mul(1000)
                    .ok_or("a timestamp out of range")?,
            )?,
            Typed::Micros(a) => timestamp_from_unix_micros(a.value(row))?,
            Typed::Nanos(a) => {
                let nanos = a.value(row);
                match timestamp_from_unix_micros(nanos.div_euclid(1000))? {
                    Cell::Timestamp { seconds, .. } => Cell::Timestamp {
                        seconds,
                        nanos: nanos.rem_euclid(1_000_000_000) as i32,
                    },
                    other => other,
                }
            }
            Typed::Decimal(a, scale) => {
                let start = scratch.len();
                write_decimal(scratch, a.value(row), *scale);
                scratch_cell(start, scratch)
            }
            Typed::Text(a, decimal) => text(a.value(row).as_bytes(), *decimal, scratch)?,
            Typed::LargeText(a, decimal) => text(a.value(row).as_bytes(), *decimal, scratch)?,
            Typed::TextView(a, decimal) => text(a.value(row).as_bytes(), *decimal, scratch)?,
            Typed::Binary(a) => {
                let bytes = a.value(row);
                if simdutf8::basic::from_utf8(bytes).is_err() {
                    return Err("text that is not UTF-8".to_string());
                }
                text(bytes, false, scratch)?
            }
        })
    }
}

#[inline]
fn text(bytes: &[u8], decimal: bool, scratch: &mut Vec<u8>) -> Result<Cell, String> {
    if decimal && !is_decimal(bytes) {
        return Err(crate::source::value::NOT_A_DECIMAL.to_string());
    }
    let start = scratch.len();
    scratch.extend_from_slice(bytes);
    Ok(scratch_cell(start, scratch))
}

#[inline]
fn scratch_cell(start: usize, scratch: &[u8]) -> Cell {
    Cell::Scratch {
        start: start as u32,
        end: scratch.len() as u32,
    }
}

/// The exact decimal text of an unscaled value: `-1230` at scale 2 is `-12.30`, as the
/// database writes a NUMERIC(p,2).
fn write_decimal(out: &mut Vec<u8>, unscaled: i128, scale: i8) {
    if unscaled < 0 {
        out.push(b'-');
    }
    let digits_start = out.len();
    let _ = write!(out, "{}", unscaled.unsigned_abs());
    if scale <= 0 {
        out.extend(std::iter::repeat_n(b'0', scale.unsigned_abs() as usize));
        return;
    }
    let scale = scale as usize;
    let digits = out.len() - digits_start;
    if digits <= scale {
        // 0.00ddd: pad the fraction with leading zeros.
        let pad = scale - digits + 1;
        out.splice(digits_start..digits_start, std::iter::repeat_n(b'0', pad));
    }
    let point = out.len() - scale;
    out.insert(point, b'.');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(unscaled: i128, scale: i8) -> String {
        let mut out = Vec::new();
        write_decimal(&mut out, unscaled, scale);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decimals_are_written_as_the_database_writes_them() {
        assert_eq!(decimal(-1230, 2), "-12.30");
        assert_eq!(decimal(5, 3), "0.005");
        assert_eq!(decimal(-5, 1), "-0.5");
        assert_eq!(decimal(0, 2), "0.00");
        assert_eq!(decimal(42, 0), "42");
        assert_eq!(decimal(i128::MIN, 10).len(), 41);
        assert_eq!(decimal(7, -2), "700");
    }
}
