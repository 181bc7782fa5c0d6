//! The cursor scan and the re-read of NULL-cursor rows: the queries `position` asks for, each
//! row decoded into the table's buffers, held back or encoded, and the batch committed as it
//! fills. Which rows a pass reads is a [`RowsPass`]; how a query's rows are fetched, a
//! [`Fetching`].

use super::*;

/// Which rows a pass of queries reads (see `position` for how each keeps its place).
#[derive(Clone, Copy)]
pub(super) enum RowsPass<'a> {
    /// The table's rows in cursor (then key) order, up to the cursor's upper bound if any.
    ByCursor { upper_bound: Option<&'a str> },
    /// The rows whose cursor is NULL, read again before the scan goes on (in key order).
    NullCursorRows,
}

/// How a query's rows are fetched from its portal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fetching {
    /// `Execute` with a row limit, batch after batch (the usual way).
    InBatches,
    /// One `Execute` without a limit per query: a leader-node query's portal lasts one batch
    /// (`policy::Consequence::ReadWholeQueries`).
    WholeQueries,
}

impl TableSync {
    /// Runs the queries `progress` asks for until `pass` is done.
    pub(super) async fn run_pass(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        pass: RowsPass<'_>,
        fetching: Fetching,
    ) -> Result<(), Stop> {
        let (upper_bound, only_null_cursor) = match pass {
            RowsPass::ByCursor { upper_bound } => (upper_bound, false),
            RowsPass::NullCursorRows => (None, true),
        };
        let config = &shared.config;
        let cursor = match self.plan.mode {
            Mode::Incremental { cursor } => Some(cursor),
            Mode::Full { .. } => None,
        };
        let limits = HoldLimits {
            rows: u64::from(config.sync.batch_size),
            bytes: config.sync.max_batch_bytes,
        };
        let key_snapshot = self.snapshot_bound(shared).map(|(_, snapshot)| snapshot);
        loop {
            let rows_per_query = self.rows_per_query(config);
            let next = self.progress.start_query(rows_per_query, limits);
            let spec = ScanSpec {
                table: &self.plan.table,
                flavour: session.flavour(),
                select: &self.plan.select,
                cursor,
                key: &self.plan.key,
                upper_bound,
                limit: next.limit,
                only_null_cursor,
                key_snapshot: key_snapshot.as_deref(),
            };
            let query = spec.query(&next.resume);
            tracing::debug!(table = %self.plan.table.name, sql = %query.sql, limit = ?next.limit, "scan query");
            let fetch_rows = match fetching {
                Fetching::WholeQueries => 0,
                Fetching::InBatches => shared.fetch_rows(),
            };
            let rows_before = self.stats.rows + self.batch.uncommitted_rows;
            let (after, rows) = self.run_query(shared, session, &query, fetch_rows).await?;
            let sent = self.stats.rows + self.batch.uncommitted_rows - rows_before;
            if let (true, Some(rescan)) = (only_null_cursor, &mut self.null_rescan) {
                rescan.rows += sent;
            }
            self.warn_of_a_tied_group(shared, &next, rows, rows_per_query)
                .await?;
            if after == AfterQuery::Done {
                return Ok(());
            }
        }
    }

    /// Rows the next query may read: the setting, or as many as fit the result budget at the
    /// average row size seen so far (the declared maximum before the first row).
    pub(super) fn rows_per_query(&self, config: &Config) -> u64 {
        // A quarter more than the average, for rows wider than those seen so far.
        let row_bytes = match self.stats.wire_bytes.checked_div(self.stats.wire_rows) {
            Some(average) => average * 5 / 4 + 1,
            None => position::declared_row_bytes(&self.plan),
        };
        position::rows_per_query(
            config.sync.max_rows_per_query,
            config.sync.max_parallel_tables,
            row_bytes,
            position::statement_cap(&config.connection.transport),
        )
    }

    /// Runs one query to its end (or, when `position` says so, to the end of a batch):
    /// whether the pass goes on, and how many rows the query returned.
    pub(super) async fn run_query(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        query: &source::scan::ScanQuery,
        fetch_rows: u32,
    ) -> Result<(AfterQuery, u64), Stop> {
        let plan = Arc::clone(&self.plan);
        let mut decoders = Vec::with_capacity(plan.select.len());
        let (mut portal, _columns) = session
            .open_scan(
                query,
                |columns| {
                    if columns.len() != plan.select.len() {
                        return Err(decode_error(
                            &plan,
                            0,
                            "the query describes another number of columns".to_string(),
                        ));
                    }
                    let mut formats = Vec::with_capacity(columns.len());
                    for (position, (column, &index)) in columns.iter().zip(&plan.select).enumerate()
                    {
                        let (decoder, format) = Decoder::for_column(
                            &plan.table.columns[index].sql_type,
                            column.type_oid,
                        )
                        .map_err(|reason| decode_error(&plan, position, reason))?;
                        decoders.push(decoder);
                        formats.push(format);
                    }
                    Ok::<Vec<Format>, SourceError>(formats)
                },
                fetch_rows,
            )
            .await?;
        let decoder = RowDecoder::new(decoders);
        let batch_size = u64::from(shared.config.sync.batch_size);
        let max_batch_bytes = shared.config.sync.max_batch_bytes as usize;
        let mut rows = 0u64;
        loop {
            match portal.next().await? {
                ScanEvent::Row(body) => {
                    decoder
                        .decode(body, &mut self.buffers.cells, &mut self.buffers.scratch)
                        .map_err(|err| decode_error(&plan, err.column, err.reason))?;
                    rows += 1;
                    self.stats.wire_bytes += body.len() as u64;
                    match self.row_action(body) {
                        RowAction::Send => self.push(body)?,
                        RowAction::Hold => {
                            let row =
                                DecodedRow::new(&self.buffers.cells, body, &self.buffers.scratch);
                            self.buffers.held.hold(row);
                        }
                        RowAction::SendHeldThenHold => {
                            self.send_held();
                            let row =
                                DecodedRow::new(&self.buffers.cells, body, &self.buffers.scratch);
                            self.buffers.held.hold(row);
                        }
                        RowAction::DropHeld => self.buffers.held.clear(),
                        RowAction::Skip => {}
                    }
                    if self.batch.uncommitted_rows >= batch_size
                        || self.batch.bytes + self.batch.encoder.pending_bytes() >= max_batch_bytes
                    {
                        self.commit(shared).await?;
                    }
                }
                ScanEvent::BatchEnd => {
                    self.commit(shared).await?;
                    if self.progress.stopping() {
                        portal.close_early().await?;
                        break;
                    }
                }
                ScanEvent::End => break,
            }
        }
        self.stats.wire_rows += rows;
        if !self.plan.key.is_empty() {
            // A keyed table's position moves when its rows are committed, and the query's end
            // is judged from that position: the rows read since the last batch (all of them,
            // when a query reads fewer rows than a batch) are committed first.
            self.commit(shared).await?;
        }
        let end = self.progress.query_ended().map_err(|err| {
            Stop::Source(SourceError::Internal {
                during: "reading a table",
                detail: err.to_string(),
            })
        })?;
        if end.send_held {
            self.send_held();
        }
        self.buffers.held.clear();
        self.commit(shared).await?;
        Ok((end.after, rows))
    }

    /// What `position` says to do with the decoded row.
    #[inline]
    pub(super) fn row_action(&mut self, row: &[u8]) -> RowAction {
        if !self.progress.holds_rows() {
            return self.progress.row(&[], 0, || None);
        }
        let Mode::Incremental { cursor } = self.plan.mode else {
            unreachable!("rows are held back only when read by a cursor")
        };
        let sql_type = &self.plan.table.columns[cursor].sql_type;
        let cell = self.buffers.cells[self.buffers.position_indexes[0]];
        self.buffers.group_key.clear();
        let decoded = DecodedRow::new(&self.buffers.cells, row, &self.buffers.scratch);
        group_key(sql_type, &cell, &decoded, &mut self.buffers.group_key);
        self.progress
            .row(&self.buffers.group_key, row.len() as u64, || {
                let bytes = decoded.bytes(&cell);
                let cell = match cell {
                    Cell::Row { .. } | Cell::Scratch { .. } => Cell::Row {
                        start: 0,
                        end: bytes.len() as u32,
                    },
                    other => other,
                };
                position_text(sql_type, &cell, bytes)
            })
    }

    /// Encodes the rows held back, whose cursor value is complete.
    pub(super) fn send_held(&mut self) {
        let emitted = self.plan.emitted.len();
        if self.buffers.held.is_empty() {
            return;
        }
        if std::mem::take(&mut self.batch.truncate_pending) {
            self.batch.encoder.push_truncate();
        }
        for row in self.buffers.held.rows() {
            self.batch.encoder.push_upsert(row.first(emitted));
            self.batch.uncommitted_rows += 1;
            while let Some(message) = self.batch.encoder.take_ready() {
                self.batch.bytes += message.bytes.len();
                self.batch.messages.push(message);
            }
        }
        self.buffers.held.clear();
    }

    /// Encodes the decoded row and remembers its position.
    #[inline]
    pub(super) fn push(&mut self, row: &[u8]) -> Result<(), SourceError> {
        let key_start = self.buffers.position_indexes.len() - self.plan.key.len();
        if let Some(null_key) = self.buffers.position_indexes[key_start..]
            .iter()
            .position(|&i| self.buffers.cells[i] == Cell::Null)
        {
            return Err(decode_error(
                &self.plan,
                self.buffers.position_indexes[key_start + null_key],
                "a primary-key column is NULL; rows need a key to be synced".to_string(),
            ));
        }
        if std::mem::take(&mut self.batch.truncate_pending) {
            self.batch.encoder.push_truncate();
        }
        let decoded = DecodedRow::new(&self.buffers.cells, row, &self.buffers.scratch);
        let sent = decoded.first(self.plan.emitted.len());
        match &self.plan.soft_delete {
            Some(soft_delete) if soft_delete.marks(sent.cells()) => {
                self.batch.encoder.push_delete(&soft_delete.key, sent);
            }
            _ => self.batch.encoder.push_upsert(sent),
        }
        if !self.plan.key.is_empty() {
            self.buffers
                .saved
                .save(&self.buffers.position_indexes, decoded);
        }
        self.batch.uncommitted_rows += 1;
        self.collect_finished();
        Ok(())
    }
}

pub(super) fn decode_error(
    plan: &TablePlan,
    select_position: usize,
    reason: String,
) -> SourceError {
    let column = plan
        .select
        .get(select_position)
        .map(|&i| plan.table.columns[i].name.clone())
        .unwrap_or_default();
    SourceError::Decode {
        table: plan.table.name.to_string(),
        column,
        reason,
    }
}
