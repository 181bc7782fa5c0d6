//! Schema changes between syncs, against the real database through the Redshift-shaped proxy:
//! each is handled for its own table, never by failing the Update.
//!
//! - a new column is declared (SchemaChange) and backfilled by a re-sync of that table, or,
//!   with `new_column_backfill = false`, carried by later changes only;
//! - a dropped column is declared, warned of once, and the sync goes on without it;
//! - a cursor or key column whose type changed, or a table dropped and created again, re-syncs
//!   that table alone, with a Warning;
//! - a state of version 1 (no columns recorded) goes on without a re-sync.
//!
//! Column type changes are made the way Redshift allows (a new column renamed into the old
//! one's place), except a VARCHAR's length, which Redshift alters in place.

use crate::support;

use std::collections::{BTreeSet, HashMap};

use fivetran_source::proto::RecordType;
use support::stream::{self, Row, UpdateLog};

fn with(config: &HashMap<String, String>, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

fn ids(rows: &[Row]) -> BTreeSet<i32> {
    rows.iter().map(|r| r["id"].parse().unwrap()).collect()
}

fn declared<'a>(log: &'a UpdateLog, table: &str) -> Option<&'a Vec<String>> {
    log.schema_changes()
        .into_iter()
        .flatten()
        .find(|(name, _)| name == table)
        .map(|(_, columns)| columns)
}

fn warnings_about<'a>(log: &'a UpdateLog, table: &str) -> Vec<&'a str> {
    let prefix = format!("table {table}");
    log.warnings()
        .into_iter()
        .filter(|w| w.starts_with(&prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_column_is_declared_and_backfilled_by_a_re_sync_of_its_table_alone() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 40).await;
    support::create_items(&db, "other", 5).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("batch_size", "7")]);

    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert!(first.schema_changes().is_empty(), "Schema told the host");
    db.client
        .batch_execute("ALTER TABLE public.items ADD COLUMN region VARCHAR(8) DEFAULT 'eu'")
        .await
        .unwrap();

    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    // The SchemaChange comes before anything else, and declares only the changed table.
    assert!(
        matches!(second.ops.first(), Some(stream::Op::SchemaChange(_))),
        "{:?}",
        second.ops.first()
    );
    assert_eq!(second.schema_changes().len(), 1);
    assert_eq!(
        declared(&second, "public.items").unwrap(),
        &["id", "note", "updated_at", "region"]
    );
    assert_eq!(declared(&second, "public.other"), None);
    let warnings = warnings_about(&second, "public.items");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("`region` is new"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("new_column_backfill"),
        "{}",
        warnings[0]
    );
    // Every row again, each carrying the new column's value; the other table goes on.
    assert_eq!(second.kinds_of("items")[0], RecordType::Truncate);
    assert_eq!(second.truncates_of("items"), 1);
    let rows = second.upserts_of("items");
    assert_eq!(ids(&rows), (1..=40).collect());
    assert!(rows.iter().all(|r| r["region"] == "eu"), "{rows:?}");
    assert!(second.records_of("other").is_empty());

    // A kill anywhere inside the backfill: the resume goes on with it (no second TRUNCATE,
    // no new SchemaChange once the state recorded the columns) and loses no row.
    let mut inside = 0;
    for (at, resumed) in
        stream::resume_from_each_checkpoint(&mut client, &config, None, &second).await
    {
        assert_eq!(resumed.truncates_of("items"), 0, "{}", at.state_json);
        assert!(resumed.schema_changes().is_empty(), "{}", at.state_json);
        let mut union = ids(&stream::upserts_before(&second, &at, "items"));
        union.extend(ids(&resumed.upserts_of("items")));
        assert_eq!(union, (1..=40).collect(), "{}", at.state_json);
        inside += 1;
    }
    assert!(inside >= 5, "checkpoints inside the backfill: {inside}");

    let third = stream::update_ok(&mut client, &config, None, second.last_state()).await;
    assert!(third.schema_changes().is_empty());
    assert!(third.records().is_empty(), "{:?}", third.records());
    assert!(third.warnings().is_empty(), "{:?}", third.warnings());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_backfill_a_new_column_is_declared_and_carried_by_later_changes_only() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 20).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("new_column_backfill", "false")]);

    let first = stream::update_ok(&mut client, &config, None, None).await;
    db.client
        .batch_execute(
            "ALTER TABLE public.items ADD COLUMN region VARCHAR(8) DEFAULT 'eu';
             UPDATE public.items SET updated_at = TIMESTAMP '2024-06-01' WHERE id = 3;",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(
        declared(&second, "public.items").unwrap(),
        &["id", "note", "updated_at", "region"]
    );
    assert_eq!(second.truncates_of("items"), 0);
    let rows = second.upserts_of("items");
    assert_eq!(ids(&rows), BTreeSet::from([3]));
    assert_eq!(rows[0]["region"], "eu");
    let warnings = warnings_about(&second, "public.items");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("only rows changed from now on carry it"),
        "{}",
        warnings[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_column_is_declared_and_warned_of_once_and_the_sync_goes_on() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 20).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = db.config.clone();

    let first = stream::update_ok(&mut client, &config, None, None).await;
    db.client
        .batch_execute(
            "ALTER TABLE public.items DROP COLUMN note;
             UPDATE public.items SET updated_at = TIMESTAMP '2024-06-01' WHERE id IN (4, 9);",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(
        declared(&second, "public.items").unwrap(),
        &["id", "updated_at"]
    );
    let warnings = warnings_about(&second, "public.items");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("`note` is no longer in the source"),
        "{}",
        warnings[0]
    );
    assert_eq!(second.truncates_of("items"), 0);
    let rows = second.upserts_of("items");
    assert_eq!(ids(&rows), BTreeSet::from([4, 9]));
    assert!(rows.iter().all(|r| !r.contains_key("note")), "{rows:?}");

    let third = stream::update_ok(&mut client, &config, None, second.last_state()).await;
    assert!(third.warnings().is_empty(), "{:?}", third.warnings());
    assert!(third.schema_changes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retyped_cursor_or_key_or_a_re_created_table_re_syncs_that_table_alone() {
    let db = support::fresh_database().await;
    for name in [
        "cursor_retyped",
        "key_retyped",
        "recreated",
        "widened",
        "untouched",
    ] {
        support::create_items(&db, name, 12).await;
    }
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("batch_size", "5")]);
    let first = stream::update_ok(&mut client, &config, None, None).await;

    db.client
        .batch_execute(
            // Redshift changes a column's type only by a new column renamed into its place.
            "ALTER TABLE public.cursor_retyped ADD COLUMN new_cursor TIMESTAMPTZ;
             UPDATE public.cursor_retyped SET new_cursor = updated_at AT TIME ZONE 'UTC';
             ALTER TABLE public.cursor_retyped DROP COLUMN updated_at;
             ALTER TABLE public.cursor_retyped RENAME COLUMN new_cursor TO updated_at;
             ALTER TABLE public.key_retyped ALTER COLUMN id TYPE BIGINT;
             DROP TABLE public.recreated;
             CREATE TABLE public.recreated (id INTEGER PRIMARY KEY, note VARCHAR(20), updated_at TIMESTAMP);
             INSERT INTO public.recreated VALUES (100, 'older', TIMESTAMP '2020-01-01');
             ALTER TABLE public.widened ALTER COLUMN note TYPE VARCHAR(80);
             UPDATE public.untouched SET updated_at = TIMESTAMP '2024-06-01' WHERE id = 2;",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;

    for (table, expected, needle) in [
        (
            "cursor_retyped",
            (1..=12).collect::<BTreeSet<_>>(),
            "cursor column `updated_at` changed type from TIMESTAMP to TIMESTAMPTZ",
        ),
        (
            "key_retyped",
            (1..=12).collect(),
            "primary-key column `id` changed type from INTEGER to BIGINT",
        ),
        (
            "recreated",
            BTreeSet::from([100]),
            "dropped and created again",
        ),
    ] {
        assert_eq!(second.kinds_of(table)[0], RecordType::Truncate, "{table}");
        assert_eq!(second.truncates_of(table), 1, "{table}");
        assert_eq!(ids(&second.upserts_of(table)), expected, "{table}");
        let warnings = warnings_about(&second, &format!("public.{table}"));
        assert_eq!(warnings.len(), 1, "{table}: {warnings:?}");
        assert!(warnings[0].contains(needle), "{table}: {}", warnings[0]);
    }
    // A re-created table with the same columns needs no declaration; retyped ones do.
    assert!(declared(&second, "public.recreated").is_none());
    assert!(declared(&second, "public.cursor_retyped").is_some());
    assert!(declared(&second, "public.key_retyped").is_some());
    // A longer VARCHAR is the host's business only: declared, and the table goes on.
    assert!(declared(&second, "public.widened").is_some());
    assert!(second.records_of("widened").is_empty());
    assert!(warnings_about(&second, "public.widened").is_empty());
    assert_eq!(second.truncates_of("untouched"), 0);
    assert_eq!(ids(&second.upserts_of("untouched")), BTreeSet::from([2]));

    let third = stream::update_ok(&mut client, &config, None, second.last_state()).await;
    assert!(third.records().is_empty(), "{:?}", third.records());
    assert!(third.warnings().is_empty(), "{:?}", third.warnings());
    assert!(third.schema_changes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_of_version_1_goes_on_without_a_re_sync_and_records_the_columns() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 10).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = db.config.clone();

    let first = stream::update_ok(&mut client, &config, None, None).await;
    let mut state = first.last_state_value();
    assert_eq!(state["version"], 2);
    assert_eq!(
        state["tables"]["public"]["items"]["columns"],
        serde_json::json!([
            ["id", "INTEGER"],
            ["note", "VARCHAR(20)"],
            ["updated_at", "TIMESTAMP"]
        ])
    );
    // What this connector wrote before version 2.
    state["version"] = 1.into();
    let items = state["tables"]["public"]["items"].as_object_mut().unwrap();
    items.remove("columns");
    items.remove("table_id");
    db.client
        .batch_execute(
            "ALTER TABLE public.items ADD COLUMN region VARCHAR(8) DEFAULT 'eu';
             UPDATE public.items SET updated_at = TIMESTAMP '2024-06-01' WHERE id = 7;",
        )
        .await
        .unwrap();

    let second = stream::update_ok(&mut client, &config, None, Some(state.to_string())).await;
    assert_eq!(second.truncates_of("items"), 0);
    assert_eq!(ids(&second.upserts_of("items")), BTreeSet::from([7]));
    assert!(second.schema_changes().is_empty());
    assert!(second.warnings().is_empty(), "{:?}", second.warnings());
    let state = second.last_state_value();
    assert_eq!(state["version"], 2);
    assert_eq!(
        state["tables"]["public"]["items"]["columns"][3],
        serde_json::json!(["region", "VARCHAR(8)"])
    );
    assert!(state["tables"]["public"]["items"]["table_id"].is_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_dropped_during_a_sync_is_left_out_from_then_on() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 3000).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(
        &db.config,
        &[("batch_size", "10"), ("max_rows_per_query", "10")],
    );

    // The DROP is issued once the first checkpoint arrived, while the stream is still read:
    // it takes its lock between two of the sync's 300 queries, and the next finds it gone.
    let mut responses = stream::start_update(&mut client, &config, None, None)
        .await
        .unwrap();
    let drop_column = db
        .client
        .batch_execute("ALTER TABLE public.items DROP COLUMN note");
    tokio::pin!(drop_column);
    let (mut log, mut checkpointed, mut dropped) = (UpdateLog::default(), false, false);
    loop {
        tokio::select! {
            done = &mut drop_column, if checkpointed && !dropped => {
                done.unwrap();
                dropped = true;
            }
            message = responses.message() => match message.unwrap() {
                Some(message) => {
                    checkpointed |= matches!(
                        message.operation,
                        Some(fivetran_source::proto::update_response::Operation::Checkpoint(_))
                    );
                    stream::push(&mut log, message.operation);
                }
                None => break,
            },
        }
    }
    assert!(dropped, "the column was dropped during the sync");

    assert_eq!(log.truncates_of("items"), 1);
    let rows = log.upserts_of("items");
    assert_eq!(ids(&rows), (1..=3000).collect(), "no row lost");
    let warnings = warnings_about(&log, "public.items");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("column `note` was dropped while it was synced"),
        "{}",
        warnings[0]
    );
    // Declared without the column where it went: the rows before carry it, those after not.
    let declared_at = log
        .ops
        .iter()
        .position(|op| matches!(op, stream::Op::SchemaChange(_)))
        .expect("a SchemaChange");
    assert_eq!(
        declared(&log, "public.items").unwrap(),
        &["id", "updated_at"]
    );
    let (before, after): (Vec<_>, Vec<_>) = log
        .ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            stream::Op::Record(r) if r.kind == RecordType::Upsert => Some((i, r)),
            _ => None,
        })
        .partition(|(i, _)| *i < declared_at);
    assert!(!before.is_empty() && !after.is_empty());
    assert!(before.iter().all(|(_, r)| r.data.contains_key("note")));
    assert!(after.iter().all(|(_, r)| !r.data.contains_key("note")));
    assert_eq!(
        log.last_state_value()["tables"]["public"]["items"]["columns"],
        serde_json::json!([["id", "INTEGER"], ["updated_at", "TIMESTAMP"]])
    );

    let next = stream::update_ok(&mut client, &config, None, log.last_state()).await;
    assert!(next.records().is_empty(), "{:?}", next.records());
    assert!(next.warnings().is_empty(), "{:?}", next.warnings());
    assert!(next.schema_changes().is_empty());
}
