//! How a source table looks in the SQLite warehouse: its name, its typed columns, its key.
//!
//! One SQLite table per source table, named `schema.table` (a single quoted identifier, e.g.
//! `SELECT * FROM "public.customers"`), so one file holds every schema and one transaction covers
//! every table.
//!
//! Names must not collide, and SQLite compares names without regard to case: `Orders` and
//! `orders` would be one table, `"a.b"."c"` and `"a"."b.c"` one name. So a name is used as it
//! is only when it is *plain* (no ASCII upper-case letter, no `~`, and for a table no `.` in its
//! schema or table); any other carries `~` and the fingerprint of the exact names
//! (`"public.Orders~k5…"`, see `crate::fingerprint`). Plain names differ from each other
//! whatever SQLite's rules, and from every marked one, so the mapping is one to one. Each has the source columns, then `_fivetran_synced` (when the warehouse last wrote
//! the row, UTC ISO-8601 text) and `_fivetran_deleted` (0/1, soft deletes). The primary key is the
//! source's; a table without one gets `_fivetran_id`, a hash of the row, as its key.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::debug::records::{Record, RecordBatch};
use crate::proto::{self, DataType};

pub const SYNCED: &str = "_fivetran_synced";
pub const DELETED: &str = "_fivetran_deleted";
pub const ROW_ID: &str = "_fivetran_id";

/// A table as the protocol names it: `schema.table`, or `table` in schema-less catalogs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableKey {
    pub schema: Option<String>,
    pub table: String,
}

impl TableKey {
    pub fn new(schema: Option<&str>, table: &str) -> Self {
        Self {
            schema: schema.map(str::to_string),
            table: table.to_string(),
        }
    }

    /// The key a record names (`schema_name` is optional on the wire).
    pub fn of_record(batch: &RecordBatch, record: &Record) -> Self {
        Self::new(
            record.schema.as_ref().map(|r| batch.text(r)),
            batch.text(&record.table),
        )
    }

    /// The table's name in SQLite (see the module's note on names).
    pub fn sqlite_name(&self) -> String {
        let plain = |part: &str| is_plain(part) && !part.contains('.');
        match &self.schema {
            Some(schema) if plain(schema) && plain(&self.table) => {
                format!("{schema}.{}", self.table)
            }
            Some(schema) => format!(
                "{schema}.{}{MARK}{}",
                self.table,
                crate::fingerprint::of(&[schema, &self.table])
            ),
            None if plain(&self.table) => self.table.clone(),
            None => format!(
                "{}{MARK}{}",
                self.table,
                crate::fingerprint::of(&[&self.table])
            ),
        }
    }

    /// Whether `record` names this table (without building its key).
    pub fn is_named_by(&self, batch: &RecordBatch, record: &Record) -> bool {
        self.table == batch.text(&record.table)
            && self.schema.as_deref() == record.schema.as_ref().map(|r| batch.text(r))
    }
}

/// `schema.table` as the configuration writes names: a part with a dot, a quote or a comma
/// in double quotes (`"a.b".c`), so that no two tables read alike.
impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(name: &str) -> Cow<'_, str> {
            if name.contains(['.', '"', ',']) {
                Cow::Owned(format!("\"{}\"", name.replace('"', "\"\"")))
            } else {
                Cow::Borrowed(name)
            }
        }
        match &self.schema {
            Some(schema) => write!(f, "{}.{}", part(schema), part(&self.table)),
            None => f.write_str(&part(&self.table)),
        }
    }
}

/// The columns of one table as declared by Schema or SchemaChange.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// Column name to declared type, in declaration order.
    pub columns: Vec<(String, DataType)>,
    /// Primary-key columns in declaration order; empty when the table has none.
    pub primary_key: Vec<String>,
}

impl TableDef {
    /// Reads a protocol table; unknown type numbers are an error naming the column.
    pub fn from_proto(table: &proto::Table) -> Result<Self, String> {
        let mut columns = Vec::with_capacity(table.columns.len());
        let mut primary_key = Vec::new();
        for column in &table.columns {
            let data_type = DataType::try_from(column.r#type).map_err(|_| {
                format!(
                    "column `{}` has unknown data type {}",
                    column.name, column.r#type
                )
            })?;
            if [SYNCED, DELETED, ROW_ID].contains(&column.name.as_str()) {
                return Err(format!(
                    "column `{}` clashes with a column the warehouse adds",
                    column.name
                ));
            }
            columns.push((column.name.clone(), data_type));
            if column.primary_key {
                primary_key.push(column.name.clone());
            }
        }
        Ok(Self {
            columns,
            primary_key,
        })
    }

    pub fn declared_type(&self, column: &str) -> Option<DataType> {
        self.columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, data_type)| *data_type)
    }

    /// The warehouse's key columns: the source's primary key, else `_fivetran_id`.
    pub fn warehouse_key(&self) -> Vec<String> {
        if self.primary_key.is_empty() {
            vec![ROW_ID.to_string()]
        } else {
            self.primary_key.clone()
        }
    }

    /// [`warehouse_key`](Self::warehouse_key) under the columns' SQLite names.
    pub fn sqlite_key(&self) -> Vec<String> {
        self.warehouse_key()
            .iter()
            .map(|c| sqlite_column(c).into_owned())
            .collect()
    }

    /// `CREATE TABLE` for this layout: the columns, the key's NOT NULL; the key's unique index
    /// is the warehouse's to build.
    pub fn create_sql(&self, key: &TableKey) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|(name, data_type)| {
                let not_null = if self.primary_key.contains(name) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!(
                    "{} {}{not_null}",
                    quote_column(name),
                    sqlite_type(*data_type)
                )
            })
            .collect();
        if self.primary_key.is_empty() {
            parts.push(format!("{} TEXT NOT NULL", quote(ROW_ID)));
        }
        parts.push(format!("{} TEXT NOT NULL", quote(SYNCED)));
        parts.push(format!("{} BOOLEAN NOT NULL DEFAULT 0", quote(DELETED)));
        // The key is a unique index of its own (see `warehouse`'s note on loads).
        format!(
            "CREATE TABLE {} ({})",
            quote(&key.sqlite_name()),
            parts.join(", ")
        )
    }
}

/// The declared SQLite type of a column. The names are chosen for their affinity: INTEGER and
/// REAL store numbers, TEXT keeps decimals and timestamps exactly as sent (NUMERIC affinity
/// would turn `1.10` into 1.1), BLOB (affinity none) stores bytes untouched, and BOOLEAN
/// (numeric affinity) documents 0/1.
pub fn sqlite_type(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "BOOLEAN",
        DataType::Short | DataType::Int | DataType::Long => "INTEGER",
        DataType::Float | DataType::Double => "REAL",
        DataType::Binary => "BLOB",
        DataType::Decimal
        | DataType::NaiveDate
        | DataType::NaiveDatetime
        | DataType::UtcDatetime
        | DataType::NaiveTime
        | DataType::String
        | DataType::Json
        | DataType::Xml => "TEXT",
        // No declared type: SQLite stores each value as it comes.
        DataType::Unspecified => "",
    }
}

/// Marks a name that carries a fingerprint.
const MARK: char = '~';

/// Whether SQLite can take `name` as it is (see the module's note on names).
fn is_plain(name: &str) -> bool {
    !name.contains(MARK) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

/// A source column's name in SQLite (see the module's note on names).
pub fn sqlite_column(name: &str) -> Cow<'_, str> {
    if is_plain(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name}{MARK}{}", crate::fingerprint::of(&[name])))
    }
}

/// A source column, quoted under its SQLite name.
pub fn quote_column(name: &str) -> String {
    quote(&sqlite_column(name))
}

/// Quotes an SQL identifier (doubling embedded quotes), so any name is safe in SQL text.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The SQLite columns of an existing table and its key, read back from `PRAGMA table_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingTable {
    pub columns: Vec<String>,
    pub key: Vec<String>,
}

impl ExistingTable {
    pub fn from_pragma(rows: Vec<(String, i64)>) -> Self {
        let mut keyed: BTreeMap<i64, String> = BTreeMap::new();
        let mut columns = Vec::with_capacity(rows.len());
        for (name, pk_position) in rows {
            if pk_position > 0 {
                keyed.insert(pk_position, name.clone());
            }
            columns.push(name);
        }
        Self {
            columns,
            key: keyed.into_values().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: DataType, primary_key: bool) -> proto::Column {
        proto::Column {
            name: name.into(),
            r#type: data_type as i32,
            primary_key,
            params: None,
        }
    }

    #[test]
    fn keyed_table_ddl() {
        let table = proto::Table {
            name: "customers".into(),
            columns: vec![
                column("customer_id", DataType::Int, true),
                column("balance", DataType::Decimal, false),
            ],
        };
        let def = TableDef::from_proto(&table).unwrap();
        let key = TableKey::new(Some("public"), "customers");
        assert_eq!(
            def.create_sql(&key),
            "CREATE TABLE \"public.customers\" (\"customer_id\" INTEGER NOT NULL, \
             \"balance\" TEXT, \"_fivetran_synced\" TEXT NOT NULL, \
             \"_fivetran_deleted\" BOOLEAN NOT NULL DEFAULT 0)"
        );
    }

    #[test]
    fn keyless_table_keys_on_row_hash() {
        let table = proto::Table {
            name: "events".into(),
            columns: vec![column("payload", DataType::Json, false)],
        };
        let def = TableDef::from_proto(&table).unwrap();
        assert_eq!(def.warehouse_key(), vec![ROW_ID.to_string()]);
        assert!(def
            .create_sql(&TableKey::new(None, "events"))
            .contains("\"_fivetran_id\" TEXT NOT NULL"));
    }

    #[test]
    fn clashing_and_unknown_columns_are_rejected() {
        let clash = proto::Table {
            name: "t".into(),
            columns: vec![column("_fivetran_synced", DataType::String, false)],
        };
        assert!(TableDef::from_proto(&clash).is_err());
        let mut unknown = column("c", DataType::Int, false);
        unknown.r#type = 99;
        let table = proto::Table {
            name: "t".into(),
            columns: vec![unknown],
        };
        assert!(TableDef::from_proto(&table).unwrap_err().contains("99"));
    }

    #[test]
    fn names_sqlite_could_confuse_carry_a_fingerprint() {
        let plain = TableKey::new(Some("public"), "orders");
        assert_eq!(plain.sqlite_name(), "public.orders");
        let names = [
            plain.sqlite_name(),
            TableKey::new(Some("public"), "Orders").sqlite_name(),
            TableKey::new(Some("Public"), "orders").sqlite_name(),
            TableKey::new(Some("a.b"), "c").sqlite_name(),
            TableKey::new(Some("a"), "b.c").sqlite_name(),
            TableKey::new(Some("a"), "b").sqlite_name(),
            TableKey::new(None, "a.b").sqlite_name(),
            TableKey::new(Some("a"), "b~x").sqlite_name(),
        ];
        // One to one even as SQLite compares names (without regard to ASCII case).
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert!(!a.eq_ignore_ascii_case(b), "{a} / {b}");
            }
        }
        assert!(names[1].starts_with("public.Orders~"), "{}", names[1]);
        assert_eq!(sqlite_column("id"), "id");
        assert!(!sqlite_column("Id").eq_ignore_ascii_case(&sqlite_column("id")));
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn pragma_key_follows_key_position() {
        let existing =
            ExistingTable::from_pragma(vec![("b".into(), 2), ("a".into(), 1), ("c".into(), 0)]);
        assert_eq!(existing.key, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(existing.columns.len(), 3);
    }
}
