//! Hard deletes by key snapshot (`delete_capture = keys`), for a table read by a cursor with a
//! primary key (see `source::work` for the statements).
//!
//! ```text
//!  state key_snapshot      this attempt
//!  none (from scratch)     take snapshot 1 with the pass's bound; it is recorded with the
//!                          TRUNCATE and the first rows (a kill before takes it again)
//!  done {g}                take snapshot g+1 with the pass's bound, and the keys of g
//!                          missing from it  ─► deleting {g, bound, after: none}
//!  deleting {g, bound, k}  send those keys as DELETEs after k, in key order, with
//!                          checkpoints ─► reading {g+1, bound} (the next Update drops
//!                          snapshot g and these keys, once its state is past them)
//!  reading {g, bound}      the pass reads rows up to bound (NULL cursors: only keys in g)
//!  (pass complete)         ─► done {g}
//! ```
//!
//! Why the destination never keeps a deleted row: every key it may hold is in the snapshot
//! the next pass compares with. A pass's rows are read after its snapshot was taken, and only
//! up to the bound taken with it (time cursors: the database's clock minus `cursor_lag_s`;
//! others: their greatest value as of the snapshot), so a row read either was in the snapshot
//! or was written later with a cursor at or below the bound, which is exactly the late commit
//! `cursor_lag_s` is there to wait for. Rows whose cursor is NULL carry no such order, so only
//! those whose key is in the snapshot are read (the next pass reads the others). A key of
//! snapshot `g` is then either in `g+1` or sent as a DELETE, before any row of pass `g+1`; a
//! row deleted and written again after the snapshot comes back as an UPSERT of a later pass.

use crate::proto::records::RecordEncoder;
use crate::source::scan::{Resume, ScanEvent, ScanSpec};
use crate::source::value::{Decoder, RowDecoder, SavedValues};
use crate::source::work::{self, Snapshot, WorkTables};
use crate::source::{Session, SourceError};
use crate::state::{KeySnapshot, SnapshotStep};
use crate::sync::plan::Mode;

use super::{Shared, Stop, TableSync};

/// Bytes a deleted key's row is reckoned at when sizing its queries.
const KEY_ROW_BYTES: u64 = 64;

/// The work schema of this Update: its name and the connection's `work_id`.
#[derive(Debug, Clone)]
pub struct WorkSchema {
    pub schema: String,
    pub id: String,
}

impl TableSync {
    /// Where this table's work tables are (only called with `capture_deletes`).
    fn work_tables(&self, shared: &Shared) -> WorkTables {
        let work = shared
            .work
            .as_ref()
            .expect("delete_capture = keys has a work schema");
        WorkTables::new(&work.schema, &work.id, &self.plan.table.name)
    }

    /// How the table's key is stored in its work tables.
    fn key_layout(&self) -> work::KeyLayout<'_> {
        work::KeyLayout {
            table: &self.plan.table,
            key: &self.plan.key,
        }
    }

    /// With `delete_capture = keys`, once the pass's snapshot is taken: the bound its rows are
    /// read up to (`Some(None)`: the snapshot saw no cursor value, so only rows whose cursor is
    /// NULL are read), and the snapshot, quoted.
    pub(super) fn snapshot_bound(&self, shared: &Shared) -> Option<(Option<String>, String)> {
        match &self.key_snapshot {
            Some(KeySnapshot::Reading { generation, bound }) if self.plan.capture_deletes => {
                let snapshot = self.work_tables(shared).snapshot(*generation);
                Some((bound.clone(), work::quoted(&snapshot)))
            }
            _ => None,
        }
    }

    /// Before the pass reads any row: takes its key snapshot, and sends the keys deleted since
    /// the last as DELETEs (see the module's table).
    pub(super) async fn key_snapshot_phase(
        &mut self,
        shared: &Shared,
        session: &mut Session,
    ) -> Result<(), Stop> {
        if !self.plan.capture_deletes {
            return Ok(());
        }
        let tables = self.work_tables(shared);
        match KeySnapshot::next_step(self.key_snapshot.as_ref()) {
            SnapshotStep::ReadRows => return Ok(()),
            SnapshotStep::SendDeletes => {}
            SnapshotStep::Take { previous } => {
                let bound = self
                    .take_snapshot(shared, session, &tables, previous)
                    .await?;
                self.key_snapshot = Some(KeySnapshot::taken(previous, bound));
                if previous == 0 {
                    // From scratch: the TRUNCATE covers what was deleted. The snapshot is
                    // recorded with the TRUNCATE and the first rows; a kill before then takes
                    // it again.
                    return Ok(());
                }
                self.send_with_checkpoint(shared, true).await?;
            }
        }
        self.send_deleted_keys(shared, session, &tables).await
    }

    /// Takes snapshot `generation + 1` (and, after the first, the keys of `generation` it
    /// lacks); returns the pass's bound, taken with it.
    async fn take_snapshot(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        tables: &WorkTables,
        generation: u64,
    ) -> Result<Option<String>, Stop> {
        let Mode::Incremental { cursor } = self.plan.mode else {
            unreachable!("only tables read by a cursor capture deletes")
        };
        let sql_type = &self.plan.table.columns[cursor].sql_type;
        // A time cursor's bound is the clock's, read just before the snapshot; any other
        // cursor's is its greatest value in the snapshot's own transaction.
        let time_bound = if sql_type.is_time() {
            Some(shared.time_bound(session, sql_type).await?)
        } else {
            None
        };
        let next = generation + 1;
        let snapshot = Snapshot {
            layout: self.key_layout(),
            next: tables.snapshot(next),
            compare: (generation > 0).then(|| (tables.snapshot(generation), tables.deleted(next))),
            greatest_of: time_bound.is_none().then_some(cursor),
        };
        let started = std::time::Instant::now();
        let greatest = snapshot.take(session).await?;
        let bound = time_bound.unwrap_or(greatest);
        tracing::info!(table = %self.plan.table.name, generation = next, bounded = bound.is_some(), seconds = format!("{:.1}", started.elapsed().as_secs_f64()), "key snapshot taken");
        Ok(bound)
    }

    /// Sends the keys of the deleted-keys table as DELETEs, in key order, after the last one
    /// checkpointed; then the pass reads its rows, and the previous snapshot goes.
    async fn send_deleted_keys(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        tables: &WorkTables,
    ) -> Result<(), Stop> {
        let Some(KeySnapshot::Deleting {
            generation,
            mut after,
            ..
        }) = self.key_snapshot.clone()
        else {
            return Ok(());
        };
        let deleted = self
            .key_layout()
            .deleted_keys_table(tables.deleted(generation + 1));
        let key: Vec<usize> = (0..deleted.columns.len()).collect();
        let types: Vec<_> = deleted.columns.iter().map(|c| &c.sql_type).collect();
        let config = &shared.config.sync;
        let mut encoder = self
            .plan
            .encoder_of(&self.plan.key, config.max_batch_bytes as usize);
        let limit = crate::sync::position::rows_per_query(
            config.max_rows_per_query,
            config.max_parallel_tables,
            KEY_ROW_BYTES,
            crate::sync::position::statement_cap(&shared.config.connection.transport),
        );
        let fetch_rows = shared.fetch_rows();
        let mut saved = SavedValues::default();
        let mut sent = 0u64;
        loop {
            let spec = ScanSpec {
                table: &deleted,
                flavour: session.flavour(),
                select: &key,
                cursor: None,
                key: &key,
                upper_bound: None,
                limit: Some(limit),
                only_null_cursor: false,
                key_snapshot: None,
            };
            let query = spec.query(&after.clone().map_or(Resume::FromStart, Resume::AfterKey));
            let mut decoders = Vec::with_capacity(key.len());
            let (mut portal, _) = session
                .open_scan(
                    &query,
                    |columns| {
                        columns
                            .iter()
                            .zip(&deleted.columns)
                            .map(|(column, info)| {
                                let (decoder, format) =
                                    Decoder::for_column(&info.sql_type, column.type_oid).map_err(
                                        |reason| SourceError::Decode {
                                            table: deleted.name.to_string(),
                                            column: info.name.clone(),
                                            reason,
                                        },
                                    )?;
                                decoders.push(decoder);
                                Ok(format)
                            })
                            .collect()
                    },
                    fetch_rows,
                )
                .await?;
            let decoder = RowDecoder::new(decoders);
            let (mut rows, mut pending) = (0u64, 0u64);
            loop {
                // A batch ends at the portal's batch, the query's end, or `batch_size` keys.
                let (ended, batch_end) = match portal.next().await? {
                    ScanEvent::Row(body) => {
                        decoder
                            .decode(body, &mut self.buffers.cells, &mut self.buffers.scratch)
                            .map_err(|err| SourceError::Decode {
                                table: self.plan.table.name.to_string(),
                                column: deleted.columns[err.column].name.clone(),
                                reason: err.reason,
                            })?;
                        let row = self.buffers.view(body);
                        encoder.push_delete(&key, row);
                        saved.save(&key, row);
                        rows += 1;
                        pending += 1;
                        (false, pending >= u64::from(config.batch_size))
                    }
                    ScanEvent::BatchEnd => (false, true),
                    ScanEvent::End => (true, true),
                };
                if batch_end && pending > 0 {
                    after = Some(saved.texts(&types).into_iter().flatten().collect());
                    self.commit_deletes(shared, &mut encoder, &after).await?;
                    sent += std::mem::take(&mut pending);
                }
                if ended {
                    break;
                }
            }
            if rows < limit {
                break;
            }
        }
        tracing::info!(table = %self.plan.table.name, deleted = sent, "deleted keys sent");
        self.key_snapshot = self.key_snapshot.as_ref().map(KeySnapshot::deletes_sent);
        self.send_with_checkpoint(shared, true).await?;
        // Snapshot `generation` and these keys are dropped by the next Update, once the
        // host has kept a state past them: one that resumes from an earlier checkpoint (the
        // host may lose the last ones) still finds them.
        Ok(())
    }

    /// Sends the DELETEs encoded so far with a checkpoint of the last key among them.
    async fn commit_deletes(
        &mut self,
        shared: &Shared,
        encoder: &mut RecordEncoder,
        after: &Option<Vec<String>>,
    ) -> Result<(), Stop> {
        encoder.finish();
        while let Some(message) = encoder.take_ready() {
            self.batch.messages.push(message);
        }
        self.key_snapshot = self
            .key_snapshot
            .as_ref()
            .map(|state| state.deleted_up_to(after.clone()));
        self.send_with_checkpoint(shared, true).await?;
        Ok(())
    }
}

/// Readies the work schema for an Update with `delete_capture = keys`, before any table
/// syncs: checks the user may create tables there, gives the state a `work_id` if it has
/// none, and drops this connection's work tables no planned table's state names (those of
/// tables no longer selected, or left by a kill). A planned table whose snapshot is gone
/// loses its `key_snapshot`, so it starts from scratch (see `position`).
pub(in crate::sync) async fn prepare_work_schema(
    session: &mut Session,
    schema: &str,
    plans: &[crate::sync::plan::TablePlan],
    state: &mut crate::state::SyncState,
) -> Result<WorkSchema, SourceError> {
    work::check_access(session, schema).await?;
    let id = state
        .work_id
        .get_or_insert_with(crate::state::new_work_id)
        .clone();
    let mut existing = work::list(session, schema, &id).await?;
    let mut keep = Vec::new();
    for plan in plans.iter().filter(|plan| plan.capture_deletes) {
        let name = &plan.table.name;
        let Some(crate::state::TableState::Incremental {
            key_snapshot: Some(snapshot),
            ..
        }) = state.table(name)
        else {
            continue;
        };
        let tables = WorkTables::new(schema, &id, name);
        // Every table the state names, and how many of the first are no longer read (the
        // previous snapshot of a pass sending deletes).
        let (needed, unread) = match snapshot {
            KeySnapshot::Deleting { generation, .. } => (
                vec![
                    tables.snapshot(*generation),
                    tables.snapshot(generation + 1),
                    tables.deleted(generation + 1),
                ],
                1,
            ),
            other => (vec![tables.snapshot(other.generation())], 0),
        };
        let required = &needed[unread..];
        // Tables an earlier release made are converted to this release's form once.
        let mut missing = Vec::new();
        let absent: Vec<_> = required
            .iter()
            .filter(|t| !existing.contains(&t.table))
            .collect();
        for table in absent {
            let legacy = tables.legacy(table);
            if !existing.contains(&legacy.table) {
                missing.push(table);
                continue;
            }
            let layout = work::KeyLayout {
                table: &plan.table,
                key: &plan.key,
            };
            match work::convert_legacy(session, &layout, &legacy, table).await {
                Ok(()) => {
                    tracing::info!(table = %name, work_table = %table.table, "work table of an earlier release converted");
                    existing.push(table.table.clone());
                }
                Err(err) => {
                    tracing::warn!(table = %name, error = %err, "cannot convert a work table of an earlier release");
                    missing.push(table);
                }
            }
        }
        if missing.is_empty() {
            keep.extend(needed.into_iter().map(|t| t.table));
        } else {
            tracing::warn!(table = %name, "its key snapshot is gone from the work schema: it starts from scratch");
            if let Some(crate::state::TableState::Incremental { key_snapshot, .. }) = state
                .tables
                .get_mut(&name.schema)
                .and_then(|t| t.get_mut(&name.table))
            {
                *key_snapshot = None;
            }
        }
    }
    let unused: Vec<crate::config::TableName> = existing
        .iter()
        .filter(|name| !keep.contains(name))
        .map(|name| crate::config::TableName::new(schema, name))
        .collect();
    if !unused.is_empty() {
        match work::drop_tables(session, &unused).await {
            Ok(()) => tracing::info!(
                tables = unused.len(),
                "work tables no table needs were dropped"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "cannot drop unused work tables; a later sync tries again");
            }
        }
    }
    Ok(WorkSchema {
        schema: schema.to_string(),
        id,
    })
}

#[cfg(test)]
mod tests {
    /// Every transition of the key-snapshot pass, as a table: the state, the step, and the
    /// state after it; and the invariant the DELETEs rest on along three passes.
    #[test]
    fn the_key_snapshot_pass_moves_through_its_states() {
        use crate::state::{KeySnapshot as K, SnapshotStep as S};
        let bound = Some("2024-01-01 00:00:00.000000".to_string());
        assert_eq!(K::next_step(None), S::Take { previous: 0 });
        assert_eq!(
            K::next_step(Some(&K::Done { generation: 4 })),
            S::Take { previous: 4 }
        );
        let deleting = K::Deleting {
            generation: 4,
            bound: bound.clone(),
            after: Some(vec!["7".into()]),
        };
        assert_eq!(K::next_step(Some(&deleting)), S::SendDeletes);
        let reading = K::Reading {
            generation: 5,
            bound: bound.clone(),
        };
        assert_eq!(K::next_step(Some(&reading)), S::ReadRows);
        // From scratch: no deletes, the pass reads against snapshot 1.
        assert_eq!(
            K::taken(0, bound.clone()),
            K::Reading {
                generation: 1,
                bound: bound.clone()
            }
        );
        // After snapshot 4: its keys missing from 5 go first, from the first.
        assert_eq!(
            K::taken(4, bound.clone()),
            K::Deleting {
                generation: 4,
                bound: bound.clone(),
                after: None
            }
        );
        assert_eq!(
            K::taken(4, bound.clone()).deleted_up_to(Some(vec!["7".into()])),
            deleting
        );
        assert_eq!(deleting.deletes_sent(), reading);
        assert_eq!(reading.pass_complete(), K::Done { generation: 5 });
        // Steps that do not apply leave the state as it is.
        assert_eq!(reading.deletes_sent(), reading);
        assert_eq!(deleting.pass_complete(), deleting);
        assert_eq!(
            K::Done { generation: 2 }.deleted_up_to(None),
            K::Done { generation: 2 }
        );

        // Three passes: each compares with the snapshot the destination's keys were read
        // against, and generations only grow.
        let mut state: Option<K> = None;
        let mut compared = Vec::new();
        for _ in 0..3 {
            if let S::Take { previous } = K::next_step(state.as_ref()) {
                let taken = K::taken(previous, None);
                if previous > 0 {
                    compared.push(taken.generation());
                }
                state = Some(taken.deletes_sent());
            }
            state = state.map(|s| s.pass_complete());
        }
        assert_eq!(compared, [1, 2]);
        assert_eq!(state, Some(K::Done { generation: 3 }));
    }
}
