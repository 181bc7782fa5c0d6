//! A table's initial sync (or a full pass) through `UNLOAD` (see `source::unload`), when a
//! staging location is configured and the table is large enough to repay it.
//!
//! ```text
//!  decide: a TRUNCATE is due, unload_s3_uri is set, the columns and cursor fit Parquet,
//!          COUNT(*) >= unload_min_rows
//!  bound:  time cursor: GETDATE() - cursor_lag_s; other cursors: MAX(cursor); full: none
//!  send:   TRUNCATE + checkpoint {export: url, bound, files 0, rows 0}
//!  run:    UNLOAD (…WHERE cursor IS NULL OR cursor <= bound) TO url … MANIFEST VERBOSE
//!          (skipped on resume when the manifest is there)
//!  read:   files in the manifest's order, several downloaded and decoded at once, each
//!          file's rows encoded on a blocking thread; sent in order with checkpoints
//!          {files done, rows of the next file}; each file's rows checked against the manifest
//!  end:    incremental: position "after cursor bound" (the queries read on from there);
//!          full: the pass is done; the files are deleted
//! ```
//!
//! Memory: at most [`readers`] files are held at once in the whole Update (each at most
//! `MAX_FILE_MB`, as Redshift wrote it), each with its decoded Arrow batch and up to
//! [`CHUNKS_AHEAD`] batches of encoded records waiting to be sent.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use super::{Shared, Stop, TableSync};
use crate::config::UnloadConfig;
use crate::proto::records::{EncodedRecords, RecordEncoder};
use crate::source::types::SqlType;
use crate::source::unload::manifest::{Entry, Manifest};
use crate::source::unload::parquet::read_rows;
use crate::source::unload::s3::{Staging, EXPORT_ID_PREFIX};
use crate::source::unload::statement::{
    self, NotExportable, UnloadStatement, MAX_FILE_BYTES, MAX_MANIFEST_BYTES,
};
use crate::source::unload::{self, UnloadError};
use crate::source::value::DecodedRow;
use crate::source::{Session, SourceError};
use crate::state::{ExportState, Position};
use crate::sync::plan::Mode;
use crate::sync::position::{Progress, Shape};

/// Batches of encoded records a file's reader may have ready before the sender takes them.
const CHUNKS_AHEAD: usize = 4;
/// An export prefix no state refers to is deleted once it is this old: its sync was
/// abandoned (the host reset the state, or the table was deselected mid-export).
const ABANDONED_AFTER_S: u64 = 48 * 3600;

/// How the export phase of an attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ExportEnd {
    /// No export: the queries read the table.
    NotUsed,
    /// Exported; an incremental table's queries go on after the bound.
    Exported,
    /// Exported; a full pass is complete.
    PassDone,
}

/// Files read and decoded at once in one Update (see the module's memory note).
pub(in crate::sync) fn readers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Random hex digits in an export's id (64 bits).
const EXPORT_RANDOM_HEX: usize = 16;

/// A new export's id: its time (UTC, so a later sync can tell an abandoned one's age) and 64
/// random bits.
pub(in crate::sync) fn new_export_id() -> String {
    let mut random = [0u8; EXPORT_RANDOM_HEX / 2];
    let _ = getrandom::fill(&mut random);
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    format!("{EXPORT_ID_PREFIX}{now}-{}", hex::encode(random))
}

/// Whether `id` has the form [`new_export_id`] gives (or, with 32 random bits, the form
/// earlier releases gave).
fn is_export_id(id: &str) -> bool {
    let Some((time, random)) = id
        .strip_prefix(EXPORT_ID_PREFIX)
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%SZ").is_ok()
        && time.len() == 16
        && matches!(random.len(), 8 | EXPORT_RANDOM_HEX)
        && random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The S3 "directory" of a table: its name kept readable where S3 and SQL literals allow, and
/// the fingerprint of the exact name, so no two tables share one however their names are
/// chosen (`a.b`/`c` and `a`/`b.c`, names that share a long prefix, names built to collide).
fn table_directory(table: &crate::config::TableName) -> String {
    let readable: String = format!("{}.{}", table.schema, table.table)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!(
        "{readable}-{}",
        crate::fingerprint::of(&[&table.schema, &table.table])
    )
}

/// The key prefix of `url` if it is exactly where this connector exports `table` under
/// `unload` (`s3://bucket/prefix/redshift-sync-<time>-<random>/<table directory>/`); why not
/// otherwise. A state names an export's location; only one this connector would itself have
/// chosen for this table is read, and deleted after.
fn own_export_prefix(
    url: &str,
    unload: &UnloadConfig,
    table: &crate::config::TableName,
) -> Result<String, &'static str> {
    let rest = url
        .strip_prefix(&unload.uri())
        .ok_or("it is not under `unload_s3_uri`")?;
    let (id, directory) = rest
        .strip_suffix('/')
        .and_then(|rest| rest.split_once('/'))
        .ok_or("it is not an export directory")?;
    if !is_export_id(id) {
        return Err("it is not an export this connector began");
    }
    if directory != table_directory(table) {
        return Err("it is not this table's export directory");
    }
    Ok(format!("{}{rest}", unload.prefix))
}

/// Whether the files and rows a state says were sent can be of this manifest: at most every
/// file, and within the next file at most its rows.
fn progress_fits(export: &ExportState, manifest: &Manifest) -> Result<(), String> {
    let files = manifest.entries.len();
    match manifest.entries.get(export.files_done as usize) {
        Some(next) if export.rows_done <= next.meta.record_count => Ok(()),
        Some(next) => Err(format!(
            "{} rows of a file of {}",
            export.rows_done, next.meta.record_count
        )),
        None if export.files_done as usize == files && export.rows_done == 0 => Ok(()),
        None => Err(format!(
            "{} files done of {files}, and {} rows of the next",
            export.files_done, export.rows_done
        )),
    }
}

/// `s3://bucket/key` -> (bucket, key).
fn split_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("s3://")?.split_once('/')
}

/// One batch of a file's records, ready to send.
struct Chunk {
    messages: Vec<EncodedRecords>,
    rows: u64,
}

/// A file being read in the background.
struct FileReader {
    index: usize,
    chunks: mpsc::Receiver<Chunk>,
    /// The rows the file held (skipped ones included).
    done: JoinHandle<Result<u64, SourceError>>,
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.done.abort();
    }
}

impl TableSync {
    /// Starts, resumes or skips the table's export; runs it to its end.
    pub(super) async fn export_phase(
        &mut self,
        shared: &Shared,
        session: &mut Session,
    ) -> Result<ExportEnd, Stop> {
        let Some(unload) = &shared.config.sync.unload else {
            if self.export.take().is_some() {
                self.restart_without_export(
                    shared,
                    "its export was under way but `unload_s3_uri` is no longer set, so it is re-synced by queries",
                )
                .await?;
            }
            return Ok(ExportEnd::NotUsed);
        };
        if self.export.is_none() && !self.begin_export(shared, session, unload).await? {
            return Ok(ExportEnd::NotUsed);
        }
        let export = self.export.clone().expect("an export was begun or resumed");
        let prefix = match own_export_prefix(&export.url, unload, &self.plan.table.name) {
            Ok(prefix) => prefix,
            Err(reason) => {
                self.restart_without_export(
                    shared,
                    &format!(
                        "the state names its export under way at a location this connector would not use for it now ({reason}: `unload_s3_uri` changed, or the state was not written by this connector or release), so it is re-synced from the start and nothing there is read or deleted"
                    ),
                )
                .await?;
                return Ok(ExportEnd::NotUsed);
            }
        };
        let staging = shared.staging().await;
        if !export.read_all {
            let manifest = self
                .manifest(shared, session, unload, &staging, &export, &prefix)
                .await?;
            if let Err(reason) = progress_fits(&export, &manifest) {
                self.restart_without_export(
                    shared,
                    &format!("the state's progress through its export does not fit the export's manifest ({reason}), so it is re-synced from the start"),
                )
                .await?;
                return Ok(ExportEnd::NotUsed);
            }
            self.read_files(shared, &staging, &manifest).await?;
            tracing::info!(table = %self.plan.table.name, files = manifest.entries.len(), rows = manifest.rows(), "export read");
            // Every file sent, and said so before the files go: a sync stopped while they are
            // deleted resumes here, deletes them and goes on, instead of leaving them behind
            // or taking a missing manifest for files lost before they were read.
            self.export.as_mut().expect("reading an export").all_read();
            self.send_with_checkpoint(shared, true).await?;
        }
        self.delete_files(shared, &staging, &prefix, &export.url)
            .await?;

        // The queries (if any) read on after the bound.
        self.export = None;
        let end = match self.plan.mode {
            Mode::Incremental { .. } => {
                self.progress = Progress::new(
                    Shape::of(&self.plan),
                    Some(Position::after_cursor(export.bound.clone())),
                );
                self.send_with_checkpoint(shared, true).await?;
                ExportEnd::Exported
            }
            Mode::Full { .. } => {
                self.send_with_checkpoint(shared, false).await?;
                ExportEnd::PassDone
            }
        };
        Ok(end)
    }

    /// Deletes the files of an export whose rows were all sent; a Warning if they stay (the
    /// rows were delivered: never a reason to fail the table).
    async fn delete_files(
        &mut self,
        shared: &Shared,
        staging: &Staging,
        prefix: &str,
        url: &str,
    ) -> Result<(), Stop> {
        match staging.delete_prefix(prefix).await {
            Ok(deleted) => {
                tracing::debug!(table = %self.plan.table.name, deleted, "export files deleted");
            }
            Err(err) => {
                self.warning(
                    &shared.output,
                    format!(
                        "table {}: every row of its export was sent, but the export's files under {url} could not be deleted ({err}); a later sync deletes them once they are {} hours old, if it may",
                        self.plan.table.name,
                        ABANDONED_AFTER_S / 3600
                    ),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Decides whether this pass exports, and if so sends its TRUNCATE with the export's
    /// state (before the UNLOAD runs, so a kill leaves a state that names the files).
    async fn begin_export(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        unload: &UnloadConfig,
    ) -> Result<bool, Stop> {
        if !self.batch.truncate_pending
            || std::mem::replace(&mut self.notices.export_considered, true)
        {
            return Ok(false);
        }
        let table = &self.plan.table;
        if let Err(NotExportable(reason)) = self.exportable(shared) {
            tracing::info!(table = %table.name, reason, "read by queries, not exported");
            return Ok(false);
        }
        if unload.min_rows > 0 {
            let rows = count_rows(session, &table.quoted_name()).await?;
            if rows < unload.min_rows {
                tracing::debug!(table = %table.name, rows, min_rows = unload.min_rows, "small table: read by queries");
                return Ok(false);
            }
        }
        let bound = match (&self.plan.mode, self.snapshot_bound(shared)) {
            // With `delete_capture = keys`, the bound taken with the key snapshot.
            (Mode::Incremental { .. }, Some((Some(bound), _))) => Some(bound),
            (Mode::Incremental { .. }, Some((None, _))) => {
                tracing::info!(table = %table.name, "no cursor value in the key snapshot: read by queries");
                return Ok(false);
            }
            (&Mode::Incremental { cursor }, None) => {
                let column = &table.columns[cursor];
                if column.sql_type.is_time() {
                    shared.time_bound(session, &column.sql_type).await?
                } else {
                    greatest(session, &table.quoted_name(), &column.name).await?
                }
            }
            (Mode::Full { .. }, _) => None,
        };
        let url = format!(
            "{}{}/{}/",
            unload.uri(),
            shared.export_id,
            table_directory(&table.name)
        );
        tracing::info!(table = %table.name, url, bounded = bound.is_some(), "table exported by UNLOAD");
        self.export = Some(ExportState::begun(url, bound));
        self.batch.truncate_pending = false;
        self.batch.encoder.push_truncate();
        self.batch.encoder.finish();
        self.collect_finished();
        self.send_with_checkpoint(shared, true).await?;
        Ok(true)
    }

    /// Whether the table's columns and cursor can go through Parquet exactly, and every name
    /// its UNLOAD would quote (the cursor's, selected or not, and the key snapshot's schema)
    /// can go inside its literal.
    fn exportable(&self, shared: &Shared) -> Result<(), NotExportable> {
        let table = &self.plan.table;
        UnloadStatement::check_columns(table, &self.plan.emitted)?;
        let work_schema = shared
            .work
            .as_ref()
            .filter(|_| self.plan.capture_deletes)
            .map(|work| work.schema.as_str());
        UnloadStatement::check_names(
            self.plan
                .select
                .iter()
                .map(|&i| table.columns[i].name.as_str())
                .chain(work_schema),
        )?;
        if let Mode::Incremental { cursor } = self.plan.mode {
            let sql_type = &table.columns[cursor].sql_type;
            if statement::bound_type(sql_type).is_none() {
                return Err(NotExportable(format!(
                    "its cursor's type ({sql_type:?}) has no bound an UNLOAD can compare exactly"
                )));
            }
        }
        Ok(())
    }

    /// The export's manifest; runs the UNLOAD first when it has not completed (no manifest
    /// yet). A manifest gone after files were read means the whole export was deleted: by
    /// this connector at the end of a pass whose last checkpoints the host did not keep, or
    /// by a lifecycle rule. Then the table is exported again from its TRUNCATE.
    async fn manifest(
        &mut self,
        shared: &Shared,
        session: &mut Session,
        unload: &UnloadConfig,
        staging: &Staging,
        export: &ExportState,
        prefix: &str,
    ) -> Result<Manifest, Stop> {
        let key = format!("{prefix}manifest");
        let fetched = match staging.get(&key, MAX_MANIFEST_BYTES, None).await {
            Err(UnloadError::FileMissing { .. }) => {
                if export.sent_any() {
                    let message = format!(
                        "table {}: the files of its export under {} are gone, so it is exported again from the start",
                        self.plan.table.name, export.url
                    );
                    self.warning(&shared.output, message).await?;
                    self.export = Some(export.start_over());
                    self.batch.encoder.push_truncate();
                    self.batch.encoder.finish();
                    self.collect_finished();
                    self.send_with_checkpoint(shared, true).await?;
                }
                let cursor = match self.plan.mode {
                    Mode::Incremental { cursor } => Some(cursor),
                    Mode::Full { .. } => None,
                };
                let snapshot = self.snapshot_bound(shared).map(|(_, snapshot)| snapshot);
                let statement = UnloadStatement {
                    table: &self.plan.table,
                    select: &self.plan.emitted,
                    bound: cursor.zip(export.bound.as_deref()),
                    key_snapshot: snapshot.as_deref().map(|s| (s, self.plan.key.as_slice())),
                    destination: &export.url,
                    role: &unload.role,
                    region: unload.region.as_deref(),
                };
                let sql =
                    statement
                        .sql()
                        .map_err(|NotExportable(reason)| SourceError::Internal {
                            during: "writing the UNLOAD statement",
                            detail: format!("the export cannot be written as an UNLOAD: {reason}"),
                        })?;
                let started = std::time::Instant::now();
                unload::unload(session, &sql, &unload.bucket, &unload.role).await?;
                tracing::info!(table = %self.plan.table.name, seconds = format!("{:.1}", started.elapsed().as_secs_f64()), "UNLOAD finished");
                staging.get(&key, MAX_MANIFEST_BYTES, None).await
            }
            other => other,
        };
        let bytes = fetched.map_err(SourceError::from)?;
        let unreadable = |reason: String| {
            SourceError::from(UnloadError::Unreadable {
                url: export.url.clone() + "manifest",
                reason,
            })
        };
        let manifest = Manifest::parse(&bytes).map_err(unreadable)?;
        // Every file the manifest names must be one of this export's own: a manifest is read
        // back from the bucket, and nothing outside the export is read into this table.
        if let Some(foreign) = manifest.entries.iter().find(|entry| {
            !entry
                .url
                .strip_prefix(&export.url)
                .is_some_and(|name| !name.is_empty() && !name.contains('/'))
        }) {
            return Err(unreadable(format!(
                "it names a file outside the export's own prefix ({})",
                crate::config::shorten(&foreign.url)
            ))
            .into());
        }
        Ok(manifest)
    }

    /// Sends the rows of the files not yet done, in the manifest's order, with checkpoints.
    async fn read_files(
        &mut self,
        shared: &Shared,
        staging: &Staging,
        manifest: &Manifest,
    ) -> Result<(), Stop> {
        let lookahead = readers();
        let mut next = self.export.as_ref().map_or(0, |e| e.files_done as usize);
        let mut reading = std::collections::VecDeque::new();
        while next < manifest.entries.len() || !reading.is_empty() {
            while next < manifest.entries.len() && reading.len() < lookahead {
                let skip = if reading.is_empty() {
                    self.export.as_ref().map_or(0, |e| e.rows_done)
                } else {
                    0
                };
                reading.push_back(self.spawn_reader(
                    shared,
                    staging,
                    next,
                    &manifest.entries[next],
                    skip,
                )?);
                next += 1;
            }
            let Some(mut reader) = reading.pop_front() else {
                break;
            };
            while let Some(chunk) = reader.chunks.recv().await {
                let export = self.export.as_mut().expect("reading an export");
                export.rows_sent(chunk.rows);
                self.stats.rows += chunk.rows;
                self.batch.messages = chunk.messages;
                self.send_with_checkpoint(shared, true).await?;
                self.report();
            }
            let read = match (&mut reader.done).await {
                Ok(result) => result?,
                Err(join) => {
                    return Err(Stop::Source(SourceError::Internal {
                        during: "reading an export file",
                        detail: join.to_string(),
                    }))
                }
            };
            let entry = &manifest.entries[reader.index];
            if read != entry.meta.record_count {
                return Err(UnloadError::CountMismatch {
                    url: entry.url.clone(),
                    expected: entry.meta.record_count,
                    read,
                }
                .into());
            }
            let export = self.export.as_mut().expect("reading an export");
            export.file_done(reader.index);
            self.send_with_checkpoint(shared, true).await?;
        }
        Ok(())
    }

    /// Starts downloading and decoding one file, `skip` of whose rows were sent before.
    fn spawn_reader(
        &self,
        shared: &Shared,
        staging: &Staging,
        index: usize,
        entry: &Entry,
        skip: u64,
    ) -> Result<FileReader, Stop> {
        // The manifest's entries were checked to lie inside the export's own prefix.
        let key = match split_url(&entry.url) {
            Some((bucket, key)) if bucket == staging.bucket => key.to_string(),
            _ => {
                return Err(UnloadError::Unreadable {
                    url: entry.url.clone(),
                    reason: format!("the manifest names a file outside s3://{}", staging.bucket),
                }
                .into())
            }
        };
        let expected_bytes = entry.meta.content_length;
        let (sender, chunks) = mpsc::channel(CHUNKS_AHEAD);
        let permits = Arc::clone(&shared.export_readers);
        let staging = staging.clone();
        let url = entry.url.clone();
        let plan = Arc::clone(&self.plan);
        let limits = ChunkLimits {
            rows: u64::from(shared.config.sync.batch_size),
            bytes: shared.config.sync.max_batch_bytes as usize,
        };
        let done = tokio::spawn(async move {
            let permit = permits
                .acquire_owned()
                .await
                .expect("the readers' semaphore is never closed");
            let file = staging
                .get(&key, MAX_FILE_BYTES, Some(expected_bytes))
                .await?;
            let decoding = tokio::task::spawn_blocking(move || {
                decode_file(file, &plan, &url, skip, limits, sender, permit)
            });
            decoding.await.map_err(|join| SourceError::Internal {
                during: "decoding an export file",
                detail: join.to_string(),
            })?
        });
        Ok(FileReader {
            index,
            chunks,
            done,
        })
    }

    /// Gives up an export the configuration no longer allows: the table starts over.
    async fn restart_without_export(&mut self, shared: &Shared, reason: &str) -> Result<(), Stop> {
        self.export = None;
        self.batch.truncate_pending = true;
        self.progress = Progress::new(Shape::of(&self.plan), None);
        let message = format!("table {}: {reason}", self.plan.table.name);
        self.warning(&shared.output, message).await?;
        Ok(())
    }
}

/// Decodes a file into batches of records for the sender (on a blocking thread); the rows it
/// held. Stops early, with what it counted, when the sender is gone.
fn decode_file(
    file: bytes::Bytes,
    plan: &crate::sync::plan::TablePlan,
    url: &str,
    skip: u64,
    limits: ChunkLimits,
    sender: mpsc::Sender<Chunk>,
    _permit: OwnedSemaphorePermit,
) -> Result<u64, SourceError> {
    let columns = &plan.table.columns;
    let types: Vec<SqlType> = plan
        .emitted
        .iter()
        .map(|&i| columns[i].sql_type.clone())
        .collect();
    let mut chunks = ChunkWriter {
        encoder: plan.record_encoder(limits.bytes),
        messages: Vec::new(),
        message_bytes: 0,
        rows: 0,
        limits,
        sender,
        soft_delete: plan.soft_delete.clone(),
    };
    let mut seen = 0u64;
    let result = read_rows(file, &types, |cells, scratch| {
        seen += 1;
        if seen <= skip {
            return Ok(());
        }
        chunks.push(DecodedRow::new(cells, &[], scratch))
    });
    match result {
        // With the sender gone the table's attempt is over; the count no longer matters.
        Ok(Ok(_)) => {
            let _ = chunks.flush();
        }
        Ok(Err(SenderGone)) => {}
        Err(err) => {
            let column = err
                .column
                .and_then(|c| plan.emitted.get(c))
                .map(|&i| format!(" (column `{}`)", columns[i].name))
                .unwrap_or_default();
            return Err(UnloadError::Unreadable {
                url: url.to_string(),
                reason: format!("{}{column}", err.reason),
            }
            .into());
        }
    }
    Ok(seen)
}

/// When a batch of a file's records goes to the sender: after this many rows or bytes.
#[derive(Clone, Copy)]
struct ChunkLimits {
    rows: u64,
    bytes: usize,
}

/// The sender stopped listening.
struct SenderGone;

/// A file's rows encoded into batches of records, each sent when it is full.
struct ChunkWriter {
    encoder: RecordEncoder,
    messages: Vec<EncodedRecords>,
    message_bytes: usize,
    rows: u64,
    limits: ChunkLimits,
    sender: mpsc::Sender<Chunk>,
    soft_delete: Option<super::super::plan::SoftDelete>,
}

impl ChunkWriter {
    #[inline]
    fn push(&mut self, row: DecodedRow<'_>) -> Result<(), SenderGone> {
        match &self.soft_delete {
            Some(soft_delete) if soft_delete.marks(row.cells()) => {
                self.encoder.push_delete(&soft_delete.key, row);
            }
            _ => self.encoder.push_upsert(row),
        }
        self.rows += 1;
        self.collect();
        if self.rows >= self.limits.rows
            || self.message_bytes + self.encoder.pending_bytes() >= self.limits.bytes
        {
            self.flush()?;
        }
        Ok(())
    }

    fn collect(&mut self) {
        while let Some(message) = self.encoder.take_ready() {
            self.message_bytes += message.bytes.len();
            self.messages.push(message);
        }
    }

    /// Sends the batch so far, if it holds a row.
    fn flush(&mut self) -> Result<(), SenderGone> {
        self.encoder.finish();
        self.collect();
        if self.rows == 0 {
            return Ok(());
        }
        let chunk = Chunk {
            messages: std::mem::take(&mut self.messages),
            rows: std::mem::take(&mut self.rows),
        };
        self.message_bytes = 0;
        self.sender.blocking_send(chunk).map_err(|_| SenderGone)
    }
}

/// `SELECT COUNT(*)`: exact, and on Redshift answered from block metadata without reading
/// the rows (PostgreSQL scans, which is what the tests pay).
async fn count_rows(session: &mut Session, table: &str) -> Result<u64, SourceError> {
    let text = session
        .query_value(&format!("SELECT COUNT(*) FROM {table}"))
        .await?
        .unwrap_or_default();
    text.parse().map_err(|_| SourceError::UnexpectedAnswer {
        query: "COUNT(*)",
        detail: format!("{table} counts `{text}` rows"),
    })
}

/// The greatest cursor value, as its position text (`None` if every cursor is NULL).
async fn greatest(
    session: &mut Session,
    table: &str,
    column: &str,
) -> Result<Option<String>, SourceError> {
    let column = crate::source::sql::quote_ident(column);
    session
        .query_value(&format!("SELECT MAX({column})::VARCHAR FROM {table}"))
        .await
}

/// Deletes the export prefixes under `unload_s3_uri` that this connector made, that are
/// older than [`ABANDONED_AFTER_S`], and that no table of `state` is reading. Stops at the
/// first prefix it cannot delete (a missing permission would refuse every one), and returns
/// what the user should know, for a Warning. Each delete is bounded (see `Staging`).
pub(in crate::sync) async fn clean_abandoned(
    staging: &Staging,
    unload: &UnloadConfig,
    in_use: &[String],
) -> Option<String> {
    let prefixes = match staging.list_prefixes(&unload.prefix).await {
        Ok(prefixes) => prefixes,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list old exports to delete");
            return Some(format!(
                "exports left by abandoned syncs could not be looked for: {err}"
            ));
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for prefix in prefixes {
        let Some(id) = prefix
            .strip_prefix(unload.prefix.as_str())
            .and_then(|rest| rest.strip_suffix('/'))
            .filter(|id| is_export_id(id))
        else {
            continue;
        };
        let Some(started) = id
            .strip_prefix(EXPORT_ID_PREFIX)
            .and_then(|t| t.get(..16))
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
        else {
            continue;
        };
        let age = now.saturating_sub(started.and_utc().timestamp().max(0) as u64);
        let url = format!("s3://{}/{prefix}", unload.bucket);
        if age < ABANDONED_AFTER_S || in_use.iter().any(|u| u.starts_with(&url)) {
            continue;
        }
        match staging.delete_prefix(&prefix).await {
            Ok(deleted) => tracing::info!(url, deleted, "deleted an abandoned export"),
            Err(err) => {
                tracing::warn!(url, error = %err, "cannot delete an abandoned export");
                return Some(format!(
                    "an export left by an abandoned sync could not be deleted: {err}"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    /// The export pass's steps, as a table: its progress after each.
    #[test]
    fn an_export_counts_files_and_rows_and_starts_over_from_the_first() {
        use crate::state::ExportState;
        let mut export = ExportState::begun("s3://b/p/".into(), Some("2024".into()));
        assert_eq!(
            (export.files_done, export.rows_done, export.read_all),
            (0, 0, false)
        );
        assert!(!export.sent_any());
        export.rows_sent(40);
        export.rows_sent(2);
        assert_eq!((export.files_done, export.rows_done), (0, 42));
        assert!(export.sent_any());
        export.file_done(0);
        assert_eq!((export.files_done, export.rows_done), (1, 0));
        export.rows_sent(5);
        export.file_done(1);
        assert_eq!((export.files_done, export.rows_done), (2, 0));
        let again = export.start_over();
        assert_eq!((again.files_done, again.rows_done), (0, 0));
        assert_eq!(
            (again.url.as_str(), again.bound.as_deref()),
            ("s3://b/p/", Some("2024"))
        );
        export.all_read();
        assert!(export.read_all);
    }

    use super::*;

    use crate::config::{TableName, UnloadRole};

    #[test]
    fn table_directories_are_readable_distinct_and_safe_in_sql() {
        let a = table_directory(&TableName::new("a.b", "c"));
        let b = table_directory(&TableName::new("a", "b.c"));
        assert_ne!(a, b);
        assert!(a.starts_with("a.b.c-"));
        assert_eq!(a.len(), "a.b.c-".len() + crate::fingerprint::LEN);
        // Names that share their first 64 characters still have directories of their own.
        let long = "x".repeat(80);
        assert_ne!(
            table_directory(&TableName::new("s", format!("{long}1"))),
            table_directory(&TableName::new("s", format!("{long}2")))
        );
        let odd = table_directory(&TableName::new("s'ch", "t/é\\x"));
        assert!(odd
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
    }

    #[test]
    fn export_ids_carry_their_time() {
        let id = new_export_id();
        assert!(is_export_id(&id), "{id}");
        let time = id.strip_prefix(EXPORT_ID_PREFIX).unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(&time[..16], "%Y%m%dT%H%M%SZ").is_ok());
    }

    #[test]
    fn only_the_connectors_own_location_for_the_table_is_accepted() {
        let unload = UnloadConfig {
            bucket: "stage".into(),
            prefix: "sync/".into(),
            role: UnloadRole::Default,
            region: None,
            min_rows: 0,
            s3_endpoint_url: None,
        };
        let table = TableName::new("public", "orders");
        let id = new_export_id();
        let own = format!("s3://stage/sync/{id}/{}/", table_directory(&table));
        assert_eq!(
            own_export_prefix(&own, &unload, &table).unwrap(),
            format!("sync/{id}/{}/", table_directory(&table))
        );
        let other_table = table_directory(&TableName::new("public", "users"));
        for foreign in [
            "s3://stage/".to_string(),
            "s3://stage/sync/".to_string(),
            format!("s3://other/sync/{id}/{}/", table_directory(&table)),
            format!("s3://stage/sync/{id}/{other_table}/"),
            format!("s3://stage/sync/{id}/{}", table_directory(&table)),
            format!("s3://stage/sync/{id}/{}/x/", table_directory(&table)),
            format!("s3://stage/sync/{id}/../{}/", table_directory(&table)),
            format!("s3://stage/sync/redshift-sync-x/{}/", table_directory(&table)),
            format!(
                "s3://stage/sync/{id}/{}/' IAM_ROLE 'x' FORMAT AS PARQUET; DROP TABLE public.victim; --",
                table_directory(&table)
            ),
            // An earlier release's directory (a 32-bit hash).
            format!("s3://stage/sync/{id}/public.orders-0a1b2c3d/"),
        ] {
            assert!(
                own_export_prefix(&foreign, &unload, &table).is_err(),
                "{foreign}"
            );
        }
    }

    #[test]
    fn urls_split_into_bucket_and_key() {
        assert_eq!(split_url("s3://b/p/x/"), Some(("b", "p/x/")));
        assert_eq!(split_url("https://b/p"), None);
    }
}
