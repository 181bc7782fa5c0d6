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

use crate::proto::value_type::Inner;
use crate::proto::{DataType, ValueType};

/// Converts one wire value. `Err` says why the value cannot be stored (a connector bug).
pub fn to_sql(value: &ValueType) -> Result<Value, String> {
    let Some(inner) = &value.inner else {
        return Err(
            "the value is empty (ValueType with no member set; a NULL is `null: true`)".into(),
        );
    };
    Ok(match inner {
        Inner::Null(_) => Value::Null,
        Inner::Bool(b) => Value::Integer(i64::from(*b)),
        Inner::Short(n) | Inner::Int(n) => Value::Integer(i64::from(*n)),
        Inner::Long(n) => Value::Integer(*n),
        // `f64::from(0.1f32)` is 0.10000000149011612; the shortest decimal form is what the
        // source showed and what a reader of the warehouse expects to see.
        Inner::Float(f) => real(f.to_string().parse::<f64>().unwrap_or(f64::from(*f))),
        Inner::Double(d) => real(*d),
        Inner::NaiveDate(ts) => Value::Text(instant(ts)?.format("%Y-%m-%d").to_string()),
        Inner::NaiveDatetime(ts) => Value::Text(naive_datetime_text(&instant(ts)?)),
        Inner::UtcDatetime(ts) => Value::Text(utc_datetime_text(&instant(ts)?)),
        Inner::NaiveTime(ts) => Value::Text(instant(ts)?.format("%H:%M:%S%.6f").to_string()),
        Inner::Decimal(s) | Inner::String(s) | Inner::Json(s) | Inner::Xml(s) => {
            Value::Text(s.clone())
        }
        Inner::Binary(bytes) => Value::Blob(bytes.clone()),
    })
}

/// Whether a non-null value is of the kind its column declares (hosts reject mismatches).
/// `UNSPECIFIED` columns take anything.
pub fn matches_declared(declared: DataType, value: &ValueType) -> bool {
    let Some(inner) = &value.inner else {
        return false;
    };
    matches!(
        (declared, inner),
        (_, Inner::Null(_))
            | (DataType::Unspecified, _)
            | (DataType::Boolean, Inner::Bool(_))
            | (DataType::Short, Inner::Short(_))
            | (DataType::Int, Inner::Int(_))
            | (DataType::Long, Inner::Long(_))
            | (DataType::Decimal, Inner::Decimal(_))
            | (DataType::Float, Inner::Float(_))
            | (DataType::Double, Inner::Double(_))
            | (DataType::NaiveDate, Inner::NaiveDate(_))
            | (DataType::NaiveDatetime, Inner::NaiveDatetime(_))
            | (DataType::UtcDatetime, Inner::UtcDatetime(_))
            | (DataType::Binary, Inner::Binary(_))
            | (DataType::Xml, Inner::Xml(_))
            | (DataType::String, Inner::String(_))
            | (DataType::Json, Inner::Json(_))
            | (DataType::NaiveTime, Inner::NaiveTime(_))
    )
}

/// The type a column gets when a record carries a column no schema declared.
pub fn inferred_type(value: &ValueType) -> DataType {
    match &value.inner {
        None | Some(Inner::Null(_)) => DataType::Unspecified,
        Some(Inner::Bool(_)) => DataType::Boolean,
        Some(Inner::Short(_)) => DataType::Short,
        Some(Inner::Int(_)) => DataType::Int,
        Some(Inner::Long(_)) => DataType::Long,
        Some(Inner::Float(_)) => DataType::Float,
        Some(Inner::Double(_)) => DataType::Double,
        Some(Inner::NaiveDate(_)) => DataType::NaiveDate,
        Some(Inner::NaiveDatetime(_)) => DataType::NaiveDatetime,
        Some(Inner::UtcDatetime(_)) => DataType::UtcDatetime,
        Some(Inner::NaiveTime(_)) => DataType::NaiveTime,
        Some(Inner::Decimal(_)) => DataType::Decimal,
        Some(Inner::Binary(_)) => DataType::Binary,
        Some(Inner::String(_)) => DataType::String,
        Some(Inner::Json(_)) => DataType::Json,
        Some(Inner::Xml(_)) => DataType::Xml,
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

fn instant(ts: &prost_types::Timestamp) -> Result<DateTime<Utc>, String> {
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

    fn v(inner: Inner) -> ValueType {
        ValueType { inner: Some(inner) }
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
        assert!(to_sql(&ValueType { inner: None }).is_err());
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
