//! Every table shape ends its pass with every row, on the real database through the
//! Redshift-shaped proxy (`src/sync/position.rs` has the model-based tests of every
//! combination): tables without a primary key and with or without a cursor, cursor values
//! shared by more rows than a query may read, NULL cursors, and more rows than any limit.

use crate::support;

use std::collections::{BTreeMap, HashMap};

use fivetran_source::proto::RecordType;
use support::stream::{self, query_rows, resume_from_each_checkpoint, Row};

fn with(config: &HashMap<String, String>, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

/// How many times each row (all its values) arrived.
fn counts(rows: &[Row]) -> BTreeMap<Row, usize> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row.clone()).or_default() += 1;
    }
    counts
}

/// The table's rows as the stream renders them.
async fn table_rows(db: &support::TestDb, table: &str) -> Vec<Row> {
    query_rows(
        &db.client,
        &format!(
            "SELECT v::text AS v, {} FROM public.{table}",
            stream::ts_sql("updated_at")
        ),
    )
    .await
}

/// The tables of [`five_row_tables_of_every_shape_send_each_row_once_with_two_rows_a_query`].
const FIVE_ROW_TABLES: [&str; 4] = [
    "no_key_no_cursor",
    "no_key_one_cursor",
    "no_key_null_cursors",
    "keyed_three_per_cursor",
];

/// The five-row tables of the issue, synced with `max_rows_per_query` 2: each row arrives
/// exactly once, TRUNCATE first, and the sync ends.
#[tokio::test(flavor = "multi_thread")]
async fn five_row_tables_of_every_shape_send_each_row_once_with_two_rows_a_query() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.no_key_no_cursor (v INTEGER, updated_at TIMESTAMP);
             CREATE TABLE public.no_key_one_cursor (v INTEGER, updated_at TIMESTAMP);
             CREATE TABLE public.no_key_null_cursors (v INTEGER, updated_at TIMESTAMP);
             CREATE TABLE public.keyed_three_per_cursor (
                 v INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.no_key_no_cursor SELECT g, NULL FROM generate_series(1, 5) g;
             INSERT INTO public.no_key_one_cursor
               SELECT g, TIMESTAMP '2024-05-01 12:00:00' FROM generate_series(1, 5) g;
             INSERT INTO public.no_key_null_cursors SELECT g, NULL FROM generate_series(1, 5) g;
             INSERT INTO public.keyed_three_per_cursor
               SELECT g, TIMESTAMP '2024-05-01' + (g / 3) * INTERVAL '1 second'
               FROM generate_series(1, 9) g;",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    // `no_key_no_cursor` is read by a cursor it does not have: full mode.
    let config = with(
        &db.config,
        &[
            ("max_rows_per_query", "2"),
            ("batch_size", "2"),
            (
                "cursor_column",
                "updated_at, public.no_key_no_cursor:loaded_at",
            ),
        ],
    );
    let log = stream::update_ok(&mut client, &config, None, None).await;
    assert!(log.tasks().is_empty(), "{:?}", log.tasks());
    for table in FIVE_ROW_TABLES {
        let expected = table_rows(&db, table).await;
        let received = log.upserts_of(table);
        assert_eq!(
            counts(&received),
            counts(&expected).into_keys().map(|r| (r, 1)).collect(),
            "{table}: every row exactly once"
        );
        assert_eq!(log.kinds_of(table)[0], RecordType::Truncate, "{table}");
        assert_eq!(log.truncates_of(table), 1, "{table}");
    }
    // The shared cursor value and the NULLs were read whole, past the limit: said once each.
    let tied: Vec<&str> = log
        .warnings()
        .into_iter()
        .filter(|w| w.contains("rows share the cursor value"))
        .collect();
    assert_eq!(tied.len(), 2, "{:?}", log.warnings());
    assert!(tied.iter().any(|w| w.contains("no_key_one_cursor")
        && w.contains("5 rows")
        && w.contains("`2024-05-01 12:00:00.000000`")));
    assert!(tied
        .iter()
        .any(|w| w.contains("no_key_null_cursors") && w.contains("value NULL")));

    // A second sync of the keyless tables re-reads only the rows of the last cursor value
    // (inclusive, so rows that arrive later with it are not missed); the full table again.
    let second = stream::update_ok(&mut client, &config, None, log.last_state()).await;
    assert_eq!(
        second.upserts_of("keyed_three_per_cursor"),
        Vec::<Row>::new()
    );
    assert_eq!(second.upserts_of("no_key_one_cursor").len(), 5);
    assert_eq!(second.upserts_of("no_key_no_cursor").len(), 5);
    assert_eq!(second.truncates_of("no_key_no_cursor"), 1);

    // Batches larger than a query (the default batch is 5000 rows, and `max_rows_per_query`
    // is often set lower): a query ends before its batch does, and the next must still start
    // after its last row.
    let config = with(&config, &[("batch_size", "7")]);
    let log = stream::update_ok(&mut client, &config, None, None).await;
    assert!(
        log.warnings().iter().all(|w| !w.contains("skipped")),
        "{:?}",
        log.warnings()
    );
    for table in FIVE_ROW_TABLES {
        let expected = table_rows(&db, table).await;
        assert_eq!(
            counts(&log.upserts_of(table)),
            counts(&expected).into_keys().map(|r| (r, 1)).collect(),
            "{table}: every row exactly once with batches larger than a query"
        );
    }
}

/// A keyless table with NULL cursors, runs of equal values longer than the limit and text
/// cursors that differ only in case or trailing blanks: every row once in one pass, and from
/// every checkpoint a resume that loses nothing and repeats only the rows of the value the
/// checkpoint names.
#[tokio::test(flavor = "multi_thread")]
async fn keyless_tables_resume_from_every_checkpoint_without_loss() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.facts (v INTEGER, updated_at TIMESTAMP);
             INSERT INTO public.facts
               SELECT g, CASE WHEN g <= 4 THEN NULL
                              WHEN g <= 11 THEN TIMESTAMP '2024-01-01'
                              ELSE TIMESTAMP '2024-01-01' + (g / 2) * INTERVAL '1 second' END
               FROM generate_series(1, 30) g;
             CREATE TABLE public.tagged (v INTEGER, tag VARCHAR(8));
             INSERT INTO public.tagged VALUES
               (1, 'a'), (2, 'A'), (3, 'a '), (4, 'a'), (5, 'b'), (6, 'A'), (7, 'a '),
               (8, 'B'), (9, NULL), (10, 'a'), (11, 'b '), (12, 'b');",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(
        &db.config,
        &[
            ("max_rows_per_query", "3"),
            ("batch_size", "2"),
            ("cursor_column", "updated_at, public.tagged:tag"),
        ],
    );
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let facts = table_rows(&db, "facts").await;
    let tagged = query_rows(&db.client, "SELECT v::text AS v, tag FROM public.tagged").await;
    for (table, expected) in [("facts", &facts), ("tagged", &tagged)] {
        assert_eq!(
            counts(&first.upserts_of(table)),
            counts(expected),
            "{table}: one pass sends every row exactly once"
        );
    }
    let resumes = resume_from_each_checkpoint(&mut client, &config, None, &first).await;
    assert!(resumes.len() > 10, "{} checkpoints", resumes.len());
    for (at, resumed) in &resumes {
        for (table, expected, cursor) in
            [("facts", &facts, "updated_at"), ("tagged", &tagged, "tag")]
        {
            let before = stream::upserts_before(&first, at, table);
            let after = resumed.upserts_of(table);
            let mut union = counts(&before);
            for row in &after {
                union.entry(row.clone()).or_insert(1);
            }
            assert_eq!(
                union.keys().collect::<Vec<_>>(),
                counts(expected).keys().collect::<Vec<_>>(),
                "{table}: rows lost resuming from {}",
                at.state_json
            );
            // Repeats are rows of the one value the checkpoint names (a value read by a
            // query of its own, or the last value of the pass), and, once the position is past
            // them, the NULL-cursor rows, which every later sync reads again.
            let named = stream::position(&at.state_json, "public", table).and_then(|p| p.0);
            let nulls_again = |row: &Row| named.is_some() && row[cursor] == "NULL";
            if named.is_some() {
                let nulls = |rows: &[Row]| rows.iter().filter(|r| nulls_again(r)).count();
                assert_eq!(
                    nulls(&after),
                    nulls(expected),
                    "{table}: the NULL-cursor rows are read again resuming from {}",
                    at.state_json
                );
            }
            let repeated: Vec<&Row> = after
                .iter()
                .filter(|r| before.contains(r) && !nulls_again(r))
                .collect();
            let values: std::collections::BTreeSet<&str> =
                repeated.iter().map(|r| r[cursor].as_str()).collect();
            assert!(
                values.len() <= 1,
                "{table}: rows of several values repeated resuming from {}: {repeated:?}",
                at.state_json
            );
            if let (Some(value), Some(named)) = (values.first(), &named) {
                let named = if cursor == "updated_at" {
                    named.trim_end_matches(".000000").to_string()
                } else {
                    named.clone()
                };
                assert!(
                    value.starts_with(&named),
                    "{table}: repeated {value:?}, the checkpoint names {named:?}"
                );
            }
        }
    }
}

/// More rows than any default limit, without a key or a cursor: one query reads them all, each
/// once (before, a table like this was read again from the start by every query, forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_table_of_two_million_and_one_rows_syncs_each_row_once_at_the_defaults() {
    const ROWS: i64 = 2_000_001;
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.heap (v BIGINT);
             INSERT INTO public.heap SELECT g FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let mut updates = stream::start_update(&mut client, &db.config, None, None)
        .await
        .unwrap();
    // Counted as they arrive: two million rendered rows would not fit a test's memory well.
    let mut seen = vec![false; ROWS as usize + 1];
    let (mut upserts, mut truncates, mut checkpoints) = (0u64, 0u64, 0u64);
    let mut warnings = Vec::new();
    while let Some(message) = updates.message().await.expect("the update completes") {
        use fivetran_source::proto::update_response::Operation;
        use fivetran_source::proto::value_type::Inner;
        match message.operation {
            Some(Operation::Records(records)) => {
                for record in records.records {
                    if record.r#type == RecordType::Truncate as i32 {
                        truncates += 1;
                        continue;
                    }
                    let Some(Inner::Long(v)) = record.data["v"].inner else {
                        panic!("v is a LONG: {record:?}");
                    };
                    assert!(!seen[v as usize], "row {v} arrived twice");
                    seen[v as usize] = true;
                    upserts += 1;
                }
            }
            Some(Operation::Checkpoint(_)) => checkpoints += 1,
            Some(Operation::Warning(w)) => warnings.push(w.message),
            Some(Operation::Task(t)) => panic!("Task: {}", t.message),
            _ => {}
        }
    }
    assert_eq!(upserts, ROWS as u64);
    assert_eq!(truncates, 1);
    assert!(checkpoints >= 1);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("public.heap") && w.contains("one query without a row limit")),
        "{warnings:?}"
    );
}
