//! The versioned checkpoint state the host persists between syncs.
//!
//! ```json
//! {"version": 2,
//!  "tables": {"public": {"orders": {"mode": "incremental",
//!                                   "cursor_column": "updated_at",
//!                                   "key_columns": ["order_id"],
//!                                   "position": {"cursor": "2024-05-01 12:00:00.123456", "key": ["42"]},
//!                                   "table_id": 108532,
//!                                   "columns": [["order_id", "BIGINT"], ["updated_at", "TIMESTAMP"]]}}}}}
//! ```
//!
//! Version 2 added `table_id` and `columns` (what the table was synced with, see
//! `sync::schema_change`); a state of version 1 reads as one without them, and is resumed as
//! it is: the first sync records them.
//!
//! A table's entry exists from the moment its initial sync starts (its TRUNCATE was sent), so
//! "no entry" is exactly "needs an initial sync". Positions are text in each type's canonical
//! form (see `source::value`) and are cast back to the column's type in SQL, so a timestamp is
//! compared as a timestamp at full microsecond precision.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::TableName;

/// The version this build writes.
pub const STATE_VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_STATE_VERSION: u32 = 1;

/// The greatest key snapshot generation a state may name: a pass takes one, so this is a
/// sync a second for 136 years, and `generation + 1` never overflows.
pub const MAX_GENERATION: u64 = u32::MAX as u64;

/// A new random `work_id`: 8 hex digits (32 bits; work table names must fit PostgreSQL's 63
/// bytes, see `source::work`).
pub fn new_work_id() -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    hex::encode(random)
}

/// Whether `text` is a `work_id` this connector writes: 8 lowercase hex digits. It becomes
/// part of table names the connector creates and drops, so nothing else is accepted.
pub fn is_work_id(text: &str) -> bool {
    text.len() == 8
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a `state_json` was refused; the gRPC layer maps it to `INVALID_ARGUMENT`.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state_json is not valid state: {}; send the state_json of a checkpoint this connector emitted, or {{}} to re-sync from scratch", short(.0))]
    Malformed(#[source] serde_json::Error),
    #[error("state_json has version {found}, but this connector reads versions {OLDEST_STATE_VERSION} to {STATE_VERSION}; send {{}} to re-sync from scratch")]
    UnknownVersion { found: u64 },
    /// No name or position this connector writes holds one, and none can reach the database.
    #[error("state_json has a NUL character in {at}; send the state_json of a checkpoint this connector emitted, or {{}} to re-sync from scratch")]
    NulCharacter { at: String },
    /// A field that names objects the connector creates (or counts them) has a form this
    /// connector never writes: the state was not written by it.
    #[error("state_json's {at} {reason}, which this connector never writes; send the state_json of a checkpoint this connector emitted, or {{}} to re-sync from scratch")]
    NotWritten { at: String, reason: String },
}

/// A parse error's text, which quotes the offending value, cut to a readable length.
fn short(err: &serde_json::Error) -> String {
    const SHOWN: usize = 200;
    let text = err.to_string();
    match text.char_indices().nth(SHOWN) {
        None => text,
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncState {
    pub version: u32,
    /// schema -> table -> progress. Nested maps, because names may contain dots.
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, TableState>>,
    /// With `delete_capture = keys`: the random id in the names of this connection's tables
    /// in `work_schema`, so that connections sharing the schema never touch each other's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_id: Option<String>,
}

/// Progress of one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum TableState {
    /// Rows are read in (cursor, key) order from `position` on.
    Incremental {
        cursor_column: String,
        key_columns: Vec<String>,
        /// The last row sent; `None` = nothing sent yet.
        #[serde(default)]
        position: Option<Position>,
        /// The table's initial sync (or re-sync) is an UNLOAD export under way.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        export: Option<ExportState>,
        /// The rows whose cursor is NULL are being read again, before the scan goes on from
        /// `position` (see `sync::position::null_rescan_due`): after this key; empty: from
        /// the first (always, for a table without a key, which has no order to resume in).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        null_rescan: Option<Vec<String>>,
        /// With `delete_capture = resync`: when the table's latest sync from scratch began,
        /// and whether it is complete (only a complete one is ever restarted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resync: Option<ResyncState>,
        /// With `delete_capture = keys`: the table's key snapshot in `work_schema`, and what
        /// the pass it began is doing (see `sync::table::deletes`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key_snapshot: Option<KeySnapshot>,
        /// The relation's OID the table was last synced from (see `TableInfo::id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        table_id: Option<u32>,
        /// The columns it was last synced with: what the host was told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        columns: Option<Vec<SyncedColumn>>,
    },
    /// No cursor column: each sync re-reads the whole table after a TRUNCATE.
    Full {
        key_columns: Vec<String>,
        /// True while a pass is under way: a resumed sync continues it after `position`
        /// instead of starting a new pass.
        in_progress: bool,
        #[serde(default)]
        position: Option<Position>,
        /// The pass is an UNLOAD export under way.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        export: Option<ExportState>,
        /// The relation's OID the table was last synced from (see `TableInfo::id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        table_id: Option<u32>,
        /// The columns it was last synced with: what the host was told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        columns: Option<Vec<SyncedColumn>>,
    },
}

impl TableState {
    pub fn export(&self) -> Option<&ExportState> {
        match self {
            Self::Incremental { export, .. } | Self::Full { export, .. } => export.as_ref(),
        }
    }

    /// What the table was last synced with: its relation's OID and its columns (`None` in a
    /// state of version 1, which recorded neither).
    pub fn synced_with(&self) -> (Option<u32>, Option<&[SyncedColumn]>) {
        match self {
            Self::Incremental {
                table_id, columns, ..
            }
            | Self::Full {
                table_id, columns, ..
            } => (*table_id, columns.as_deref()),
        }
    }
}

/// A column a table was synced with, as `[name, type]` (the type as `SqlType::sql_name`
/// writes it): the columns sent to the host plus the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedColumn(pub String, pub String);

/// When a table's latest sync from scratch began (RFC 3339, UTC), and whether it is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResyncState {
    pub started_at: String,
    pub done: bool,
}

/// A table's key snapshot (`delete_capture = keys`): snapshot `generation` holds every key
/// the destination may hold once its pass is past `Deleting`. Each pass takes the next
/// snapshot together with the cursor bound it reads up to; the keys of the previous snapshot
/// missing from it are sent as DELETEs before the pass's changed rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeySnapshot {
    /// Snapshot `generation + 1` and the keys of `generation` missing from it were taken;
    /// those keys are being sent as DELETEs, after `after` (`None`: from the first). Then
    /// the pass reads up to `bound`.
    Deleting {
        generation: u64,
        #[serde(default)]
        bound: Option<String>,
        #[serde(default)]
        after: Option<Vec<String>>,
    },
    /// The pass reads the rows whose cursor is at most `bound`, taken with the snapshot
    /// (`None`: the snapshot saw no cursor value, so the pass reads nothing).
    Reading {
        generation: u64,
        #[serde(default)]
        bound: Option<String>,
    },
    /// The pass is complete; the next one begins with a new snapshot.
    Done { generation: u64 },
}

/// What a table's key-snapshot pass does first in an attempt, from its state
/// ([`KeySnapshot::next_step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStep {
    /// Take snapshot `previous + 1` (and, unless `previous` is 0, the keys of `previous` it
    /// lacks), then [`KeySnapshot::taken`].
    Take { previous: u64 },
    /// Go on sending the deleted keys (after the last one sent).
    SendDeletes,
    /// The pass reads its rows: its snapshot is taken and its deletes sent.
    ReadRows,
}

/// The pass's state machine, as the module doc of `sync::table::deletes` draws it: each step a
/// function of the state alone, so the table below can test every transition.
impl KeySnapshot {
    /// The snapshot the destination's keys are compared with.
    pub fn generation(&self) -> u64 {
        match self {
            Self::Deleting { generation, .. }
            | Self::Reading { generation, .. }
            | Self::Done { generation } => *generation,
        }
    }

    /// What an attempt does first, from the table's state (`None`: from scratch).
    pub fn next_step(state: Option<&KeySnapshot>) -> SnapshotStep {
        match state {
            None => SnapshotStep::Take { previous: 0 },
            Some(Self::Done { generation }) => SnapshotStep::Take {
                previous: *generation,
            },
            Some(Self::Deleting { .. }) => SnapshotStep::SendDeletes,
            Some(Self::Reading { .. }) => SnapshotStep::ReadRows,
        }
    }

    /// Snapshot `previous + 1` was taken with the pass's `bound`: from scratch (`previous` 0)
    /// the pass reads its rows at once (its TRUNCATE covers what was deleted); otherwise the
    /// keys of `previous` missing from it are sent first.
    pub fn taken(previous: u64, bound: Option<String>) -> KeySnapshot {
        if previous == 0 {
            Self::Reading {
                generation: 1,
                bound,
            }
        } else {
            Self::Deleting {
                generation: previous,
                bound,
                after: None,
            }
        }
    }

    /// The deleted keys up to `after` (in key order) were sent.
    pub fn deleted_up_to(&self, after: Option<Vec<String>>) -> KeySnapshot {
        match self {
            Self::Deleting {
                generation, bound, ..
            } => Self::Deleting {
                generation: *generation,
                bound: bound.clone(),
                after,
            },
            other => other.clone(),
        }
    }

    /// Every deleted key was sent: the pass reads rows against the new snapshot.
    pub fn deletes_sent(&self) -> KeySnapshot {
        match self {
            Self::Deleting {
                generation, bound, ..
            } => Self::Reading {
                generation: generation + 1,
                bound: bound.clone(),
            },
            other => other.clone(),
        }
    }

    /// The pass read its last row: the next one begins with a new snapshot.
    pub fn pass_complete(&self) -> KeySnapshot {
        match self {
            Self::Reading { generation, .. } => Self::Done {
                generation: *generation,
            },
            other => other.clone(),
        }
    }
}

/// An export through UNLOAD (see `sync::table::export`): where its files are, the cursor
/// bound it reads up to, and how far reading them back has come. The files are read in the
/// manifest's order, so "done" is a count of files and the rows sent of the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportState {
    /// `s3://bucket/key-prefix/` of the part files and the manifest.
    pub url: String,
    /// The greatest cursor value exported (NULL cursors included); `None`: every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<String>,
    /// Files of the manifest whose rows were all sent.
    #[serde(default)]
    pub files_done: u32,
    /// Rows of the next file already sent.
    #[serde(default)]
    pub rows_done: u64,
    /// Every file's rows were sent; what is left is deleting the files (a resume does that,
    /// whether or not they are still there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_all: bool,
}

/// The export pass's progress, step by step: each step a function of the state alone, tested
/// below as a table.
impl ExportState {
    /// An export just written to `url`, none of its files read.
    pub fn begun(url: String, bound: Option<String>) -> Self {
        Self {
            url,
            bound,
            files_done: 0,
            rows_done: 0,
            read_all: false,
        }
    }

    /// `rows` more rows of the next file were sent.
    pub fn rows_sent(&mut self, rows: u64) {
        self.rows_done += rows;
    }

    /// File `index` (in the manifest's order) was read to its end: the next one starts.
    pub fn file_done(&mut self, index: usize) {
        self.files_done = u32::try_from(index + 1).unwrap_or(u32::MAX);
        self.rows_done = 0;
    }

    /// Every file was read; what is left is deleting them.
    pub fn all_read(&mut self) {
        self.read_all = true;
    }

    /// Its files are gone before they were all read: read again from the first (with a new
    /// TRUNCATE, so nothing sent before is kept twice).
    pub fn start_over(&self) -> Self {
        Self {
            files_done: 0,
            rows_done: 0,
            ..self.clone()
        }
    }

    /// Whether any of its rows were sent.
    pub fn sent_any(&self) -> bool {
        self.files_done > 0 || self.rows_done > 0
    }
}

/// Where a table's scan stands (see `sync::position`, which alone decides what it means for
/// the next query). Of kind [`PositionKind::Row`] (the usual one, left out of the JSON) it is
/// the (cursor, key) of the last row sent. A `None` cursor is a row whose cursor column is NULL
/// (those come first in an initial sync). An empty `key` means the table has no primary key: a
/// resume then re-reads the rows sharing `cursor` (idempotent for hosts, which key such rows
/// by a hash of their values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub cursor: Option<String>,
    #[serde(default)]
    pub key: Vec<String>,
    #[serde(default, skip_serializing_if = "PositionKind::is_row")]
    pub kind: PositionKind,
}

/// What a [`Position`] stands for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionKind {
    /// The last row sent.
    #[default]
    Row,
    /// Every row whose cursor is at most `cursor` was sent (with a `None` cursor: every row
    /// whose cursor is NULL); the scan goes on with greater cursor values.
    AfterCursor,
    /// A table without a primary key where more rows share `cursor` than one query may read:
    /// those rows are being read by one query of their own, which a resume runs again.
    Tied,
}

impl PositionKind {
    fn is_row(&self) -> bool {
        *self == PositionKind::Row
    }
}

impl Position {
    /// The last row sent.
    pub fn row(cursor: Option<String>, key: Vec<String>) -> Self {
        Self {
            cursor,
            key,
            kind: PositionKind::Row,
        }
    }

    /// Past every row whose cursor is at most `cursor`.
    pub fn after_cursor(cursor: Option<String>) -> Self {
        Self {
            cursor,
            key: Vec::new(),
            kind: PositionKind::AfterCursor,
        }
    }

    /// Inside the group of rows sharing `cursor`, of a table without a primary key.
    pub fn tied(cursor: Option<String>) -> Self {
        Self {
            cursor,
            key: Vec::new(),
            kind: PositionKind::Tied,
        }
    }
}

impl SyncState {
    /// Absent, empty or `{}` is a first sync; anything else must be a state of this version.
    pub fn parse(state_json: Option<&str>) -> Result<Self, StateError> {
        let text = state_json.map(str::trim).unwrap_or("");
        if text.is_empty() {
            return Ok(Self::new());
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(StateError::Malformed)?;
        if value.as_object().is_some_and(serde_json::Map::is_empty) {
            return Ok(Self::new());
        }
        match value.get("version").and_then(serde_json::Value::as_u64) {
            Some(v)
                if (u64::from(OLDEST_STATE_VERSION)..=u64::from(STATE_VERSION)).contains(&v) => {}
            Some(found) => return Err(StateError::UnknownVersion { found }),
            None => {}
        }
        if let Some(at) = nul_character_at(&value, "state_json") {
            return Err(StateError::NulCharacter { at });
        }
        let mut state: Self = serde_json::from_value(value).map_err(StateError::Malformed)?;
        state.check_form()?;
        // Read as what it is to this build: a state of this version without the fields
        // older versions lacked.
        state.version = STATE_VERSION;
        Ok(state)
    }

    /// Refuses fields that reach names of objects the connector creates and drops, or that
    /// count them, in a form or range it never writes. (What must match the configuration and
    /// the catalog, such as an export's location, is checked when the table is planned.)
    fn check_form(&self) -> Result<(), StateError> {
        if let Some(id) = self.work_id.as_deref().filter(|id| !is_work_id(id)) {
            return Err(StateError::NotWritten {
                at: "work_id".to_string(),
                reason: format!(
                    "`{}` is not 8 lowercase hex digits",
                    crate::config::shorten(id)
                ),
            });
        }
        for (schema, tables) in &self.tables {
            for (table, entry) in tables {
                let TableState::Incremental {
                    key_snapshot: Some(snapshot),
                    ..
                } = entry
                else {
                    continue;
                };
                // A pass sending deletes has taken snapshot `generation + 1` too.
                let last = match snapshot {
                    KeySnapshot::Deleting { generation, .. } => generation.saturating_add(1),
                    other => other.generation(),
                };
                if snapshot.generation() == 0 || last > MAX_GENERATION {
                    return Err(StateError::NotWritten {
                        at: format!(
                            "tables.{}.{}.key_snapshot.generation",
                            crate::config::shorten(schema),
                            crate::config::shorten(table)
                        ),
                        reason: format!(
                            "{} is outside 1 to {MAX_GENERATION}",
                            snapshot.generation()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn new() -> Self {
        Self {
            version: STATE_VERSION,
            tables: BTreeMap::new(),
            work_id: None,
        }
    }

    pub fn table(&self, name: &TableName) -> Option<&TableState> {
        self.tables.get(&name.schema)?.get(&name.table)
    }

    pub fn set_table(&mut self, name: &TableName, state: TableState) {
        self.tables
            .entry(name.schema.clone())
            .or_default()
            .insert(name.table.clone(), state);
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("state serializes: only strings, maps and integers")
    }
}

/// Where the first NUL character in a string or object key of `value` is, as a dotted path.
fn nul_character_at(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => Some(path.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_character_at(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let at = format!("{path}.{}", crate::config::shorten(key));
            if key.contains('\0') {
                Some(at)
            } else {
                nul_character_at(item, &at)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn a_nul_anywhere_is_refused_with_where() {
        let state = r#"{"version": 1, "tables": {"public": {"t": {"mode": "incremental",
            "cursor_column": "updated_at", "key_columns": ["id"],
            "position": {"cursor": "2024-01-01", "key": ["1\u0000"]}}}}}"#;
        match SyncState::parse(Some(state)) {
            Err(StateError::NulCharacter { at }) => {
                assert_eq!(at, "state_json.tables.public.t.position.key[0]");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn work_ids_and_generations_of_another_form_are_refused() {
        let with = |work_id: &str, snapshot: &str| {
            format!(
                r#"{{"version": 2, "work_id": {work_id}, "tables": {{"public": {{"t": {{"mode": "incremental",
                "cursor_column": "updated_at", "key_columns": ["id"], "key_snapshot": {snapshot}}}}}}}}}"#
            )
        };
        let fine = r#"{"stage": "done", "generation": 3}"#;
        assert!(SyncState::parse(Some(&with(r#""0123abcd""#, fine))).is_ok());
        for id in [
            r#""""#,
            r#""0123ABCD""#,
            r#""0123abcd_orders""#,
            r#""x'; DROP TABLE t; --""#,
            r#""0123abcd0""#,
            r#""0123456789abcdef""#,
        ] {
            assert!(
                matches!(
                    SyncState::parse(Some(&with(id, fine))),
                    Err(StateError::NotWritten { .. })
                ),
                "{id}"
            );
        }
        for snapshot in [
            r#"{"stage": "done", "generation": 0}"#,
            r#"{"stage": "reading", "generation": 18446744073709551615}"#,
            r#"{"stage": "deleting", "generation": 4294967295}"#,
        ] {
            match SyncState::parse(Some(&with(r#""0123abcd""#, snapshot))) {
                Err(StateError::NotWritten { at, .. }) => {
                    assert_eq!(at, "tables.public.t.key_snapshot.generation");
                }
                other => panic!("{snapshot}: {other:?}"),
            }
        }
        assert!(is_work_id(&new_work_id()));
    }

    #[test]
    fn absent_empty_and_braces_are_a_first_sync() {
        for input in [None, Some(""), Some("  "), Some("{}"), Some(" { } ")] {
            assert_eq!(SyncState::parse(input).unwrap(), SyncState::new());
        }
    }

    #[test]
    fn round_trips_every_mode() {
        let mut state = SyncState::new();
        state.set_table(
            &TableName::new("public", "orders.2024"),
            TableState::Incremental {
                cursor_column: "updated_at".into(),
                key_columns: vec!["id".into()],
                position: Some(Position::row(
                    Some("2024-01-01 00:00:00.000001".into()),
                    vec!["7".into()],
                )),
                export: None,
                null_rescan: Some(vec!["3".into()]),
                resync: Some(ResyncState {
                    started_at: "2026-12-02T09:00:00Z".into(),
                    done: true,
                }),
                key_snapshot: Some(KeySnapshot::Deleting {
                    generation: 4,
                    bound: Some("2026-12-02 08:59:00".into()),
                    after: Some(vec!["12".into()]),
                }),
                table_id: Some(16384),
                columns: Some(vec![
                    SyncedColumn("id".into(), "INTEGER".into()),
                    SyncedColumn("updated_at".into(), "TIMESTAMP".into()),
                ]),
            },
        );
        state.set_table(
            &TableName::new("Sales Data", "items"),
            TableState::Full {
                key_columns: vec![],
                in_progress: true,
                position: None,
                export: Some(ExportState {
                    url: "s3://bucket/exports/redshift-sync-20261202T000000Z-00000000/x/".into(),
                    bound: None,
                    files_done: 3,
                    rows_done: 17,
                    read_all: false,
                }),
                table_id: None,
                columns: Some(vec![SyncedColumn("note".into(), "VARCHAR(256)".into())]),
            },
        );
        state.set_table(
            &TableName::new("public", "facts"),
            TableState::Incremental {
                cursor_column: "loaded_at".into(),
                key_columns: vec![],
                position: Some(Position::tied(Some("2024-01-01 00:00:00.000000".into()))),
                export: None,
                null_rescan: None,
                resync: None,
                key_snapshot: None,
                table_id: None,
                columns: None,
            },
        );
        let json = state.to_json();
        assert!(json.contains(r#""kind":"tied""#), "{json}");
        // The usual kind is left out, so states of earlier versions read the same; so is
        // an export that is not under way.
        assert_eq!(json.matches(r#""kind""#).count(), 1, "{json}");
        assert_eq!(json.matches(r#""export""#).count(), 1, "{json}");
        assert!(
            json.contains(r#""columns":[["id","INTEGER"],["updated_at","TIMESTAMP"]]"#),
            "{json}"
        );
        let parsed = SyncState::parse(Some(&json)).unwrap();
        assert_eq!(parsed, state);
    }

    #[test]
    fn a_state_of_version_1_reads_as_one_that_recorded_no_columns() {
        let state = r#"{"version": 1, "tables": {"public": {"t": {"mode": "incremental",
            "cursor_column": "updated_at", "key_columns": ["id"],
            "position": {"cursor": "2024-01-01 00:00:00", "key": ["1"]}}}}}"#;
        let parsed = SyncState::parse(Some(state)).unwrap();
        assert_eq!(parsed.version, STATE_VERSION);
        let table = parsed.table(&TableName::new("public", "t")).unwrap();
        assert_eq!(table.synced_with(), (None, None));
        assert!(parsed.to_json().starts_with(r#"{"version":2,"#));
    }

    #[test]
    fn rejects_malformed_and_foreign_states() {
        for input in [
            "not json",
            "[1,2]",
            "{\"cursor\": \"2024-01-01\"}",
            "{\"version\": 1, \"tables\": {\"s\": {\"t\": {\"mode\": \"sideways\"}}}}",
        ] {
            assert!(
                matches!(SyncState::parse(Some(input)), Err(StateError::Malformed(_))),
                "{input}"
            );
        }
        assert!(matches!(
            SyncState::parse(Some("{\"version\": 9, \"tables\": {}}")),
            Err(StateError::UnknownVersion { found: 9 })
        ));
    }
}
