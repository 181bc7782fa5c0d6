//! The keyset scan: one query per table, rows in (cursor, key) order, fetched in batches.
//!
//! The query runs in a read-only transaction on a session of its own, through a portal executed
//! with a row limit, so the server hands over `batch_size` rows per round trip and the client
//! never holds more than one batch. While the portal is open nothing else runs on the session
//! (Redshift rejects any other statement while a portal is suspended).
//!
//! Resuming is a predicate on the last row sent, written without row constructors, which
//! Redshift rejects: `(c, k1, k2) > (x, y1, y2)` becomes
//! `c > x OR (c = x AND (k1 > y1 OR (k1 = y1 AND k2 > y2)))`.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::catalog::{quote_ident, TableInfo};
use super::connect::Canceller;
use super::{Session, SourceError};

/// Where a scan starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Every row, including those whose cursor is NULL (they come first).
    FromStart,
    /// Full-table mode: rows whose key is greater than this one.
    AfterKey(Vec<String>),
    /// Still among the NULL-cursor rows: those with a greater key, then every non-NULL cursor.
    AfterNullCursor(Vec<String>),
    /// Rows after (cursor, key). With no key columns: rows at or after the cursor (a bounded
    /// re-read of the rows sharing it, which hosts absorb because such rows are keyed by hash).
    AfterCursor { cursor: String, key: Vec<String> },
}

/// Which columns to read and in what order to read them.
#[derive(Debug, Clone)]
pub struct ScanSpec<'a> {
    pub table: &'a TableInfo,
    /// Column indexes, in SELECT order.
    pub select: &'a [usize],
    /// The cursor column, if the table is read incrementally.
    pub cursor: Option<usize>,
    /// The primary-key columns that break ties.
    pub key: &'a [usize],
    /// Cursor values above this (text in the cursor type's canonical form) are left for a later
    /// sync: the guard against rows that commit late with an older cursor value.
    pub upper_bound: Option<&'a str>,
}

/// The scanned table's alias in the query, for column references that must not resolve to the
/// SELECT list.
const TABLE_ALIAS: &str = "\"src\"";

/// SQL text and its text parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanQuery {
    pub sql: String,
    pub params: Vec<String>,
}

impl ScanSpec<'_> {
    pub fn query(&self, resume: &Resume) -> ScanQuery {
        let mut params = Vec::new();
        let columns = &self.table.columns;
        let quoted = |i: usize| quote_ident(&columns[i].name);
        let select = self
            .select
            .iter()
            .map(|&i| columns[i].sql_type.select_expr(&quoted(i)))
            .collect::<Vec<_>>()
            .join(", ");

        let mut bind = |index: usize, value: &str| {
            params.push(value.to_string());
            columns[index].sql_type.param_expr(params.len())
        };
        let after = match (resume, self.cursor) {
            (Resume::FromStart, _) => None,
            (Resume::AfterKey(key), _) => key_after(self.key, key, &quoted, &mut bind),
            (Resume::AfterNullCursor(key), Some(c)) => key_after(self.key, key, &quoted, &mut bind)
                .map(|after| {
                    format!(
                        "({c} IS NULL AND ({after})) OR {c} IS NOT NULL",
                        c = quoted(c)
                    )
                }),
            (Resume::AfterCursor { cursor, key }, Some(c)) => {
                let value = bind(c, cursor);
                let c = quoted(c);
                Some(match key_after(self.key, key, &quoted, &mut bind) {
                    Some(after) => format!("{c} > {value} OR ({c} = {value} AND ({after}))"),
                    None => format!("{c} >= {value}"),
                })
            }
            // A cursor position without a cursor column cannot happen: the plan only builds
            // cursor resumes for incremental tables.
            (Resume::AfterNullCursor(_) | Resume::AfterCursor { .. }, None) => None,
        };
        let below_bound = match (self.upper_bound, self.cursor) {
            (Some(bound), Some(c)) => {
                let value = bind(c, bound);
                Some(format!("{c} IS NULL OR {c} <= {value}", c = quoted(c)))
            }
            _ => None,
        };
        let predicate = match (after, below_bound) {
            (Some(after), Some(bound)) => Some(format!("({after}) AND ({bound})")),
            (after, bound) => after.or(bound),
        };

        // ORDER BY names the table's columns through the alias: a bare name would bind to the
        // SELECT list's output column of that name, which for types read as text
        // (`"n"::VARCHAR(65535)`: NUMERIC, DATE, TIME...) orders as text ('10' < '9'), while the
        // resume predicate compares in the column's type. Rows would then be lost on resume.
        let in_table = |i: usize| format!("{TABLE_ALIAS}.{}", quoted(i));
        let mut order: Vec<String> = Vec::new();
        if let Some(c) = self.cursor {
            order.push(format!("{} ASC NULLS FIRST", in_table(c)));
        }
        order.extend(self.key.iter().map(|&k| format!("{} ASC", in_table(k))));

        let mut sql = format!(
            "SELECT {select} FROM {} AS {TABLE_ALIAS}",
            self.table.quoted_name()
        );
        if let Some(predicate) = predicate {
            sql.push_str(&format!(" WHERE {predicate}"));
        }
        if !order.is_empty() {
            sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        ScanQuery { sql, params }
    }
}

/// `k1 > y1 OR (k1 = y1 AND (k2 > y2 OR ...))`, or `None` when there is no key to compare.
fn key_after(
    columns: &[usize],
    values: &[String],
    quoted: &impl Fn(usize) -> String,
    bind: &mut impl FnMut(usize, &str) -> String,
) -> Option<String> {
    if columns.is_empty() || columns.len() != values.len() {
        return None;
    }
    let bound: Vec<(String, String)> = columns
        .iter()
        .zip(values)
        .map(|(&c, v)| (quoted(c), bind(c, v)))
        .collect();
    let mut predicate: Option<String> = None;
    for (column, value) in bound.iter().rev() {
        predicate = Some(match predicate {
            None => format!("{column} > {value}"),
            Some(rest) => format!("{column} > {value} OR ({column} = {value} AND ({rest}))"),
        });
    }
    predicate
}

/// Batches of a running scan. The scan runs in a task of its own that owns the session and
/// fetches one batch ahead of the consumer (so the database works while the host reads), then
/// waits: a consumer that stops reading (a slow host) holds the scan where it is. Dropping the
/// stream before its end cancels the running statement and closes the session.
pub struct BatchStream {
    batches: mpsc::Receiver<Result<Vec<Row>, SourceError>>,
    canceller: Canceller,
    task: JoinHandle<()>,
}

impl BatchStream {
    /// Starts `query` on `session`; rows arrive `batch_size` at a time.
    pub fn start(session: Session, query: ScanQuery, batch_size: u32) -> Self {
        let canceller = session.canceller();
        let (tx, batches) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let mut session = session;
            if let Err(err) = run_scan(&mut session, &query, batch_size, &tx).await {
                let _ = tx.send(Err(err)).await;
            }
        });
        Self {
            batches,
            canceller,
            task,
        }
    }

    /// The next batch (never empty), an error, or `None` at the end of the table.
    pub async fn next(&mut self) -> Option<Result<Vec<Row>, SourceError>> {
        self.batches.recv().await
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            self.task.abort();
            let canceller = self.canceller.clone();
            tokio::spawn(async move { canceller.cancel().await });
        }
    }
}

/// The scan itself: a read-only transaction, a prepared statement, a portal fetched with a row
/// limit until it runs dry, then commit. Stops quietly if the consumer goes away.
async fn run_scan(
    session: &mut Session,
    query: &ScanQuery,
    batch_size: u32,
    tx: &mpsc::Sender<Result<Vec<Row>, SourceError>>,
) -> Result<(), SourceError> {
    let transaction = session
        .client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(SourceError::from_query)?;
    // Prepared before binding, as Redshift wants; the parameters are all text.
    let statement = transaction
        .prepare(&query.sql)
        .await
        .map_err(SourceError::from_query)?;
    let params: Vec<&(dyn ToSql + Sync)> = query
        .params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect();
    let portal = transaction
        .bind(&statement, &params)
        .await
        .map_err(SourceError::from_query)?;
    let limit = i32::try_from(batch_size).unwrap_or(i32::MAX);
    loop {
        let rows = transaction
            .query_portal(&portal, limit)
            .await
            .map_err(SourceError::from_query)?;
        let complete = rows.len() < batch_size as usize;
        if !rows.is_empty() && tx.send(Ok(rows)).await.is_err() {
            return Ok(()); // the consumer went away; dropping the transaction rolls it back
        }
        if complete {
            break;
        }
    }
    drop(portal);
    transaction.commit().await.map_err(SourceError::from_query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableName;
    use crate::source::catalog::ColumnInfo;
    use crate::source::types::SqlType;

    fn table() -> TableInfo {
        let column = |name: &str, sql_type, primary_key| ColumnInfo {
            name: name.into(),
            sql_type,
            primary_key,
        };
        TableInfo {
            name: TableName::new("Sales", "order items"),
            columns: vec![
                column("region", SqlType::Text, true),
                column("id", SqlType::BigInt, true),
                column("updated_at", SqlType::Timestamp, false),
                column(
                    "amount",
                    SqlType::Numeric {
                        precision: Some(38),
                        scale: Some(2),
                    },
                    false,
                ),
            ],
        }
    }

    #[test]
    fn initial_scan_reads_everything_in_cursor_then_key_order() {
        let table = table();
        let spec = ScanSpec {
            table: &table,
            select: &[0, 1, 2, 3],
            cursor: Some(2),
            key: &[0, 1],
            upper_bound: None,
        };
        let query = spec.query(&Resume::FromStart);
        assert_eq!(
            query.sql,
            "SELECT \"region\", \"id\", \"updated_at\", \"amount\"::VARCHAR(65535) FROM \"Sales\".\"order items\" AS \"src\" \
             ORDER BY \"src\".\"updated_at\" ASC NULLS FIRST, \"src\".\"region\" ASC, \"src\".\"id\" ASC"
        );
        assert!(query.params.is_empty());
    }

    #[test]
    fn columns_read_as_text_are_ordered_in_their_own_type() {
        let table = table();
        let spec = ScanSpec {
            table: &table,
            select: &[1, 3],
            cursor: Some(3),
            key: &[1],
            upper_bound: None,
        };
        let query = spec.query(&Resume::AfterCursor {
            cursor: "10.00".into(),
            key: vec!["7".into()],
        });
        // The NUMERIC cursor is selected as text; ordering by the bare name would sort that text.
        assert!(
            query
                .sql
                .starts_with("SELECT \"id\", \"amount\"::VARCHAR(65535) FROM"),
            "{}",
            query.sql
        );
        assert!(
            query
                .sql
                .ends_with(" ORDER BY \"src\".\"amount\" ASC NULLS FIRST, \"src\".\"id\" ASC"),
            "{}",
            query.sql
        );
    }

    #[test]
    fn resume_expands_the_row_comparison() {
        let table = table();
        let spec = ScanSpec {
            table: &table,
            select: &[0, 1, 2],
            cursor: Some(2),
            key: &[0, 1],
            upper_bound: None,
        };
        let query = spec.query(&Resume::AfterCursor {
            cursor: "2024-01-01 00:00:00.000001".into(),
            key: vec!["eu".into(), "7".into()],
        });
        let ts = "CAST($1::VARCHAR(65535) AS TIMESTAMP)";
        let id = "CAST($3::VARCHAR(65535) AS BIGINT)";
        assert!(query.sql.contains(&format!(
            "WHERE \"updated_at\" > {ts} OR (\"updated_at\" = {ts} AND (\"region\" > $2::VARCHAR(65535) OR (\"region\" = $2::VARCHAR(65535) AND (\"id\" > {id}))))"
        )), "{}", query.sql);
        assert_eq!(query.params, ["2024-01-01 00:00:00.000001", "eu", "7"]);
    }

    #[test]
    fn the_upper_bound_holds_back_recent_cursor_values_but_not_nulls() {
        let table = table();
        let spec = ScanSpec {
            table: &table,
            select: &[1, 2],
            cursor: Some(2),
            key: &[1],
            upper_bound: Some("2024-06-01 00:00:00.000000"),
        };
        let query = spec.query(&Resume::FromStart);
        assert!(query.sql.contains(
            "WHERE \"updated_at\" IS NULL OR \"updated_at\" <= CAST($1::VARCHAR(65535) AS TIMESTAMP) ORDER BY"
        ), "{}", query.sql);
        let query = spec.query(&Resume::AfterCursor {
            cursor: "2024-01-01 00:00:00.000000".into(),
            key: vec!["3".into()],
        });
        assert!(query.sql.contains(") AND (\"updated_at\" IS NULL OR \"updated_at\" <= CAST($3::VARCHAR(65535) AS TIMESTAMP))"), "{}", query.sql);
        assert_eq!(
            query.params,
            [
                "2024-01-01 00:00:00.000000",
                "3",
                "2024-06-01 00:00:00.000000"
            ]
        );
    }

    #[test]
    fn keyless_tables_resume_inclusively_and_null_cursors_come_first() {
        let table = table();
        let spec = ScanSpec {
            table: &table,
            select: &[2],
            cursor: Some(2),
            key: &[],
            upper_bound: None,
        };
        let query = spec.query(&Resume::AfterCursor {
            cursor: "2024-01-01 00:00:00.000000".into(),
            key: vec![],
        });
        assert!(query
            .sql
            .contains("WHERE \"updated_at\" >= CAST($1::VARCHAR(65535) AS TIMESTAMP)"));

        let spec = ScanSpec {
            table: &table,
            select: &[1, 2],
            cursor: Some(2),
            key: &[1],
            upper_bound: None,
        };
        let query = spec.query(&Resume::AfterNullCursor(vec!["5".into()]));
        assert!(query.sql.contains(
            "WHERE (\"updated_at\" IS NULL AND (\"id\" > CAST($1::VARCHAR(65535) AS BIGINT))) OR \"updated_at\" IS NOT NULL"
        ), "{}", query.sql);
    }
}
