//! Resuming an Update from any checkpoint loses nothing and, for tables with a primary key,
//! repeats nothing (src/sync/mod.rs, invariants): the property a host relies on when it replays
//! from the last checkpoint it persisted after a failure.
//!
//! Each test takes an initial sync, then resumes from *every* checkpoint it emitted and checks
//! (rows delivered before the checkpoint) + (rows of the resumed run) against the table.

use crate::support;

use std::collections::BTreeSet;
use std::collections::HashMap;

use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::proto::{RecordType, Selection};
use support::stream::{
    self, by_key, position, query_rows, resume_from_each_checkpoint, truncated_before,
    upserts_before, Row, UpdateLog,
};
use tonic::transport::Channel;

/// For a table with a primary key: from every checkpoint of `first`, the resumed run delivers
/// exactly the rows not delivered before it (none twice, but for the NULL-cursor rows every sync
/// past them reads again), with a TRUNCATE first if and only if
/// the table's TRUNCATE had not been sent yet. Returns the number of checkpoints checked.
async fn assert_exact_resume_from_every_checkpoint(
    client: &mut SourceConnectorClient<Channel>,
    config: &HashMap<String, String>,
    selection: Option<Selection>,
    first: &UpdateLog,
    tables: &[(&str, &[&str], &[Row])],
) -> usize {
    let resumes = resume_from_each_checkpoint(client, config, selection, first).await;
    for (i, (at, resumed)) in resumes.iter().enumerate() {
        assert!(resumed.tasks().is_empty(), "{:?}", resumed.tasks());
        for (table, key, expected) in tables {
            let before = by_key(&upserts_before(first, at, table), key);
            let after = by_key(&resumed.upserts_of(table), key);
            // Once the position is past the rows whose cursor is NULL, a sync reads them all
            // again (nothing says when they change): the one repeat a resume makes by design.
            let past_nulls = position(&at.state_json, "public", table)
                .is_some_and(|(cursor, _)| cursor.is_some());
            let null_cursor = |row: &Row| row.get("updated_at").is_some_and(|v| v == stream::NULL);
            if past_nulls {
                let nulls = |rows: &std::collections::BTreeMap<Vec<String>, Row>| {
                    rows.values().filter(|r| null_cursor(r)).count()
                };
                assert_eq!(
                    nulls(&after),
                    nulls(&by_key(expected, key)),
                    "{table}, resumed from checkpoint {i}: the NULL-cursor rows are read again"
                );
            }
            let repeated: Vec<_> = before
                .iter()
                .filter(|(k, row)| after.contains_key(*k) && !(past_nulls && null_cursor(row)))
                .map(|(k, _)| k)
                .collect();
            assert!(
                repeated.is_empty(),
                "{table}, resumed from checkpoint {i} ({}): rows delivered before it came again: {repeated:?}",
                at.state_json
            );
            let mut union = before.clone();
            union.extend(after.clone());
            let expected = by_key(expected, key);
            let missing: Vec<_> = expected
                .keys()
                .filter(|k| !union.contains_key(*k))
                .collect();
            assert!(
                missing.is_empty(),
                "{table}, resumed from checkpoint {i} ({}): rows lost: {missing:?}",
                at.state_json
            );
            assert_eq!(
                union, expected,
                "{table}, resumed from checkpoint {i}: delivered rows differ from the table"
            );
            let kinds = resumed.kinds_of(table);
            if truncated_before(first, at, table) {
                assert!(
                    !kinds.contains(&RecordType::Truncate),
                    "{table}, checkpoint {i}: a resumed sync must not TRUNCATE again"
                );
            } else {
                assert_eq!(
                    kinds.first(),
                    Some(&RecordType::Truncate),
                    "{table}, checkpoint {i}: the table's initial sync starts with TRUNCATE"
                );
                assert_eq!(resumed.truncates_of(table), 1);
            }
        }
    }
    resumes.len()
}

fn with_batch_size(config: &HashMap<String, String>, batch_size: u32) -> HashMap<String, String> {
    let mut config = config.clone();
    config.insert("batch_size".into(), batch_size.to_string());
    config
}

/// 53 rows, 3 distinct `updated_at` values one microsecond apart, one of them shared by 40 rows,
/// read 7 at a time: most checkpoints fall inside the run of 40 equal cursor values, where only
/// the key tells sent from unsent. One table has a single-column key and a TIMESTAMP cursor, the
/// other a composite (text, int) key and a TIMESTAMPTZ cursor, and both go through one Update,
/// so checkpoints in the first table also resume the second from scratch.
#[tokio::test(flavor = "multi_thread")]
async fn every_checkpoint_inside_a_run_of_equal_cursors_resumes_without_loss_or_repeat() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.single (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, note TEXT);
             INSERT INTO public.single
               SELECT g,
                      CASE WHEN g % 8 = 1 THEN TIMESTAMP '2024-03-01 10:00:00.000001'
                           WHEN g % 8 = 0 THEN TIMESTAMP '2024-03-01 10:00:00.000003'
                           ELSE TIMESTAMP '2024-03-01 10:00:00.000002' END,
                      CASE WHEN g % 5 = 0 THEN NULL ELSE 'note ' || g END
               FROM generate_series(1, 53) g;
             CREATE TABLE public.composite (
               region VARCHAR(16), id INTEGER, updated_at TIMESTAMPTZ, amount NUMERIC(12,2),
               PRIMARY KEY (region, id));
             INSERT INTO public.composite
               SELECT CASE g % 3 WHEN 0 THEN 'eu' WHEN 1 THEN 'US' ELSE 'ap south' END,
                      100 - g / 3,
                      CASE WHEN g % 8 = 1 THEN TIMESTAMPTZ '2024-03-01 10:00:00.000001+00'
                           WHEN g % 8 = 0 THEN TIMESTAMPTZ '2024-03-01 10:00:00.000003+00'
                           ELSE TIMESTAMPTZ '2024-03-01 10:00:00.000002+00' END,
                      g * 1.25
               FROM generate_series(1, 53) g;",
        )
        .await
        .unwrap();
    let single = query_rows(
        &db.client,
        &format!(
            "SELECT id::text AS id, {}, note FROM public.single",
            stream::ts_sql("updated_at")
        ),
    )
    .await;
    let composite = query_rows(
        &db.client,
        "SELECT region, id::text AS id,
                to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS updated_at,
                amount::text AS amount
         FROM public.composite",
    )
    .await;
    assert_eq!((single.len(), composite.len()), (53, 53));

    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with_batch_size(&db.config, 7);
    let first = stream::update_ok(&mut client, &config, None, None).await;

    // The initial sync itself: everything, once, in (cursor, key) order. (`composite` comes
    // first: tables are synced in catalog order.)
    assert_eq!(
        by_key(&first.upserts_of("single"), &["id"]),
        by_key(&single, &["id"])
    );
    assert_eq!(
        by_key(&first.upserts_of("composite"), &["region", "id"]),
        by_key(&composite, &["region", "id"])
    );
    let order = |rows: Vec<Row>, key: &[&str]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                std::iter::once(r["updated_at"].clone())
                    .chain(key.iter().map(|k| r[*k].clone()))
                    .collect()
            })
            .collect()
    };
    let single_order = order(first.upserts_of("single"), &["id"]);
    let mut sorted = single_order.clone();
    sorted.sort_by_key(|v| (v[0].clone(), v[1].parse::<i32>().unwrap()));
    assert_eq!(single_order, sorted, "rows arrive in (cursor, key) order");

    // 8 fetch batches per table (7 * 7 + 4); a table's end moves nothing, so adds none.
    let checkpoints = first.checkpoints();
    assert_eq!(checkpoints.len(), 2 * 8, "{checkpoints:#?}");
    let inside_the_tie = checkpoints
        .iter()
        .filter(|c| {
            position(&c.state_json, "public", "single")
                .is_some_and(|(cursor, _)| cursor.as_deref() == Some("2024-03-01 10:00:00.000002"))
        })
        .count();
    assert!(
        inside_the_tie >= 4,
        "most checkpoints of `single` fall inside the shared cursor value: {checkpoints:#?}"
    );

    let checked = assert_exact_resume_from_every_checkpoint(
        &mut client,
        &config,
        None,
        &first,
        &[
            ("single", &["id"], &single),
            ("composite", &["region", "id"], &composite),
        ],
    )
    .await;
    assert_eq!(checked, 16);
}

/// Rows whose cursor is NULL come first in an initial sync and are all delivered, also when the
/// sync is resumed from a checkpoint taken among them (the state then has a NULL cursor and the
/// key of the last row sent).
#[tokio::test(flavor = "multi_thread")]
async fn null_cursor_rows_are_delivered_and_a_checkpoint_among_them_resumes_exactly() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.nulls (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, v TEXT);
             INSERT INTO public.nulls
               SELECT g,
                      CASE WHEN g % 2 = 0 AND g <= 22 THEN NULL
                           ELSE TIMESTAMP '2024-01-01' + (g % 3) * INTERVAL '1 microsecond' END,
                      'v' || g
               FROM generate_series(1, 23) g;",
        )
        .await
        .unwrap();
    let expected = query_rows(
        &db.client,
        &format!(
            "SELECT id::text AS id, {}, v FROM public.nulls",
            stream::ts_sql("updated_at")
        ),
    )
    .await;
    let nulls = expected
        .iter()
        .filter(|r| r["updated_at"] == stream::NULL)
        .count();
    assert_eq!(nulls, 11);

    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with_batch_size(&db.config, 4);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let delivered = first.upserts_of("nulls");
    assert_eq!(by_key(&delivered, &["id"]), by_key(&expected, &["id"]));
    assert!(
        delivered[..nulls]
            .iter()
            .all(|r| r["updated_at"] == stream::NULL),
        "NULL cursors come first: {delivered:?}"
    );

    let among_nulls: Vec<_> = first
        .checkpoints()
        .into_iter()
        .filter(|c| {
            position(&c.state_json, "public", "nulls")
                .is_some_and(|(cursor, key)| cursor.is_none() && key.len() == 1)
        })
        .collect();
    assert!(
        among_nulls.len() >= 2,
        "batches of 4 put checkpoints among the 11 NULL rows: {:#?}",
        first.checkpoints()
    );

    let checked = assert_exact_resume_from_every_checkpoint(
        &mut client,
        &config,
        None,
        &first,
        &[("nulls", &["id"], &expected)],
    )
    .await;
    // One per fetch batch, the last at the table's end.
    assert_eq!(checked, 6);
}

/// Without a primary key the scan resumes past the last cursor value it completed, or at the
/// value of a pass's end: only rows sharing the checkpoint's value may come again (hosts key
/// such rows by a hash of their values), nothing is lost and nothing else repeats.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_a_primary_key_resumes_without_loss() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (n INTEGER, updated_at TIMESTAMP, payload TEXT);
             INSERT INTO public.events
               SELECT g, TIMESTAMP '2024-05-01 00:00:00' + (g % 5) * INTERVAL '1 microsecond',
                      'p' || g
               FROM generate_series(1, 30) g;",
        )
        .await
        .unwrap();
    let expected: BTreeSet<Row> = query_rows(
        &db.client,
        &format!(
            "SELECT n::text AS n, {}, payload FROM public.events",
            stream::ts_sql("updated_at")
        ),
    )
    .await
    .into_iter()
    .collect();

    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with_batch_size(&db.config, 4);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let delivered = first.upserts_of("events");
    assert_eq!(delivered.len(), 30);
    assert_eq!(delivered.iter().cloned().collect::<BTreeSet<_>>(), expected);

    let resumes = resume_from_each_checkpoint(&mut client, &config, None, &first).await;
    // At least one checkpoint a batch of four (rows go out by cursor value, five of them).
    assert!(resumes.len() >= 30 / 4, "{} checkpoints", resumes.len());
    for (i, (at, resumed)) in resumes.iter().enumerate() {
        let before: BTreeSet<Row> = upserts_before(&first, at, "events").into_iter().collect();
        let after_rows = resumed.upserts_of("events");
        let after: BTreeSet<Row> = after_rows.iter().cloned().collect();
        assert_eq!(
            after.len(),
            after_rows.len(),
            "a resumed run sends a row once"
        );
        let union: BTreeSet<Row> = before.union(&after).cloned().collect();
        assert_eq!(
            union, expected,
            "checkpoint {i} ({}): rows lost",
            at.state_json
        );
        assert!(!resumed.kinds_of("events").contains(&RecordType::Truncate));
        let (cursor, key) = position(&at.state_json, "public", "events").expect("a position");
        assert!(key.is_empty(), "no key columns, no key in the position");
        let cursor = cursor.expect("no NULL cursors in this table");
        for repeated in before.intersection(&after) {
            assert_eq!(
                repeated["updated_at"], cursor,
                "checkpoint {i}: only rows at the checkpoint's cursor value may come again"
            );
        }
    }
}

/// A table without a cursor column is read in full, in key order, with checkpoints; resuming in
/// the middle of a pass continues it after the last key (no TRUNCATE, nothing repeated), while
/// resuming from the end of a pass starts a new one (TRUNCATE, every row).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_pass_resumes_after_its_last_key_and_starts_over_once_finished() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.plain (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO public.plain SELECT g * 7 % 101, 'v' || g FROM generate_series(1, 25) g;
             CREATE TABLE public.heap (v TEXT);
             INSERT INTO public.heap SELECT 'h' || g FROM generate_series(1, 9) g;",
        )
        .await
        .unwrap();
    let plain = query_rows(&db.client, "SELECT id::text AS id, v FROM public.plain").await;
    let heap: BTreeSet<Row> = query_rows(&db.client, "SELECT v FROM public.heap")
        .await
        .into_iter()
        .collect();

    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with_batch_size(&db.config, 4);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(
        by_key(&first.upserts_of("plain"), &["id"]),
        by_key(&plain, &["id"])
    );

    for (i, (at, resumed)) in resume_from_each_checkpoint(&mut client, &config, None, &first)
        .await
        .iter()
        .enumerate()
    {
        let state: serde_json::Value = serde_json::from_str(&at.state_json).unwrap();
        let plain_state = &state["tables"]["public"]["plain"];

        // `heap` (keyless, no cursor) cannot resume mid-pass: from anywhere, a whole new pass.
        assert_eq!(
            resumed.kinds_of("heap")[0],
            RecordType::Truncate,
            "checkpoint {i}"
        );
        assert_eq!(resumed.truncates_of("heap"), 1, "checkpoint {i}");
        let heap_after: BTreeSet<Row> = resumed.upserts_of("heap").into_iter().collect();
        assert_eq!(heap_after, heap, "checkpoint {i}");
        assert_eq!(
            resumed.upserts_of("heap").len(),
            heap.len(),
            "checkpoint {i}"
        );

        let before = by_key(&upserts_before(&first, at, "plain"), &["id"]);
        let after = by_key(&resumed.upserts_of("plain"), &["id"]);
        if plain_state["in_progress"] == serde_json::Value::Bool(true)
            && truncated_before(&first, at, "plain")
        {
            assert!(
                !resumed.kinds_of("plain").contains(&RecordType::Truncate),
                "checkpoint {i}: a pass under way continues without TRUNCATE"
            );
            assert!(
                before.keys().all(|k| !after.contains_key(k)),
                "checkpoint {i}: rows repeated"
            );
            let mut union = before;
            union.extend(after);
            assert_eq!(union, by_key(&plain, &["id"]), "checkpoint {i}: rows lost");
        } else {
            // Not started yet, or finished: a whole pass.
            assert_eq!(
                resumed.kinds_of("plain")[0],
                RecordType::Truncate,
                "checkpoint {i}"
            );
            assert_eq!(resumed.truncates_of("plain"), 1);
            assert_eq!(after, by_key(&plain, &["id"]), "checkpoint {i}");
        }
    }
}

/// Schema, table and column names that need quoting (spaces, quotes, dots, upper case) in the
/// scan and in the resume predicate built from a checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn names_that_need_quoting_resume_exactly() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            r#"CREATE SCHEMA "Sales ""Data""";
               CREATE TABLE "Sales ""Data"""."Order Items.v2" (
                 "Key Col" INTEGER PRIMARY KEY, "Updated At" TIMESTAMP, "sel""ect" TEXT);
               INSERT INTO "Sales ""Data"""."Order Items.v2"
                 SELECT g, TIMESTAMP '2024-01-01' + (g % 2) * INTERVAL '1 microsecond', 'x' || g
                 FROM generate_series(1, 10) g;"#,
        )
        .await
        .unwrap();
    let expected = query_rows(
        &db.client,
        r#"SELECT "Key Col"::text AS "Key Col",
                  to_char("Updated At", 'YYYY-MM-DD HH24:MI:SS.US') AS "Updated At", "sel""ect"
           FROM "Sales ""Data"""."Order Items.v2""#,
    )
    .await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let mut config = with_batch_size(&db.config, 3);
    // Quoted, as in SQL: unquoted names fold to lower case.
    config.insert("cursor_column".into(), "\"Updated At\"".into());
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert!(first.warnings().is_empty(), "{:?}", first.warnings());
    assert_eq!(
        first.records()[0].table_name(),
        "Sales \"Data\".Order Items.v2"
    );
    let checked = assert_exact_resume_from_every_checkpoint(
        &mut client,
        &config,
        None,
        &first,
        &[("Order Items.v2", &["Key Col"], &expected)],
    )
    .await;
    assert_eq!(checked, 4);
}

/// The ids an Update's stream delivered, split at its last checkpoint: a host keeps only what
/// came before the last checkpoint it persisted.
struct Delivered {
    /// Ids received before the last checkpoint.
    before_last_checkpoint: Vec<i64>,
    since: Vec<i64>,
    last_state: Option<String>,
    checkpoints: usize,
    /// The status the stream ended with, if not OK.
    ended_with: Option<tonic::Status>,
}

impl Delivered {
    fn new() -> Self {
        Self {
            before_last_checkpoint: Vec::new(),
            since: Vec::new(),
            last_state: None,
            checkpoints: 0,
            ended_with: None,
        }
    }

    /// Reads one message; `false` at the stream's end.
    async fn read(
        &mut self,
        stream: &mut tonic::Streaming<fivetran_source::proto::UpdateResponse>,
    ) -> bool {
        use fivetran_source::proto::{update_response::Operation, value_type::Inner};
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return false,
            Err(status) => {
                self.ended_with = Some(status);
                return false;
            }
        };
        match message.operation {
            Some(Operation::Records(records)) => {
                for record in records.records {
                    if let Some(Inner::Long(id)) =
                        record.data.get("id").and_then(|v| v.inner.clone())
                    {
                        self.since.push(id);
                    }
                }
            }
            Some(Operation::Checkpoint(checkpoint)) => {
                self.before_last_checkpoint.append(&mut self.since);
                self.last_state = Some(checkpoint.state_json);
                self.checkpoints += 1;
            }
            _ => {}
        }
        true
    }
}

/// SIGTERM in the middle of a 1M-row Update: the Update stops at its next checkpoint and ends
/// its stream with UNAVAILABLE saying why, the process exits within 30 s, and a resume from
/// the last checkpoint the host received loses no row.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_an_update_at_a_checkpoint_and_a_resume_loses_nothing() {
    const ROWS: i64 = 1_000_000;
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.big (id BIGINT PRIMARY KEY, note TEXT, updated_at TIMESTAMP);
             INSERT INTO public.big
               SELECT g, 'row ' || g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
               FROM generate_series(1, {ROWS}) g;
             ANALYZE public.big;"
        ))
        .await
        .unwrap();
    let mut server = support::ServerProcess::start(&[]);
    let mut client = server.client().await;
    let mut stream = stream::start_update(&mut client, &db.config, None, None)
        .await
        .expect("the Update starts");
    let mut delivered = Delivered::new();
    while delivered.checkpoints < 5 {
        assert!(delivered.read(&mut stream).await, "the Update ended early");
    }
    server.terminate();
    let stopped = std::time::Instant::now();
    while delivered.read(&mut stream).await {}
    let status = delivered
        .ended_with
        .take()
        .expect("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("shutting down"), "{status:?}");
    assert!(
        (delivered.before_last_checkpoint.len() as i64) < ROWS,
        "the Update was stopped before its end"
    );
    let exit =
        tokio::task::block_in_place(|| server.wait_for_exit(std::time::Duration::from_secs(30)));
    let exit =
        exit.unwrap_or_else(|| panic!("still running {:?} after SIGTERM", stopped.elapsed()));
    assert!(exit.success(), "{exit:?}");

    // A host resumes from the last checkpoint it received.
    let server = support::ServerProcess::start(&[]);
    let mut client = server.client().await;
    let mut stream =
        stream::start_update(&mut client, &db.config, None, delivered.last_state.clone())
            .await
            .expect("the resumed Update starts");
    let mut resumed = Delivered::new();
    while resumed.read(&mut stream).await {}
    assert!(resumed.ended_with.is_none(), "{:?}", resumed.ended_with);
    let mut seen = vec![false; ROWS as usize + 1];
    for id in delivered
        .before_last_checkpoint
        .iter()
        .chain(&resumed.before_last_checkpoint)
        .chain(&resumed.since)
    {
        seen[*id as usize] = true;
    }
    let missing: Vec<usize> = (1..=ROWS as usize)
        .filter(|&id| !seen[id])
        .take(10)
        .collect();
    assert!(missing.is_empty(), "rows lost: {missing:?}…");
}

/// `--listen` binds the one address given (here the loopback alone), and serves there;
/// `--port` and `--listen` together are refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_listens_where_told() {
    let server = support::ServerProcess::start_with(&["serve", "--listen", "127.0.0.1:0"], &[]);
    assert!(
        server.listening().starts_with("127.0.0.1:"),
        "{}",
        server.listening()
    );
    let mut client = server.client().await;
    client
        .configuration_form(fivetran_source::proto::ConfigurationFormRequest {})
        .await
        .expect("served on the loopback");
    let both = std::process::Command::new(env!("CARGO_BIN_EXE_fivetran_source"))
        .args(["serve", "--port", "5", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("--listen"),
        "{}",
        String::from_utf8_lossy(&both.stderr)
    );
}
