//! The local warehouse: a SQLite file that applies the operations of an Update stream the way
//! the hosts' destinations do, so a sync's result can be queried with plain SQL.
//!
//! Layout (see [`layout`]): one table per source table, named `schema.table`; source columns
//! typed from Schema (values converted as in [`value`]), then `_fivetran_synced` and
//! `_fivetran_deleted`; keyless tables get `_fivetran_id`. One more table,
//! `_fivetran_debug_meta`, keeps the last `_fivetran_synced` tick (see [`clock`]).
//!
//! Operations, with the hosts' meaning:
//! - UPSERT replaces the whole row by key (`INSERT OR REPLACE`) and marks it live;
//! - UPDATE sets only the columns it carries (and `_fivetran_synced`) on the row with its key;
//! - DELETE marks the row with its key deleted (soft delete);
//! - TRUNCATE marks every row synced before it deleted (`_fivetran_synced < T`).
//!
//! Writes happen inside a transaction the caller commits with [`Warehouse::commit`]: the runner
//! commits once per checkpoint interval, before it saves the checkpoint's state, so a state file
//! never claims more than the warehouse holds.

pub mod clock;
pub mod layout;
pub mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::proto::{self, DataType, RecordType};
use clock::SyncClock;
use layout::{quote, ExistingTable, TableDef, TableKey, DELETED, ROW_ID, SYNCED};

const META_TABLE: &str = "_fivetran_debug_meta";
const LAST_SYNCED_KEY: &str = "last_synced";
/// Distinct statement shapes (table x column set x operation) kept prepared.
const STATEMENT_CACHE: usize = 256;

/// What went wrong writing the warehouse.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot create the directory for the warehouse {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the warehouse {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the warehouse {} failed a write", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "table {table}: the key changed from ({was}) to ({now}); run again with --reset to re-sync"
    )]
    KeyChanged {
        table: String,
        was: String,
        now: String,
    },
    /// The connector sent something a host would reject.
    #[error("invalid operation for table {table}: {problem}")]
    Invalid { table: String, problem: String },
}

impl WarehouseError {
    fn invalid(table: &TableKey, problem: impl Into<String>) -> Self {
        Self::Invalid {
            table: table.to_string(),
            problem: problem.into(),
        }
    }
}

/// What declaring a table changed in the warehouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    Created,
    ColumnsAdded(Vec<String>),
    Unchanged,
}

/// The warehouse file and the table layouts declared so far in this run.
pub struct Warehouse {
    conn: Connection,
    path: PathBuf,
    tables: BTreeMap<TableKey, TableDef>,
    clock: SyncClock,
    in_transaction: bool,
}

impl Warehouse {
    /// Opens (creating if needed) the warehouse file and its directory.
    pub fn open(path: &Path) -> Result<Self, WarehouseError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| WarehouseError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let open_error = |source| WarehouseError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        // WAL lets `sqlite3` read the file while a sync runs; synchronous=FULL makes each commit
        // durable before the runner writes the state that depends on it.
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        ))
        .map_err(open_error)?;
        let last: Option<String> = conn
            .query_row(
                &format!("SELECT value FROM {META_TABLE} WHERE key = ?1"),
                [LAST_SYNCED_KEY],
                |row| row.get(0),
            )
            .optional()
            .map_err(open_error)?;
        let last = last
            .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
            .map(|at| at.with_timezone(&Utc));
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            tables: BTreeMap::new(),
            clock: SyncClock::after(last),
            in_transaction: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a table was declared in this run (by Schema or SchemaChange).
    pub fn is_declared(&self, key: &TableKey) -> bool {
        self.tables.contains_key(key)
    }

    /// Makes the warehouse table match a declared layout: creates it, or adds the columns it
    /// lacks. Columns the source dropped stay (hosts keep them). A changed key cannot be
    /// applied in place and asks for a re-sync.
    pub fn declare(&mut self, key: &TableKey, def: TableDef) -> Result<Declared, WarehouseError> {
        self.begin()?;
        let outcome = match self.existing(key)? {
            None => {
                self.exec(&def.create_sql(key), &[])?;
                Declared::Created
            }
            Some(existing) => {
                let wanted = def.warehouse_key();
                if existing.key != wanted {
                    return Err(WarehouseError::KeyChanged {
                        table: key.to_string(),
                        was: existing.key.join(", "),
                        now: wanted.join(", "),
                    });
                }
                let mut added = Vec::new();
                for (name, data_type) in &def.columns {
                    if !existing.columns.contains(name) {
                        self.add_column(key, name, *data_type)?;
                        added.push(name.clone());
                    }
                }
                if added.is_empty() {
                    Declared::Unchanged
                } else {
                    Declared::ColumnsAdded(added)
                }
            }
        };
        self.tables.insert(key.clone(), def);
        Ok(outcome)
    }

    /// Applies one record; returns its table and type (for counting).
    pub fn apply(
        &mut self,
        record: &proto::Record,
    ) -> Result<(TableKey, RecordType), WarehouseError> {
        let key = TableKey::of_record(record);
        if !self.tables.contains_key(&key) {
            return Err(WarehouseError::invalid(
                &key,
                "the table was not declared by Schema or a SchemaChange, or is not selected",
            ));
        }
        let record_type = RecordType::try_from(record.r#type).map_err(|_| {
            WarehouseError::invalid(&key, format!("unknown record type {}", record.r#type))
        })?;
        self.begin()?;
        let synced = value::utc_datetime_text(&self.clock.tick());
        match record_type {
            RecordType::Truncate => self.truncate(&key, synced)?,
            RecordType::Upsert => {
                let row = self.convert(&key, record)?;
                self.upsert(&key, row, synced)?;
            }
            RecordType::Update => {
                let row = self.convert(&key, record)?;
                self.update(&key, row, synced)?;
            }
            RecordType::Delete => {
                let row = self.convert(&key, record)?;
                self.delete(&key, row, synced)?;
            }
        }
        Ok((key, record_type))
    }

    /// Commits the open transaction, if any, with the clock's last tick.
    pub fn commit(&mut self) -> Result<(), WarehouseError> {
        if !self.in_transaction {
            return Ok(());
        }
        let last = value::utc_datetime_text(&self.clock.last());
        self.exec(
            &format!("INSERT OR REPLACE INTO {META_TABLE} (key, value) VALUES (?1, ?2)"),
            &[Value::Text(LAST_SYNCED_KEY.into()), Value::Text(last)],
        )?;
        self.exec("COMMIT", &[])?;
        self.in_transaction = false;
        Ok(())
    }

    /// Drops every write since the last commit (what a crash would do).
    pub fn rollback(&mut self) -> Result<(), WarehouseError> {
        if self.in_transaction {
            self.exec("ROLLBACK", &[])?;
            self.in_transaction = false;
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), WarehouseError> {
        if !self.in_transaction {
            self.exec("BEGIN IMMEDIATE", &[])?;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// The record's values as SQLite values, sorted by column name (so equal column sets give
    /// equal statements), after checking them against the declared types. A column no schema
    /// declared is added with a type inferred from its value, as hosts do.
    fn convert(
        &mut self,
        key: &TableKey,
        record: &proto::Record,
    ) -> Result<Vec<(String, Value)>, WarehouseError> {
        let mut row = Vec::with_capacity(record.data.len());
        for (column, wire) in &record.data {
            let declared = self
                .tables
                .get(key)
                .and_then(|def| def.declared_type(column));
            match declared {
                Some(declared) if !value::matches_declared(declared, wire) => {
                    return Err(WarehouseError::invalid(
                        key,
                        format!(
                            "column `{column}` is declared {} but carries {}",
                            declared.as_str_name(),
                            describe(wire)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    let inferred = value::inferred_type(wire);
                    self.add_column(key, column, inferred)?;
                    if let Some(def) = self.tables.get_mut(key) {
                        def.columns.push((column.clone(), inferred));
                    }
                }
            }
            let converted = value::to_sql(wire).map_err(|problem| {
                WarehouseError::invalid(key, format!("column `{column}`: {problem}"))
            })?;
            row.push((column.clone(), converted));
        }
        row.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(row)
    }

    fn upsert(
        &mut self,
        key: &TableKey,
        mut row: Vec<(String, Value)>,
        synced: String,
    ) -> Result<(), WarehouseError> {
        let primary_key = self.primary_key(key);
        if primary_key.is_empty() {
            let id = value::row_hash(row.iter().map(|(c, v)| (c.as_str(), v)));
            row.push((ROW_ID.to_string(), Value::Text(id)));
        } else {
            check_key(key, &primary_key, &row)?;
        }
        row.push((SYNCED.to_string(), Value::Text(synced)));
        row.push((DELETED.to_string(), Value::Integer(0)));
        let columns: Vec<String> = row.iter().map(|(c, _)| quote(c)).collect();
        let placeholders: Vec<String> = (1..=row.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT OR REPLACE INTO {} ({}) VALUES ({})",
            quote(&key.to_string()),
            columns.join(", "),
            placeholders.join(", ")
        );
        let values: Vec<Value> = row.into_iter().map(|(_, v)| v).collect();
        self.exec(&sql, &values)?;
        Ok(())
    }

    fn update(
        &mut self,
        key: &TableKey,
        row: Vec<(String, Value)>,
        synced: String,
    ) -> Result<(), WarehouseError> {
        let primary_key = self.primary_key(key);
        if primary_key.is_empty() {
            return Err(WarehouseError::invalid(
                key,
                "UPDATE needs a primary key to find its row; the table has none",
            ));
        }
        check_key(key, &primary_key, &row)?;
        let (key_values, changed): (Vec<_>, Vec<_>) = row
            .into_iter()
            .partition(|(column, _)| primary_key.contains(column));
        let mut assignments: Vec<String> = changed
            .iter()
            .enumerate()
            .map(|(i, (column, _))| format!("{} = ?{}", quote(column), i + 1))
            .collect();
        assignments.push(format!("{} = ?{}", quote(SYNCED), changed.len() + 1));
        let mut values: Vec<Value> = changed.into_iter().map(|(_, v)| v).collect();
        values.push(Value::Text(synced));
        let condition = key_condition(&key_values, values.len());
        values.extend(key_values.into_iter().map(|(_, v)| v));
        let sql = format!(
            "UPDATE {} SET {} WHERE {condition}",
            quote(&key.to_string()),
            assignments.join(", ")
        );
        self.exec(&sql, &values)?;
        Ok(())
    }

    fn delete(
        &mut self,
        key: &TableKey,
        row: Vec<(String, Value)>,
        synced: String,
    ) -> Result<(), WarehouseError> {
        let primary_key = self.primary_key(key);
        let key_values: Vec<(String, Value)> = if primary_key.is_empty() {
            let id = value::row_hash(row.iter().map(|(c, v)| (c.as_str(), v)));
            vec![(ROW_ID.to_string(), Value::Text(id))]
        } else {
            check_key(key, &primary_key, &row)?;
            row.into_iter()
                .filter(|(column, _)| primary_key.contains(column))
                .collect()
        };
        let condition = key_condition(&key_values, 1);
        let sql = format!(
            "UPDATE {} SET {} = 1, {} = ?1 WHERE {condition}",
            quote(&key.to_string()),
            quote(DELETED),
            quote(SYNCED)
        );
        let mut values = vec![Value::Text(synced)];
        values.extend(key_values.into_iter().map(|(_, v)| v));
        self.exec(&sql, &values)?;
        Ok(())
    }

    /// Soft-deletes every row written before this TRUNCATE's tick; rows upserted after it in
    /// the same run have later ticks and stay.
    fn truncate(&mut self, key: &TableKey, synced: String) -> Result<(), WarehouseError> {
        let sql = format!(
            "UPDATE {} SET {deleted} = 1 WHERE {synced_column} < ?1 AND {deleted} = 0",
            quote(&key.to_string()),
            deleted = quote(DELETED),
            synced_column = quote(SYNCED)
        );
        self.exec(&sql, &[Value::Text(synced)])?;
        Ok(())
    }

    fn primary_key(&self, key: &TableKey) -> Vec<String> {
        self.tables
            .get(key)
            .map(|def| def.primary_key.clone())
            .unwrap_or_default()
    }

    fn add_column(
        &mut self,
        key: &TableKey,
        column: &str,
        data_type: DataType,
    ) -> Result<(), WarehouseError> {
        let sql = format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            quote(&key.to_string()),
            quote(column),
            layout::sqlite_type(data_type)
        );
        self.exec(&sql, &[])
    }

    fn existing(&self, key: &TableKey) -> Result<Option<ExistingTable>, WarehouseError> {
        let sql = format!("PRAGMA table_info({})", quote(&key.to_string()));
        let rows = self
            .conn
            .prepare(&sql)
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| {
                        Ok((row.get::<_, String>(1)?, row.get::<_, i64>(5)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|source| self.sqlite_error(source))?;
        Ok((!rows.is_empty()).then(|| ExistingTable::from_pragma(rows)))
    }

    fn exec(&self, sql: &str, values: &[Value]) -> Result<(), WarehouseError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(params_from_iter(values)))
            .map(|_| ())
            .map_err(|source| self.sqlite_error(source))
    }

    fn sqlite_error(&self, source: rusqlite::Error) -> WarehouseError {
        WarehouseError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// Every key column must be present and not NULL, or the row cannot be found again.
fn check_key(
    key: &TableKey,
    primary_key: &[String],
    row: &[(String, Value)],
) -> Result<(), WarehouseError> {
    for column in primary_key {
        match row.iter().find(|(name, _)| name == column) {
            None => {
                return Err(WarehouseError::invalid(
                    key,
                    format!("the record lacks primary-key column `{column}`"),
                ))
            }
            Some((_, Value::Null)) => {
                return Err(WarehouseError::invalid(
                    key,
                    format!("primary-key column `{column}` is NULL"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `"a" = ?n AND "b" = ?n+1 ...`, numbering placeholders after the `before` already used.
fn key_condition(key_values: &[(String, Value)], before: usize) -> String {
    key_values
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{} = ?{}", quote(column), before + i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The kind of a wire value, for messages (never the value itself: it may be personal data).
fn describe(value: &proto::ValueType) -> &'static str {
    use proto::value_type::Inner;
    match &value.inner {
        None => "no value",
        Some(Inner::Null(_)) => "null",
        Some(Inner::Bool(_)) => "a bool",
        Some(Inner::Short(_)) => "a short",
        Some(Inner::Int(_)) => "an int",
        Some(Inner::Long(_)) => "a long",
        Some(Inner::Float(_)) => "a float",
        Some(Inner::Double(_)) => "a double",
        Some(Inner::NaiveDate(_)) => "a naive_date",
        Some(Inner::NaiveDatetime(_)) => "a naive_datetime",
        Some(Inner::UtcDatetime(_)) => "a utc_datetime",
        Some(Inner::NaiveTime(_)) => "a naive_time",
        Some(Inner::Decimal(_)) => "a decimal",
        Some(Inner::Binary(_)) => "a binary",
        Some(Inner::String(_)) => "a string",
        Some(Inner::Json(_)) => "a json",
        Some(Inner::Xml(_)) => "an xml",
    }
}

#[cfg(test)]
mod tests;
