//! The work schema (`delete_capture = keys`): the only place this connector ever writes.
//!
//! Each table read by a cursor with a primary key keeps one *key snapshot* there, a table of
//! its key columns. A pass takes the next snapshot and, in the same transaction (so both see
//! one state of the table), the keys of the previous snapshot missing from it: the rows
//! deleted since, computed by Redshift's compute nodes with `EXCEPT`. Only those keys cross
//! the network.
//!
//! ```text
//!  BEGIN ISOLATION LEVEL REPEATABLE READ          -- SERIALIZABLE, as every Redshift transaction
//!  SELECT MAX(cursor)::VARCHAR FROM t              -- the pass's bound (cursors not of time)
//!  DROP TABLE IF EXISTS w.next;  CREATE TABLE w.next BACKUP NO DISTKEY (k1) SORTKEY (k1, …)
//!                                  AS SELECT k1, … FROM t
//!  DROP TABLE IF EXISTS w.gone;  CREATE TABLE w.gone BACKUP NO DISTKEY (k1) SORTKEY (k1, …)
//!                                  AS SELECT k1, … FROM w.prev EXCEPT SELECT k1, … FROM w.next
//!  COMMIT
//! ```
//!
//! `BACKUP NO`: snapshots are derived data, left out of the cluster's backups. Both snapshots
//! are distributed by the same key column, so the `EXCEPT` runs on each slice without moving
//! rows. Names carry the connection's random `work_id` and a hash of the table's name, so
//! connections sharing a work schema never touch each other's tables; every statement names
//! the work schema explicitly.

use super::catalog::{quote_ident, ColumnInfo, TableInfo};
use super::session::{Flavour, Session};
use super::SourceError;
use crate::config::TableName;

/// Every work table's name begins with this, then the connection's `work_id`.
pub const WORK_TABLE_PREFIX: &str = "redshift_sync_";

/// A new random `work_id`: 8 hex digits.
pub fn new_work_id() -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    hex::encode(random)
}

/// The names of one table's work tables.
#[derive(Debug, Clone)]
pub struct WorkTables {
    schema: String,
    /// `redshift_sync_<work_id>_<table, readable>_<hash>`: the common stem.
    stem: String,
}

impl WorkTables {
    pub fn new(schema: &str, work_id: &str, table: &TableName) -> Self {
        use sha2::Digest as _;
        let exact = format!("{}\0{}", table.schema, table.table);
        let hash = hex::encode(&sha2::Sha256::digest(exact.as_bytes())[..4]);
        let readable: String = table
            .table
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        Self {
            schema: schema.to_string(),
            stem: format!("{WORK_TABLE_PREFIX}{work_id}_{readable}_{hash}"),
        }
    }

    /// Key snapshot number `generation`.
    pub fn snapshot(&self, generation: u64) -> TableName {
        TableName::new(&self.schema, format!("{}_s{generation}", self.stem))
    }

    /// The keys of snapshot `generation - 1` missing from snapshot `generation`.
    pub fn deleted(&self, generation: u64) -> TableName {
        TableName::new(&self.schema, format!("{}_d{generation}", self.stem))
    }
}

/// `"schema"."table"`.
pub fn quoted(name: &TableName) -> String {
    format!("{}.{}", quote_ident(&name.schema), quote_ident(&name.table))
}

/// What one snapshot statement needs.
pub struct Snapshot<'a> {
    pub table: &'a TableInfo,
    /// The table's primary-key columns.
    pub key: &'a [usize],
    /// The snapshot to take.
    pub next: TableName,
    /// The previous snapshot and where the keys it has and `next` lacks go.
    pub compare: Option<(TableName, TableName)>,
    /// A cursor whose bound is its greatest value (cursors not of time): its index.
    pub greatest_of: Option<usize>,
}

impl Snapshot<'_> {
    /// Takes the snapshot (and the deleted keys) in one transaction; the greatest cursor
    /// value as of the same state of the table, if asked (`None` if it is NULL everywhere).
    pub async fn take(&self, session: &mut Session) -> Result<Option<String>, SourceError> {
        session
            .simple("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await?;
        let result = self.statements(session).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = session.simple(end).await;
        let greatest = result?;
        ended?;
        Ok(greatest)
    }

    async fn statements(&self, session: &mut Session) -> Result<Option<String>, SourceError> {
        let source = self.table.quoted_name();
        // First, so that the transaction's snapshot of the table is taken by a read.
        let greatest = match self.greatest_of {
            Some(cursor) => {
                let column = quote_ident(&self.table.columns[cursor].name);
                session
                    .query_value(&format!("SELECT MAX({column})::VARCHAR FROM {source}"))
                    .await?
            }
            None => None,
        };
        let keys = self.key_list();
        let flavour = session.flavour();
        session
            .simple(&create_as(
                flavour,
                &self.next,
                &self.key_names(),
                &format!("SELECT {keys} FROM {source}"),
            ))
            .await?;
        if let Some((previous, deleted)) = &self.compare {
            session
                .simple(&create_as(
                    flavour,
                    deleted,
                    &self.key_names(),
                    &format!(
                        "SELECT {keys} FROM {} EXCEPT SELECT {keys} FROM {}",
                        quoted(previous),
                        quoted(&self.next)
                    ),
                ))
                .await?;
        }
        Ok(greatest)
    }

    fn key_names(&self) -> Vec<&str> {
        self.key
            .iter()
            .map(|&i| self.table.columns[i].name.as_str())
            .collect()
    }

    fn key_list(&self) -> String {
        self.key_names()
            .into_iter()
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `DROP TABLE IF EXISTS name; CREATE TABLE name … AS query`: with Redshift's attributes for a
/// derived table of keys (see the module's note).
fn create_as(flavour: Flavour, name: &TableName, key: &[&str], query: &str) -> String {
    let name = quoted(name);
    let attributes = match flavour {
        Flavour::Redshift => {
            let key: Vec<String> = key.iter().map(|k| quote_ident(k)).collect();
            format!(
                " BACKUP NO DISTKEY ({}) SORTKEY ({})",
                key[0],
                key.join(", ")
            )
        }
        Flavour::PostgreSql => String::new(),
    };
    format!("DROP TABLE IF EXISTS {name}; CREATE TABLE {name}{attributes} AS {query}")
}

/// `EXISTS (…)`: whether the key of the row aliased `alias` (its key column names, unquoted) is
/// in the key snapshot `snapshot` (quoted): the filter on rows whose cursor is NULL.
pub fn key_in_snapshot<'a>(
    snapshot: &str,
    key: impl IntoIterator<Item = &'a str>,
    alias: &str,
) -> String {
    let matches = key
        .into_iter()
        .map(|name| {
            let name = quote_ident(name);
            format!("\"k\".{name} = {alias}.{name}")
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    format!("EXISTS (SELECT 1 FROM {snapshot} AS \"k\" WHERE {matches})")
}

/// The table of deleted keys as a table to scan: its columns are the key's.
pub fn deleted_keys_table(table: &TableInfo, key: &[usize], name: TableName) -> TableInfo {
    TableInfo {
        name,
        columns: key
            .iter()
            .map(|&i| ColumnInfo {
                primary_key: true,
                ..table.columns[i].clone()
            })
            .collect(),
        id: None,
    }
}

/// Drops work tables (best effort is the caller's: an error is returned).
pub async fn drop_tables(session: &mut Session, names: &[TableName]) -> Result<(), SourceError> {
    if names.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = names.iter().map(quoted).collect();
    session
        .simple(&format!("DROP TABLE IF EXISTS {}", list.join(", ")))
        .await
}

/// This connection's tables in the work schema (their names).
pub async fn list(
    session: &mut Session,
    schema: &str,
    work_id: &str,
) -> Result<Vec<String>, SourceError> {
    let rows = session
        .query(
            "SELECT c.relname::VARCHAR FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r'",
            &[schema],
        )
        .await?;
    let prefix = format!("{WORK_TABLE_PREFIX}{work_id}_");
    Ok(rows
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .filter(|name| name.starts_with(&prefix))
        .collect())
}

/// Whether the work schema exists and the user may create tables in it: `Err` says what to
/// grant.
pub async fn check_access(session: &mut Session, schema: &str) -> Result<(), SourceError> {
    let exists = session
        .query(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[schema],
        )
        .await?;
    let refuse = |message: String| SourceError::WorkSchema { message };
    if exists.is_empty() {
        return Err(refuse(format!(
            "the work schema `{schema}` (work_schema, for delete_capture = keys) does not exist: CREATE SCHEMA {} and GRANT CREATE ON SCHEMA {} TO {}",
            quote_ident(schema),
            quote_ident(schema),
            quote_ident(session.user())
        )));
    }
    let may_create = session
        .query_value(&format!(
            "SELECT CASE WHEN has_schema_privilege({}, 'CREATE') THEN 'yes' ELSE 'no' END",
            quote_literal(schema)
        ))
        .await?;
    if may_create.as_deref() != Some("yes") {
        return Err(refuse(format!(
            "the user may not create tables in the work schema `{schema}` (work_schema, for delete_capture = keys): GRANT CREATE ON SCHEMA {} TO {}",
            quote_ident(schema),
            quote_ident(session.user())
        )));
    }
    Ok(())
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
