//! The work schema (`delete_capture = keys`): the only place this connector ever writes.
//!
//! Each table read by a cursor with a primary key keeps one *key snapshot* there, a table of
//! its key values. A pass takes the next snapshot and, in the same transaction (so both see
//! one state of the table), the keys of the previous snapshot missing from it: the rows
//! deleted since, computed by Redshift's compute nodes with `EXCEPT`. Only those keys cross
//! the network.
//!
//! ```text
//!  BEGIN ISOLATION LEVEL REPEATABLE READ          -- SERIALIZABLE, as every Redshift transaction
//!  SELECT MAX(cursor)::VARCHAR FROM t              -- the pass's bound (cursors not of time)
//!  DROP TABLE IF EXISTS w.next;  CREATE TABLE w.next BACKUP NO DISTKEY (k0) SORTKEY (k0, …)
//!                                  AS SELECT t.id AS k0, t.code AS k1, OCTET_LENGTH(t.code) AS n1 FROM t
//!  DROP TABLE IF EXISTS w.gone;  CREATE TABLE w.gone BACKUP NO DISTKEY (k0) SORTKEY (k0, …)
//!                                  AS SELECT k0, COLLATE(k1, 'case_sensitive') AS k1, n1 FROM w.prev
//!                                     EXCEPT SELECT k0, COLLATE(k1, 'case_sensitive'), n1 FROM w.next
//!  COMMIT
//! ```
//!
//! **Keys compare as their bytes do**, exactly as the scan orders them (`sql::exact_terms`):
//! Redshift's `=` and `EXCEPT` ignore trailing blanks in VARCHARs and may ignore case, so a
//! snapshot stores each text key's byte length beside it (`n<i>`) and the set difference
//! compares text case-sensitively. Without that, deleting `'a '` while `'a'` stays would never
//! be seen. Snapshot columns are named by position (`k<i>`, `n<i>`), so no key column's name
//! can collide with them.
//!
//! **Names cannot collide**: `redshift_sync_<work_id>_<fingerprint of the exact schema and
//! table name (see `crate::fingerprint`)>_{s|d}<generation>`, at most 61 bytes (PostgreSQL keeps 63 of a name,
//! Redshift 127; there is no room left for a readable copy of the table's name). The random
//! `work_id` keeps connections that share a work schema apart; the hash keeps tables apart
//! however their names are chosen (tables whose names share a long prefix, or names built to
//! collide with a short hash). Clean-up drops only tables whose whole name parses as this
//! connection's.
//!
//! `BACKUP NO`: snapshots are derived data, left out of the cluster's backups. Both snapshots
//! are distributed by the same key column, so the `EXCEPT` runs on each slice without moving
//! rows. Every statement names the work schema explicitly.
//!
//! Tables an earlier release made (a 32-bit hash, key columns under their own names, no byte
//! lengths) are converted once into this form ([`convert_legacy`]), so upgrading re-syncs
//! nothing.

use sha2::Digest as _;

use super::catalog::{ColumnInfo, TableInfo};
use super::session::{Flavour, Session};
use super::sql::{case_sensitive, octet_length, quote_ident};
use super::SourceError;
use crate::config::TableName;
use crate::fingerprint;

/// Every work table's name begins with this, then the connection's `work_id`.
pub const WORK_TABLE_PREFIX: &str = "redshift_sync_";
/// The hash earlier releases used (32 bits, hex), and how much of the name they kept.
const LEGACY_HASH_HEX: usize = 8;
const LEGACY_READABLE_CHARS: usize = 40;

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The names of one table's work tables.
#[derive(Debug, Clone)]
pub struct WorkTables {
    schema: String,
    /// `redshift_sync_<work_id>_<hash>`: the common stem.
    stem: String,
    /// The stem an earlier release gave the same table (`…_<table, readable>_<32-bit hash>`).
    legacy_stem: String,
}

impl WorkTables {
    pub fn new(schema: &str, work_id: &str, table: &TableName) -> Self {
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
            .take(LEGACY_READABLE_CHARS)
            .collect();
        Self {
            schema: schema.to_string(),
            stem: format!(
                "{WORK_TABLE_PREFIX}{work_id}_{}",
                fingerprint::of(&[&table.schema, &table.table])
            ),
            legacy_stem: format!(
                "{WORK_TABLE_PREFIX}{work_id}_{readable}_{}",
                &hex::encode(sha2::Sha256::digest(
                    format!("{}\0{}", table.schema, table.table).as_bytes()
                ))[..LEGACY_HASH_HEX]
            ),
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

    /// What an earlier release named `name` (one of [`snapshot`](Self::snapshot) and
    /// [`deleted`](Self::deleted)).
    pub fn legacy(&self, name: &TableName) -> TableName {
        let suffix = name.table.strip_prefix(&self.stem).unwrap_or_default();
        TableName::new(&self.schema, format!("{}{suffix}", self.legacy_stem))
    }
}

/// Whether `name` (in the work schema) is a work table of the connection `work_id`: the whole
/// name parses as one this connector makes, in either form. Clean-up drops nothing else.
pub fn is_own_table(name: &str, work_id: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(WORK_TABLE_PREFIX)
        .and_then(|rest| rest.strip_prefix(work_id))
        .and_then(|rest| rest.strip_prefix('_'))
    else {
        return false;
    };
    // `<readable>_<hash>_{s|d}<generation>`, read from the right.
    let Some((rest, generation)) = rest.rsplit_once('_') else {
        return false;
    };
    let digits = generation
        .strip_prefix('s')
        .or_else(|| generation.strip_prefix('d'));
    if !digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    match rest.rsplit_once('_') {
        // This release's: the hash alone.
        None => fingerprint::is_fingerprint(rest),
        // An earlier release's: `<table, readable>_<32-bit hash>`.
        Some((readable, hash)) => {
            hash.len() == LEGACY_HASH_HEX
                && is_lower_hex(hash)
                && readable.len() <= LEGACY_READABLE_CHARS
                && readable
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }
    }
}

/// `"schema"."table"`.
pub fn quoted(name: &TableName) -> String {
    format!("{}.{}", quote_ident(&name.schema), quote_ident(&name.table))
}

/// How a table's key is stored in its work tables: by position, each key value as `k<i>` and,
/// for text that keeps trailing blanks, its byte length as `n<i>` (see the module's note).
pub struct KeyLayout<'a> {
    pub table: &'a TableInfo,
    /// The table's primary-key columns.
    pub key: &'a [usize],
}

impl KeyLayout<'_> {
    fn columns(&self) -> impl Iterator<Item = (usize, &ColumnInfo)> {
        self.key.iter().map(|&i| &self.table.columns[i]).enumerate()
    }

    /// The stored columns: `value AS "k<i>"` (and `OCTET_LENGTH(value) AS "n<i>"`), each
    /// value named by `value_of(key column name)`.
    fn stored(&self, value_of: impl Fn(&str) -> String) -> Vec<String> {
        let mut out = Vec::new();
        for (i, column) in self.columns() {
            let value = value_of(&column.name);
            out.push(format!("{value} AS \"k{i}\""));
            if column.sql_type.keeps_trailing_blanks() {
                out.push(format!("{} AS \"n{i}\"", octet_length(&value)));
            }
        }
        out
    }

    /// The stored columns of a work table read so that equal rows are equal keys byte for
    /// byte: text case-sensitively, beside its length.
    fn compared(&self, flavour: Flavour) -> Vec<String> {
        let mut out = Vec::new();
        for (i, column) in self.columns() {
            let k = format!("\"k{i}\"");
            if column.sql_type.is_text() {
                out.push(format!("{} AS {k}", case_sensitive(flavour, &k)));
            } else {
                out.push(k);
            }
            if column.sql_type.keeps_trailing_blanks() {
                out.push(format!("\"n{i}\""));
            }
        }
        out
    }

    /// `EXISTS (…)`: whether the key of the row aliased `alias` is in the key snapshot
    /// `snapshot` (quoted), byte for byte: the filter on rows whose cursor is NULL.
    pub fn in_snapshot(&self, flavour: Flavour, snapshot: &str, alias: &str) -> String {
        let mut matches = Vec::new();
        for (i, column) in self.columns() {
            let value = format!("{alias}.{}", quote_ident(&column.name));
            let stored = format!("\"k\".\"k{i}\"");
            if column.sql_type.is_text() {
                matches.push(format!(
                    "{} = {}",
                    case_sensitive(flavour, &stored),
                    case_sensitive(flavour, &value)
                ));
            } else {
                matches.push(format!("{stored} = {value}"));
            }
            if column.sql_type.keeps_trailing_blanks() {
                matches.push(format!("\"k\".\"n{i}\" = {}", octet_length(&value)));
            }
        }
        format!(
            "EXISTS (SELECT 1 FROM {snapshot} AS \"k\" WHERE {})",
            matches.join(" AND ")
        )
    }

    /// The table of deleted keys as a table to scan: its key columns (`k<i>`, in the key's
    /// types) in the key's order.
    pub fn deleted_keys_table(&self, name: TableName) -> TableInfo {
        TableInfo {
            name,
            columns: self
                .columns()
                .map(|(i, column)| ColumnInfo {
                    name: format!("k{i}"),
                    primary_key: true,
                    ..column.clone()
                })
                .collect(),
            id: None,
        }
    }

    /// `DROP TABLE IF EXISTS name; CREATE TABLE name … AS query`: with Redshift's attributes
    /// for a derived table of keys (see the module's note).
    fn create_as(&self, flavour: Flavour, name: &TableName, query: &str) -> String {
        let name = quoted(name);
        let attributes = match flavour {
            Flavour::Redshift => {
                let key: Vec<String> = (0..self.key.len()).map(|i| format!("\"k{i}\"")).collect();
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
}

/// What one snapshot statement needs.
pub struct Snapshot<'a> {
    pub layout: KeyLayout<'a>,
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
        in_transaction(session, async |session: &mut Session| {
            self.statements(session).await
        })
        .await
    }

    async fn statements(&self, session: &mut Session) -> Result<Option<String>, SourceError> {
        let table = self.layout.table;
        let source = table.quoted_name();
        // First, so that the transaction's snapshot of the table is taken by a read.
        let greatest = match self.greatest_of {
            Some(cursor) => {
                let column = quote_ident(&table.columns[cursor].name);
                session
                    .query_value(&format!("SELECT MAX({column})::VARCHAR FROM {source}"))
                    .await?
            }
            None => None,
        };
        let flavour = session.flavour();
        let stored = self
            .layout
            .stored(|name| format!("\"t\".{}", quote_ident(name)));
        session
            .simple(&self.layout.create_as(
                flavour,
                &self.next,
                &format!("SELECT {} FROM {source} AS \"t\"", stored.join(", ")),
            ))
            .await?;
        if let Some((previous, deleted)) = &self.compare {
            let compared = self.layout.compared(flavour).join(", ");
            session
                .simple(&self.layout.create_as(
                    flavour,
                    deleted,
                    &format!(
                        "SELECT {compared} FROM {} EXCEPT SELECT {compared} FROM {}",
                        quoted(previous),
                        quoted(&self.next)
                    ),
                ))
                .await?;
        }
        Ok(greatest)
    }
}

/// Runs `work` in one transaction (Redshift's are serializable, PostgreSQL's repeatable read).
async fn in_transaction<T, F>(session: &mut Session, work: F) -> Result<T, SourceError>
where
    F: AsyncFnOnce(&mut Session) -> Result<T, SourceError>,
{
    session
        .simple("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await?;
    let result = work(session).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = session.simple(end).await;
    let value = result?;
    ended?;
    Ok(value)
}

/// Converts a work table an earlier release made (`legacy`: key columns under their own names,
/// no byte lengths) into this release's form under `name`, in one transaction. Its rows are
/// kept as they are: the earlier release stored every key's exact bytes; only its comparison
/// was not exact.
pub async fn convert_legacy(
    session: &mut Session,
    layout: &KeyLayout<'_>,
    legacy: &TableName,
    name: &TableName,
) -> Result<(), SourceError> {
    let flavour = session.flavour();
    let stored = layout.stored(|column| format!("\"t\".{}", quote_ident(column)));
    let create = layout.create_as(
        flavour,
        name,
        &format!(
            "SELECT {} FROM {} AS \"t\"",
            stored.join(", "),
            quoted(legacy)
        ),
    );
    let drop = format!("DROP TABLE {}", quoted(legacy));
    in_transaction(session, async |session: &mut Session| {
        session.simple(&create).await?;
        session.simple(&drop).await
    })
    .await
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

/// This connection's tables in the work schema (their names): only those whose whole name
/// parses as one this connector makes for `work_id` (see [`is_own_table`]).
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
    Ok(rows
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .filter(|name| is_own_table(name, work_id))
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
        .query(
            "SELECT CASE WHEN has_schema_privilege($1, 'CREATE') THEN 'yes' ELSE 'no' END",
            &[schema],
        )
        .await?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten());
    if may_create.as_deref() != Some("yes") {
        return Err(refuse(format!(
            "the user may not create tables in the work schema `{schema}` (work_schema, for delete_capture = keys): GRANT CREATE ON SCHEMA {} TO {}",
            quote_ident(schema),
            quote_ident(session.user())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::types::SqlType;

    #[test]
    fn names_carry_128_bits_of_the_exact_name_and_fit_an_identifier() {
        let long = "a".repeat(60);
        let id = "0123abcd";
        let a = WorkTables::new("w", id, &TableName::new("s", format!("{long}x")));
        let b = WorkTables::new("w", id, &TableName::new("s", format!("{long}y")));
        let c = WorkTables::new("w", id, &TableName::new("s.t", "u"));
        let d = WorkTables::new("w", id, &TableName::new("s", "t.u"));
        let names = [
            a.snapshot(crate::state::MAX_GENERATION),
            a.deleted(crate::state::MAX_GENERATION),
            b.snapshot(crate::state::MAX_GENERATION),
            c.snapshot(1),
            d.snapshot(1),
        ];
        for (i, x) in names.iter().enumerate() {
            // PostgreSQL keeps 63 bytes of a name (Redshift 127).
            assert!(x.table.len() <= 63, "{}", x.table);
            assert!(is_own_table(&x.table, id), "{}", x.table);
            for y in &names[i + 1..] {
                assert_ne!(x.table, y.table);
            }
        }
        let hash = a.snapshot(1).table.rsplit('_').nth(1).unwrap().to_string();
        assert!(fingerprint::is_fingerprint(&hash), "{hash}");
    }

    #[test]
    fn clean_up_recognises_only_whole_names_of_its_own_connection() {
        let tables = WorkTables::new("w", "0123abcd", &TableName::new("public", "Orders"));
        for own in [
            tables.snapshot(1).table,
            tables.deleted(12).table,
            tables.legacy(&tables.snapshot(3)).table,
        ] {
            assert!(is_own_table(&own, "0123abcd"), "{own}");
            assert!(!is_own_table(&own, "0123abce"), "{own}");
        }
        for foreign in [
            "redshift_sync_0123abcd_orders",
            "redshift_sync_0123abcd_abcdefghijklmnopqrstuvwxyz_x1",
            "redshift_sync_0123abcd_abcdefghijklmnopqrstuvwxyz_s",
            "redshift_sync_0123abcd_abcdefghijklmnopqrstuvwxy_s1",
            "redshift_sync_0123abcd_abcdefghijklmnopqrstuvwxy1_s1",
            "redshift_sync_0123abcd_Users_0a1b2c3d_s1",
            "redshift_sync_0123abcd_orders_012345_s1",
            "redshift_sync_0123abcd89_abcdefghijklmnopqrstuvwxyz_s1",
            "my_table",
        ] {
            assert!(!is_own_table(foreign, "0123abcd"), "{foreign}");
        }
    }

    #[test]
    fn text_keys_are_stored_with_their_length_and_compared_case_sensitively() {
        let table = TableInfo {
            name: TableName::new("s", "t"),
            columns: vec![
                ColumnInfo {
                    name: "id".into(),
                    sql_type: SqlType::Integer,
                    primary_key: true,
                },
                ColumnInfo {
                    name: "k0".into(),
                    sql_type: SqlType::Varchar { length: Some(10) },
                    primary_key: true,
                },
            ],
            id: None,
        };
        let layout = KeyLayout {
            table: &table,
            key: &[0, 1],
        };
        assert_eq!(
            layout.stored(|c| format!("\"t\".{}", quote_ident(c))),
            [
                "\"t\".\"id\" AS \"k0\"",
                "\"t\".\"k0\" AS \"k1\"",
                "OCTET_LENGTH(\"t\".\"k0\") AS \"n1\""
            ]
        );
        assert_eq!(
            layout.compared(Flavour::Redshift),
            [
                "\"k0\"",
                "COLLATE(\"k1\", 'case_sensitive') AS \"k1\"",
                "\"n1\""
            ]
        );
        assert_eq!(
            layout.in_snapshot(Flavour::Redshift, "\"w\".\"x\"", "\"src\""),
            "EXISTS (SELECT 1 FROM \"w\".\"x\" AS \"k\" WHERE \"k\".\"k0\" = \"src\".\"id\" AND \
             COLLATE(\"k\".\"k1\", 'case_sensitive') = COLLATE(\"src\".\"k0\", 'case_sensitive') AND \
             \"k\".\"n1\" = OCTET_LENGTH(\"src\".\"k0\"))"
        );
    }
}
