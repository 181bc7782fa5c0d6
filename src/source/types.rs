//! Redshift column types: their connector DataType, how each is selected, decoded and compared.
//!
//! tokio-postgres asks for every result column in binary. Redshift's binary format can only be
//! trusted for integers, floats, booleans, character types and timestamps (redshift.md), so
//! every other type is projected to text in SQL and parsed here: NUMERIC keeps its exact decimal
//! string, never a float; DATE is parsed from ISO text (the session sets `DateStyle TO ISO`).
//!
//! Keyset positions (the cursor and key of the last row sent) are kept as text in each type's
//! canonical form and cast back with `CAST($n::VARCHAR(65535) AS <type>)`, so the server compares
//! them with the column's own type and ordering (a timestamp as a timestamp, to the microsecond).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use prost_types::Timestamp;
use tokio_postgres::Row;

use crate::proto::{
    data_type_params, value_type, DataType, DataTypeParams, DecimalParams, ValueType,
};

/// A column type as the catalog reports it (`information_schema.columns.udt_name` and sizes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    SmallInt,
    Integer,
    BigInt,
    /// `None` precision: unconstrained NUMERIC (PostgreSQL only; Redshift defaults to (18,0)).
    Numeric {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    Real,
    Double,
    Boolean,
    /// Lengths are in bytes on Redshift (characters on PostgreSQL).
    Char {
        length: Option<u32>,
    },
    Varchar {
        length: Option<u32>,
    },
    Text,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Super,
    VarByte,
    /// PostgreSQL's BYTEA; Redshift has none, but tests run on PostgreSQL.
    Bytea,
    Geometry,
    Geography,
    HllSketch,
    /// Anything else: read as text.
    Other {
        udt_name: String,
    },
}

/// A cell as the driver hands it over, before it becomes a wire value or a position.
#[derive(Debug)]
enum Raw {
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Bytes(Vec<u8>),
    /// Text, parsed according to the column type.
    Text(String),
}

impl SqlType {
    /// Maps the catalog's description of a column.
    pub fn from_catalog(
        udt_name: &str,
        char_length: Option<i32>,
        precision: Option<i32>,
        scale: Option<i32>,
    ) -> Self {
        let positive = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
        match udt_name {
            "int2" => Self::SmallInt,
            "int4" => Self::Integer,
            "int8" => Self::BigInt,
            "numeric" => Self::Numeric {
                precision: positive(precision),
                scale: scale.and_then(|s| u32::try_from(s).ok()),
            },
            "float4" => Self::Real,
            "float8" => Self::Double,
            "bool" => Self::Boolean,
            "bpchar" | "char" => Self::Char {
                length: positive(char_length),
            },
            "varchar" => Self::Varchar {
                length: positive(char_length),
            },
            "text" => Self::Text,
            "date" => Self::Date,
            "time" => Self::Time,
            "timetz" => Self::TimeTz,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::TimestampTz,
            "super" => Self::Super,
            "varbyte" | "varbinary" => Self::VarByte,
            "bytea" => Self::Bytea,
            "geometry" => Self::Geometry,
            "geography" => Self::Geography,
            "hllsketch" => Self::HllSketch,
            other => Self::Other {
                udt_name: other.to_string(),
            },
        }
    }

    /// The connector DataType and its optional parameters.
    pub fn data_type(&self) -> (DataType, Option<DataTypeParams>) {
        let params = |p| Some(DataTypeParams { params: Some(p) });
        match self {
            Self::SmallInt => (DataType::Short, None),
            Self::Integer => (DataType::Int, None),
            Self::BigInt => (DataType::Long, None),
            Self::Numeric {
                precision: Some(precision),
                scale,
            } if *precision <= 38 => (
                DataType::Decimal,
                params(data_type_params::Params::Decimal(DecimalParams {
                    precision: *precision,
                    scale: scale.unwrap_or(0).min(37),
                })),
            ),
            Self::Numeric { .. } => (DataType::Decimal, None),
            Self::Real => (DataType::Float, None),
            Self::Double => (DataType::Double, None),
            Self::Boolean => (DataType::Boolean, None),
            Self::Char { length } | Self::Varchar { length } => (
                DataType::String,
                length
                    .and_then(|n| i32::try_from(n).ok())
                    .and_then(|n| params(data_type_params::Params::StringByteLength(n))),
            ),
            Self::Date => (DataType::NaiveDate, None),
            Self::Timestamp => (DataType::NaiveDatetime, None),
            Self::TimestampTz => (DataType::UtcDatetime, None),
            Self::Super => (DataType::Json, None),
            Self::VarByte | Self::Bytea => (DataType::Binary, None),
            // Times travel as strings: many destinations cannot take NAIVE_TIME.
            Self::Text
            | Self::Time
            | Self::TimeTz
            | Self::Geometry
            | Self::Geography
            | Self::HllSketch
            | Self::Other { .. } => (DataType::String, None),
        }
    }

    /// Reads column `index` of `row` (selected with [`Self::select_expr`]): binary-safe types
    /// natively, everything else as the text the SELECT expression made of it. `None` is NULL.
    fn read(&self, row: &Row, index: usize) -> Result<Option<Raw>, String> {
        fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
            row: &'a Row,
            index: usize,
            raw: fn(T) -> Raw,
        ) -> Result<Option<Raw>, String> {
            row.try_get::<_, Option<T>>(index)
                .map(|value| value.map(raw))
                .map_err(|e| super::error_chain(&e))
        }
        match self {
            Self::SmallInt => get(row, index, Raw::I16),
            Self::Integer => get(row, index, Raw::I32),
            Self::BigInt => get(row, index, Raw::I64),
            Self::Real => get(row, index, Raw::F32),
            Self::Double => get(row, index, Raw::F64),
            Self::Boolean => get(row, index, Raw::Bool),
            Self::Timestamp => get(row, index, Raw::Timestamp),
            Self::TimestampTz => get(row, index, Raw::TimestampTz),
            Self::Bytea => get(row, index, Raw::Bytes),
            _ => get(row, index, Raw::Text),
        }
    }

    /// The SELECT expression for a quoted column: binary-safe types as they are, the rest as text.
    pub fn select_expr(&self, quoted_column: &str) -> String {
        match self {
            Self::SmallInt
            | Self::Integer
            | Self::BigInt
            | Self::Real
            | Self::Double
            | Self::Boolean
            | Self::Char { .. }
            | Self::Varchar { .. }
            | Self::Text
            | Self::Timestamp
            | Self::TimestampTz
            | Self::Bytea => quoted_column.to_string(),
            Self::Super => format!("JSON_SERIALIZE({quoted_column})"),
            Self::VarByte => format!("TO_HEX({quoted_column})"),
            Self::Geometry | Self::Geography => format!("ST_AsEWKT({quoted_column})"),
            // VARCHAR without a length is VARCHAR(256) on Redshift: always say how long.
            Self::Numeric { .. }
            | Self::Date
            | Self::Time
            | Self::TimeTz
            | Self::HllSketch
            | Self::Other { .. } => format!("{quoted_column}::VARCHAR(65535)"),
        }
    }

    /// Whether rows can be ordered and resumed by this type (cursor or key column).
    pub fn is_orderable(&self) -> bool {
        !matches!(
            self,
            Self::Super
                | Self::VarByte
                | Self::Bytea
                | Self::Geometry
                | Self::Geography
                | Self::HllSketch
                | Self::Other { .. }
        )
    }

    /// SQL that turns the text parameter `$n` back into a value of this type.
    pub fn param_expr(&self, n: usize) -> String {
        let text = format!("${n}::VARCHAR(65535)");
        let target = match self {
            Self::SmallInt => "SMALLINT".to_string(),
            Self::Integer => "INTEGER".to_string(),
            Self::BigInt => "BIGINT".to_string(),
            Self::Numeric {
                precision: Some(p),
                scale,
            } => format!("NUMERIC({p},{})", scale.unwrap_or(0)),
            Self::Numeric {
                precision: None, ..
            } => "NUMERIC".to_string(),
            Self::Real => "REAL".to_string(),
            Self::Double => "DOUBLE PRECISION".to_string(),
            Self::Boolean => "BOOLEAN".to_string(),
            Self::Char { length: Some(n) } => format!("CHAR({n})"),
            Self::Char { length: None } => "CHAR".to_string(),
            Self::Varchar { .. } | Self::Text => return text,
            Self::Date => "DATE".to_string(),
            Self::Time => "TIME".to_string(),
            Self::TimeTz => "TIMETZ".to_string(),
            Self::Timestamp => "TIMESTAMP".to_string(),
            Self::TimestampTz => "TIMESTAMPTZ".to_string(),
            // Not orderable: never used as a position (see `is_orderable`).
            _ => return text,
        };
        format!("CAST({text} AS {target})")
    }

    /// Reads column `index` of `row` (selected with [`Self::select_expr`]) as a wire value.
    pub fn decode(&self, row: &Row, index: usize) -> Result<ValueType, String> {
        use value_type::Inner;
        let inner = match self.read(row, index)? {
            None => Inner::Null(true),
            Some(Raw::I16(v)) => Inner::Short(v.into()),
            Some(Raw::I32(v)) => Inner::Int(v),
            Some(Raw::I64(v)) => Inner::Long(v),
            Some(Raw::F32(v)) => Inner::Float(v),
            Some(Raw::F64(v)) => Inner::Double(v),
            Some(Raw::Bool(v)) => Inner::Bool(v),
            Some(Raw::Timestamp(v)) => Inner::NaiveDatetime(naive_timestamp(v)?),
            Some(Raw::TimestampTz(v)) => Inner::UtcDatetime(naive_timestamp(v.naive_utc())?),
            Some(Raw::Bytes(v)) => Inner::Binary(v),
            Some(Raw::Text(text)) => self.parse_text(text)?,
        };
        Ok(ValueType { inner: Some(inner) })
    }

    /// A value that arrived as text, in the wire type of this column.
    fn parse_text(&self, text: String) -> Result<value_type::Inner, String> {
        use value_type::Inner;
        Ok(match self {
            Self::Numeric { .. } => {
                if !is_decimal(&text) {
                    return Err(format!("`{text}` is not a finite decimal number"));
                }
                Inner::Decimal(text)
            }
            Self::Date => Inner::NaiveDate(naive_timestamp(
                parse_iso_date(&text)?
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight exists"),
            )?),
            Self::Super => Inner::Json(text),
            Self::VarByte => Inner::Binary(
                hex::decode(&text).map_err(|e| format!("TO_HEX gave invalid hex: {e}"))?,
            ),
            _ => Inner::String(text),
        })
    }

    /// Column `index` of `row` in the canonical text that [`Self::param_expr`] casts back;
    /// `None` for NULL.
    pub fn position_text(&self, row: &Row, index: usize) -> Result<Option<String>, String> {
        Ok(self.read(row, index)?.map(|raw| match raw {
            Raw::I16(v) => v.to_string(),
            Raw::I32(v) => v.to_string(),
            Raw::I64(v) => v.to_string(),
            Raw::F32(v) => float_text(v.into(), v.to_string()),
            Raw::F64(v) => float_text(v, v.to_string()),
            Raw::Bool(v) => v.to_string(),
            Raw::Timestamp(v) => timestamp_text(v),
            Raw::TimestampTz(v) => timestamptz_text(v),
            Raw::Bytes(v) => format!("\\x{}", hex::encode(v)),
            // Text as the server produced it is already what the server parses back.
            Raw::Text(text) => text,
        }))
    }

    /// Checks that `text` is a position value of this type, as [`Self::position_text`] writes
    /// them, so a state that does not fit its table is refused before the sync starts instead
    /// of failing mid-stream on every retry.
    pub fn check_position_text(&self, text: &str) -> Result<(), String> {
        let timestamp = |t: &str| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").is_ok();
        let valid = match self {
            Self::SmallInt => text.parse::<i16>().is_ok(),
            Self::Integer => text.parse::<i32>().is_ok(),
            Self::BigInt => text.parse::<i64>().is_ok(),
            Self::Numeric { .. } => is_decimal(text),
            Self::Real | Self::Double => {
                text.parse::<f64>().is_ok() || matches!(text, "Infinity" | "-Infinity")
            }
            Self::Boolean => matches!(text, "true" | "false"),
            Self::Date => parse_iso_date(text).is_ok(),
            Self::Timestamp => timestamp(text),
            Self::TimestampTz => text.strip_suffix("+00").is_some_and(timestamp),
            // Text as the server wrote it; the server will judge it.
            _ => true,
        };
        if valid {
            Ok(())
        } else {
            Err(format!(
                "`{text}` is not a {} value",
                self.data_type().0.as_str_name()
            ))
        }
    }

    /// The cursor value of the instant `at`, for the time types a load stamps rows with
    /// (TIMESTAMP values are taken as UTC wall clock, as Redshift's SYSDATE/GETDATE give them);
    /// `None` for other types.
    pub fn time_bound_text(&self, at: DateTime<Utc>) -> Option<String> {
        match self {
            Self::Timestamp => Some(timestamp_text(at.naive_utc())),
            Self::TimestampTz => Some(timestamptz_text(at)),
            _ => None,
        }
    }
}

fn timestamp_text(value: NaiveDateTime) -> String {
    value.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn timestamptz_text(value: DateTime<Utc>) -> String {
    value.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// Rust prints the shortest text that reads back to the same float, which the server parses
/// exactly; only the special values are spelled differently.
fn float_text(value: f64, shortest: String) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        shortest
    }
}

/// A NAIVE_* value: the wall-clock time carried in a Timestamp as if it were UTC.
///
/// Redshift stores years up to 294276 and before year 1, but a google.protobuf.Timestamp (and
/// hosts) carry only 0001-9999. Such a value fails the sync with a message naming the fix rather
/// than being dropped, altered or sent as a Timestamp hosts reject.
fn naive_timestamp(value: NaiveDateTime) -> Result<Timestamp, String> {
    if !(1..=9999).contains(&value.year()) {
        return Err(out_of_range(&value.to_string()));
    }
    let utc = value.and_utc();
    Ok(Timestamp {
        seconds: utc.timestamp(),
        nanos: i32::try_from(utc.timestamp_subsec_nanos()).expect("nanoseconds < 1e9"),
    })
}

fn out_of_range(value: &str) -> String {
    format!(
        "`{value}` is outside the years 0001-9999 that a connector timestamp can carry; correct the value in the source or deselect the column"
    )
}

/// `YYYY-MM-DD` as the server prints dates with `DateStyle` ISO (`... BC` before year 1).
fn parse_iso_date(text: &str) -> Result<NaiveDate, String> {
    let year_digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if text.ends_with(" BC") || year_digits > 4 {
        return Err(out_of_range(text));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("`{text}` is not an ISO date: {e}"))
}

use chrono::Datelike as _;

/// `-123.4500`, `0`, `1e5` is not produced by the server; NaN/Infinity are not decimals.
fn is_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_map_to_the_issue_table() {
        let cases = [
            ("int2", DataType::Short),
            ("int4", DataType::Int),
            ("int8", DataType::Long),
            ("numeric", DataType::Decimal),
            ("float4", DataType::Float),
            ("float8", DataType::Double),
            ("bool", DataType::Boolean),
            ("bpchar", DataType::String),
            ("varchar", DataType::String),
            ("date", DataType::NaiveDate),
            ("timestamp", DataType::NaiveDatetime),
            ("timestamptz", DataType::UtcDatetime),
            ("time", DataType::String),
            ("timetz", DataType::String),
            ("super", DataType::Json),
            ("varbyte", DataType::Binary),
            ("geometry", DataType::String),
            ("geography", DataType::String),
            ("hllsketch", DataType::String),
            ("something_new", DataType::String),
        ];
        for (udt, expected) in cases {
            let sql_type = SqlType::from_catalog(udt, Some(10), Some(38), Some(6));
            assert_eq!(sql_type.data_type().0, expected, "{udt}");
        }
    }

    #[test]
    fn decimal_and_string_parameters() {
        let (_, params) = SqlType::from_catalog("numeric", None, Some(38), Some(10)).data_type();
        assert_eq!(
            params.unwrap().params,
            Some(data_type_params::Params::Decimal(DecimalParams {
                precision: 38,
                scale: 10
            }))
        );
        let (_, params) = SqlType::from_catalog("varchar", Some(256), None, None).data_type();
        assert_eq!(
            params.unwrap().params,
            Some(data_type_params::Params::StringByteLength(256))
        );
    }

    #[test]
    fn decimal_text_is_validated() {
        for ok in ["0", "-1.50", "12345678901234567890123456789.123456789"] {
            assert!(is_decimal(ok), "{ok}");
        }
        for bad in ["", "-", "1.", ".5", "NaN", "1e5", "1,5"] {
            assert!(!is_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn dates_parse_and_years_outside_1_to_9999_are_refused() {
        assert_eq!(
            parse_iso_date("0001-01-01").unwrap(),
            NaiveDate::from_ymd_opt(1, 1, 1).unwrap()
        );
        assert_eq!(
            parse_iso_date("9999-12-31").unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap()
        );
        assert!(parse_iso_date("0001-03-04 BC")
            .unwrap_err()
            .contains("0001-9999"));
        assert!(parse_iso_date("10000-01-01")
            .unwrap_err()
            .contains("0001-9999"));
        let year_10000 = NaiveDate::from_ymd_opt(10000, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert!(naive_timestamp(year_10000)
            .unwrap_err()
            .contains("deselect the column"));
        assert!(parse_iso_date("01/02/2024").is_err());
    }

    #[test]
    fn position_texts_are_checked_against_the_type() {
        assert!(SqlType::Timestamp
            .check_position_text("2024-01-01 00:00:00.000001")
            .is_ok());
        assert!(SqlType::Timestamp
            .check_position_text("not a time")
            .is_err());
        assert!(SqlType::TimestampTz
            .check_position_text("2024-01-01 00:00:00.000000+00")
            .is_ok());
        assert!(SqlType::TimestampTz
            .check_position_text("2024-01-01 00:00:00")
            .is_err());
        assert!(SqlType::Integer.check_position_text("99999999999").is_err());
        assert!(SqlType::Numeric {
            precision: None,
            scale: None
        }
        .check_position_text("-1.5")
        .is_ok());
        assert!(SqlType::Boolean.check_position_text("yes").is_err());
        assert!(SqlType::Text.check_position_text("anything").is_ok());
    }

    #[test]
    fn positions_cast_back_with_the_column_type() {
        assert_eq!(
            SqlType::Timestamp.param_expr(2),
            "CAST($2::VARCHAR(65535) AS TIMESTAMP)"
        );
        assert_eq!(SqlType::Text.param_expr(1), "$1::VARCHAR(65535)");
        assert_eq!(float_text(f64::INFINITY, String::new()), "Infinity");
    }
}
