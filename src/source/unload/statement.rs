//! The `UNLOAD` statement of a table's export.
//!
//! ```text
//!  UNLOAD ('SELECT "src"."id" AS "c0", ... FROM "s"."t" AS "src"
//!           WHERE "src"."updated_at" IS NULL OR "src"."updated_at" <= CAST(''…'' AS TIMESTAMP)')
//!  TO 's3://bucket/prefix/<export>/<table>/' IAM_ROLE default | 'arn:…'
//!  FORMAT AS PARQUET MANIFEST VERBOSE ALLOWOVERWRITE MAXFILESIZE 64 MB [REGION 'r']
//! ```
//!
//! `ALLOWOVERWRITE`: an export killed before its manifest was written runs again into the same
//! prefix (its files are only ever read through the manifest, so leftovers of the first run are
//! never read, and go with the prefix).
//!
//! An UNLOAD's query takes no bind parameters, so the cursor bound is the one value written
//! into SQL: text the connector formatted itself (a timestamp from the database's clock, or the
//! cursor's maximum), checked to hold nothing but digits, letters, `-`, `:`, `.`, `+` and blanks
//! before it is quoted. Inside the statement's string literal every quote is doubled; a name
//! with a backslash (an escape in Redshift's literals) keeps its table on the direct path.
//!
//! Each column is selected as Parquet can carry it from Redshift: numbers, booleans, text,
//! dates, timestamps (TIMESTAMPTZ as UTC, its zone dropped) and SUPER (Parquet's JSON type) as
//! they are; TIME, TIMETZ and intervals as their text (`::VARCHAR`, the text the direct path
//! reads). VARBYTE, GEOMETRY, GEOGRAPHY and HLLSKETCH unload only as text of at most a
//! VARCHAR's 65,535 bytes, which would cut their values short: a table with one of them is
//! read by the direct path.

use super::super::catalog::TableInfo;
use super::super::session::Flavour;
use super::super::sql::{quote_ident, quote_literal};
use super::super::types::SqlType;
use crate::config::UnloadRole;

/// The most a Parquet part file may hold: files are read whole, a few at once, so this bounds
/// the reader's memory (Redshift rounds it to whole row groups).
pub const MAX_FILE_MB: u32 = 64;
/// The largest part file the connector downloads: Redshift rounds `MAXFILESIZE` to whole row
/// groups (32 MB by default), so a file may pass it by a row group; twice the setting bounds
/// that. A larger object is refused before its body is read.
pub const MAX_FILE_BYTES: u64 = 2 * MAX_FILE_MB as u64 * 1024 * 1024;
/// The largest manifest the connector reads: an entry is about 150 bytes, so this is
/// 100,000 files (6 TB in 64 MB files).
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Why a table cannot be exported by UNLOAD (it is read by the direct path instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotExportable(pub String);

/// What one table's export reads.
pub struct UnloadStatement<'a> {
    pub table: &'a TableInfo,
    /// Column indexes, in SELECT order (the Parquet files' column order).
    pub select: &'a [usize],
    /// The cursor column and the greatest value the export reads (NULL cursors included);
    /// `None`: every row.
    pub bound: Option<(usize, &'a str)>,
    /// With `delete_capture = keys`: the pass's key snapshot (quoted) and the key columns; a
    /// row whose cursor is NULL is exported only if its key is in it (see `source::scan`).
    pub key_snapshot: Option<(&'a str, &'a [usize])>,
    /// `s3://bucket/prefix/`, where the part files and the manifest go.
    pub destination: &'a str,
    pub role: &'a UnloadRole,
    pub region: Option<&'a str>,
}

impl UnloadStatement<'_> {
    /// Whether a table with these columns can be exported losslessly.
    pub fn check_columns(table: &TableInfo, select: &[usize]) -> Result<(), NotExportable> {
        for &i in select {
            let column = &table.columns[i];
            if matches!(
                column.sql_type,
                SqlType::VarByte
                    | SqlType::Bytea
                    | SqlType::Geometry
                    | SqlType::Geography
                    | SqlType::HllSketch
            ) {
                return Err(NotExportable(format!(
                    "its column `{}` is of a type ({:?}) UNLOAD writes to Parquet only as text of at most 65,535 bytes",
                    column.name, column.sql_type
                )));
            }
        }
        let names = [table.name.schema.as_str(), table.name.table.as_str()]
            .into_iter()
            .chain(select.iter().map(|&i| table.columns[i].name.as_str()));
        Self::check_names(names)
    }

    /// Whether these names (every name the UNLOAD's query holds) can go inside its quoted
    /// query: a backslash is an escape in Redshift's literals (see `source::sql`).
    pub fn check_names<'n>(names: impl IntoIterator<Item = &'n str>) -> Result<(), NotExportable> {
        for name in names {
            if name.contains('\\') {
                return Err(NotExportable(format!(
                    "the name `{}` holds a backslash, which an UNLOAD's quoted query would read as an escape",
                    crate::config::shorten(name)
                )));
            }
        }
        Ok(())
    }

    /// The SQL, or why this table cannot be exported.
    pub fn sql(&self) -> Result<String, NotExportable> {
        Self::check_columns(self.table, self.select)?;
        let columns = &self.table.columns;
        let column = |i: usize| format!("\"src\".{}", quote_ident(&columns[i].name));
        let projection = self
            .select
            .iter()
            .enumerate()
            .map(|(position, &i)| {
                let expr = match columns[i].sql_type {
                    SqlType::Time | SqlType::TimeTz | SqlType::Other { .. } => {
                        format!("{}::VARCHAR", column(i))
                    }
                    _ => column(i),
                };
                format!("{expr} AS \"c{position}\"")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut query = format!(
            "SELECT {projection} FROM {} AS \"src\"",
            self.table.quoted_name()
        );
        if let Some((cursor, bound)) = self.bound {
            let literal = bound_literal(&columns[cursor].sql_type, bound)?;
            let nulls = match self.key_snapshot {
                // An UNLOAD runs on Redshift alone (the tests' proxy translates its SQL).
                Some((snapshot, key)) => format!(
                    "({} IS NULL AND {})",
                    column(cursor),
                    super::super::work::KeyLayout {
                        table: self.table,
                        key
                    }
                    .in_snapshot(Flavour::Redshift, snapshot, "\"src\""),
                ),
                None => format!("{} IS NULL", column(cursor)),
            };
            query.push_str(&format!(
                " WHERE {nulls} OR {c} <= {literal}",
                c = column(cursor)
            ));
        }
        // Every literal through the one quoter: the query itself (with every name and the
        // bound inside it), the destination, the role and the region.
        let literal =
            |text: &str| quote_literal(text).map_err(|err| NotExportable(err.to_string()));
        let role = match self.role {
            UnloadRole::Default => "default".to_string(),
            UnloadRole::Arns(arns) => literal(arns)?,
        };
        let mut sql = format!(
            "UNLOAD ({}) TO {} IAM_ROLE {role} FORMAT AS PARQUET MANIFEST VERBOSE ALLOWOVERWRITE MAXFILESIZE {MAX_FILE_MB} MB",
            literal(&query)?,
            literal(self.destination)?,
        );
        if let Some(region) = self.region {
            sql.push_str(&format!(" REGION {}", literal(region)?));
        }
        Ok(sql)
    }
}

/// The SQL type a cursor bound of `sql_type` is cast to, if an UNLOAD can compare it exactly
/// (numbers, dates and timestamps); other cursors keep their table on the direct path.
pub fn bound_type(sql_type: &SqlType) -> Option<String> {
    Some(match sql_type {
        SqlType::SmallInt => "SMALLINT".to_string(),
        SqlType::Integer => "INTEGER".to_string(),
        SqlType::BigInt => "BIGINT".to_string(),
        SqlType::Numeric { precision, scale } => format!(
            "NUMERIC({},{})",
            precision.unwrap_or(38),
            scale.unwrap_or(0)
        ),
        SqlType::Date => "DATE".to_string(),
        SqlType::Timestamp => "TIMESTAMP".to_string(),
        SqlType::TimestampTz => "TIMESTAMPTZ".to_string(),
        _ => return None,
    })
}

/// `CAST('<bound>' AS <type>)` for a bound the connector formatted itself.
fn bound_literal(sql_type: &SqlType, bound: &str) -> Result<String, NotExportable> {
    let safe = bound
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '+' | ' '));
    let target = bound_type(sql_type).ok_or_else(|| {
        NotExportable(format!(
            "its cursor's type ({sql_type:?}) has no bound an UNLOAD can compare exactly"
        ))
    })?;
    if !safe || sql_type.check_position_text(bound).is_err() {
        return Err(NotExportable(format!(
            "the cursor bound `{}` cannot be written into SQL safely",
            crate::config::shorten(bound)
        )));
    }
    let quoted = quote_literal(bound).map_err(|err| NotExportable(err.to_string()))?;
    Ok(format!("CAST({quoted} AS {target})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableName;
    use crate::source::catalog::ColumnInfo;

    fn table(name: &str, columns: &[(&str, SqlType)]) -> TableInfo {
        TableInfo {
            name: TableName::new("sales", name),
            columns: columns
                .iter()
                .map(|(name, sql_type)| ColumnInfo {
                    name: name.to_string(),
                    sql_type: sql_type.clone(),
                    primary_key: false,
                })
                .collect(),
            id: None,
        }
    }

    #[test]
    fn the_statement_quotes_the_query_and_bounds_the_cursor() {
        let table = table(
            "o'rders",
            &[
                ("id", SqlType::BigInt),
                ("updated_at", SqlType::Timestamp),
                ("opened", SqlType::Time),
            ],
        );
        let role = UnloadRole::Arns("arn:aws:iam::123456789012:role/unload".into());
        let sql = UnloadStatement {
            table: &table,
            select: &[0, 1, 2],
            bound: Some((1, "2024-05-01 12:00:00.000000")),
            key_snapshot: None,
            destination: "s3://bucket/sync/x1/sales.orders/",
            role: &role,
            region: Some("eu-west-1"),
        }
        .sql()
        .unwrap();
        assert_eq!(
            sql,
            "UNLOAD ('SELECT \"src\".\"id\" AS \"c0\", \"src\".\"updated_at\" AS \"c1\", \"src\".\"opened\"::VARCHAR AS \"c2\" \
             FROM \"sales\".\"o''rders\" AS \"src\" WHERE \"src\".\"updated_at\" IS NULL OR \"src\".\"updated_at\" <= \
             CAST(''2024-05-01 12:00:00.000000'' AS TIMESTAMP)') TO 's3://bucket/sync/x1/sales.orders/' \
             IAM_ROLE 'arn:aws:iam::123456789012:role/unload' FORMAT AS PARQUET MANIFEST VERBOSE ALLOWOVERWRITE MAXFILESIZE 64 MB REGION 'eu-west-1'"
        );
    }

    #[test]
    fn types_parquet_cannot_carry_and_unsafe_bounds_keep_the_direct_path() {
        let shapes = table(
            "shapes",
            &[("id", SqlType::Integer), ("g", SqlType::Geometry)],
        );
        assert!(UnloadStatement::check_columns(&shapes, &[0, 1]).is_err());
        assert!(UnloadStatement::check_columns(&shapes, &[0]).is_ok());
        let slashed = table("a\\b", &[("id", SqlType::Integer)]);
        assert!(UnloadStatement::check_columns(&slashed, &[0]).is_err());
        assert!(bound_literal(&SqlType::Varchar { length: None }, "x").is_err());
        assert!(bound_literal(&SqlType::Timestamp, "2024-01-01'; DROP").is_err());
        assert_eq!(
            bound_literal(&SqlType::BigInt, "-42").unwrap(),
            "CAST('-42' AS BIGINT)"
        );
    }
}
