//! Redshift column types: their connector DataType, how each is selected and how positions of
//! each are written back into SQL.
//!
//! Values are read from the wire in the format Redshift's drivers use (see [`super::value`]):
//! binary for integers, floats, booleans, character types and timestamps, text for everything
//! else. So nothing needs a cast in the SELECT list, which matters because every cast to text is
//! a VARCHAR, capped at 65,535 bytes, while VARBYTE and SUPER values reach 16 MB:
//! - SUPER is selected as `JSON_SERIALIZE_TO_VARBYTE(col)` (the JSON text as bytes, no VARCHAR
//!   limit) guarded by `IS NULL`, because the serializers turn a SQL NULL into the JSON text
//!   `null`;
//! - VARBYTE, GEOMETRY and GEOGRAPHY are selected as they are: their text form is hex (of the
//!   bytes, and of the shape's EWKB), complete and lossless.
//!
//! Keyset positions (the cursor and key of the last row sent) are kept as text in each type's
//! canonical form and cast back in SQL to the column's own type, with its own precision, so the
//! server compares them exactly as it orders the column.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Redshift's largest NUMERIC precision; also the precision used for positions of NUMERIC
/// columns whose catalog entry gives none (plain NUMERIC means NUMERIC(18,0) on Redshift, which
/// would round a position to an integer).
pub const MAX_NUMERIC_PRECISION: u32 = 38;

/// A column type as the catalog reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    SmallInt,
    Integer,
    BigInt,
    /// `None` precision: the catalog gave none.
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
    /// PostgreSQL's BYTEA; Redshift has none, but the demo runs on PostgreSQL.
    Bytea,
    Geometry,
    Geography,
    HllSketch,
    /// Anything else (INTERVAL, ...): read as text.
    Other {
        name: String,
    },
}

impl SqlType {
    /// Maps a catalog type name: PostgreSQL's short names (`int4`, `varchar`, as in
    /// `pg_type.typname`), SQL's long ones (`character varying`, `timestamp with time zone`, as
    /// in `svv_columns.data_type`), and Spectrum's (`int`, `string`, `varchar(20)`). Sizes in
    /// the name are used when the catalog's own size columns are empty.
    pub fn from_catalog(
        type_name: &str,
        char_length: Option<i32>,
        precision: Option<i32>,
        scale: Option<i32>,
    ) -> Self {
        let lower = type_name.trim().trim_matches('"').to_ascii_lowercase();
        // `timestamp(3) with time zone`: the sizes may sit in the middle of the name.
        let (base, sizes) = match (lower.find('('), lower.find(')')) {
            (Some(open), Some(close)) if open < close => (
                format!("{} {}", &lower[..open], &lower[close + 1..]),
                parse_sizes(&lower[open + 1..close]),
            ),
            _ => (lower.clone(), Vec::new()),
        };
        let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
        let positive = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0);
        let first = positive(char_length).or(sizes.first().copied());
        match base.as_str() {
            "int2" | "smallint" => Self::SmallInt,
            "int4" | "integer" | "int" => Self::Integer,
            "int8" | "bigint" => Self::BigInt,
            "numeric" | "decimal" => Self::Numeric {
                precision: positive(precision).or(sizes.first().copied()),
                scale: scale
                    .and_then(|s| u32::try_from(s).ok())
                    .or(sizes.get(1).copied())
                    .or_else(|| sizes.first().map(|_| 0)),
            },
            "float4" | "real" => Self::Real,
            "float8" | "double precision" | "double" | "float" => Self::Double,
            "bool" | "boolean" => Self::Boolean,
            "bpchar" | "char" | "character" | "nchar" => Self::Char { length: first },
            "varchar" | "character varying" | "nvarchar" | "string" => {
                Self::Varchar { length: first }
            }
            "text" => Self::Text,
            "date" => Self::Date,
            "time" | "time without time zone" => Self::Time,
            "timetz" | "time with time zone" => Self::TimeTz,
            "timestamp" | "timestamp without time zone" => Self::Timestamp,
            "timestamptz" | "timestamp with time zone" => Self::TimestampTz,
            "super" => Self::Super,
            "varbyte" | "varbinary" | "binary varying" => Self::VarByte,
            "bytea" => Self::Bytea,
            "geometry" => Self::Geometry,
            "geography" => Self::Geography,
            "hllsketch" => Self::HllSketch,
            _ => Self::Other { name: lower },
        }
    }

    /// The type as SQL writes it (upper case, with its length or precision when the catalog
    /// gave one): the form a sync state records a column's type in, so two are equal exactly
    /// when the catalog reported the same type.
    pub fn sql_name(&self) -> String {
        let sized = |name: &str, length: &Option<u32>| match length {
            Some(n) => format!("{name}({n})"),
            None => name.to_string(),
        };
        match self {
            Self::SmallInt => "SMALLINT".into(),
            Self::Integer => "INTEGER".into(),
            Self::BigInt => "BIGINT".into(),
            Self::Numeric {
                precision: Some(precision),
                scale,
            } => format!("NUMERIC({precision},{})", scale.unwrap_or(0)),
            Self::Numeric { .. } => "NUMERIC".into(),
            Self::Real => "REAL".into(),
            Self::Double => "DOUBLE PRECISION".into(),
            Self::Boolean => "BOOLEAN".into(),
            Self::Char { length } => sized("CHAR", length),
            Self::Varchar { length } => sized("VARCHAR", length),
            Self::Text => "TEXT".into(),
            Self::Date => "DATE".into(),
            Self::Time => "TIME".into(),
            Self::TimeTz => "TIMETZ".into(),
            Self::Timestamp => "TIMESTAMP".into(),
            Self::TimestampTz => "TIMESTAMPTZ".into(),
            Self::Super => "SUPER".into(),
            Self::VarByte => "VARBYTE".into(),
            Self::Bytea => "BYTEA".into(),
            Self::Geometry => "GEOMETRY".into(),
            Self::Geography => "GEOGRAPHY".into(),
            Self::HllSketch => "HLLSKETCH".into(),
            Self::Other { name } => name.to_uppercase(),
        }
    }

    /// The SELECT expression for a quoted column (see the module documentation).
    pub fn select_expr(&self, quoted_column: &str) -> String {
        match self {
            Self::Super => format!(
                "CASE WHEN {quoted_column} IS NULL THEN NULL ELSE JSON_SERIALIZE_TO_VARBYTE({quoted_column}) END"
            ),
            _ => quoted_column.to_string(),
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

    /// Whether values that differ can compare equal: Redshift ignores trailing blanks when
    /// comparing VARCHARs, and a column or database may be case-insensitive. Key columns of
    /// these types are ordered case-sensitively with their byte length as a tie-break.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Char { .. } | Self::Varchar { .. } | Self::Text)
    }

    /// Whether trailing blanks are part of a value (VARCHAR, TEXT) rather than padding (CHAR).
    pub fn keeps_trailing_blanks(&self) -> bool {
        matches!(self, Self::Varchar { .. } | Self::Text)
    }

    /// SQL that turns the text parameter `$n` (holding `position`, as [`super::value`] writes
    /// positions) back into a value of this type, at the column's precision.
    pub fn param_expr(&self, n: usize, position: &str) -> String {
        let text = format!("${n}::VARCHAR(65535)");
        let target = match self {
            Self::SmallInt => "SMALLINT".to_string(),
            Self::Integer => "INTEGER".to_string(),
            Self::BigInt => "BIGINT".to_string(),
            Self::Numeric { precision, scale } => {
                // Redshift's plain NUMERIC is NUMERIC(18,0): always say the precision, and
                // never less than the position itself needs.
                let (digits, decimals) = numeric_digits(position);
                let scale = scale.unwrap_or(decimals).max(decimals).min(37);
                let precision = precision
                    .unwrap_or(MAX_NUMERIC_PRECISION)
                    .max(digits.saturating_sub(decimals) + scale);
                format!("NUMERIC({precision},{scale})")
            }
            Self::Real => "REAL".to_string(),
            Self::Double => "DOUBLE PRECISION".to_string(),
            // Redshift has no cast from VARCHAR to BOOLEAN: compare the text instead.
            Self::Boolean => return format!("({text} = 'true')"),
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

    /// Checks that `text` is a position value of this type, within the range the column and
    /// the wire can hold, as [`super::value`] writes positions, so that a state that does not
    /// fit its table is refused before the sync starts instead of failing mid-stream.
    pub fn check_position_text(&self, text: &str) -> Result<(), String> {
        if text.contains('\0') {
            return Err("a position value contains a NUL character".to_string());
        }
        let timestamp = |t: &str| {
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .is_ok_and(|v| in_wire_range(v.date()))
        };
        let valid = match self {
            Self::SmallInt => text.parse::<i16>().is_ok(),
            Self::Integer => text.parse::<i32>().is_ok(),
            Self::BigInt => text.parse::<i64>().is_ok(),
            Self::Numeric { precision, scale } => {
                is_decimal(text.as_bytes()) && {
                    let (digits, decimals) = numeric_digits(text);
                    let scale = scale.unwrap_or(decimals);
                    let precision = precision.unwrap_or(MAX_NUMERIC_PRECISION);
                    decimals <= scale && digits - decimals <= precision.saturating_sub(scale)
                }
            }
            Self::Real | Self::Double => {
                text.parse::<f64>().is_ok() || matches!(text, "Infinity" | "-Infinity" | "NaN")
            }
            Self::Boolean => matches!(text, "true" | "false"),
            Self::Date => {
                NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok_and(in_wire_range)
                    && text.len() == 10
            }
            Self::Timestamp => timestamp(text),
            Self::TimestampTz => text.strip_suffix("+00").is_some_and(timestamp),
            Self::Char { length: Some(n) } | Self::Varchar { length: Some(n) } => {
                text.len() <= *n as usize
            }
            // Text as the server wrote it; the server will judge it.
            _ => true,
        };
        if valid {
            Ok(())
        } else {
            // Positions are key and cursor values: never quoted (see `value::NOT_A_DECIMAL`).
            Err(format!(
                "the value is not a {} value this column can hold",
                self.sql_name()
            ))
        }
    }

    /// Whether this is a type a load stamps rows with, so that a lag behind the database's
    /// clock can bound it (TIMESTAMP values are taken as UTC wall clock, as Redshift's
    /// SYSDATE and GETDATE give them).
    pub fn is_time(&self) -> bool {
        matches!(self, Self::Timestamp | Self::TimestampTz)
    }

    /// The position text of the instant `at`, for [`is_time`](Self::is_time) types.
    pub fn time_position(&self, at: DateTime<Utc>) -> Option<String> {
        match self {
            Self::Timestamp => Some(at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
            Self::TimestampTz => Some(at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()),
            _ => None,
        }
    }
}

/// The dates a connector timestamp (a google.protobuf.Timestamp, as hosts take it) can carry.
fn in_wire_range(date: NaiveDate) -> bool {
    use chrono::Datelike as _;
    (1..=9999).contains(&date.year())
}

/// `18,2` -> [18, 2]
fn parse_sizes(sizes: &str) -> Vec<u32> {
    sizes
        .split(',')
        .filter_map(|part| part.trim().parse().ok())
        .collect()
}

/// Digits in a decimal text, in all and after the point: `-123.450` -> (6, 3).
fn numeric_digits(text: &str) -> (u32, u32) {
    let digits = text.bytes().filter(u8::is_ascii_digit).count() as u32;
    let decimals = text
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len() as u32);
    (digits, decimals)
}

/// `-123.4500`, `0`; `1e5`, `NaN` and `Infinity` are not decimals.
/// Bytes, not `str`: values are checked as they come off the wire, before any UTF-8 check.
pub fn is_decimal(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let (whole, fraction) = match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (&digits[..dot], Some(&digits[dot + 1..])),
        None => (digits, None),
    };
    !whole.is_empty()
        && whole.iter().all(u8::is_ascii_digit)
        && fraction.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_come_from_the_catalog_or_the_type_name() {
        assert_eq!(
            SqlType::from_catalog("varchar(20)", None, None, None),
            SqlType::Varchar { length: Some(20) }
        );
        assert_eq!(
            SqlType::from_catalog("timestamp(3) with time zone", None, None, None),
            SqlType::TimestampTz
        );
        assert_eq!(
            SqlType::from_catalog("decimal(10,2)", None, None, None),
            SqlType::Numeric {
                precision: Some(10),
                scale: Some(2)
            }
        );
    }

    #[test]
    fn decimal_text_is_validated() {
        for ok in ["0", "-1.50", "12345678901234567890123456789.123456789"] {
            assert!(is_decimal(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "-", "1.", ".5", "NaN", "1e5", "1,5"] {
            assert!(!is_decimal(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn position_texts_are_checked_against_the_type_and_its_range() {
        assert!(SqlType::Timestamp
            .check_position_text("2024-01-01 00:00:00.000001")
            .is_ok());
        assert!(SqlType::Timestamp
            .check_position_text("not a time")
            .is_err());
        assert!(SqlType::Timestamp
            .check_position_text("0000-01-01 00:00:00")
            .is_err());
        assert!(SqlType::TimestampTz
            .check_position_text("2024-01-01 00:00:00.000000+00")
            .is_ok());
        assert!(SqlType::TimestampTz
            .check_position_text("2024-01-01 00:00:00")
            .is_err());
        assert!(SqlType::Integer.check_position_text("99999999999").is_err());
        let money = SqlType::Numeric {
            precision: Some(18),
            scale: Some(4),
        };
        assert!(money.check_position_text("-1.5").is_ok());
        assert!(money
            .check_position_text("123456789012345678901234567890")
            .is_err());
        assert!(money.check_position_text("1.23456").is_err());
        assert!(SqlType::Boolean.check_position_text("yes").is_err());
        assert!(SqlType::Text.check_position_text("anything").is_ok());
        assert!(SqlType::Text.check_position_text("nul\0inside").is_err());
        assert!(SqlType::Date.check_position_text("2024-02-30").is_err());
    }

    #[test]
    fn positions_cast_back_with_the_column_type_and_precision() {
        assert_eq!(
            SqlType::Timestamp.param_expr(2, "2024-01-01 00:00:00"),
            "CAST($2::VARCHAR(65535) AS TIMESTAMP)"
        );
        assert_eq!(SqlType::Text.param_expr(1, "x"), "$1::VARCHAR(65535)");
        // Redshift cannot cast VARCHAR to BOOLEAN.
        assert_eq!(
            SqlType::Boolean.param_expr(3, "true"),
            "($3::VARCHAR(65535) = 'true')"
        );
        // A NUMERIC without declared precision keeps the position's decimals.
        let plain = SqlType::Numeric {
            precision: None,
            scale: None,
        };
        assert_eq!(
            plain.param_expr(1, "12.3456"),
            "CAST($1::VARCHAR(65535) AS NUMERIC(38,4))"
        );
        let money = SqlType::Numeric {
            precision: Some(12),
            scale: Some(2),
        };
        assert_eq!(
            money.param_expr(1, "10.50"),
            "CAST($1::VARCHAR(65535) AS NUMERIC(12,2))"
        );
    }

    #[test]
    fn only_orderable_types_can_be_positions() {
        assert!(SqlType::Timestamp.is_orderable());
        assert!(!SqlType::Super.is_orderable());
        assert!(SqlType::Varchar { length: None }.is_text());
        assert!(!SqlType::Char { length: None }.keeps_trailing_blanks());
    }
}
