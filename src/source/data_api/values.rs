//! The Data API's values as the wire's: each result row becomes a `DataRow` body in the formats
//! the row decoder asked for, so that one decoder (and one encoder of `Records`) serves both
//! transports and a value arrives the same whichever way it came.
//!
//! The Data API returns each value as a JSON union (`longValue`, `doubleValue`,
//! `booleanValue`, `stringValue`, `blobValue`, `isNull`) and each column's type by name. Where
//! the decoder reads the binary form (integers, floats, booleans, timestamps, character
//! types) that form is written here from the value; everything else is the text the Data API
//! carries, which is the text the wire protocol carries (NUMERIC's exact digits, a DATE as ISO,
//! VARBYTE and SUPER as hex).

use aws_sdk_redshiftdata::types::Field;
use chrono::{NaiveDate, NaiveDateTime};

use crate::source::wire::{oid, Column, Format};

/// A column's type OID from the type name the Data API reports (Redshift's and PostgreSQL's
/// names for the same types); unknown names read as text.
pub fn type_oid(type_name: &str) -> u32 {
    match type_name.to_ascii_lowercase().as_str() {
        "bool" | "boolean" => oid::BOOL,
        "int2" | "smallint" => oid::INT2,
        "int4" | "integer" | "int" => oid::INT4,
        "int8" | "bigint" => oid::INT8,
        "float4" | "real" => oid::FLOAT4,
        "float8" | "float" | "double precision" => oid::FLOAT8,
        "numeric" | "decimal" => oid::NUMERIC,
        "char" => oid::CHAR,
        "bpchar" | "character" => oid::BPCHAR,
        "varchar" | "character varying" => oid::VARCHAR,
        "text" => oid::TEXT,
        "name" => oid::NAME,
        "date" => oid::DATE,
        "time" => oid::TIME,
        "timetz" => oid::TIMETZ,
        "timestamp" => oid::TIMESTAMP,
        "timestamptz" => oid::TIMESTAMPTZ,
        "varbyte" | "binary varying" => oid::VARBYTE,
        "bytea" => oid::BYTEA,
        "super" => oid::SUPER,
        "geometry" => oid::GEOMETRY,
        "geography" => oid::GEOGRAPHY,
        _ => oid::TEXT,
    }
}

/// Why a value could not be written in the wire's form. Never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub column: usize,
    pub reason: String,
}

/// Writes `fields` as a `DataRow` body (a column count, then each value's length and bytes,
/// -1 for NULL) into `out`, each value in its column's `format`.
pub fn data_row(
    fields: &[Field],
    columns: &[Column],
    formats: &[Format],
    out: &mut Vec<u8>,
) -> Result<(), ValueError> {
    out.clear();
    if fields.len() != columns.len() {
        return Err(ValueError {
            column: fields.len().min(columns.len()),
            reason: format!(
                "a row of {} values arrived for {} columns",
                fields.len(),
                columns.len()
            ),
        });
    }
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (index, field) in fields.iter().enumerate() {
        let format = formats.get(index).copied().unwrap_or(Format::Text);
        let length_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let written = match format {
            Format::Binary => binary(field, columns[index].type_oid, out),
            Format::Text => text(field, columns[index].type_oid, out),
        }
        .map_err(|reason| ValueError {
            column: index,
            reason,
        })?;
        let length = match written {
            Some(()) => i32::try_from(out.len() - length_at - 4).map_err(|_| ValueError {
                column: index,
                reason: "a value over 2 GiB".to_string(),
            })?,
            None => -1,
        };
        out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
    }
    Ok(())
}

/// A value as text (`None` for NULL): for catalog queries and counts.
pub fn text_value(field: &Field, type_oid: u32) -> Result<Option<String>, String> {
    let mut out = Vec::new();
    Ok(match text(field, type_oid, &mut out)? {
        Some(()) => Some(String::from_utf8(out).map_err(|_| "a value is not UTF-8".to_string())?),
        None => None,
    })
}

/// Appends the binary form of `field` (a type whose binary form the decoder reads).
fn binary(field: &Field, type_oid: u32, out: &mut Vec<u8>) -> Result<Option<()>, String> {
    let mismatch = || {
        format!(
            "a {} value arrived for a column of type {type_oid}",
            kind(field)
        )
    };
    match field {
        Field::IsNull(true) => return Ok(None),
        Field::LongValue(value) => match type_oid {
            oid::INT2 => out.extend_from_slice(
                &i16::try_from(*value)
                    .map_err(|_| "a SMALLINT out of range".to_string())?
                    .to_be_bytes(),
            ),
            oid::INT4 => out.extend_from_slice(
                &i32::try_from(*value)
                    .map_err(|_| "an INTEGER out of range".to_string())?
                    .to_be_bytes(),
            ),
            oid::INT8 => out.extend_from_slice(&value.to_be_bytes()),
            oid::FLOAT4 => out.extend_from_slice(&(*value as f32).to_be_bytes()),
            oid::FLOAT8 => out.extend_from_slice(&(*value as f64).to_be_bytes()),
            _ => return Err(mismatch()),
        },
        Field::DoubleValue(value) => match type_oid {
            oid::FLOAT4 => out.extend_from_slice(&(*value as f32).to_be_bytes()),
            oid::FLOAT8 => out.extend_from_slice(&value.to_be_bytes()),
            _ => return Err(mismatch()),
        },
        Field::BooleanValue(value) => match type_oid {
            oid::BOOL => out.push(u8::from(*value)),
            _ => return Err(mismatch()),
        },
        Field::StringValue(text) => match type_oid {
            oid::TIMESTAMP | oid::TIMESTAMPTZ => {
                out.extend_from_slice(&timestamp_micros(text)?.to_be_bytes());
            }
            oid::FLOAT4 => out.extend_from_slice(&(parse_float(text)? as f32).to_be_bytes()),
            oid::FLOAT8 => out.extend_from_slice(&parse_float(text)?.to_be_bytes()),
            oid::INT2 | oid::INT4 | oid::INT8 => {
                let value: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| "an integer column's value is not an integer".to_string())?;
                return binary(&Field::LongValue(value), type_oid, out);
            }
            oid::BOOL => out.push(u8::from(matches!(
                text.as_str(),
                "t" | "true" | "TRUE" | "True" | "1"
            ))),
            // Character types: their binary form is their text.
            _ => out.extend_from_slice(text.as_bytes()),
        },
        Field::BlobValue(blob) => out.extend_from_slice(blob.as_ref()),
        Field::IsNull(false) => return Err(mismatch()),
        _ => return Err("a value of a kind this connector does not know arrived".to_string()),
    }
    Ok(Some(()))
}

/// Appends the text form of `field`.
fn text(field: &Field, type_oid: u32, out: &mut Vec<u8>) -> Result<Option<()>, String> {
    match field {
        Field::IsNull(true) => return Ok(None),
        Field::StringValue(text) => out.extend_from_slice(text.as_bytes()),
        Field::LongValue(value) => out.extend_from_slice(value.to_string().as_bytes()),
        Field::DoubleValue(value) => {
            let text = if type_oid == oid::FLOAT4 {
                float_text(f64::from(*value as f32), (*value as f32).to_string())
            } else {
                float_text(*value, value.to_string())
            };
            out.extend_from_slice(text.as_bytes());
        }
        Field::BooleanValue(value) => out.extend_from_slice(if *value { b"t" } else { b"f" }),
        // Bytes as the wire's text carries VARBYTE: hex.
        Field::BlobValue(blob) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.reserve(blob.as_ref().len() * 2);
            for byte in blob.as_ref() {
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            }
        }
        Field::IsNull(false) => {
            return Err("a value marked as not NULL arrived without a value".to_string())
        }
        _ => return Err("a value of a kind this connector does not know arrived".to_string()),
    }
    Ok(Some(()))
}

/// PostgreSQL's spelling of the values JSON numbers cannot carry.
fn float_text(value: f64, shortest: String) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        shortest
    }
}

fn parse_float(text: &str) -> Result<f64, String> {
    match text.trim() {
        "NaN" | "nan" => Ok(f64::NAN),
        "Infinity" | "inf" | "infinity" => Ok(f64::INFINITY),
        "-Infinity" | "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        other => other
            .parse()
            .map_err(|_| "a floating-point column's value is not a number".to_string()),
    }
}

/// A timestamp's text (`YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]`, UTC for TIMESTAMPTZ as the
/// session's time zone is) as microseconds since 2000-01-01, the binary form. Years outside
/// 1-9999 (`... BC`, five digits) become a value the decoder refuses with its own message.
fn timestamp_micros(text: &str) -> Result<i64, String> {
    let text = text.trim();
    match text {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    if text.ends_with(" BC") || text.chars().take_while(char::is_ascii_digit).count() > 4 {
        return Ok(i64::MIN + 1);
    }
    let not_a_timestamp = || "a value is not a timestamp (YYYY-MM-DD HH:MM:SS)".to_string();
    // The offset, if any, follows the seconds: the last '+' or '-' after the time's colons.
    let time_at = text.find(' ').ok_or_else(not_a_timestamp)?;
    let (local, offset_seconds) = match text[time_at..].rfind(['+', '-']) {
        Some(at) => {
            let at = time_at + at;
            (
                &text[..at],
                parse_offset(&text[at..]).ok_or_else(not_a_timestamp)?,
            )
        }
        None => (text, 0),
    };
    let parsed = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S%.f")
        .map_err(|_| not_a_timestamp())?;
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let micros = (parsed - epoch)
        .num_microseconds()
        .ok_or_else(not_a_timestamp)?;
    Ok(micros - offset_seconds * 1_000_000)
}

/// `+HH`, `+HH:MM` or `+HHMM` (and `-`) as seconds east of UTC.
fn parse_offset(text: &str) -> Option<i64> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let digits: String = text[1..].chars().filter(char::is_ascii_digit).collect();
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (
            digits[..2].parse::<i64>().ok()?,
            digits[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    Some(sign * (hours * 3600 + minutes * 60))
}

fn kind(field: &Field) -> &'static str {
    match field {
        Field::BlobValue(_) => "blobValue",
        Field::BooleanValue(_) => "booleanValue",
        Field::DoubleValue(_) => "doubleValue",
        Field::IsNull(_) => "isNull",
        Field::LongValue(_) => "longValue",
        Field::StringValue(_) => "stringValue",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::wire::DataRowColumns;

    fn column(type_oid: u32) -> Column {
        Column {
            name: "c".into(),
            type_oid,
        }
    }

    fn values(body: &[u8]) -> Vec<Option<Vec<u8>>> {
        DataRowColumns::new(body)
            .unwrap()
            .map(|v| v.unwrap().map(|r| body[r].to_vec()))
            .collect()
    }

    #[test]
    fn rows_are_written_as_the_wire_writes_them() {
        let columns = [
            column(oid::INT2),
            column(oid::INT8),
            column(oid::FLOAT4),
            column(oid::BOOL),
            column(oid::TIMESTAMP),
            column(oid::NUMERIC),
            column(oid::VARCHAR),
            column(oid::INT4),
        ];
        let formats = [
            Format::Binary,
            Format::Binary,
            Format::Binary,
            Format::Binary,
            Format::Binary,
            Format::Text,
            Format::Binary,
            Format::Binary,
        ];
        let fields = [
            Field::LongValue(-2),
            Field::LongValue(i64::MAX),
            Field::DoubleValue(0.1f32 as f64),
            Field::BooleanValue(true),
            Field::StringValue("2000-01-01 00:00:01.5".into()),
            Field::StringValue("12345678901234567890123456789012345678".into()),
            Field::StringValue("é".into()),
            Field::IsNull(true),
        ];
        let mut body = Vec::new();
        data_row(&fields, &columns, &formats, &mut body).unwrap();
        assert_eq!(
            values(&body),
            vec![
                Some((-2i16).to_be_bytes().to_vec()),
                Some(i64::MAX.to_be_bytes().to_vec()),
                Some(0.1f32.to_be_bytes().to_vec()),
                Some(vec![1]),
                Some(1_500_000i64.to_be_bytes().to_vec()),
                Some(b"12345678901234567890123456789012345678".to_vec()),
                Some("é".as_bytes().to_vec()),
                None,
            ]
        );
    }

    #[test]
    fn a_value_that_does_not_fit_its_column_names_the_column_and_not_the_value() {
        let err = data_row(
            &[Field::LongValue(1), Field::LongValue(70_000)],
            &[column(oid::INT8), column(oid::INT2)],
            &[Format::Binary, Format::Binary],
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err.column, 1);
        assert!(!err.reason.contains("70000"), "{}", err.reason);
        assert!(data_row(&[Field::LongValue(1)], &[], &[], &mut Vec::new()).is_err());
    }

    #[test]
    fn timestamps_read_in_every_form_the_session_prints() {
        assert_eq!(timestamp_micros("2000-01-01 00:00:00").unwrap(), 0);
        assert_eq!(timestamp_micros("2000-01-01 00:00:00.000001").unwrap(), 1);
        assert_eq!(timestamp_micros("2000-01-01 01:00:00+01").unwrap(), 0);
        assert_eq!(timestamp_micros("1999-12-31 23:30:00-00:30").unwrap(), 0);
        assert_eq!(timestamp_micros("2000-01-01 00:00:00+0000").unwrap(), 0);
        assert_eq!(
            timestamp_micros("1970-01-01 00:00:00").unwrap(),
            -946_684_800_000_000
        );
        assert!(timestamp_micros("0001-01-01 00:00:00 BC").unwrap() < -(1 << 62));
        assert!(timestamp_micros("yesterday").is_err());
    }

    #[test]
    fn floats_json_cannot_carry_arrive_as_text() {
        let mut out = Vec::new();
        binary(&Field::StringValue("NaN".into()), oid::FLOAT8, &mut out).unwrap();
        assert!(f64::from_be_bytes(out[..8].try_into().unwrap()).is_nan());
        assert_eq!(
            text_value(&Field::DoubleValue(f64::INFINITY), oid::FLOAT8).unwrap(),
            Some("Infinity".to_string())
        );
        assert_eq!(
            text_value(&Field::DoubleValue(0.1f32 as f64), oid::FLOAT4).unwrap(),
            Some("0.1".to_string())
        );
        assert_eq!(
            text_value(&Field::BooleanValue(false), oid::BOOL).unwrap(),
            Some("f".to_string())
        );
        assert_eq!(text_value(&Field::IsNull(true), oid::TEXT).unwrap(), None);
        assert_eq!(
            text_value(
                &Field::BlobValue(aws_sdk_redshiftdata::primitives::Blob::new(vec![
                    0x00, 0xab, 0x7f
                ])),
                oid::VARBYTE
            )
            .unwrap(),
            Some("00ab7f".to_string())
        );
    }

    #[test]
    fn type_names_map_to_the_oids_the_decoder_checks() {
        assert_eq!(type_oid("int8"), oid::INT8);
        assert_eq!(type_oid("timestamptz"), oid::TIMESTAMPTZ);
        assert_eq!(type_oid("varbyte"), oid::VARBYTE);
        assert_eq!(type_oid("super"), oid::SUPER);
        assert_eq!(type_oid("something new"), oid::TEXT);
    }
}
