//! How a table's columns changed since its last sync, and what each change means for it.
//!
//! The state records, per table, the relation's OID and the columns it was synced with (the
//! columns sent plus the cursor, with their types). Comparing them with the catalog now:
//!
//! | change | the table | the host |
//! |---|---|---|
//! | a sent column is new (added, or newly selected) | re-syncs from scratch so rows synced before carry it; with `new_column_backfill = false` goes on, and only later changes carry it | a SchemaChange first |
//! | a column was dropped | goes on without it, with a Warning | a SchemaChange first (the destination keeps the column) |
//! | a column's type changed | goes on, unless it is the cursor or part of the key: its positions may no longer compare, so it re-syncs, with a Warning | a SchemaChange first |
//! | the table was dropped and created again (its OID changed) | re-syncs from scratch, with a Warning: the rows synced before may be gone | - |
//!
//! A changed cursor column or primary key (another column) re-syncs the table too; that is
//! decided from the state's `cursor_column` and `key_columns` (see `position::table_start`).
//! A state of version 1 recorded no columns: its tables go on as they were, and record them.

use super::plan::TablePlan;
use crate::proto::{self, schema_change};
use crate::state::{SyncedColumn, TableState};

/// What changed in one table since the state recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnChanges {
    /// The relation's OID changed: `(was, now)`.
    pub recreated: Option<(u32, u32)>,
    /// Columns sent now that the last sync did not send.
    pub added: Vec<String>,
    /// Columns the last sync read that the table no longer has.
    pub dropped: Vec<String>,
    /// Columns read then and now whose type changed: `(name, was, now)`.
    pub retyped: Vec<(String, String, String)>,
}

impl ColumnChanges {
    /// The changes since `previous` was recorded; `None` when it recorded no columns (a first
    /// sync, or a state of version 1).
    pub fn since(plan: &TablePlan, previous: Option<&TableState>) -> Option<Self> {
        let (table_id, Some(recorded)) = previous?.synced_with() else {
            return None;
        };
        let columns = &plan.table.columns;
        let recorded_type =
            |name: &str| recorded.iter().find(|c| c.0 == name).map(|c| c.1.as_str());
        let mut changes = ColumnChanges {
            recreated: match (table_id, plan.table.id) {
                (Some(was), Some(now)) if was != now => Some((was, now)),
                _ => None,
            },
            ..Default::default()
        };
        for &index in &plan.emitted {
            if recorded_type(&columns[index].name).is_none() {
                changes.added.push(columns[index].name.clone());
            }
        }
        for SyncedColumn(name, was) in recorded {
            match columns.iter().find(|c| &c.name == name) {
                None => changes.dropped.push(name.clone()),
                Some(column) => {
                    let now = column.sql_type.sql_name();
                    if &now != was {
                        changes.retyped.push((name.clone(), was.clone(), now));
                    }
                }
            }
        }
        Some(changes)
    }

    /// Whether the table's columns differ from what the host was told (a SchemaChange is due).
    pub fn columns_differ(&self) -> bool {
        !(self.added.is_empty() && self.dropped.is_empty() && self.retyped.is_empty())
    }

    /// Why the table must re-sync from scratch, if it must.
    pub fn restart_reason(&self, plan: &TablePlan) -> Option<String> {
        if let Some((was, now)) = self.recreated {
            return Some(format!(
                "it was dropped and created again since the last sync (its table id changed from {was} to {now}), so it is re-synced from the start"
            ));
        }
        let positioned: Vec<String> = plan
            .position_columns()
            .into_iter()
            .map(|i| plan.table.columns[i].name.clone())
            .collect();
        if let Some((name, was, now)) = self
            .retyped
            .iter()
            .find(|(name, ..)| positioned.contains(name))
        {
            let role = if plan.cursor_column() == Some(name.as_str()) {
                "cursor column"
            } else {
                "primary-key column"
            };
            return Some(format!(
                "its {role} `{name}` changed type from {was} to {now} since the last sync, so the position it was synced to no longer compares: it is re-synced from the start"
            ));
        }
        if !self.added.is_empty() && plan.backfill_new_columns {
            let (columns, them) = columns_phrase(&self.added, "is", "are");
            return Some(format!(
                "{columns} new since the last sync, so it is re-synced from the start for the rows synced before to carry {them}; set `new_column_backfill` to false to have only rows changed from now on carry {them}"
            ));
        }
        None
    }

    /// Warnings for changes the table goes on through (`restarting`: from scratch).
    pub fn notes(&self, plan: &TablePlan, restarting: bool) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.dropped.is_empty() {
            let (columns, them) = columns_phrase(&self.dropped, "is", "are");
            notes.push(format!(
                "{columns} no longer in the source; the sync goes on without {them}, and the destination keeps what earlier syncs wrote there"
            ));
        }
        if !self.added.is_empty() && !plan.backfill_new_columns && !restarting {
            let (columns, them) = columns_phrase(&self.added, "is", "are");
            notes.push(format!(
                "{columns} new; with `new_column_backfill = false` only rows changed from now on carry {them}"
            ));
        }
        notes
    }
}

/// For a Warning about some columns: "column `a` is" / "columns `a`, `b` are" (with the verb
/// given for one and for many), and the pronoun that refers back to them.
pub fn columns_phrase(names: &[String], one: &str, many: &str) -> (String, &'static str) {
    match names {
        [name] => (format!("column `{name}` {one}"), "it"),
        names => {
            let list: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
            (format!("columns {} {many}", list.join(", ")), "them")
        }
    }
}

/// What the state records a table was synced with: the columns read (those sent, plus the
/// cursor), in the table's column order, with their types.
pub fn synced_columns(plan: &TablePlan) -> Vec<SyncedColumn> {
    plan.table
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| plan.select.contains(i))
        .map(|(_, column)| SyncedColumn(column.name.clone(), column.sql_type.sql_name()))
        .collect()
}

/// The SchemaChange that declares these tables as they are now, as Schema would.
pub fn declaration<'a>(plans: impl IntoIterator<Item = &'a TablePlan>) -> proto::SchemaChange {
    let list = proto::schema::schema_list(plans.into_iter().map(|plan| &*plan.table));
    proto::SchemaChange {
        change: Some(schema_change::Change::WithSchema(list)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::TableName;
    use crate::source::catalog::{ColumnInfo, TableInfo};
    use crate::source::types::SqlType;
    use crate::sync::plan::Mode;

    fn plan(columns: &[(&str, SqlType)], id: u32, backfill: bool) -> TablePlan {
        let table = Arc::new(TableInfo {
            name: TableName::new("public", "t"),
            columns: columns
                .iter()
                .map(|(name, sql_type)| ColumnInfo {
                    name: name.to_string(),
                    sql_type: sql_type.clone(),
                    primary_key: *name == "id",
                })
                .collect(),
            id: Some(id),
        });
        let all: Vec<usize> = (0..columns.len()).collect();
        TablePlan {
            key: table.key_indexes(),
            mode: Mode::Incremental {
                cursor: table.column_index("updated_at").unwrap(),
            },
            table,
            emitted: all.clone(),
            select: all,
            soft_delete: None,
            notes: Vec::new(),
            resync_every: None,
            backfill_new_columns: backfill,
            capture_deletes: false,
        }
    }

    fn state(plan: &TablePlan) -> TableState {
        TableState::Incremental {
            cursor_column: "updated_at".into(),
            key_columns: vec!["id".into()],
            position: None,
            export: None,
            null_rescan: None,
            resync: None,
            key_snapshot: None,
            table_id: plan.table.id,
            columns: Some(synced_columns(plan)),
        }
    }

    const BASE: [(&str, SqlType); 3] = [
        ("id", SqlType::Integer),
        ("note", SqlType::Text),
        ("updated_at", SqlType::Timestamp),
    ];

    #[test]
    fn nothing_recorded_is_no_change_and_the_same_columns_are_none() {
        let before = plan(&BASE, 7, true);
        let mut v1 = state(&before);
        if let TableState::Incremental { columns, .. } = &mut v1 {
            *columns = None;
        }
        assert_eq!(ColumnChanges::since(&before, Some(&v1)), None);
        assert_eq!(ColumnChanges::since(&before, None), None);
        let same = ColumnChanges::since(&before, Some(&state(&before))).unwrap();
        assert_eq!(same, ColumnChanges::default());
        assert!(!same.columns_differ() && same.restart_reason(&before).is_none());
    }

    #[test]
    fn an_added_column_re_syncs_unless_backfill_is_off() {
        let before = plan(&BASE, 7, true);
        let mut columns = BASE.to_vec();
        columns.push(("region", SqlType::Varchar { length: Some(8) }));
        let after = plan(&columns, 7, true);
        let changes = ColumnChanges::since(&after, Some(&state(&before))).unwrap();
        assert_eq!(changes.added, ["region"]);
        assert!(changes.columns_differ());
        assert!(changes
            .restart_reason(&after)
            .unwrap()
            .contains("`region` is new"));
        let no_backfill = plan(&columns, 7, false);
        assert_eq!(changes.restart_reason(&no_backfill), None);
        assert_eq!(changes.notes(&no_backfill, false).len(), 1);
        assert!(changes.notes(&no_backfill, true).is_empty());
    }

    #[test]
    fn a_dropped_column_is_a_note_and_a_retyped_cursor_a_restart() {
        let before = plan(&BASE, 7, true);
        let after = plan(
            &[
                ("id", SqlType::Integer),
                ("updated_at", SqlType::TimestampTz),
            ],
            7,
            true,
        );
        let changes = ColumnChanges::since(&after, Some(&state(&before))).unwrap();
        assert_eq!(changes.dropped, ["note"]);
        assert_eq!(
            changes.retyped,
            [(
                "updated_at".to_string(),
                "TIMESTAMP".to_string(),
                "TIMESTAMPTZ".to_string()
            )]
        );
        assert!(changes.notes(&after, true)[0].contains("`note` is no longer in the source"));
        assert!(changes
            .restart_reason(&after)
            .unwrap()
            .contains("cursor column `updated_at` changed type from TIMESTAMP to TIMESTAMPTZ"));
        // Another column's type change is only the host's business.
        let widened = plan(
            &[
                ("id", SqlType::Integer),
                ("note", SqlType::Varchar { length: Some(9) }),
                ("updated_at", SqlType::Timestamp),
            ],
            7,
            true,
        );
        let changes = ColumnChanges::since(&widened, Some(&state(&before))).unwrap();
        assert!(changes.columns_differ());
        assert_eq!(changes.restart_reason(&widened), None);
    }

    #[test]
    fn a_new_table_id_is_a_restart_whatever_the_columns() {
        let before = plan(&BASE, 7, true);
        let after = plan(&BASE, 8, false);
        let changes = ColumnChanges::since(&after, Some(&state(&before))).unwrap();
        assert_eq!(changes.recreated, Some((7, 8)));
        assert!(!changes.columns_differ());
        assert!(changes
            .restart_reason(&after)
            .unwrap()
            .contains("dropped and created again"));
    }
}
