//! One wire value (`ValueType`) to one SQLite value, and the row hash of keyless tables.
//!
//! The mapping keeps every value exact and sortable as text where SQLite has no type for it:
//!
//! | wire value                 | SQLite value                                   |
//! |----------------------------|------------------------------------------------|
//! | null                       | NULL                                           |
//! | bool                       | INTEGER 0/1                                    |
//! | short, int, long           | INTEGER                                        |
//! | float                      | REAL, from the float's shortest decimal form   |
//! | double                     | REAL (NaN as TEXT `NaN`: SQLite stores NaN as NULL) |
//! | decimal                    | TEXT, the exact decimal string                 |
//! | naive_date                 | TEXT `YYYY-MM-DD`                              |
//! | naive_datetime             | TEXT `YYYY-MM-DDTHH:MM:SS.ffffff`              |
//! | utc_datetime               | TEXT `YYYY-MM-DDTHH:MM:SS.ffffffZ`             |
//! | naive_time                 | TEXT `HH:MM:SS.ffffff`                         |
//! | binary                     | BLOB                                           |
//! | string, json, xml          | TEXT                                           |
//!
//! Timestamps keep microseconds (what Redshift stores); ISO-8601 text of one fixed width sorts
//! in time order, so SQL comparisons on it work.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use sha2::{Digest, Sha256};

use crate::debug::records::{RecordBatch, Timestamp, WireValue};
use crate::proto::DataType;

/// Converts one wire value (of `batch`). `Err` says why the value cannot be stored (a
/// connector bug).
pub fn to_sql(value: &WireValue, batch: &RecordBatch) -> Result<Value, String> {
    Ok(match value {
        WireValue::Empty => {
            return Err(
                "the value is empty (ValueType with no member set; a NULL is `null: true`)".into(),
            )
        }
        WireValue::Null => Value::Null,
        WireValue::Bool(b) => Value::Integer(i64::from(*b)),
        WireValue::Short(n) | WireValue::Int(n) => Value::Integer(i64::from(*n)),
        WireValue::Long(n) => Value::Integer(*n),
        // `f64::from(0.1f32)` is 0.10000000149011612; the shortest decimal form is what the
        // source showed and what a reader of the warehouse expects to see.
        WireValue::Float(f) => real(f.to_string().parse::<f64>().unwrap_or(f64::from(*f))),
        WireValue::Double(d) => real(*d),
        WireValue::NaiveDate(ts) => Value::Text(instant(ts)?.format("%Y-%m-%d").to_string()),
        WireValue::NaiveDatetime(ts) => Value::Text(naive_datetime_text(&instant(ts)?)),
        WireValue::UtcDatetime(ts) => Value::Text(utc_datetime_text(&instant(ts)?)),
        WireValue::NaiveTime(ts) => Value::Text(instant(ts)?.format("%H:%M:%S%.6f").to_string()),
        WireValue::Decimal(r) | WireValue::String(r) | WireValue::Json(r) | WireValue::Xml(r) => {
            Value::Text(batch.text(r).to_string())
        }
        WireValue::Binary(r) => Value::Blob(batch.slice(r).to_vec()),
    })
}

/// Whether a non-null value is of the kind its column declares (hosts reject mismatches).
/// `UNSPECIFIED` columns take anything.
pub fn matches_declared(declared: DataType, value: &WireValue) -> bool {
    matches!(
        (declared, value),
        (_, WireValue::Null)
            | (DataType::Unspecified, _)
            | (DataType::Boolean, WireValue::Bool(_))
            | (DataType::Short, WireValue::Short(_))
            | (DataType::Int, WireValue::Int(_))
            | (DataType::Long, WireValue::Long(_))
            | (DataType::Decimal, WireValue::Decimal(_))
            | (DataType::Float, WireValue::Float(_))
            | (DataType::Double, WireValue::Double(_))
            | (DataType::NaiveDate, WireValue::NaiveDate(_))
            | (DataType::NaiveDatetime, WireValue::NaiveDatetime(_))
            | (DataType::UtcDatetime, WireValue::UtcDatetime(_))
            | (DataType::Binary, WireValue::Binary(_))
            | (DataType::Xml, WireValue::Xml(_))
            | (DataType::String, WireValue::String(_))
            | (DataType::Json, WireValue::Json(_))
            | (DataType::NaiveTime, WireValue::NaiveTime(_))
    ) && !matches!(value, WireValue::Empty)
}

/// The type a column gets when a record carries a column no schema declared.
pub fn inferred_type(value: &WireValue) -> DataType {
    match value {
        WireValue::Empty | WireValue::Null => DataType::Unspecified,
        WireValue::Bool(_) => DataType::Boolean,
        WireValue::Short(_) => DataType::Short,
        WireValue::Int(_) => DataType::Int,
        WireValue::Long(_) => DataType::Long,
        WireValue::Float(_) => DataType::Float,
        WireValue::Double(_) => DataType::Double,
        WireValue::NaiveDate(_) => DataType::NaiveDate,
        WireValue::NaiveDatetime(_) => DataType::NaiveDatetime,
        WireValue::UtcDatetime(_) => DataType::UtcDatetime,
        WireValue::NaiveTime(_) => DataType::NaiveTime,
        WireValue::Decimal(_) => DataType::Decimal,
        WireValue::Binary(_) => DataType::Binary,
        WireValue::String(_) => DataType::String,
        WireValue::Json(_) => DataType::Json,
        WireValue::Xml(_) => DataType::Xml,
    }
}

/// `2024-05-01T12:30:00.000001` (no zone: a wall-clock value).
pub fn naive_datetime_text(at: &DateTime<Utc>) -> String {
    datetime_text(at, "")
}

/// `2024-05-01T12:30:00.000001Z` (an instant, in UTC).
pub fn utc_datetime_text(at: &DateTime<Utc>) -> String {
    datetime_text(at, "Z")
}

/// ISO-8601 to the microsecond, written directly: chrono's `format` parses its pattern on
/// every call, which cost more per row than SQLite's insert. Years outside 0..=9999 (which
/// ISO-8601's four digits cannot hold) go through chrono, which signs and widens them.
fn datetime_text(at: &DateTime<Utc>, suffix: &str) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write as _;
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return format!("{}{suffix}", at.format("%Y-%m-%dT%H:%M:%S%.6f"));
    }
    let mut text = String::with_capacity(27);
    let _ = write!(
        text,
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{suffix}",
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 1_000 % 1_000_000,
    );
    text
}

/// The key of a row in a table without a primary key: a SHA-256 over the converted values,
/// sorted by column name, each part length-prefixed so that no two rows share an encoding.
/// Built from the converted values so that a replayed UPSERT lands on the same row.
pub fn row_hash<'a>(columns: impl IntoIterator<Item = (&'a str, &'a Value)>) -> String {
    let mut sorted: Vec<_> = columns.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    let mut part = |tag: u8, bytes: &[u8]| {
        hasher.update([tag]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for (name, value) in sorted {
        part(b'c', name.as_bytes());
        match value {
            Value::Null => part(b'n', &[]),
            Value::Integer(n) => part(b'i', &n.to_le_bytes()),
            Value::Real(r) => part(b'r', &r.to_bits().to_le_bytes()),
            Value::Text(s) => part(b't', s.as_bytes()),
            Value::Blob(b) => part(b'b', b),
        }
    }
    hex::encode(hasher.finalize())
}

fn real(d: f64) -> Value {
    if d.is_nan() {
        Value::Text("NaN".into())
    } else {
        Value::Real(d)
    }
}

fn instant(ts: &Timestamp) -> Result<DateTime<Utc>, String> {
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| format!("timestamp nanos {} is outside 0..1e9", ts.nanos))?;
    // Microseconds: what Redshift stores; any finer digits would be noise.
    DateTime::from_timestamp(ts.seconds, nanos - nanos % 1_000)
        .ok_or_else(|| format!("timestamp seconds {} is out of range", ts.seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_texts_match_chronos_own_formatting() {
        for text in [
            "2024-05-01T12:30:00.000001Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "1969-07-20T20:17:40.5Z",
            "-0044-03-15T12:00:00Z",
            "+12345-01-01T00:00:00Z",
        ] {
            let at: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(
                utc_datetime_text(&at),
                at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            );
            assert_eq!(
                naive_datetime_text(&at),
                at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            );
        }
    }

    use crate::proto::value_type::Inner;
    use crate::proto::ValueType;

    /// One value, as the runner reads it (a batch of one record of one column).
    fn v(inner: Inner) -> RecordBatch {
        value_batch(ValueType { inner: Some(inner) })
    }

    fn value_batch(value: ValueType) -> RecordBatch {
        RecordBatch::of_records(vec![crate::proto::Record {
            schema_name: None,
            table_name: "t".into(),
            r#type: 0,
            data: [("c".to_string(), value)].into_iter().collect(),
        }])
        .unwrap()
    }

    fn to_sql(batch: &RecordBatch) -> Result<Value, String> {
        super::to_sql(&batch.columns[0].value, batch)
    }

    fn matches_declared(declared: DataType, batch: &RecordBatch) -> bool {
        super::matches_declared(declared, &batch.columns[0].value)
    }

    fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    #[test]
    fn every_kind_converts_exactly() {
        let cases = [
            (v(Inner::Null(true)), Value::Null),
            (v(Inner::Bool(true)), Value::Integer(1)),
            (v(Inner::Short(-7)), Value::Integer(-7)),
            (v(Inner::Int(i32::MAX)), Value::Integer(i64::from(i32::MAX))),
            (v(Inner::Long(i64::MIN)), Value::Integer(i64::MIN)),
            (v(Inner::Float(0.1)), Value::Real(0.1)),
            (v(Inner::Double(2.5e300)), Value::Real(2.5e300)),
            (v(Inner::Double(f64::NAN)), Value::Text("NaN".into())),
            (
                v(Inner::Decimal("12345678901234567890.0123456789".into())),
                Value::Text("12345678901234567890.0123456789".into()),
            ),
            (
                v(Inner::NaiveDate(ts(1_714_521_600, 0))),
                Value::Text("2024-05-01".into()),
            ),
            (
                v(Inner::NaiveDatetime(ts(1_714_566_600, 1_000))),
                Value::Text("2024-05-01T12:30:00.000001".into()),
            ),
            (
                v(Inner::UtcDatetime(ts(1_714_566_600, 123_456_789))),
                Value::Text("2024-05-01T12:30:00.123456Z".into()),
            ),
            (
                v(Inner::NaiveTime(ts(45_296, 500_000_000))),
                Value::Text("12:34:56.500000".into()),
            ),
            (v(Inner::Binary(vec![0, 255])), Value::Blob(vec![0, 255])),
            (
                v(Inner::String("Zoë 東京".into())),
                Value::Text("Zoë 東京".into()),
            ),
            (
                v(Inner::Json("{\"a\":1}".into())),
                Value::Text("{\"a\":1}".into()),
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(to_sql(&wire).unwrap(), expected, "{wire:?}");
        }
    }

    #[test]
    fn pre_epoch_timestamps_convert() {
        let wire = v(Inner::NaiveDatetime(ts(-1, 999_999_000)));
        assert_eq!(
            to_sql(&wire).unwrap(),
            Value::Text("1969-12-31T23:59:59.999999".into())
        );
    }

    #[test]
    fn malformed_values_are_rejected() {
        assert!(to_sql(&value_batch(ValueType { inner: None })).is_err());
        assert!(to_sql(&v(Inner::UtcDatetime(ts(0, -1)))).is_err());
        assert!(to_sql(&v(Inner::UtcDatetime(ts(i64::MAX, 0)))).is_err());
    }

    #[test]
    fn declared_types_are_checked() {
        assert!(matches_declared(DataType::Long, &v(Inner::Long(1))));
        assert!(matches_declared(DataType::Long, &v(Inner::Null(true))));
        assert!(matches_declared(DataType::Unspecified, &v(Inner::Int(1))));
        assert!(!matches_declared(DataType::Long, &v(Inner::Int(1))));
        assert!(!matches_declared(
            DataType::Decimal,
            &v(Inner::String("1".into()))
        ));
    }

    #[test]
    fn row_hash_ignores_column_order_and_separates_values() {
        let (a, b) = (Value::Text("ab".into()), Value::Text("c".into()));
        let one = row_hash([("x", &a), ("y", &b)]);
        assert_eq!(one, row_hash([("y", &b), ("x", &a)]));
        let (a2, b2) = (Value::Text("a".into()), Value::Text("bc".into()));
        assert_ne!(one, row_hash([("x", &a2), ("y", &b2)]));
        assert_ne!(
            row_hash([("x", &Value::Integer(1))]),
            row_hash([("x", &Value::Text("1".into()))])
        );
    }
}
