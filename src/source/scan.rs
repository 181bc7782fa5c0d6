//! The keyset scan: a table read in (cursor, key) order by bounded queries, each fetched a
//! batch at a time through a portal.
//!
//! ```text
//!  SELECT <columns> FROM "schema"."table" AS "src"
//!  WHERE <after the last row sent> [AND (<cursor> IS NULL OR <cursor> <= <bound>)]
//!  ORDER BY <cursor> NULLS FIRST, <key terms>
//!  LIMIT $n::BIGINT                      -- max_rows_per_query: one query never reads more
//! ```
//!
//! Resuming is a predicate on the last row sent, written without row constructors, which
//! Redshift rejects: `(c, k1, k2) > (x, y1, y2)` becomes
//! `c >= x AND (c > x OR (c = x AND (k1 > y1 OR (k1 = y1 AND k2 > y2))))`, whose redundant
//! leading range lets the database start reading at `x` (an index range scan on PostgreSQL,
//! zone maps on Redshift) instead of filtering the whole table in every bounded query.
//!
//! The order must be strict: if two distinct rows compare equal, a position between them skips
//! the second on resume. Redshift ignores trailing blanks when comparing VARCHARs, and a column
//! or database may be case-insensitive, so a text key column contributes two terms: its value
//! compared case-sensitively, then (for VARCHAR) its byte length, which tells `'a'` from `'a '`.
//! (The cursor needs no such care: rows that tie on it are ordered by the key.)
//!
//! Each query runs in a read-only transaction on the table's own session, through a named
//! portal executed `fetch_rows` at a time. While the portal is open nothing else runs on the
//! session: Redshift rejects any other message while a portal is suspended. Its end is the
//! server's `CommandComplete`, never a short batch.

use super::catalog::TableInfo;
use super::data_api::{self, Page, PageReader};
use super::session::{Flavour, Link, Prepared, Session};
use super::sql::{exact_terms, quote_ident};
use super::wire::{oid, Column, Connection, Fetched, Format};
use super::SourceError;
use aws_sdk_redshiftdata::types::Field;

/// Where a query starts, in the scan's order (the cursor NULLS FIRST, then the key). Which one a
/// table's next query uses is decided by `sync::position`; this module only writes its SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Every row, including those whose cursor is NULL (they come first).
    FromStart,
    /// Full-table mode: rows whose key is greater than this one.
    AfterKey(Vec<String>),
    /// Still among the NULL-cursor rows: those with a greater key, then every non-NULL cursor.
    AfterNullCursor(Vec<String>),
    /// Rows strictly after (cursor, key) (tables with a primary key).
    AfterRow { cursor: String, key: Vec<String> },
    /// Rows at or after the cursor value (tables without a primary key: the rows sharing it are
    /// read again, which hosts absorb because they key such rows by a hash of their values).
    AtCursor(String),
    /// Rows whose cursor is greater than this value; `None`: every row whose cursor is not NULL.
    AfterCursor(Option<String>),
    /// Only the rows whose cursor is this value (`None`: NULL), in no particular order.
    OnlyCursor(Option<String>),
}

/// Which columns to read and in what order to read them.
#[derive(Debug, Clone)]
pub struct ScanSpec<'a> {
    pub table: &'a TableInfo,
    pub flavour: Flavour,
    /// Column indexes, in SELECT order.
    pub select: &'a [usize],
    /// The cursor column, if the table is read incrementally.
    pub cursor: Option<usize>,
    /// The primary-key columns that break ties.
    pub key: &'a [usize],
    /// Cursor values above this (text in the cursor type's position form) are left for a later
    /// sync: the guard against rows that commit late with an older cursor value.
    pub upper_bound: Option<&'a str>,
    /// The most rows one query may return (`max_rows_per_query`); `None`: no limit.
    pub limit: Option<u64>,
    /// Only the rows whose cursor is NULL, in key order (a later sync's re-read of them).
    pub only_null_cursor: bool,
    /// With `delete_capture = keys`: the pass's key snapshot (quoted name). A row whose cursor
    /// is NULL is read only if its key is in it, and without `upper_bound` no other row is:
    /// every key sent is then in the snapshot the next pass compares with (NULL-cursor rows
    /// left out are read by the next pass, which re-reads them all).
    pub key_snapshot: Option<&'a str>,
}

/// The scanned table's alias in the query, so that column references never resolve to the
/// SELECT list (whose expressions may be of another type, e.g. SUPER's serialization).
const TABLE_ALIAS: &str = "\"src\"";

/// SQL text and its parameters (text, typed as `param_types`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanQuery {
    pub sql: String,
    pub params: Vec<String>,
    pub param_types: Vec<u32>,
}

/// One comparison term of the scan order: a column expression and the same expression of a
/// position value.
struct Term {
    column: String,
    value: String,
}

impl ScanSpec<'_> {
    pub fn query(&self, resume: &Resume) -> ScanQuery {
        let mut query = ScanQuery {
            sql: String::new(),
            params: Vec::new(),
            param_types: Vec::new(),
        };
        let columns = &self.table.columns;
        let column = |i: usize| format!("{TABLE_ALIAS}.{}", quote_ident(&columns[i].name));
        let select = self
            .select
            .iter()
            .map(|&i| columns[i].sql_type.select_expr(&column(i)))
            .collect::<Vec<_>>()
            .join(", ");

        let bind = |query: &mut ScanQuery, index: usize, value: &str| {
            query.params.push(value.to_string());
            query.param_types.push(oid::VARCHAR);
            columns[index]
                .sql_type
                .param_expr(query.params.len(), value)
        };
        let key_terms = |query: &mut ScanQuery, values: &[String]| -> Option<Vec<Term>> {
            (!self.key.is_empty() && self.key.len() == values.len()).then(|| {
                self.key
                    .iter()
                    .zip(values)
                    .flat_map(|(&index, value)| {
                        let param = bind(query, index, value);
                        self.key_terms(index, &column(index), &param)
                    })
                    .collect()
            })
        };
        let after = match (resume, self.cursor) {
            (Resume::FromStart, _) => None,
            (Resume::AfterKey(key), _) => {
                key_terms(&mut query, key).map(|terms| leading_range(&terms, after))
            }
            (Resume::AfterNullCursor(key), Some(c)) => key_terms(&mut query, key).map(|terms| {
                format!(
                    "({c} IS NULL AND ({})) OR {c} IS NOT NULL",
                    after(&terms),
                    c = column(c)
                )
            }),
            (Resume::AfterRow { cursor, key }, Some(c)) => {
                let value = bind(&mut query, c, cursor);
                let c = column(c);
                Some(match key_terms(&mut query, key) {
                    // The leading `>=` says the same as the rest, in a form an index range
                    // scan (PostgreSQL) or zone maps (Redshift) can use: without it every
                    // bounded query after the first scanned the table from its start.
                    Some(terms) => format!(
                        "{c} >= {value} AND ({c} > {value} OR ({c} = {value} AND ({})))",
                        after(&terms)
                    ),
                    None => format!("{c} > {value}"),
                })
            }
            (Resume::AtCursor(cursor), Some(c)) => {
                let value = bind(&mut query, c, cursor);
                Some(leading_range(
                    &self.cursor_terms(c, &column(c), &value),
                    at_or_after,
                ))
            }
            (Resume::AfterCursor(Some(cursor)), Some(c)) => {
                let value = bind(&mut query, c, cursor);
                Some(leading_range(
                    &self.cursor_terms(c, &column(c), &value),
                    after,
                ))
            }
            (Resume::AfterCursor(None), Some(c)) => Some(format!("{} IS NOT NULL", column(c))),
            (Resume::OnlyCursor(Some(cursor)), Some(c)) => {
                let value = bind(&mut query, c, cursor);
                Some(
                    self.cursor_terms(c, &column(c), &value)
                        .iter()
                        .map(|t| format!("{} = {}", t.column, t.value))
                        .collect::<Vec<_>>()
                        .join(" AND "),
                )
            }
            (Resume::OnlyCursor(None), Some(c)) => Some(format!("{} IS NULL", column(c))),
            // A cursor position without a cursor column cannot happen: `sync::position` only
            // builds cursor resumes for incremental tables.
            (
                Resume::AfterNullCursor(_)
                | Resume::AfterRow { .. }
                | Resume::AtCursor(_)
                | Resume::AfterCursor(_)
                | Resume::OnlyCursor(_),
                None,
            ) => None,
        };
        let below_bound = match (self.upper_bound, self.cursor, self.key_snapshot) {
            (bound, Some(c), Some(snapshot)) => {
                let layout = super::work::KeyLayout {
                    table: self.table,
                    key: self.key,
                };
                let in_snapshot = layout.in_snapshot(self.flavour, snapshot, TABLE_ALIAS);
                let nulls = format!("{} IS NULL AND {in_snapshot}", column(c));
                Some(match bound {
                    Some(bound) => {
                        let value = bind(&mut query, c, bound);
                        format!("({nulls}) OR {} <= {value}", column(c))
                    }
                    None => nulls,
                })
            }
            (Some(bound), Some(c), None) => {
                let value = bind(&mut query, c, bound);
                Some(format!("{c} IS NULL OR {c} <= {value}", c = column(c)))
            }
            _ => None,
        };
        let only_null = self
            .cursor
            .filter(|_| self.only_null_cursor)
            .map(|c| format!("{} IS NULL", column(c)));
        let predicate = [after, below_bound, only_null]
            .into_iter()
            .flatten()
            .reduce(|all, term| format!("({all}) AND ({term})"));

        // Rows that share one cursor value have no order to keep (they are read whole, in one
        // query): no sort.
        let unordered = matches!(resume, Resume::OnlyCursor(_));
        let mut order: Vec<String> = Vec::new();
        if let Some(c) = self.cursor.filter(|_| !unordered && !self.only_null_cursor) {
            for (i, term) in self.cursor_terms(c, &column(c), "").iter().enumerate() {
                let nulls = if i == 0 { " NULLS FIRST" } else { "" };
                order.push(format!("{} ASC{nulls}", term.column));
            }
        }
        for &k in self.key.iter().filter(|_| !unordered) {
            order.extend(
                self.key_terms(k, &column(k), "")
                    .into_iter()
                    .map(|term| format!("{} ASC", term.column)),
            );
        }

        query.sql = format!(
            "SELECT {select} FROM {} AS {TABLE_ALIAS}",
            self.table.quoted_name()
        );
        if let Some(predicate) = predicate {
            query.sql.push_str(&format!(" WHERE {predicate}"));
        }
        if !order.is_empty() {
            query
                .sql
                .push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        if let Some(limit) = self.limit {
            query.params.push(limit.to_string());
            query.param_types.push(oid::INT8);
            query
                .sql
                .push_str(&format!(" LIMIT ${}::BIGINT", query.params.len()));
        }
        query
    }

    /// The terms the cursor contributes to the order. Rows of a table with a key that tie on
    /// the cursor are ordered by the key, so the cursor is compared as it is. Without a key,
    /// rows are told apart by cursor value alone (`sync::position` holds back the rows of one
    /// value until it is complete), so a text cursor must compare as its bytes do: the same
    /// two terms as a text key.
    fn cursor_terms(&self, index: usize, column: &str, value: &str) -> Vec<Term> {
        if self.key.is_empty() {
            self.key_terms(index, column, value)
        } else {
            vec![Term {
                column: column.to_string(),
                value: value.to_string(),
            }]
        }
    }

    /// The terms key column `index` contributes to the order (see the module documentation,
    /// and `sql::exact_terms`, which the key snapshots compare by too).
    fn key_terms(&self, index: usize, column: &str, value: &str) -> Vec<Term> {
        let sql_type = &self.table.columns[index].sql_type;
        exact_terms(self.flavour, sql_type, column)
            .into_iter()
            .zip(exact_terms(self.flavour, sql_type, value))
            .map(|(column, value)| Term { column, value })
            .collect()
    }
}

/// `t1 >= v1 AND (<rest>)` when there are several terms: the same as `<rest>` alone, in a form
/// an index range scan (PostgreSQL) or zone maps (Redshift) can use.
/// Rows held back by a scan's upper bound: how many have a cursor beyond `bound`, and the
/// greatest such cursor value (as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeyondBound {
    pub rows: u64,
    pub greatest: Option<String>,
}

/// Key values of a table that more than one row shares: Redshift does not enforce primary
/// keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedKeys {
    /// Distinct key values held by more than one row.
    pub values: u64,
    /// The rows that hold them.
    pub rows: u64,
}

/// Counts the key values of `table` (its columns `key`) that more than one row holds, telling
/// keys apart as the scan does (byte for byte, see `sql::exact_terms`). One aggregate over
/// the key columns, which Redshift's compute nodes run.
pub async fn repeated_keys(
    session: &mut Session,
    table: &TableInfo,
    key: &[usize],
) -> Result<RepeatedKeys, SourceError> {
    let flavour = session.flavour();
    let terms: Vec<String> = key
        .iter()
        .flat_map(|&i| {
            let column = &table.columns[i];
            exact_terms(flavour, &column.sql_type, &quote_ident(&column.name))
        })
        .collect();
    let sql = format!(
        "SELECT COUNT(*)::VARCHAR, COALESCE(SUM(\"n\"), 0)::VARCHAR FROM \
         (SELECT COUNT(*) AS \"n\" FROM {} GROUP BY {} HAVING COUNT(*) > 1) AS \"d\"",
        table.quoted_name(),
        terms.join(", ")
    );
    let row = session
        .query(&sql, &[])
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let number = |i: usize| {
        row.get(i)
            .cloned()
            .flatten()
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    };
    Ok(RepeatedKeys {
        values: number(0),
        rows: number(1),
    })
}

/// Counts the rows of `table` whose `cursor` column lies beyond `bound` (position text). On
/// Redshift, with the cursor as sort key, zone maps answer it from block metadata.
pub async fn beyond_bound(
    session: &mut Session,
    table: &TableInfo,
    cursor: usize,
    bound: &str,
) -> Result<BeyondBound, SourceError> {
    let column = &table.columns[cursor];
    let sql = format!(
        "SELECT COUNT(*), MAX({c})::VARCHAR FROM {} WHERE {c} > {}",
        table.quoted_name(),
        column.sql_type.param_expr(1, bound),
        c = quote_ident(&column.name),
    );
    let rows = session.query(&sql, &[bound]).await?;
    let row = rows.into_iter().next().unwrap_or_default();
    let count = row.first().cloned().flatten().unwrap_or_default();
    Ok(BeyondBound {
        rows: count.parse().map_err(|_| SourceError::UnexpectedAnswer {
            query: "COUNT(*)",
            detail: format!("{} counts `{count}` rows", table.name),
        })?,
        greatest: row.get(1).cloned().flatten(),
    })
}

fn leading_range(terms: &[Term], rest: fn(&[Term]) -> String) -> String {
    match terms {
        [first, _, ..] => format!("{} >= {} AND ({})", first.column, first.value, rest(terms)),
        _ => rest(terms),
    }
}

/// `t1 > v1 OR (t1 = v1 AND (t2 > v2 OR ... OR (tn-1 = vn-1 AND tn >= vn)))` over the terms.
fn at_or_after(terms: &[Term]) -> String {
    let Some((last, rest)) = terms.split_last() else {
        return "TRUE".to_string();
    };
    let mut predicate = format!("{} >= {}", last.column, last.value);
    for term in rest.iter().rev() {
        let (column, value) = (&term.column, &term.value);
        predicate = format!("{column} > {value} OR ({column} = {value} AND ({predicate}))");
    }
    predicate
}

/// `t1 > v1 OR (t1 = v1 AND (t2 > v2 OR ...))` over the terms.
fn after(terms: &[Term]) -> String {
    let mut predicate: Option<String> = None;
    for term in terms.iter().rev() {
        let (column, value) = (&term.column, &term.value);
        predicate = Some(match predicate {
            None => format!("{column} > {value}"),
            Some(rest) => format!("{column} > {value} OR ({column} = {value} AND ({rest}))"),
        });
    }
    predicate.unwrap_or_else(|| "TRUE".to_string())
}

/// The portal of a running scan query.
const PORTAL: &str = "scan";

/// What [`Portal::next`] found.
pub enum ScanEvent<'a> {
    /// A row: its `DataRow` body, borrowed until the next call.
    Row(&'a [u8]),
    /// A batch of `fetch_rows` ended; more rows may follow (a natural checkpoint).
    BatchEnd,
    /// The query returned its last row and its transaction ended.
    End,
}

/// One scan query running on a session: on the wire, a read-only transaction and a portal
/// fetched a batch at a time; through the Data API, one statement whose result pages are read
/// (the next requested while this one is read) and cut into batches of the same size. Dropping
/// it mid-query leaves a wire session unusable: drop the session too (and cancel the
/// statement, see [`Session::canceller`]).
pub struct Portal<'s> {
    session: &'s mut Session,
    reading: Reading,
}

enum Reading {
    Wire {
        fetch_rows: i32,
        state: PortalState,
    },
    /// Boxed: a result being read is much larger than a portal's state.
    DataApi(Box<DataApiRows>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortalState {
    Fetching,
    Suspended,
    Done,
}

/// A Data API statement's result being read.
struct DataApiRows {
    id: String,
    columns: Vec<Column>,
    formats: Vec<Format>,
    records: std::vec::IntoIter<Vec<Field>>,
    /// The next page, requested while this one is read.
    ahead: Option<tokio::task::JoinHandle<Result<Page, SourceError>>>,
    pages: PageReader,
    /// The current row as a `DataRow` body.
    row: Vec<u8>,
    fetch_rows: u32,
    in_batch: u32,
    done: bool,
}

impl Drop for DataApiRows {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
        }
    }
}

impl Session {
    /// Prepares `query` (once per session), starts it in a read-only transaction and fetches
    /// its first `fetch_rows` (0: all rows in one go). Returns the portal and the result
    /// columns as the server describes them, whose types decide how each value is read.
    pub async fn open_scan<'s>(
        &'s mut self,
        query: &ScanQuery,
        formats: impl FnOnce(&[Column]) -> Result<Vec<Format>, SourceError>,
        fetch_rows: u32,
    ) -> Result<(Portal<'s>, Vec<Column>), SourceError> {
        if let Link::DataApi(data_api) = &mut self.link {
            // One statement, its own transaction: nothing to begin or commit.
            let finished = data_api.run(&query.sql, &query.params).await?;
            let first = if finished.has_result_set {
                data_api.page(&finished.id, None).await?
            } else {
                Page::default()
            };
            let columns = first.columns;
            let formats = formats(&columns)?;
            let pages = data_api.pages();
            let ahead = first
                .next_token
                .map(|token| pages.ahead(&finished.id, token));
            let rows = DataApiRows {
                id: finished.id,
                columns: columns.clone(),
                formats,
                records: first.records.into_iter(),
                ahead,
                pages,
                row: Vec::new(),
                fetch_rows,
                in_batch: 0,
                done: false,
            };
            return Ok((
                Portal {
                    session: self,
                    reading: Reading::DataApi(Box::new(rows)),
                },
                columns,
            ));
        }
        let Prepared { name, columns } = self.prepare(&query.sql, &query.param_types).await?;
        let formats = formats(&columns)?;
        self.simple("BEGIN READ ONLY").await?;
        let params: Vec<&str> = query.params.iter().map(String::as_str).collect();
        let fetch_rows = i32::try_from(fetch_rows).unwrap_or(i32::MAX);
        self.wire()?
            .start_portal(PORTAL, &name, &params, &formats, fetch_rows)
            .await
            .map_err(SourceError::from_wire)?;
        Ok((
            Portal {
                session: self,
                reading: Reading::Wire {
                    fetch_rows,
                    state: PortalState::Fetching,
                },
            },
            columns,
        ))
    }

    /// The wire connection under a session the caller knows is one.
    fn wire(&mut self) -> Result<&mut Connection, SourceError> {
        match &mut self.link {
            Link::Wire(connection) => Ok(connection),
            Link::DataApi(_) => Err(SourceError::Internal {
                during: "a scan",
                detail: "a wire portal on a Data API session".to_string(),
            }),
        }
    }
}

impl Portal<'_> {
    /// Ends the query after a batch, before its last row (the rest is left to a later query):
    /// closes the portal and ends its transaction, leaving the session ready for the next.
    pub async fn close_early(&mut self) -> Result<(), SourceError> {
        let state = match &mut self.reading {
            Reading::DataApi(rows) => {
                rows.done = true;
                if let Some(ahead) = rows.ahead.take() {
                    ahead.abort();
                }
                return Ok(());
            }
            Reading::Wire { state, .. } => state,
        };
        match *state {
            PortalState::Done => Ok(()),
            PortalState::Suspended => {
                *state = PortalState::Done;
                self.session
                    .wire()?
                    .close_portal(PORTAL)
                    .await
                    .map_err(SourceError::from_wire)?;
                self.session.simple("COMMIT").await
            }
            PortalState::Fetching => Err(SourceError::Internal {
                during: "ending a query early",
                detail: "a query can only be ended early between batches".to_string(),
            }),
        }
    }

    /// The next row, the end of a batch, or the end of the query (its transaction committed).
    pub async fn next(&mut self) -> Result<ScanEvent<'_>, SourceError> {
        let (fetch_rows, state) = match &mut self.reading {
            Reading::DataApi(rows) => return rows.next().await,
            Reading::Wire { fetch_rows, state } => (*fetch_rows, state),
        };
        match *state {
            PortalState::Done => return Ok(ScanEvent::End),
            PortalState::Suspended => {
                self.session
                    .wire()?
                    .continue_portal(PORTAL, fetch_rows)
                    .await
                    .map_err(SourceError::from_wire)?;
                *state = PortalState::Fetching;
            }
            PortalState::Fetching => {}
        }
        let fetched = self
            .session
            .wire()?
            .next_row()
            .await
            .map_err(SourceError::from_wire)?;
        match fetched {
            Fetched::Row => Ok(ScanEvent::Row(self.session.wire()?.current_row())),
            Fetched::Suspended => {
                *state = PortalState::Suspended;
                Ok(ScanEvent::BatchEnd)
            }
            Fetched::Complete => {
                *state = PortalState::Done;
                self.session
                    .wire()?
                    .close_portal(PORTAL)
                    .await
                    .map_err(SourceError::from_wire)?;
                self.session.simple("COMMIT").await?;
                Ok(ScanEvent::End)
            }
        }
    }
}

impl DataApiRows {
    async fn next(&mut self) -> Result<ScanEvent<'_>, SourceError> {
        if self.done {
            return Ok(ScanEvent::End);
        }
        if self.fetch_rows > 0 && self.in_batch == self.fetch_rows {
            self.in_batch = 0;
            return Ok(ScanEvent::BatchEnd);
        }
        let record = loop {
            if let Some(record) = self.records.next() {
                break record;
            }
            let Some(ahead) = self.ahead.take() else {
                self.done = true;
                return Ok(ScanEvent::End);
            };
            let page = ahead.await.map_err(|err| SourceError::Internal {
                during: "reading a Data API result page",
                detail: err.to_string(),
            })??;
            if let Some(token) = page.next_token {
                self.ahead = Some(self.pages.ahead(&self.id, token));
            }
            self.records = page.records.into_iter();
        };
        data_api::values::data_row(&record, &self.columns, &self.formats, &mut self.row).map_err(
            |err| SourceError::UnexpectedAnswer {
                query: "a Data API result",
                detail: format!(
                    "column `{}`: {}",
                    self.columns
                        .get(err.column)
                        .map_or("?", |c| c.name.as_str()),
                    err.reason
                ),
            },
        )?;
        self.in_batch += 1;
        Ok(ScanEvent::Row(&self.row))
    }
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
                column("region", SqlType::Varchar { length: Some(8) }, true),
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
                column("code", SqlType::Char { length: Some(2) }, false),
            ],
            id: None,
        }
    }

    fn spec<'a>(
        table: &'a TableInfo,
        select: &'a [usize],
        cursor: Option<usize>,
        key: &'a [usize],
    ) -> ScanSpec<'a> {
        ScanSpec {
            table,
            flavour: Flavour::Redshift,
            select,
            cursor,
            key,
            upper_bound: None,
            only_null_cursor: false,
            limit: None,
            key_snapshot: None,
        }
    }

    #[test]
    fn initial_scan_reads_everything_in_a_strict_cursor_then_key_order() {
        let table = table();
        let query = spec(&table, &[0, 1, 2, 3], Some(2), &[0, 1]).query(&Resume::FromStart);
        assert_eq!(
            query.sql,
            "SELECT \"src\".\"region\", \"src\".\"id\", \"src\".\"updated_at\", \"src\".\"amount\" FROM \"Sales\".\"order items\" AS \"src\" \
             ORDER BY \"src\".\"updated_at\" ASC NULLS FIRST, COLLATE(\"src\".\"region\", 'case_sensitive') ASC, \
             OCTET_LENGTH(\"src\".\"region\") ASC, \"src\".\"id\" ASC"
        );
        assert!(query.params.is_empty());
    }

    #[test]
    fn postgresql_compares_text_keys_in_the_c_collation() {
        let table = table();
        let mut spec = spec(&table, &[0], None, &[0]);
        spec.flavour = Flavour::PostgreSql;
        let query = spec.query(&Resume::AfterKey(vec!["eu".into()]));
        assert!(
            query.sql.contains(
                "WHERE (\"src\".\"region\" COLLATE \"C\") >= ($1::VARCHAR(65535) COLLATE \"C\") AND ((\"src\".\"region\" COLLATE \"C\") > ($1::VARCHAR(65535) COLLATE \"C\")"
            ),
            "{}",
            query.sql
        );
    }

    #[test]
    fn resume_expands_the_row_comparison_over_every_term() {
        let table = table();
        let query = spec(&table, &[0, 1, 2], Some(2), &[0, 1]).query(&Resume::AfterRow {
            cursor: "2024-01-01 00:00:00.000001".into(),
            key: vec!["eu".into(), "7".into()],
        });
        let ts = "CAST($1::VARCHAR(65535) AS TIMESTAMP)";
        let c = "\"src\".\"updated_at\"";
        let cs_col = "COLLATE(\"src\".\"region\", 'case_sensitive')";
        let cs_val = "COLLATE($2::VARCHAR(65535), 'case_sensitive')";
        let len_col = "OCTET_LENGTH(\"src\".\"region\")";
        let len_val = "OCTET_LENGTH($2::VARCHAR(65535))";
        let id = "CAST($3::VARCHAR(65535) AS BIGINT)";
        let expected = format!(
            "WHERE {c} >= {ts} AND ({c} > {ts} OR ({c} = {ts} AND ({cs_col} > {cs_val} OR ({cs_col} = {cs_val} AND ({len_col} > {len_val} OR ({len_col} = {len_val} AND (\"src\".\"id\" > {id}))))))) ORDER BY"
        );
        assert!(query.sql.contains(&expected), "{}", query.sql);
        assert_eq!(query.params, ["2024-01-01 00:00:00.000001", "eu", "7"]);
        assert_eq!(query.param_types, [oid::VARCHAR; 3]);
    }

    #[test]
    fn char_keys_are_compared_case_sensitively_without_a_length() {
        let table = table();
        let query = spec(&table, &[4], None, &[4]).query(&Resume::AfterKey(vec!["ab".into()]));
        assert!(!query.sql.contains("OCTET_LENGTH"), "{}", query.sql);
        assert!(query
            .sql
            .contains("COLLATE(\"src\".\"code\", 'case_sensitive') >"));
    }

    #[test]
    fn bounded_queries_limit_with_a_typed_parameter() {
        let table = table();
        let mut spec = spec(&table, &[1, 2], Some(2), &[1]);
        spec.limit = Some(1_000_000);
        let query = spec.query(&Resume::AfterRow {
            cursor: "2024-01-01 00:00:00".into(),
            key: vec!["3".into()],
        });
        assert!(query.sql.ends_with(" LIMIT $3::BIGINT"), "{}", query.sql);
        assert_eq!(query.params[2], "1000000");
        assert_eq!(query.param_types, [oid::VARCHAR, oid::VARCHAR, oid::INT8]);
    }

    #[test]
    fn the_null_cursor_re_read_selects_only_them_in_key_order() {
        let table = table();
        let mut spec = spec(&table, &[1, 2], Some(2), &[1]);
        spec.only_null_cursor = true;
        spec.limit = Some(10);
        let query = spec.query(&Resume::AfterKey(vec!["3".into()]));
        assert!(
            query.sql.contains(") AND (\"src\".\"updated_at\" IS NULL) ORDER BY \"src\".\"id\" ASC LIMIT $2::BIGINT"),
            "{}",
            query.sql
        );
        assert!(!query.sql.contains("NULLS FIRST"), "{}", query.sql);
    }

    #[test]
    fn the_upper_bound_holds_back_recent_cursor_values_but_not_nulls() {
        let table = table();
        let mut spec = spec(&table, &[1, 2], Some(2), &[1]);
        spec.upper_bound = Some("2024-06-01 00:00:00.000000");
        let query = spec.query(&Resume::FromStart);
        assert!(query.sql.contains(
            "WHERE \"src\".\"updated_at\" IS NULL OR \"src\".\"updated_at\" <= CAST($1::VARCHAR(65535) AS TIMESTAMP) ORDER BY"
        ), "{}", query.sql);
        let query = spec.query(&Resume::AfterRow {
            cursor: "2024-01-01 00:00:00.000000".into(),
            key: vec!["3".into()],
        });
        assert!(query.sql.contains(") AND (\"src\".\"updated_at\" IS NULL OR \"src\".\"updated_at\" <= CAST($3::VARCHAR(65535) AS TIMESTAMP))"), "{}", query.sql);
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
        let keyless = spec(&table, &[2], Some(2), &[]);
        let ts = "CAST($1::VARCHAR(65535) AS TIMESTAMP)";
        let at = "2024-01-01 00:00:00.000000".to_string();
        let query = keyless.query(&Resume::AtCursor(at.clone()));
        assert!(query
            .sql
            .contains(&format!("WHERE \"src\".\"updated_at\" >= {ts} ORDER BY")));
        let query = keyless.query(&Resume::AfterCursor(Some(at.clone())));
        assert!(query
            .sql
            .contains(&format!("WHERE \"src\".\"updated_at\" > {ts} ORDER BY")));
        let query = keyless.query(&Resume::AfterCursor(None));
        assert!(query
            .sql
            .contains("WHERE \"src\".\"updated_at\" IS NOT NULL ORDER BY"));
        // A group of rows sharing one value is read without a sort.
        let query = keyless.query(&Resume::OnlyCursor(Some(at)));
        assert!(
            query
                .sql
                .ends_with(&format!("WHERE \"src\".\"updated_at\" = {ts}")),
            "{}",
            query.sql
        );
        let query = keyless.query(&Resume::OnlyCursor(None));
        assert!(
            query.sql.ends_with("WHERE \"src\".\"updated_at\" IS NULL"),
            "{}",
            query.sql
        );

        // A text cursor without a key compares as its bytes: case-sensitively, then by length.
        let by_text = spec(&table, &[0], Some(0), &[]);
        let cs_col = "COLLATE(\"src\".\"region\", 'case_sensitive')";
        let cs_val = "COLLATE($1::VARCHAR(65535), 'case_sensitive')";
        let len_col = "OCTET_LENGTH(\"src\".\"region\")";
        let len_val = "OCTET_LENGTH($1::VARCHAR(65535))";
        let query = by_text.query(&Resume::AtCursor("eu".into()));
        assert!(query.sql.contains(&format!(
            "WHERE {cs_col} >= {cs_val} AND ({cs_col} > {cs_val} OR ({cs_col} = {cs_val} AND ({len_col} >= {len_val}))) ORDER BY {cs_col} ASC NULLS FIRST, {len_col} ASC"
        )), "{}", query.sql);
        let query = by_text.query(&Resume::OnlyCursor(Some("eu".into())));
        assert!(
            query.sql.ends_with(&format!(
                "WHERE {cs_col} = {cs_val} AND {len_col} = {len_val}"
            )),
            "{}",
            query.sql
        );

        let query =
            spec(&table, &[1, 2], Some(2), &[1]).query(&Resume::AfterNullCursor(vec!["5".into()]));
        assert!(query.sql.contains(
            "WHERE (\"src\".\"updated_at\" IS NULL AND (\"src\".\"id\" > CAST($1::VARCHAR(65535) AS BIGINT))) OR \"src\".\"updated_at\" IS NOT NULL"
        ), "{}", query.sql);
    }
}
