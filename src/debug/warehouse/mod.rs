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
//!
//! **A load defers its key index.** A table synced by its cursor delivers its keys in any
//! order, and writing each row into its place in a key-ordered B-tree touches a random page
//! per row: once the table outgrows SQLite's page cache every row costs a page read and a page
//! write (45k rows/s at 1M shuffled keys, falling as the table grew). So a table's key is a
//! unique index of its own (`"<table>~key"`), not the table's B-tree; while a table is loaded
//! from scratch (it was just created, or a TRUNCATE began its re-sync) the index is set aside,
//! each UPSERT is appended in arrival order (one page, whatever the key), and the index is
//! built again in one sorted pass over the keys alone: at the end of the run, before any
//! other operation on that table that must find a row by key (UPDATE, DELETE), and when a
//! warehouse opens with an index a killed run left unbuilt (its rows were committed, so the
//! invariant above holds, and a re-run heals). A key sent twice during a load leaves two rows
//! until then; the build keeps the later (the higher rowid), as `INSERT OR REPLACE` would
//! have. The key's columns are kept in `_fivetran_debug_meta` (`key:<table>`), so the table's
//! key is known while its index is away. Warehouses of earlier releases, whose tables hold
//! their key as their own `PRIMARY KEY`, load as before.

pub mod clock;
pub mod layout;
pub mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension};

use crate::debug::records::{Record, RecordBatch, WireValue};
use crate::proto::{self, DataType, RecordType};
use clock::SyncClock;
use layout::{quote, quote_column, ExistingTable, TableDef, TableKey, DELETED, ROW_ID, SYNCED};

const META_TABLE: &str = "_fivetran_debug_meta";
const LAST_SYNCED_KEY: &str = "last_synced";
/// SQLite's page cache, in KiB (negative: a size, not a page count): also the memory the
/// sorter of a merge works in before it spills runs to temporary files.
pub const CACHE_KIB: i64 = -64 * 1024;
/// A table's key index is named by its SQLite name and this suffix (see the module's note).
const KEY_INDEX_SUFFIX: &str = "~key";
/// In the meta table, `key:<table>` holds the table's key columns (a JSON list).
const KEY_ENTRY_PREFIX: &str = "key:";
/// WAL pages (4 KiB) after which a commit copies the WAL back into the file.
const WAL_CHECKPOINT_PAGES: i64 = 16 * 1024;
/// Rows one UPSERT statement writes at most.
const UPSERT_ROWS: usize = 50;
/// SQLite's limit on a statement's parameters (`SQLITE_MAX_VARIABLE_NUMBER` since 3.32).
const MAX_VARIABLES: usize = 32_766;
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
    #[error("cannot create the warehouse {} readable by its owner alone", path.display())]
    Create {
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
    /// UPSERT statements by table, column set and row count (see `write_upsert_statement`), and the buffer their
    /// lookup key is written into.
    upsert_sql: std::collections::HashMap<String, String>,
    signature: String,
    /// Tables (SQLite names) whose key index is set aside while they load (see the module's
    /// note), with their key columns.
    deferred: BTreeMap<String, Vec<String>>,
}

/// Consecutive UPSERTs of one table and one column set, not written yet: they go to SQLite
/// together (see [`Warehouse::write_upserts`]), before any other operation.
#[derive(Default)]
struct PendingUpserts<'r> {
    table: Option<TableKey>,
    /// Their `_fivetran_synced` (one per message, or after a TRUNCATE).
    synced: String,
    rows: Vec<Vec<(&'r str, Value)>>,
}

impl<'r> PendingUpserts<'r> {
    fn push(
        &mut self,
        warehouse: &mut Warehouse,
        table: &TableKey,
        row: Vec<(&'r str, Value)>,
        synced: &str,
    ) -> Result<(), WarehouseError> {
        // The tick changes only at a TRUNCATE, which flushed the rows before it.
        debug_assert!(self.rows.is_empty() || self.synced == synced);
        let same_shape = self.table.as_ref() == Some(table)
            && self.rows.first().is_some_and(|first| {
                first.len() == row.len() && first.iter().zip(&row).all(|(a, b)| a.0 == b.0)
            });
        if !same_shape {
            self.flush(warehouse)?;
            self.table = Some(table.clone());
            synced.clone_into(&mut self.synced);
        }
        self.rows.push(row);
        Ok(())
    }

    fn flush(&mut self, warehouse: &mut Warehouse) -> Result<(), WarehouseError> {
        if let Some(table) = &self.table {
            warehouse.write_upserts(table, &self.rows, &self.synced)?;
        }
        self.rows.clear();
        Ok(())
    }
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
        owner_only(path).map_err(|source| WarehouseError::Create {
            path: path.to_path_buf(),
            source,
        })?;
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
        // A page cache that holds a large table's index and the pages a commit interval
        // dirties (the default 2 MiB spilled them to the WAL and read them back mid-way), and
        // a WAL copied back into the file every 64 MiB instead of every 4 MiB.
        conn.pragma_update(None, "cache_size", CACHE_KIB)
            .map_err(open_error)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
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
            upsert_sql: std::collections::HashMap::new(),
            signature: String::new(),
            deferred: BTreeMap::new(),
        })
        .and_then(|mut warehouse| {
            warehouse.build_leftover_key_indexes()?;
            Ok(warehouse)
        })
    }

    /// Builds the key indexes a killed run left set aside, before anything else happens.
    fn build_leftover_key_indexes(&mut self) -> Result<(), WarehouseError> {
        self.find_deferred()?;
        if self.deferred.is_empty() {
            return Ok(());
        }
        self.build_key_indexes()?;
        self.commit()
    }

    /// The tables whose key the meta table records but whose key index is not built (what a
    /// commit made durable).
    fn find_deferred(&mut self) -> Result<(), WarehouseError> {
        let keyed: Vec<(String, String)> = self
            .conn
            .prepare(&format!(
                "SELECT substr(m.key, {}), m.value FROM {META_TABLE} AS m \
                 WHERE m.key LIKE ?1 AND NOT EXISTS (SELECT 1 FROM sqlite_master AS s \
                 WHERE s.type = 'index' AND s.name = substr(m.key, {}) || ?2)",
                KEY_ENTRY_PREFIX.len() + 1,
                KEY_ENTRY_PREFIX.len() + 1
            ))
            .and_then(|mut statement| {
                statement
                    .query_map(
                        [format!("{KEY_ENTRY_PREFIX}%"), KEY_INDEX_SUFFIX.to_string()],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )?
                    .collect()
            })
            .map_err(|source| self.sqlite_error(source))?;
        self.deferred = keyed
            .into_iter()
            .filter_map(|(table, columns)| Some((table, serde_json::from_str(&columns).ok()?)))
            .collect();
        Ok(())
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
                // A new table loads from scratch: its key index is built at the end.
                let table = key.sqlite_name();
                self.exec(&def.create_sql(key), &[])?;
                let columns = def.sqlite_key();
                self.exec(
                    &format!("INSERT OR REPLACE INTO {META_TABLE} (key, value) VALUES (?1, ?2)"),
                    &[
                        Value::Text(format!("{KEY_ENTRY_PREFIX}{table}")),
                        Value::Text(serde_json::to_string(&columns).expect("a list of names")),
                    ],
                )?;
                self.deferred.insert(table, columns);
                Declared::Created
            }
            Some(existing) => {
                let wanted = def.sqlite_key();
                if existing.key != wanted {
                    return Err(WarehouseError::KeyChanged {
                        table: key.to_string(),
                        was: existing.key.join(", "),
                        now: wanted.join(", "),
                    });
                }
                let mut added = Vec::new();
                for (name, data_type) in &def.columns {
                    if !existing
                        .columns
                        .iter()
                        .any(|c| *c == layout::sqlite_column(name))
                    {
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

    /// Applies one record of prost's; returns its table and type (for counting).
    pub fn apply(
        &mut self,
        record: &proto::Record,
    ) -> Result<(TableKey, RecordType), WarehouseError> {
        let batch = RecordBatch::of_records(vec![record.clone()]).map_err(|err| {
            WarehouseError::invalid(
                &TableKey::new(record.schema_name.as_deref(), &record.table_name),
                err.to_string(),
            )
        })?;
        self.apply_batch(&batch)?;
        let record_type = RecordType::try_from(record.r#type).expect("checked when applied");
        let parsed = &batch.records[0];
        Ok((TableKey::of_record(&batch, parsed), record_type))
    }

    /// Applies the records of one message, in order. The records share one `_fivetran_synced` tick, except that a
    /// TRUNCATE takes a new one (it marks what came before it, in this message too), which
    /// the records after it share: a tick per record cost more than SQLite's write.
    pub fn apply_batch(&mut self, batch: &RecordBatch) -> Result<(), WarehouseError> {
        let mut synced: Option<String> = None;
        let mut key: Option<TableKey> = None;
        let mut pending = PendingUpserts::default();
        for record in &batch.records {
            if !key
                .as_ref()
                .is_some_and(|key| key.is_named_by(batch, record))
            {
                let new_key = TableKey::of_record(batch, record);
                if !self.tables.contains_key(&new_key) {
                    return Err(WarehouseError::invalid(
                        &new_key,
                        "the table was not declared by Schema or a SchemaChange, or is not selected",
                    ));
                }
                key = Some(new_key);
            }
            let key = key.as_ref().expect("set above");
            let record_type = RecordType::try_from(record.kind).map_err(|_| {
                WarehouseError::invalid(key, format!("unknown record type {}", record.kind))
            })?;
            self.begin()?;
            if record_type == RecordType::Truncate || synced.is_none() {
                synced = Some(value::utc_datetime_text(&self.clock.tick()));
            }
            let synced = synced.as_deref().expect("set above");
            if record_type != RecordType::Upsert {
                pending.flush(self)?;
            }
            match record_type {
                RecordType::Truncate => {
                    self.truncate(key, synced)?;
                    // The table's rows come again, in any key order: load them appended.
                    self.defer_key_index(key)?;
                }
                RecordType::Upsert => {
                    let row = self.convert(key, batch, record)?;
                    let row = self.upsert_row(key, row)?;
                    pending.push(self, key, row, synced)?;
                }
                RecordType::Update => {
                    self.build_key_index_of(key)?;
                    let row = self.convert(key, batch, record)?;
                    self.update(key, row, synced)?;
                }
                RecordType::Delete => {
                    self.build_key_index_of(key)?;
                    let row = self.convert(key, batch, record)?;
                    self.delete(key, row, synced)?;
                }
            }
        }
        pending.flush(self)
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
        // What a commit left set aside stays so, to build as before.
        self.find_deferred()
    }

    /// Builds every key index set aside (see the module's note): the end of a run, before
    /// its last commit. Returns how many were built.
    pub fn build_key_indexes(&mut self) -> Result<usize, WarehouseError> {
        let tables = std::mem::take(&mut self.deferred);
        if !tables.is_empty() {
            self.begin()?;
        }
        for (table, key) in &tables {
            self.build_key_index(table, key)?;
        }
        Ok(tables.len())
    }

    /// Builds `key`'s index if it is set aside: an operation is about to find a row by key.
    fn build_key_index_of(&mut self, key: &TableKey) -> Result<(), WarehouseError> {
        if let Some(columns) = self.deferred.remove(&key.sqlite_name()) {
            self.build_key_index(&key.sqlite_name(), &columns)?;
        }
        Ok(())
    }

    /// Sets `key`'s index aside while its rows load again (tables of the layout with a key
    /// index; one of an earlier release keeps its `PRIMARY KEY`).
    fn defer_key_index(&mut self, key: &TableKey) -> Result<(), WarehouseError> {
        let table = key.sqlite_name();
        if self.deferred.contains_key(&table) {
            return Ok(());
        }
        let Some(columns) = self.key_entry(&table)? else {
            return Ok(());
        };
        self.exec(
            &format!(
                "DROP INDEX IF EXISTS {}",
                quote(&format!("{table}{KEY_INDEX_SUFFIX}"))
            ),
            &[],
        )?;
        self.deferred.insert(table, columns);
        Ok(())
    }

    /// `CREATE UNIQUE INDEX` on the table's key; if a key was sent twice while the index was
    /// away, the later row (the higher rowid) is kept and the earlier removed first, as
    /// `INSERT OR REPLACE` would have.
    fn build_key_index(&mut self, table: &str, key: &[String]) -> Result<(), WarehouseError> {
        let columns = key.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let create = format!(
            "CREATE UNIQUE INDEX {} ON {} ({columns})",
            quote(&format!("{table}{KEY_INDEX_SUFFIX}")),
            quote(table)
        );
        match self.conn.execute(&create, []) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::ConstraintViolation => {}
            Err(source) => return Err(self.sqlite_error(source)),
        }
        self.exec(
            &format!(
                "DELETE FROM {t} WHERE rowid NOT IN (SELECT MAX(rowid) FROM {t} GROUP BY {columns})",
                t = quote(table)
            ),
            &[],
        )?;
        self.exec(&create, &[])
    }

    /// The key columns the meta table records for `table` (SQLite names); `None` for a table
    /// of an earlier release's layout.
    fn key_entry(&self, table: &str) -> Result<Option<Vec<String>>, WarehouseError> {
        let value: Option<String> = self
            .conn
            .query_row(
                &format!("SELECT value FROM {META_TABLE} WHERE key = ?1"),
                [format!("{KEY_ENTRY_PREFIX}{table}")],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| self.sqlite_error(source))?;
        Ok(value.and_then(|text| serde_json::from_str(&text).ok()))
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
    fn convert<'r>(
        &mut self,
        key: &TableKey,
        batch: &'r RecordBatch,
        record: &Record,
    ) -> Result<Vec<(&'r str, Value)>, WarehouseError> {
        let columns = batch.columns_of(record);
        let mut row = Vec::with_capacity(columns.len() + 3);
        let mut undeclared = Vec::new();
        let def = self.tables.get(key);
        for column in columns {
            let name = batch.text(&column.name);
            let wire = &column.value;
            match def.and_then(|def| def.declared_type(name)) {
                Some(declared) if !value::matches_declared(declared, wire) => {
                    return Err(WarehouseError::invalid(
                        key,
                        format!(
                            "column `{name}` is declared {} but carries {}",
                            declared.as_str_name(),
                            describe(wire)
                        ),
                    ));
                }
                Some(_) => {}
                None => undeclared.push((name, value::inferred_type(wire))),
            }
            let converted = value::to_sql(wire, batch).map_err(|problem| {
                WarehouseError::invalid(key, format!("column `{name}`: {problem}"))
            })?;
            row.push((name, converted));
        }
        for (column, inferred) in undeclared {
            self.add_column(key, column, inferred)?;
            if let Some(def) = self.tables.get_mut(key) {
                def.columns.push((column.to_string(), inferred));
            }
        }
        // The sender writes a table's columns in one order: equal column sets give equal
        // statements.
        Ok(row)
    }

    /// An UPSERT's row as written: its values and the key of a keyless row (the warehouse's
    /// own columns are the statement's, see `write_upsert_statement`).
    fn upsert_row<'r>(
        &self,
        key: &TableKey,
        mut row: Vec<(&'r str, Value)>,
    ) -> Result<Vec<(&'r str, Value)>, WarehouseError> {
        if self.primary_key(key).is_empty() {
            let id = value::row_hash(row.iter().map(|(c, v)| (*c, v)));
            row.push((ROW_ID, Value::Text(id)));
        } else {
            check_key(key, self.primary_key(key), &row)?;
        }
        Ok(row)
    }

    /// Writes rows of one table and one column set by `INSERT OR REPLACE` statements of
    /// [`UPSERT_ROWS`] rows each (a statement per row cost SQLite more than the rows), the rest
    /// one by one; each statement is built once per table and column set.
    fn write_upserts(
        &mut self,
        key: &TableKey,
        rows: &[Vec<(&str, Value)>],
        synced: &str,
    ) -> Result<(), WarehouseError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let per_statement = UPSERT_ROWS
            .min((MAX_VARIABLES - 1) / first.len().max(1))
            .max(1);
        for chunk in rows.chunks(per_statement) {
            if chunk.len() == per_statement {
                self.write_upsert_statement(key, chunk, synced)?;
            } else {
                for row in chunk {
                    self.write_upsert_statement(key, std::slice::from_ref(row), synced)?;
                }
            }
        }
        Ok(())
    }

    /// One `INSERT OR REPLACE` of `rows`, which share their `_fivetran_synced` (one parameter
    /// after the rows') and are live (`_fivetran_deleted` written as 0).
    fn write_upsert_statement(
        &mut self,
        key: &TableKey,
        rows: &[Vec<(&str, Value)>],
        synced: &str,
    ) -> Result<(), WarehouseError> {
        let columns = &rows[0];
        let mut signature = std::mem::take(&mut self.signature);
        signature.clear();
        {
            use std::fmt::Write as _;
            let _ = write!(signature, "{}\0{}", key.sqlite_name(), rows.len());
            for (column, _) in columns {
                signature.push('\0');
                signature.push_str(column);
            }
        }
        if !self.upsert_sql.contains_key(&signature) {
            let mut names: Vec<String> = columns.iter().map(|(c, _)| quote_column(c)).collect();
            names.push(quote(SYNCED));
            names.push(quote(DELETED));
            let width = columns.len();
            let synced_param = rows.len() * width + 1;
            let tuples: Vec<String> = (0..rows.len())
                .map(|r| {
                    let placeholders: Vec<String> =
                        (1..=width).map(|i| format!("?{}", r * width + i)).collect();
                    format!("({}, ?{synced_param}, 0)", placeholders.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT OR REPLACE INTO {} ({}) VALUES {}",
                quote(&key.sqlite_name()),
                names.join(", "),
                tuples.join(", ")
            );
            self.upsert_sql.insert(signature.clone(), sql);
        }
        let result = self
            .conn
            .prepare_cached(&self.upsert_sql[&signature])
            .and_then(|mut statement| {
                let synced = Value::Text(synced.to_string());
                statement.execute(params_from_iter(
                    rows.iter()
                        .flat_map(|row| row.iter().map(|(_, v)| v))
                        .chain([&synced]),
                ))
            })
            .map(|_| ())
            .map_err(|source| self.sqlite_error(source));
        self.signature = signature;
        result
    }

    fn update(
        &mut self,
        key: &TableKey,
        row: Vec<(&str, Value)>,
        synced: &str,
    ) -> Result<(), WarehouseError> {
        let primary_key = self.primary_key(key).to_vec();
        if primary_key.is_empty() {
            return Err(WarehouseError::invalid(
                key,
                "UPDATE needs a primary key to find its row; the table has none",
            ));
        }
        check_key(key, &primary_key, &row)?;
        let (key_values, changed): (Vec<_>, Vec<_>) = row
            .into_iter()
            .partition(|(column, _)| primary_key.iter().any(|k| k == column));
        let mut assignments: Vec<String> = changed
            .iter()
            .enumerate()
            .map(|(i, (column, _))| format!("{} = ?{}", quote_column(column), i + 1))
            .collect();
        assignments.push(format!("{} = ?{}", quote(SYNCED), changed.len() + 1));
        let mut values: Vec<Value> = changed.into_iter().map(|(_, v)| v).collect();
        values.push(Value::Text(synced.to_string()));
        let condition = key_condition(&key_values, values.len());
        values.extend(key_values.into_iter().map(|(_, v)| v));
        let sql = format!(
            "UPDATE {} SET {} WHERE {condition}",
            quote(&key.sqlite_name()),
            assignments.join(", ")
        );
        self.exec(&sql, &values)?;
        Ok(())
    }

    fn delete(
        &mut self,
        key: &TableKey,
        row: Vec<(&str, Value)>,
        synced: &str,
    ) -> Result<(), WarehouseError> {
        let primary_key = self.primary_key(key);
        let key_values: Vec<(&str, Value)> = if primary_key.is_empty() {
            let id = value::row_hash(row.iter().map(|(c, v)| (*c, v)));
            vec![(ROW_ID, Value::Text(id))]
        } else {
            check_key(key, primary_key, &row)?;
            row.into_iter()
                .filter(|(column, _)| primary_key.iter().any(|k| k == column))
                .collect()
        };
        let condition = key_condition(&key_values, 1);
        let sql = format!(
            "UPDATE {} SET {} = 1, {} = ?1 WHERE {condition}",
            quote(&key.sqlite_name()),
            quote(DELETED),
            quote(SYNCED)
        );
        let mut values = vec![Value::Text(synced.to_string())];
        values.extend(key_values.into_iter().map(|(_, v)| v));
        self.exec(&sql, &values)?;
        Ok(())
    }

    /// Soft-deletes every row written before this TRUNCATE's tick; rows upserted after it in
    /// the same run have later ticks and stay.
    fn truncate(&mut self, key: &TableKey, synced: &str) -> Result<(), WarehouseError> {
        let sql = format!(
            "UPDATE {} SET {deleted} = 1 WHERE {synced_column} < ?1 AND {deleted} = 0",
            quote(&key.sqlite_name()),
            deleted = quote(DELETED),
            synced_column = quote(SYNCED)
        );
        self.exec(&sql, &[Value::Text(synced.to_string())])?;
        Ok(())
    }

    fn primary_key(&self, key: &TableKey) -> &[String] {
        self.tables
            .get(key)
            .map_or(&[], |def| def.primary_key.as_slice())
    }

    fn add_column(
        &mut self,
        key: &TableKey,
        column: &str,
        data_type: DataType,
    ) -> Result<(), WarehouseError> {
        let sql = format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            quote(&key.sqlite_name()),
            quote_column(column),
            layout::sqlite_type(data_type)
        );
        self.exec(&sql, &[])
    }

    fn existing(&self, key: &TableKey) -> Result<Option<ExistingTable>, WarehouseError> {
        let table = key.sqlite_name();
        let Some(mut existing) = self.table_info(&table)? else {
            return Ok(None);
        };
        // This layout's key is its key index's, recorded in the meta table; an earlier
        // release's is the table's PRIMARY KEY.
        if let Some(columns) = self.key_entry(&table)? {
            existing.key = columns;
        }
        Ok(Some(existing))
    }

    /// The columns and key of the SQLite table `name`, if it exists.
    fn table_info(&self, name: &str) -> Result<Option<ExistingTable>, WarehouseError> {
        let sql = format!("PRAGMA table_info({})", quote(name));
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

/// Creates the warehouse file readable and writable by its owner alone (0600), or narrows an
/// existing one to that: it holds the source's rows. SQLite gives its `-wal` and `-shm` files
/// the database file's permissions.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Every key column must be present and not NULL, or the row cannot be found again.
fn check_key(
    key: &TableKey,
    primary_key: &[String],
    row: &[(&str, Value)],
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
fn key_condition(key_values: &[(&str, Value)], before: usize) -> String {
    key_values
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{} = ?{}", quote_column(column), before + i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The kind of a wire value, for messages (never the value itself: it may be personal data).
fn describe(value: &WireValue) -> &'static str {
    match value {
        WireValue::Empty => "no value",
        WireValue::Null => "null",
        WireValue::Bool(_) => "a bool",
        WireValue::Short(_) => "a short",
        WireValue::Int(_) => "an int",
        WireValue::Long(_) => "a long",
        WireValue::Float(_) => "a float",
        WireValue::Double(_) => "a double",
        WireValue::NaiveDate(_) => "a naive_date",
        WireValue::NaiveDatetime(_) => "a naive_datetime",
        WireValue::UtcDatetime(_) => "a utc_datetime",
        WireValue::NaiveTime(_) => "a naive_time",
        WireValue::Decimal(_) => "a decimal",
        WireValue::Binary(_) => "a binary",
        WireValue::String(_) => "a string",
        WireValue::Json(_) => "a json",
        WireValue::Xml(_) => "an xml",
    }
}

#[cfg(test)]
mod tests;
