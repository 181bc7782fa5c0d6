//! What to sync and how: schemas, tables, cursor columns, batch and query sizes, parallelism.

use std::time::Duration;

use super::names::{
    single_name, split_unquoted, table_pattern, Identifier, TableName, TablePattern,
};
use super::reader::MapReader;
use super::{keys, shorten, ConfigError};

pub const DEFAULT_CURSOR_COLUMN: &str = "updated_at";
/// Rows per fetch round trip, and at most between checkpoints. Rows stream through as they
/// arrive, so memory does not grow with it; it sets how often a checkpoint is taken.
pub const DEFAULT_BATCH_SIZE: u32 = 5_000;
pub const MAX_BATCH_SIZE: u32 = 1_000_000;
/// Bytes of records at most between checkpoints and in one `Records` message: wide rows
/// checkpoint by size before they reach `batch_size` rows.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 8 * 1024 * 1024;
pub const MIN_MAX_BATCH_BYTES: u64 = 64 * 1024;
/// Hosts accept messages up to 128 MiB; a batch must leave room for its framing.
pub const MAX_MAX_BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// The largest `max_rows_per_query` a user may set.
pub const MAX_MAX_ROWS_PER_QUERY: u64 = 10_000_000_000;
/// One table at a time unless asked: each concurrent scan holds one of the cluster's WLM query
/// slots for as long as it runs, which other users of a shared cluster need too.
pub const DEFAULT_MAX_PARALLEL_TABLES: usize = 1;
pub const MAX_PARALLEL_TABLES: usize = 32;
/// How long an Update keeps retrying without progress: a reboot takes minutes, a resize or a
/// maintenance window's patch can keep a cluster unreachable for up to about half an hour.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often `delete_capture = resync` re-syncs a table from scratch: once a day.
pub const DEFAULT_RESYNC_INTERVAL_H: u64 = 24;
/// A year: the longest interval between re-syncs.
pub const MAX_RESYNC_INTERVAL_H: u64 = 24 * 366;

/// Schemas that hold catalogs, never user data (Redshift's own: `pg_internal` and `catalog_history` besides PostgreSQL's).
pub const SYSTEM_SCHEMAS: &[&str] = &[
    "pg_catalog",
    "information_schema",
    "pg_internal",
    "catalog_history",
    "pg_toast",
    "pg_automv",
    "pg_auto_copy",
    "pg_mv",
    "pg_s3",
];

/// What to sync and how.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Schemas to discover; `None` = every non-system schema.
    pub schemas: Option<Vec<Identifier>>,
    /// Optional include list; `None` = every readable table of the schemas.
    pub tables: Option<Vec<TablePattern>>,
    pub default_cursor_column: Identifier,
    pub cursor_column_overrides: ColumnOverrides,
    /// `primary_key`: the key columns of tables whose declared key is missing or not to be
    /// trusted (Redshift does not enforce keys); the last matching pattern wins.
    pub key_overrides: Vec<(TablePattern, Vec<Identifier>)>,
    /// The column that marks a row soft-deleted (`deleted_column`): its default for every
    /// table, and per-table overrides, as for the cursor.
    pub default_deleted_column: Option<Identifier>,
    pub deleted_column_overrides: ColumnOverrides,
    /// `delete_capture = resync`: how often each incrementally synced table is re-synced from
    /// scratch (its TRUNCATE marks rows deleted in Redshift); `None`: never.
    pub resync_interval: Option<Duration>,
    /// `delete_capture = keys`: the schema (`work_schema`) where each table's key snapshot
    /// is kept, so that the keys deleted since are computed inside Redshift; `None`: off.
    pub key_snapshot_schema: Option<Identifier>,
    /// A column that appears in a table (or is newly selected) re-syncs the table, so rows
    /// synced before carry it too (`new_column_backfill`, default true).
    pub new_column_backfill: bool,
    pub batch_size: u32,
    pub max_batch_bytes: u64,
    pub max_rows_per_query: RowsPerQuery,
    /// Rows whose TIMESTAMP/TIMESTAMPTZ cursor is newer than the database's clock minus this
    /// are left for a later sync, so a checkpoint never passes rows that may still commit with
    /// an older cursor value (docs/design.md, "Late commits"). Zero still bounds the scan
    /// at the clock itself, so a future-dated row cannot carry the position past current ones.
    pub cursor_lag: Duration,
    /// Tables synced at once within one Update, each on a session of its own.
    pub max_parallel_tables: usize,
    /// Where initial syncs and re-syncs of large tables are exported by UNLOAD; `None`: every
    /// table is read by queries.
    pub unload: Option<super::UnloadConfig>,
    /// How long transient failures (connection lost, cluster restarting) may go on without
    /// progress before the Update gives up (see `sync::retry`).
    pub retry_timeout: Duration,
}

/// How many rows one query may read before the next resumes after it.
///
/// Redshift materialises a query's whole result on the leader node before the first fetch,
/// within a cursor limit per cluster, and holds a WLM slot while it runs; but every bounded
/// query re-reads and re-sorts the rows after its start, so a table read by `N / L` queries of
/// `L` rows costs `O(N² / L)`. `Auto` sizes each query by bytes instead of rows (see
/// `sync::position::rows_per_query`): as many rows as fit the result budget, so most tables are
/// one query and the largest a few.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsPerQuery {
    Auto,
    /// A fixed number, for clusters whose query monitoring rules abort by returned rows.
    AtMost(u64),
}

impl SyncConfig {
    /// The cursor column configured for a table (the last matching override, else the default).
    pub fn cursor_column_for(&self, table: &TableName) -> &Identifier {
        self.cursor_column_overrides
            .iter()
            .rev()
            .find(|(pattern, _)| pattern.matches(table))
            .map_or(&self.default_cursor_column, |(_, column)| column)
    }

    /// The key columns `primary_key` names for a table, if it names any.
    pub fn key_override_for(&self, table: &TableName) -> Option<&[Identifier]> {
        self.key_overrides
            .iter()
            .rev()
            .find(|(pattern, _)| pattern.matches(table))
            .map(|(_, columns)| columns.as_slice())
    }

    /// The soft-delete column configured for a table, and whether an override named it (a
    /// table without the default column simply has none; one named for it must exist).
    pub fn deleted_column_for(&self, table: &TableName) -> Option<(&Identifier, bool)> {
        match self
            .deleted_column_overrides
            .iter()
            .rev()
            .find(|(pattern, _)| pattern.matches(table))
        {
            Some((_, column)) => Some((column, true)),
            None => self.default_deleted_column.as_ref().map(|c| (c, false)),
        }
    }

    /// Whether the schema/table filters admit this table.
    pub fn includes(&self, table: &TableName) -> bool {
        let schema_ok = self
            .schemas
            .as_ref()
            .is_none_or(|schemas| schemas.iter().any(|s| s.matches(&table.schema)));
        let table_ok = self
            .tables
            .as_ref()
            .is_none_or(|tables| tables.iter().any(|t| t.matches(table)));
        // The work schema holds this connector's own tables, never the user's data.
        let not_work = self
            .key_snapshot_schema
            .as_ref()
            .is_none_or(|work| !work.matches(&table.schema));
        schema_ok && table_ok && not_work
    }
}

/// The sync keys of the request.
pub(super) fn parse(reader: &MapReader<'_>) -> Result<SyncConfig, ConfigError> {
    let schemas = match reader.list(keys::SCHEMAS)? {
        None => None,
        Some(items) => Some(
            items
                .into_iter()
                .map(|item| single_name(keys::SCHEMAS, item))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let tables = match reader.list(keys::TABLES)? {
        None => None,
        Some(items) => Some(
            items
                .into_iter()
                .map(|item| table_pattern(keys::TABLES, item))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let (default_cursor_column, cursor_column_overrides) =
        parse_column_overrides(reader, keys::CURSOR_COLUMN)?;
    let default_cursor_column =
        default_cursor_column.unwrap_or_else(|| Identifier::unquoted(DEFAULT_CURSOR_COLUMN));
    let (default_deleted_column, deleted_column_overrides) =
        parse_column_overrides(reader, keys::DELETED_COLUMN)?;
    let key_overrides = parse_key_overrides(reader)?;
    let cursor_lag = reader
        .seconds(keys::CURSOR_LAG_S, 0, 30 * 24 * 3600)?
        .unwrap_or(Duration::ZERO);
    let batch_size = reader
        .number(keys::BATCH_SIZE, 1, u64::from(MAX_BATCH_SIZE), "rows")?
        .map_or(DEFAULT_BATCH_SIZE, |n| n as u32);
    let max_batch_bytes = reader
        .number(
            keys::MAX_BATCH_BYTES,
            MIN_MAX_BATCH_BYTES,
            MAX_MAX_BATCH_BYTES,
            "bytes",
        )?
        .unwrap_or(DEFAULT_MAX_BATCH_BYTES);
    let max_rows_per_query = match reader.optional(keys::MAX_ROWS_PER_QUERY) {
        Some(text) if text.eq_ignore_ascii_case("auto") => RowsPerQuery::Auto,
        Some(_) => reader
            .number(keys::MAX_ROWS_PER_QUERY, 1, MAX_MAX_ROWS_PER_QUERY, "rows")
            .map_err(|err| {
                ConfigError::new(keys::MAX_ROWS_PER_QUERY, format!("{}, or auto", err.rule))
            })?
            .map_or(RowsPerQuery::Auto, RowsPerQuery::AtMost),
        None => RowsPerQuery::Auto,
    };
    let max_parallel_tables = reader
        .number(
            keys::MAX_PARALLEL_TABLES,
            1,
            MAX_PARALLEL_TABLES as u64,
            "tables",
        )?
        .map_or(DEFAULT_MAX_PARALLEL_TABLES, |n| n as usize);
    let (resync_interval, key_snapshot_schema) = parse_delete_capture(reader)?;
    let new_column_backfill = reader.boolean(keys::NEW_COLUMN_BACKFILL)?.unwrap_or(true);
    let retry_timeout = reader
        .seconds(keys::RETRY_TIMEOUT_S, 0, 7 * 24 * 3600)?
        .unwrap_or(DEFAULT_RETRY_TIMEOUT);
    Ok(SyncConfig {
        retry_timeout,
        schemas,
        tables,
        default_cursor_column,
        cursor_column_overrides,
        key_overrides,
        default_deleted_column,
        deleted_column_overrides,
        resync_interval,
        key_snapshot_schema,
        new_column_backfill,
        batch_size,
        max_batch_bytes,
        max_rows_per_query,
        cursor_lag,
        max_parallel_tables,
        unload: super::unload::parse(reader)?,
    })
}

/// `delete_capture` (`none`, the default, `resync` or `keys`) with its `resync_interval_h`
/// or `work_schema`.
fn parse_delete_capture(
    reader: &MapReader<'_>,
) -> Result<(Option<Duration>, Option<Identifier>), ConfigError> {
    let interval = reader.number(keys::RESYNC_INTERVAL_H, 0, MAX_RESYNC_INTERVAL_H, "hours")?;
    // Checked whatever the mode, so a typo there is caught before the mode is on.
    let work_schema = reader
        .optional(keys::WORK_SCHEMA)
        .filter(|text| !text.trim().is_empty())
        .map(|text| single_name(keys::WORK_SCHEMA, &text))
        .transpose()?;
    let mode = reader
        .optional(keys::DELETE_CAPTURE)
        .map(|text| text.trim().to_ascii_lowercase());
    match mode.as_deref() {
        None | Some("") | Some("none") => Ok((None, None)),
        Some("resync") => Ok((
            Some(Duration::from_secs(
                interval.unwrap_or(DEFAULT_RESYNC_INTERVAL_H) * 3600,
            )),
            None,
        )),
        Some("keys") => match work_schema {
            Some(schema) if SYSTEM_SCHEMAS.iter().any(|s| schema.matches(s)) => Err(
                ConfigError::new(keys::WORK_SCHEMA, "names a system schema; name a schema of its own, where the user may CREATE"),
            ),
            Some(schema) => Ok((None, Some(schema))),
            None => Err(ConfigError::new(
                keys::WORK_SCHEMA,
                "is required with delete_capture = keys: name a schema where the user may CREATE tables (GRANT CREATE ON SCHEMA <work_schema> TO <user>), which holds each table's key snapshot",
            )),
        },
        Some(_) => Err(ConfigError::new(
            keys::DELETE_CAPTURE,
            "must be none, resync or keys",
        )),
    }
}

/// `primary_key`: a comma list of `schema.table:column` overrides, several columns joined by
/// `+` (`public.events:event_id, sales.lines:order_id+line_no`); no default, since the
/// declared key is every other table's.
fn parse_key_overrides(
    reader: &MapReader<'_>,
) -> Result<Vec<(TablePattern, Vec<Identifier>)>, ConfigError> {
    let key = keys::PRIMARY_KEY;
    let mut overrides = Vec::new();
    for item in reader.list(key)?.unwrap_or_default() {
        let parts = split_unquoted(key, item, ':')?;
        let [table, columns] = parts.as_slice() else {
            return Err(ConfigError::new(
                key,
                format!(
                    "`{}`: each entry is schema.table:column, several columns joined by + (schema.table:a+b)",
                    shorten(item)
                ),
            ));
        };
        let columns = split_unquoted(key, columns, '+')?
            .into_iter()
            .map(|column| {
                if column.trim().is_empty() {
                    Err(ConfigError::new(
                        key,
                        format!("`{}`: a column name is empty", shorten(item)),
                    ))
                } else {
                    single_name(key, column)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        overrides.push((table_pattern(key, table)?, columns));
    }
    Ok(overrides)
}

/// Per-table column names: the last matching pattern wins.
type ColumnOverrides = Vec<(TablePattern, Identifier)>;

/// `cursor_column`, `deleted_column`: a comma list of one default column name and/or
/// `schema.table:column` overrides, e.g. `updated_at, public.orders:modified_at`.
fn parse_column_overrides(
    reader: &MapReader<'_>,
    key: &'static str,
) -> Result<(Option<Identifier>, ColumnOverrides), ConfigError> {
    let mut default = None;
    let mut overrides = Vec::new();
    for item in reader.list(key)?.unwrap_or_default() {
        let parts = split_unquoted(key, item, ':')?;
        match parts.as_slice() {
            [table, column] => {
                if column.trim().is_empty() {
                    return Err(ConfigError::new(
                        key,
                        format!("`{}`: the column name after `:` is empty", shorten(item)),
                    ));
                }
                overrides.push((table_pattern(key, table)?, single_name(key, column)?));
            }
            [column] if default.is_none() => default = Some(single_name(key, column)?),
            [_] => {
                return Err(ConfigError::new(
                    key,
                    "names more than one default column; give one name and schema.table:column overrides",
                ))
            }
            _ => {
                return Err(ConfigError::new(
                    key,
                    format!("`{}`: an override is schema.table:column", shorten(item)),
                ))
            }
        }
    }
    Ok((default, overrides))
}
