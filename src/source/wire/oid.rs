//! Type OIDs the connector recognises in result descriptions. Redshift keeps PostgreSQL's OIDs
//! for the types they share and numbers its own above them (AWS drivers' `RedshiftOID`).

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const CHAR: u32 = 18;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const BPCHAR: u32 = 1042;
pub const VARCHAR: u32 = 1043;
pub const DATE: u32 = 1082;
pub const TIME: u32 = 1083;
pub const TIMESTAMP: u32 = 1114;
pub const TIMESTAMPTZ: u32 = 1184;
pub const TIMETZ: u32 = 1266;
pub const NUMERIC: u32 = 1700;
pub const GEOMETRY: u32 = 3000;
pub const GEOGRAPHY: u32 = 3001;
pub const SUPER: u32 = 4000;
pub const VARBYTE: u32 = 6551;

/// Whether Redshift's binary encoding of a type is PostgreSQL's and can be read as such:
/// integers, floats, booleans, character types and timestamps (as AWS's JDBC and Python drivers trust them). Everything else
/// (NUMERIC, DATE, TIME, SUPER, VARBYTE, GEOMETRY, ...) is requested as text.
pub fn binary_is_trusted(oid: u32) -> bool {
    matches!(
        oid,
        BOOL | INT2
            | INT4
            | INT8
            | FLOAT4
            | FLOAT8
            | CHAR
            | BPCHAR
            | VARCHAR
            | TEXT
            | TIMESTAMP
            | TIMESTAMPTZ
    )
}
