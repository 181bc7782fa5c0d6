//! What to sync: the catalog filtered by the host's Selection, and how to read each table.

use std::sync::Arc;

use crate::config::SyncConfig;
use crate::proto::{selection, Selection, TableSelection};
use crate::source::{Catalog, TableInfo};

/// How a table is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// By the cursor column (index into the table's columns), then the key.
    Incremental { cursor: usize },
    /// No usable cursor column: the whole table each sync, after a TRUNCATE.
    Full { reason: String },
}

/// One table to sync.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub table: Arc<TableInfo>,
    /// Columns sent to the host: the selected ones plus the primary key, in column order.
    pub emitted: Vec<usize>,
    /// Columns read: `emitted` plus the cursor column when it is not selected.
    pub select: Vec<usize>,
    pub key: Vec<usize>,
    pub mode: Mode,
    /// Rows this column marks deleted go out as DELETE records (`deleted_column`).
    pub soft_delete: Option<SoftDelete>,
    /// What the plan could not do as configured, for a Warning when the table syncs.
    pub notes: Vec<String>,
    /// `delete_capture = resync`: an incremental table is re-synced from scratch this often.
    pub resync_every: Option<std::time::Duration>,
    /// A column new since the last sync re-syncs the table (`new_column_backfill`).
    pub backfill_new_columns: bool,
    /// `delete_capture = keys` on a table read by a cursor with a primary key: each pass
    /// compares a key snapshot with the last (see `sync::table::deletes`).
    pub capture_deletes: bool,
}

/// A soft-delete column, by its place among a row's emitted cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftDelete {
    /// Index into `emitted` (the column is always sent, so the destination shows it too).
    pub column: usize,
    /// The key columns' indexes into `emitted`: a DELETE carries them alone.
    pub key: Vec<usize>,
}

impl SoftDelete {
    /// The soft-delete column and key (table column indexes) by their places in `emitted`;
    /// `None` if one is not emitted.
    fn among(emitted: &[usize], column: usize, key: &[usize]) -> Option<Self> {
        let place = |column: &usize| emitted.iter().position(|i| i == column);
        Some(Self {
            column: place(&column)?,
            key: key.iter().map(place).collect::<Option<_>>()?,
        })
    }

    /// Whether the row whose emitted cells these are is marked deleted: a BOOLEAN that is
    /// true, a TIMESTAMP/TIMESTAMPTZ that is set (the only types the plan accepts).
    #[inline]
    pub fn marks(&self, cells: &[crate::source::value::Cell]) -> bool {
        use crate::source::value::Cell;
        match cells[self.column] {
            Cell::Null => false,
            Cell::Bool(deleted) => deleted,
            _ => true,
        }
    }
}

impl TablePlan {
    pub fn cursor_column(&self) -> Option<&str> {
        match self.mode {
            Mode::Incremental { cursor } => Some(&self.table.columns[cursor].name),
            Mode::Full { .. } => None,
        }
    }

    pub fn key_columns(&self) -> Vec<String> {
        self.key
            .iter()
            .map(|&i| self.table.columns[i].name.clone())
            .collect()
    }

    /// An encoder of the table's records: its emitted columns, in order (the cells of a row
    /// read by a query or from an export file).
    pub fn record_encoder(&self, max_message_bytes: usize) -> crate::proto::records::RecordEncoder {
        self.encoder_of(&self.emitted, max_message_bytes)
    }

    /// An encoder of records of the table carrying these columns (table column indexes), in
    /// order: the emitted ones, or the key alone for DELETEs read on their own.
    pub fn encoder_of(
        &self,
        columns: &[usize],
        max_message_bytes: usize,
    ) -> crate::proto::records::RecordEncoder {
        let all = &self.table.columns;
        let columns: Vec<(&str, crate::proto::DataType)> = columns
            .iter()
            .map(|&i| {
                (
                    all[i].name.as_str(),
                    crate::proto::types::data_type(&all[i].sql_type).0,
                )
            })
            .collect();
        crate::proto::records::RecordEncoder::new(
            &self.table.name.schema,
            &self.table.name.table,
            &columns,
            max_message_bytes,
        )
    }

    /// This plan for the table as it is `now`, after its columns changed while it was synced:
    /// the same columns less the dropped ones (in their new types, where a type changed), read
    /// the same way. `Err` says why the sync cannot go on from its position: the table is gone,
    /// or its cursor or key changed.
    pub fn without_dropped_columns(&self, now: Option<Arc<TableInfo>>) -> Result<Self, String> {
        let Some(now) = now else {
            return Err("it was dropped, or is no longer readable".to_string());
        };
        let columns = &self.table.columns;
        let in_now = |old: usize| now.column_index(&columns[old].name);
        let positioned_unchanged = self.position_columns().iter().all(|&old| {
            in_now(old).is_some_and(|i| now.columns[i].sql_type == columns[old].sql_type)
        }) && now.key_indexes().len() == self.key.len();
        if !positioned_unchanged {
            return Err("its cursor column or primary key changed".to_string());
        }
        let mapped = |old: &[usize]| old.iter().filter_map(|&i| in_now(i)).collect::<Vec<_>>();
        let emitted = mapped(&self.emitted);
        let select = mapped(&self.select);
        let key = mapped(&self.key);
        let mode = match self.mode {
            Mode::Incremental { cursor } => Mode::Incremental {
                cursor: in_now(cursor).expect("checked above"),
            },
            ref full => full.clone(),
        };
        let soft_delete = self
            .soft_delete
            .as_ref()
            .and_then(|soft| SoftDelete::among(&emitted, in_now(self.emitted[soft.column])?, &key));
        Ok(Self {
            table: now,
            emitted,
            select,
            key,
            mode,
            soft_delete,
            notes: Vec::new(),
            resync_every: self.resync_every,
            backfill_new_columns: self.backfill_new_columns,
            capture_deletes: self.capture_deletes,
        })
    }

    /// Position of a table column in the SELECT list.
    pub fn select_position(&self, column: usize) -> usize {
        self.select
            .iter()
            .position(|&c| c == column)
            .expect("cursor and key columns are always selected")
    }

    /// The cursor column (if incremental), then the key columns: the values of a position.
    pub fn position_columns(&self) -> Vec<usize> {
        let cursor = match self.mode {
            Mode::Incremental { cursor } => Some(cursor),
            Mode::Full { .. } => None,
        };
        cursor.into_iter().chain(self.key.iter().copied()).collect()
    }
}

/// The tables to sync, in catalog order (schema, then table).
pub fn plan(
    catalog: &Catalog,
    selection: Option<&Selection>,
    config: &SyncConfig,
) -> Vec<TablePlan> {
    catalog
        .tables
        .iter()
        .filter_map(|table| {
            let columns = selected_columns(table, selection)?;
            Some(plan_table(table, columns, config))
        })
        .collect()
}

/// Whether the Selection includes the table, and if so which columns (by the host's rules:
/// what it lists decides; what it does not list follows the matching `include_new_*` flag).
/// No selection at all means everything Schema reported.
fn selected_columns(table: &TableInfo, selection: Option<&Selection>) -> Option<Vec<bool>> {
    let everything = || Some(vec![true; table.columns.len()]);
    let table_selection: Option<&TableSelection> =
        match selection.and_then(|s| s.selection.as_ref()) {
            None => return everything(),
            Some(selection::Selection::WithSchema(with_schema)) => {
                match with_schema
                    .schemas
                    .iter()
                    .find(|s| s.schema_name == table.name.schema)
                {
                    None if with_schema.include_new_schemas => return everything(),
                    None => return None,
                    Some(schema) if !schema.included => return None,
                    Some(schema) => match schema
                        .tables
                        .iter()
                        .find(|t| t.table_name == table.name.table)
                    {
                        None if schema.include_new_tables => return everything(),
                        None => return None,
                        Some(t) => Some(t),
                    },
                }
            }
            Some(selection::Selection::WithoutSchema(without_schema)) => {
                match without_schema
                    .tables
                    .iter()
                    .find(|t| t.table_name == table.name.table)
                {
                    None if without_schema.include_new_tables => return everything(),
                    None => return None,
                    Some(t) => Some(t),
                }
            }
        };
    let table_selection = table_selection?;
    if !table_selection.included {
        return None;
    }
    Some(
        table
            .columns
            .iter()
            .map(|column| {
                column.primary_key
                    || table_selection
                        .columns
                        .get(&column.name)
                        .copied()
                        .unwrap_or(table_selection.include_new_columns)
            })
            .collect(),
    )
}

fn plan_table(table: &Arc<TableInfo>, selected: Vec<bool>, config: &SyncConfig) -> TablePlan {
    let key = table.key_indexes();
    let cursor_name = config.cursor_column_for(&table.name);
    let mode = match table
        .columns
        .iter()
        .position(|c| cursor_name.matches(&c.name))
    {
        None => Mode::Full {
            reason: format!("it has no cursor column `{cursor_name}`"),
        },
        Some(i) if !table.columns[i].sql_type.is_orderable() => Mode::Full {
            reason: format!(
                "its cursor column `{cursor_name}` has a type ({:?}) rows cannot be ordered by",
                table.columns[i].sql_type
            ),
        },
        Some(i) => Mode::Incremental { cursor: i },
    };
    let mut notes = Vec::new();
    if let Some(missing) = config.key_override_for(&table.name).and_then(|named| {
        named
            .iter()
            .find(|name| !table.columns.iter().any(|c| name.matches(&c.name)))
    }) {
        notes.push(format!(
            "`primary_key` names the column `{missing}`, which it does not have, so its declared key is used ({})",
            if key.is_empty() { "none".to_string() } else { key.iter().map(|&i| table.columns[i].name.as_str()).collect::<Vec<_>>().join(", ") }
        ));
    }
    let deleted = soft_delete_column(table, &key, config, &mut notes);
    let emitted: Vec<usize> = (0..table.columns.len())
        .filter(|&i| selected[i] || deleted == Some(i))
        .collect();
    // The column and the key are always emitted.
    let soft_delete = deleted.and_then(|column| SoftDelete::among(&emitted, column, &key));
    let capture_deletes = config.key_snapshot_schema.is_some()
        && matches!(mode, Mode::Incremental { .. })
        && !key.is_empty();
    if config.key_snapshot_schema.is_some()
        && key.is_empty()
        && matches!(mode, Mode::Incremental { .. })
    {
        notes.push(
            "it has no primary key, so delete_capture = keys cannot name its deleted rows: they stay in the destination (delete_capture = resync re-syncs such tables instead)"
                .to_string(),
        );
    }
    let mut select = emitted.clone();
    if let Mode::Incremental { cursor } = mode {
        if !select.contains(&cursor) {
            select.push(cursor);
        }
    }
    TablePlan {
        table: Arc::clone(table),
        emitted,
        select,
        key,
        mode,
        soft_delete,
        notes,
        resync_every: config.resync_interval,
        backfill_new_columns: config.new_column_backfill,
        capture_deletes,
    }
}

/// The index of the table's soft-delete column, if `deleted_column` names one it can use (a
/// BOOLEAN or TIMESTAMP/TIMESTAMPTZ, in a table with a primary key `key`). Why one named for
/// this table cannot be used goes to `notes`.
fn soft_delete_column(
    table: &TableInfo,
    key: &[usize],
    config: &SyncConfig,
    notes: &mut Vec<String>,
) -> Option<usize> {
    use crate::source::types::SqlType;
    let (name, named_for_table) = config.deleted_column_for(&table.name)?;
    let Some(index) = table.columns.iter().position(|c| name.matches(&c.name)) else {
        if named_for_table {
            notes.push(format!(
                "it has no column `{name}`, which `deleted_column` names for it: rows marked deleted are not sent as deletes"
            ));
        }
        return None;
    };
    let column = &table.columns[index];
    match column.sql_type {
        SqlType::Boolean | SqlType::Timestamp | SqlType::TimestampTz => {}
        ref other => {
            notes.push(format!(
                "its `deleted_column` `{}` is of type {other:?}; a soft-delete column is a BOOLEAN (true = deleted) or a TIMESTAMP/TIMESTAMPTZ (set = deleted): its rows are sent as they are",
                column.name
            ));
            return None;
        }
    }
    if key.is_empty() {
        notes.push(format!(
            "it has no primary key, which a delete needs to name its row: rows its `deleted_column` `{}` marks deleted are sent as UPSERTs carrying the mark",
            column.name
        ));
        return None;
    }
    Some(index)
}

/// Tables the Selection explicitly includes that the catalog does not have (dropped since the
/// host's last Schema call, or no longer readable), as `schema.table`.
pub fn missing_tables(catalog: &Catalog, selection: Option<&Selection>) -> Vec<String> {
    let Some(selection::Selection::WithSchema(with_schema)) =
        selection.and_then(|s| s.selection.as_ref())
    else {
        return Vec::new();
    };
    with_schema
        .schemas
        .iter()
        .filter(|s| s.included)
        .flat_map(|s| {
            s.tables
                .iter()
                .filter(|t| t.included)
                .map(move |t| crate::config::TableName::new(&s.schema_name, &t.table_name))
        })
        .filter(|name| catalog.find(name).is_none())
        .map(|name| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::TableName;
    use crate::proto::{SchemaSelection, TablesWithSchema};
    use crate::source::catalog::ColumnInfo;
    use crate::source::types::SqlType;

    fn catalog() -> Catalog {
        let table = |schema: &str, name: &str| {
            Arc::new(TableInfo {
                name: TableName::new(schema, name),
                columns: vec![
                    ColumnInfo {
                        name: "id".into(),
                        sql_type: SqlType::Integer,
                        primary_key: true,
                    },
                    ColumnInfo {
                        name: "note".into(),
                        sql_type: SqlType::Text,
                        primary_key: false,
                    },
                    ColumnInfo {
                        name: "updated_at".into(),
                        sql_type: SqlType::Timestamp,
                        primary_key: false,
                    },
                ],
                id: Some(1),
            })
        };
        Catalog {
            tables: vec![
                table("public", "a"),
                table("public", "b"),
                table("sales", "c"),
            ],
        }
    }

    fn config() -> SyncConfig {
        SyncConfig {
            schemas: None,
            tables: None,
            default_cursor_column: crate::config::Identifier::unquoted("updated_at"),
            cursor_column_overrides: Default::default(),
            key_overrides: Vec::new(),
            default_deleted_column: None,
            deleted_column_overrides: Default::default(),
            resync_interval: None,
            key_snapshot_schema: None,
            new_column_backfill: true,
            batch_size: 10,
            max_batch_bytes: crate::config::DEFAULT_MAX_BATCH_BYTES,
            max_rows_per_query: crate::config::RowsPerQuery::Auto,
            cursor_lag: std::time::Duration::ZERO,
            max_parallel_tables: 1,
            unload: None,
            retry_timeout: std::time::Duration::ZERO,
        }
    }

    fn names(plans: &[TablePlan]) -> Vec<String> {
        plans.iter().map(|p| p.table.name.to_string()).collect()
    }

    #[test]
    fn no_selection_means_everything() {
        let plans = plan(&catalog(), None, &config());
        assert_eq!(names(&plans), ["public.a", "public.b", "sales.c"]);
        assert_eq!(plans[0].emitted, [0, 1, 2]);
        assert_eq!(plans[0].mode, Mode::Incremental { cursor: 2 });
    }

    #[test]
    fn selection_decides_tables_and_columns() {
        let selection = Selection {
            selection: Some(selection::Selection::WithSchema(TablesWithSchema {
                include_new_schemas: false,
                schemas: vec![SchemaSelection {
                    included: true,
                    schema_name: "public".into(),
                    include_new_tables: false,
                    tables: vec![TableSelection {
                        included: true,
                        table_name: "a".into(),
                        columns: HashMap::from([
                            ("updated_at".to_string(), false),
                            ("id".to_string(), false),
                        ]),
                        include_new_columns: true,
                    }],
                }],
            })),
        };
        let plans = plan(&catalog(), Some(&selection), &config());
        assert_eq!(names(&plans), ["public.a"]);
        // The key is always sent; the deselected cursor is read but not sent.
        assert_eq!(plans[0].emitted, [0, 1]);
        assert_eq!(plans[0].select, [0, 1, 2]);
    }

    #[test]
    fn tables_without_the_cursor_column_are_synced_in_full() {
        let mut config = config();
        config.cursor_column_overrides.push((
            crate::config::TablePattern {
                schema: crate::config::Identifier::unquoted("sales"),
                table: crate::config::Identifier::unquoted("c"),
            },
            crate::config::Identifier::unquoted("modified"),
        ));
        let plans = plan(&catalog(), None, &config);
        assert!(matches!(plans[2].mode, Mode::Full { .. }));
    }
}
