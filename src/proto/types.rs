//! How Redshift's column types map to the protocol's DataTypes: a column's type in Schema and
//! in the schema changes Update sends. The source layer knows Redshift's types and nothing of
//! the protocol; this is the one place the two meet.

use super::{data_type_params, DataType, DataTypeParams, DecimalParams};
use crate::source::types::{SqlType, MAX_NUMERIC_PRECISION};

/// The protocol's DataType for a Redshift column type, and its optional parameters.
pub fn data_type(sql_type: &SqlType) -> (DataType, Option<DataTypeParams>) {
    let params = |p| Some(DataTypeParams { params: Some(p) });
    match sql_type {
        SqlType::SmallInt => (DataType::Short, None),
        SqlType::Integer => (DataType::Int, None),
        SqlType::BigInt => (DataType::Long, None),
        SqlType::Numeric {
            precision: Some(precision),
            scale,
        } if *precision <= MAX_NUMERIC_PRECISION => (
            DataType::Decimal,
            params(data_type_params::Params::Decimal(DecimalParams {
                precision: *precision,
                scale: scale.unwrap_or(0).min(37),
            })),
        ),
        SqlType::Numeric { .. } => (DataType::Decimal, None),
        SqlType::Real => (DataType::Float, None),
        SqlType::Double => (DataType::Double, None),
        SqlType::Boolean => (DataType::Boolean, None),
        SqlType::Char { length } | SqlType::Varchar { length } => (
            DataType::String,
            length
                .and_then(|n| i32::try_from(n).ok())
                .and_then(|n| params(data_type_params::Params::StringByteLength(n))),
        ),
        SqlType::Date => (DataType::NaiveDate, None),
        SqlType::Timestamp => (DataType::NaiveDatetime, None),
        SqlType::TimestampTz => (DataType::UtcDatetime, None),
        SqlType::Super => (DataType::Json, None),
        SqlType::VarByte | SqlType::Bytea => (DataType::Binary, None),
        // Times travel as strings: many destinations cannot take NAIVE_TIME. Shapes travel
        // as the hex EWKB Redshift prints for them.
        SqlType::Text
        | SqlType::Time
        | SqlType::TimeTz
        | SqlType::Geometry
        | SqlType::Geography
        | SqlType::HllSketch
        | SqlType::Other { .. } => (DataType::String, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_types_map_to_the_issue_table() {
        let cases = [
            ("int2", DataType::Short),
            ("smallint", DataType::Short),
            ("int4", DataType::Int),
            ("integer", DataType::Int),
            ("int8", DataType::Long),
            ("numeric", DataType::Decimal),
            ("decimal(10,2)", DataType::Decimal),
            ("float4", DataType::Float),
            ("double precision", DataType::Double),
            ("bool", DataType::Boolean),
            ("bpchar", DataType::String),
            ("character varying", DataType::String),
            ("date", DataType::NaiveDate),
            ("timestamp without time zone", DataType::NaiveDatetime),
            ("timestamp with time zone", DataType::UtcDatetime),
            ("time", DataType::String),
            ("time with time zone", DataType::String),
            ("super", DataType::Json),
            ("varbyte", DataType::Binary),
            ("binary varying", DataType::Binary),
            ("geometry", DataType::String),
            ("geography", DataType::String),
            ("hllsketch", DataType::String),
            ("interval day to second", DataType::String),
        ];
        for (name, expected) in cases {
            let sql_type = SqlType::from_catalog(name, Some(10), Some(38), Some(6));
            assert_eq!(data_type(&sql_type).0, expected, "{name}");
        }
    }

    #[test]
    fn precision_and_length_travel_as_parameters() {
        let (_, params) = data_type(&SqlType::from_catalog("numeric", None, Some(38), Some(10)));
        assert_eq!(
            params.unwrap().params,
            Some(data_type_params::Params::Decimal(DecimalParams {
                precision: 38,
                scale: 10
            }))
        );
        let (_, params) = data_type(&SqlType::from_catalog("varchar", Some(256), None, None));
        assert_eq!(
            params.unwrap().params,
            Some(data_type_params::Params::StringByteLength(256))
        );
    }
}
