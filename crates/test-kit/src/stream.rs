//! Running an Update and keeping everything it streamed, in order, in a form tests can compare.
//!
//! ```ignore
//! let mut client = server.client().await;
//! let log = stream::run_update(&mut client, &db.config, None, None).await?;
//! assert_eq!(log.upserts().len(), 10);
//! let resumed = stream::run_update(&mut client, &db.config, None, log.last_state()).await?;
//! ```
//!
//! Record data becomes a [`Row`]: column name -> value rendered as text (see [`value_text`]),
//! which [`query_rows`] produces on the database side too, so "what arrived" and "what the table
//! holds" compare with `assert_eq!`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;
use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::proto::value_type::Inner;
use fivetran_source::proto::{
    selection, update_response::Operation, RecordType, SchemaSelection, Selection, TableSelection,
    TablesWithSchema, UpdateRequest, ValueType,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A record's data: column name -> value as text.
pub type Row = BTreeMap<String, String>;

/// How a NULL renders in a [`Row`].
pub const NULL: &str = "NULL";

/// One record as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub schema: Option<String>,
    pub table: String,
    pub kind: RecordType,
    pub data: Row,
    /// Each value's field of `ValueType` (`string`, `json`, `binary`, ...; `null`).
    pub value_kinds: BTreeMap<String, &'static str>,
}

impl Rec {
    /// `schema.table` (schema empty if absent).
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.schema.as_deref().unwrap_or(""), self.table)
    }

    /// The value of `column`; panics with the record if it is absent.
    pub fn get(&self, column: &str) -> &str {
        self.data
            .get(column)
            .unwrap_or_else(|| panic!("record has no column `{column}`: {self:?}"))
    }
}

/// One streamed operation, in arrival order. Records are flattened out of their `Records`
/// messages (a legacy single `record` becomes a batch of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Record(Rec),
    Checkpoint(String),
    Warning(String),
    Task(String),
    /// The tables it declares, as `schema.table`, each with its columns.
    SchemaChange(Vec<(String, Vec<String>)>),
}

/// A checkpoint and what came before it.
#[derive(Debug, Clone)]
pub struct CheckpointAt {
    /// Index into [`UpdateLog::ops`].
    pub op_index: usize,
    /// How many records (of any type, any table) were received before it.
    pub records_before: usize,
    pub state_json: String,
}

/// Everything one Update streamed.
#[derive(Debug, Clone, Default)]
pub struct UpdateLog {
    pub ops: Vec<Op>,
    /// The size of every records-carrying message, in order.
    pub batch_sizes: Vec<usize>,
}

impl UpdateLog {
    /// All records, in order.
    pub fn records(&self) -> Vec<&Rec> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Record(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The data of every UPSERT, in order.
    pub fn upserts(&self) -> Vec<Row> {
        self.records()
            .into_iter()
            .filter(|r| r.kind == RecordType::Upsert)
            .map(|r| r.data.clone())
            .collect()
    }

    /// The data of every UPSERT of `table` (the table name without schema), in order.
    pub fn upserts_of(&self, table: &str) -> Vec<Row> {
        self.records_of(table)
            .into_iter()
            .filter(|r| r.kind == RecordType::Upsert)
            .map(|r| r.data.clone())
            .collect()
    }

    /// Every record of `table` (the table name without schema), in order.
    pub fn records_of(&self, table: &str) -> Vec<&Rec> {
        self.records()
            .into_iter()
            .filter(|r| r.table == table)
            .collect()
    }

    /// The record types of `table`'s records, in order.
    pub fn kinds_of(&self, table: &str) -> Vec<RecordType> {
        self.records_of(table).iter().map(|r| r.kind).collect()
    }

    pub fn truncates_of(&self, table: &str) -> usize {
        self.kinds_of(table)
            .iter()
            .filter(|k| **k == RecordType::Truncate)
            .count()
    }

    pub fn checkpoints(&self) -> Vec<CheckpointAt> {
        let mut records = 0;
        let mut out = Vec::new();
        for (op_index, op) in self.ops.iter().enumerate() {
            match op {
                Op::Record(_) => records += 1,
                Op::Checkpoint(state_json) => out.push(CheckpointAt {
                    op_index,
                    records_before: records,
                    state_json: state_json.clone(),
                }),
                _ => {}
            }
        }
        out
    }

    /// The last checkpoint's state, if any.
    pub fn last_state(&self) -> Option<String> {
        self.ops.iter().rev().find_map(|op| match op {
            Op::Checkpoint(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// The last checkpoint's state parsed as JSON; panics if there is none.
    pub fn last_state_value(&self) -> serde_json::Value {
        let text = self.last_state().expect("the update emitted a checkpoint");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("state is not JSON ({e}): {text}"))
    }

    pub fn warnings(&self) -> Vec<&str> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Warning(w) => Some(w.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every SchemaChange's declared tables, in order.
    pub fn schema_changes(&self) -> Vec<&[(String, Vec<String>)]> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::SchemaChange(tables) => Some(tables.as_slice()),
                _ => None,
            })
            .collect()
    }

    pub fn tasks(&self) -> Vec<&str> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Task(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The UPSERTs received before the `records_before`-th record (e.g. a checkpoint's
    /// [`CheckpointAt::records_before`]).
    pub fn upserts_before(&self, records_before: usize) -> Vec<Row> {
        self.records()
            .into_iter()
            .take(records_before)
            .filter(|r| r.kind == RecordType::Upsert)
            .map(|r| r.data.clone())
            .collect()
    }
}

/// How an Update ended when it did not end normally.
#[derive(Debug)]
pub struct UpdateOutcome {
    pub log: UpdateLog,
    /// The status the Update failed with, if it did.
    pub error: Option<Status>,
    /// True when the call itself was refused: no message was streamed at all.
    pub refused: bool,
}

/// Starts an Update and returns the raw response stream, for tests that read it themselves.
pub async fn start_update(
    client: &mut SourceConnectorClient<Channel>,
    config: &HashMap<String, String>,
    selection: Option<Selection>,
    state_json: Option<String>,
) -> Result<tonic::Streaming<fivetran_source::proto::UpdateResponse>, Status> {
    client
        .update(UpdateRequest {
            configuration: config.clone(),
            selection,
            state_json,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Runs an Update to its end and keeps everything, including a failure and whether the call was
/// refused before any message.
pub async fn try_update(
    client: &mut SourceConnectorClient<Channel>,
    config: &HashMap<String, String>,
    selection: Option<Selection>,
    state_json: Option<String>,
) -> UpdateOutcome {
    let mut log = UpdateLog::default();
    let mut stream = match start_update(client, config, selection, state_json).await {
        Ok(stream) => stream,
        Err(status) => {
            return UpdateOutcome {
                log,
                error: Some(status),
                refused: true,
            }
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(message)) => push(&mut log, message.operation),
            Ok(None) => {
                return UpdateOutcome {
                    log,
                    error: None,
                    refused: false,
                }
            }
            Err(status) => {
                return UpdateOutcome {
                    log,
                    error: Some(status),
                    refused: false,
                }
            }
        }
    }
}

/// Runs an Update to its end; any failure (refused or mid-stream) is the `Err`.
pub async fn run_update(
    client: &mut SourceConnectorClient<Channel>,
    config: &HashMap<String, String>,
    selection: Option<Selection>,
    state_json: Option<String>,
) -> Result<UpdateLog, Status> {
    let outcome = try_update(client, config, selection, state_json).await;
    match outcome.error {
        Some(status) => Err(status),
        None => Ok(outcome.log),
    }
}

/// [`run_update`] that panics on failure, with the status in the message.
pub async fn update_ok(
    client: &mut SourceConnectorClient<Channel>,
    config: &HashMap<String, String>,
    selection: Option<Selection>,
    state_json: Option<String>,
) -> UpdateLog {
    run_update(client, config, selection, state_json)
        .await
        .unwrap_or_else(|status| panic!("update failed: {:?}: {}", status.code(), status.message()))
}

/// Appends one streamed message to `log`.
pub fn push(log: &mut UpdateLog, operation: Option<Operation>) {
    match operation {
        Some(Operation::Records(records)) => {
            log.batch_sizes.push(records.records.len());
            for record in records.records {
                log.ops.push(Op::Record(rec(record)));
            }
        }
        Some(Operation::Record(record)) => {
            log.batch_sizes.push(1);
            log.ops.push(Op::Record(rec(record)));
        }
        Some(Operation::Checkpoint(c)) => log.ops.push(Op::Checkpoint(c.state_json)),
        Some(Operation::Warning(w)) => log.ops.push(Op::Warning(w.message)),
        Some(Operation::Task(t)) => log.ops.push(Op::Task(t.message)),
        Some(Operation::SchemaChange(change)) => log.ops.push(Op::SchemaChange(declared(change))),
        None => panic!("an UpdateResponse without an operation"),
    }
}

/// The tables a SchemaChange declares and their columns.
fn declared(change: fivetran_source::proto::SchemaChange) -> Vec<(String, Vec<String>)> {
    use fivetran_source::proto::schema_change::Change;
    match change.change {
        Some(Change::WithSchema(list)) => list
            .schemas
            .into_iter()
            .flat_map(|schema| {
                schema.tables.into_iter().map(move |table| {
                    (
                        format!("{}.{}", schema.name, table.name),
                        table.columns.into_iter().map(|c| c.name).collect(),
                    )
                })
            })
            .collect(),
        Some(Change::WithoutSchema(list)) => list
            .tables
            .into_iter()
            .map(|table| {
                (
                    table.name,
                    table.columns.into_iter().map(|c| c.name).collect(),
                )
            })
            .collect(),
        None => panic!("a SchemaChange without a change"),
    }
}

fn rec(record: fivetran_source::proto::Record) -> Rec {
    let kind = RecordType::try_from(record.r#type)
        .unwrap_or_else(|_| panic!("unknown record type {}", record.r#type));
    Rec {
        schema: record.schema_name,
        table: record.table_name,
        kind,
        data: record
            .data
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect(),
        value_kinds: record
            .data
            .iter()
            .map(|(k, v)| (k.clone(), value_kind(v)))
            .collect(),
    }
}

/// The name of the `ValueType` field a value travels in.
pub fn value_kind(value: &ValueType) -> &'static str {
    match value.inner.as_ref() {
        None => "none",
        Some(Inner::Null(_)) => "null",
        Some(Inner::Bool(_)) => "bool",
        Some(Inner::Short(_)) => "short",
        Some(Inner::Int(_)) => "int",
        Some(Inner::Long(_)) => "long",
        Some(Inner::Float(_)) => "float",
        Some(Inner::Double(_)) => "double",
        Some(Inner::NaiveDate(_)) => "naive_date",
        Some(Inner::NaiveDatetime(_)) => "naive_datetime",
        Some(Inner::UtcDatetime(_)) => "utc_datetime",
        Some(Inner::Decimal(_)) => "decimal",
        Some(Inner::Binary(_)) => "binary",
        Some(Inner::String(_)) => "string",
        Some(Inner::Json(_)) => "json",
        Some(Inner::Xml(_)) => "xml",
        Some(Inner::NaiveTime(_)) => "naive_time",
    }
}

/// A value as text: NULL is [`NULL`]; numbers, decimals, strings, JSON and XML as they are;
/// booleans `true`/`false`; binary as lower-case hex; NAIVE_DATETIME as
/// `YYYY-MM-DD HH:MM:SS.ffffff`, UTC_DATETIME the same with `+00`, NAIVE_DATE as `YYYY-MM-DD`.
/// The timestamp forms are what `to_char(x, 'YYYY-MM-DD HH24:MI:SS.US')` gives in SQL.
pub fn value_text(value: &ValueType) -> String {
    let timestamp = |t: &prost_types::Timestamp| {
        DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).expect("nanos >= 0"))
            .unwrap_or_else(|| panic!("timestamp out of range: {t:?}"))
            .naive_utc()
    };
    match value.inner.as_ref() {
        None => panic!("a ValueType without a value"),
        Some(Inner::Null(_)) => NULL.to_string(),
        Some(Inner::Bool(b)) => b.to_string(),
        Some(Inner::Short(v)) | Some(Inner::Int(v)) => v.to_string(),
        Some(Inner::Long(v)) => v.to_string(),
        Some(Inner::Float(v)) => v.to_string(),
        Some(Inner::Double(v)) => v.to_string(),
        Some(Inner::Decimal(s))
        | Some(Inner::String(s))
        | Some(Inner::Json(s))
        | Some(Inner::Xml(s)) => s.clone(),
        Some(Inner::Binary(bytes)) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Some(Inner::NaiveDatetime(t)) => timestamp(t).format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        Some(Inner::UtcDatetime(t)) => {
            format!("{}+00", timestamp(t).format("%Y-%m-%d %H:%M:%S%.6f"))
        }
        Some(Inner::NaiveDate(t)) => timestamp(t).format("%Y-%m-%d").to_string(),
        Some(Inner::NaiveTime(t)) => timestamp(t).format("%H:%M:%S%.6f").to_string(),
    }
}

/// Runs `sql` (every output column must be text: cast in SQL, e.g. `id::text`,
/// `to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US')`) and returns its rows as [`Row`]s, NULL as
/// [`NULL`]: the database side of a comparison with [`UpdateLog::upserts`].
pub async fn query_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Row> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| {
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let value: Option<String> = row.get(i);
                    (
                        column.name().to_string(),
                        value.unwrap_or_else(|| NULL.into()),
                    )
                })
                .collect()
        })
        .collect()
}

/// The SQL expression [`value_text`] matches for a TIMESTAMP column.
pub fn ts_sql(column: &str) -> String {
    format!("to_char({column}, 'YYYY-MM-DD HH24:MI:SS.US') AS {column}")
}

/// Rows keyed by the given columns, for set comparisons; panics on a duplicate key.
pub fn by_key(rows: &[Row], key: &[&str]) -> BTreeMap<Vec<String>, Row> {
    let mut out = BTreeMap::new();
    for row in rows {
        let k: Vec<String> = key.iter().map(|c| row[*c].clone()).collect();
        if let Some(previous) = out.insert(k.clone(), row.clone()) {
            panic!("duplicate key {k:?}: {previous:?} and {row:?}");
        }
    }
    out
}

/// Selects every table of `schema` (and no other schema), every column.
pub fn all_tables_of(schema: &str) -> Selection {
    with_schema(
        false,
        vec![SchemaSelection {
            included: true,
            schema_name: schema.to_string(),
            tables: Vec::new(),
            include_new_tables: true,
        }],
    )
}

/// Selects everything, including tables and schemas the host has not seen yet.
pub fn select_everything() -> Selection {
    with_schema(true, Vec::new())
}

/// A `with_schema` Selection.
pub fn with_schema(include_new_schemas: bool, schemas: Vec<SchemaSelection>) -> Selection {
    Selection {
        selection: Some(selection::Selection::WithSchema(TablesWithSchema {
            schemas,
            include_new_schemas,
        })),
    }
}

/// An included schema with exactly these tables (no new tables).
pub fn schema(name: &str, tables: Vec<TableSelection>) -> SchemaSelection {
    SchemaSelection {
        included: true,
        schema_name: name.to_string(),
        tables,
        include_new_tables: false,
    }
}

/// An included table with every column (present and new).
pub fn table(name: &str) -> TableSelection {
    TableSelection {
        included: true,
        table_name: name.to_string(),
        columns: HashMap::new(),
        include_new_columns: true,
    }
}

/// An included table with exactly the listed column choices; unlisted columns are excluded.
pub fn table_columns(name: &str, columns: &[(&str, bool)]) -> TableSelection {
    TableSelection {
        included: true,
        table_name: name.to_string(),
        columns: columns.iter().map(|(c, b)| (c.to_string(), *b)).collect(),
        include_new_columns: false,
    }
}

/// Asserts `status` is INVALID_ARGUMENT and its message mentions `needle`.
pub fn assert_invalid_argument(status: &Status, needle: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "expected INVALID_ARGUMENT, got {:?}: {}",
        status.code(),
        status.message()
    );
    assert!(
        status.message().contains(needle),
        "the message should mention `{needle}`: {}",
        status.message()
    );
}

/// The UPSERTs of `table` that `first` delivered before checkpoint `at`.
pub fn upserts_before(first: &UpdateLog, at: &CheckpointAt, table: &str) -> Vec<Row> {
    first
        .records()
        .into_iter()
        .take(at.records_before)
        .filter(|r| r.table == table && r.kind == RecordType::Upsert)
        .map(|r| r.data.clone())
        .collect()
}

/// Whether `first` sent `table`'s TRUNCATE before checkpoint `at`.
pub fn truncated_before(first: &UpdateLog, at: &CheckpointAt, table: &str) -> bool {
    first
        .records()
        .into_iter()
        .take(at.records_before)
        .any(|r| r.table == table && r.kind == RecordType::Truncate)
}

/// Runs a new Update from the state of every checkpoint of `first`, one after another, as a
/// host does after a failure at that point.
pub async fn resume_from_each_checkpoint(
    client: &mut SourceConnectorClient<Channel>,
    config: &HashMap<String, String>,
    selection: Option<Selection>,
    first: &UpdateLog,
) -> Vec<(CheckpointAt, UpdateLog)> {
    let mut out = Vec::new();
    for at in first.checkpoints() {
        let resumed = update_ok(
            client,
            config,
            selection.clone(),
            Some(at.state_json.clone()),
        )
        .await;
        out.push((at, resumed));
    }
    out
}

/// A table's `position` in a state (`None` if the table has no entry or no position):
/// (cursor, key).
pub fn position(
    state_json: &str,
    schema: &str,
    table: &str,
) -> Option<(Option<String>, Vec<String>)> {
    let state: serde_json::Value = serde_json::from_str(state_json).expect("state is JSON");
    let position = state
        .get("tables")?
        .get(schema)?
        .get(table)?
        .get("position")?;
    if position.is_null() {
        return None;
    }
    let cursor = position["cursor"].as_str().map(str::to_string);
    let key = position["key"]
        .as_array()
        .map(|k| {
            k.iter()
                .map(|v| v.as_str().expect("key values are strings").to_string())
                .collect()
        })
        .unwrap_or_default();
    Some((cursor, key))
}
