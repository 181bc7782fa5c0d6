//! `delete_capture = keys`: hard deletes computed inside the database from key snapshots in a
//! work schema, against the real database through the Redshift-shaped proxy (which takes the
//! snapshots' `CREATE TABLE … BACKUP NO DISTKEY (…) SORTKEY (…) AS`, `EXCEPT` and `DROP TABLE`
//! as Redshift does).
//!
//! - deleted keys arrive as DELETEs before the table's changed rows, and nothing is written
//!   outside the work schema (shown from the proxy's statement log), by a user granted only
//!   SELECT and CREATE on the work schema;
//! - a kill anywhere inside the delete stream resumes it, losing no delete;
//! - however rows are inserted, updated and deleted during a sync, every key the destination
//!   may hold is in the snapshot the next sync compares with, and the destination ends equal
//!   to the source;
//! - snapshots of tables no longer selected are dropped; a table without a key is warned of.

use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fivetran_source::config::TableName;
use fivetran_source::proto::RecordType;
use fivetran_source::source::work::WorkTables;
use support::stream::{self, UpdateLog};
use support::TestDb;

const WORK: &str = "sync_work";

fn with(config: &HashMap<String, String>, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config.insert("delete_capture".into(), "keys".into());
    config.insert("work_schema".into(), WORK.into());
    config
}

async fn source_ids(db: &TestDb, table: &str) -> BTreeSet<i32> {
    db.client
        .query(&format!("SELECT id FROM public.{table}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The work schema's tables.
async fn work_tables(db: &TestDb) -> Vec<String> {
    db.client
        .query(
            "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&WORK],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The names of `table`'s work tables for the connection whose state is `state`.
fn stem(state: &serde_json::Value, table: &str) -> WorkTables {
    WorkTables::new(
        WORK,
        state["work_id"].as_str().expect("a work_id"),
        &TableName::new("public", table),
    )
}

/// The keys of `table`'s key snapshot that its state names.
async fn snapshot_ids(db: &TestDb, state_json: &str, table: &str) -> BTreeSet<i32> {
    let state: serde_json::Value = serde_json::from_str(state_json).unwrap();
    let snapshot = &state["tables"]["public"][table]["key_snapshot"];
    let generation = snapshot["generation"].as_u64().expect("a key snapshot");
    let name = stem(&state, table).snapshot(generation).table;
    assert!(
        work_tables(db).await.contains(&name),
        "no snapshot {name} in {state:?}"
    );
    // Snapshots keep key values by position: `k0` is `id`.
    db.client
        .query(&format!("SELECT k0 FROM {WORK}.\"{name}\""), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// What the destination holds after applying `logs` in order: the keys of `table`.
fn destination_ids<'a>(
    logs: impl IntoIterator<Item = &'a UpdateLog>,
    table: &str,
) -> BTreeSet<i32> {
    let mut ids = BTreeSet::new();
    for log in logs {
        for record in log.records().into_iter().filter(|r| r.table == table) {
            match record.kind {
                RecordType::Truncate => ids.clear(),
                RecordType::Delete => {
                    ids.remove(&record.data["id"].parse::<i32>().unwrap());
                }
                _ => {
                    ids.insert(record.data["id"].parse().unwrap());
                }
            }
        }
    }
    ids
}

fn deleted_ids(log: &UpdateLog, table: &str, records_before: usize) -> BTreeSet<i32> {
    log.records()
        .into_iter()
        .take(records_before)
        .filter(|r| r.table == table && r.kind == RecordType::Delete)
        .map(|r| r.data["id"].parse().unwrap())
        .collect()
}

/// A user that may read `public` and create tables in the work schema, nothing else.
async fn least_privileged_user(
    db: &TestDb,
    user: &str,
    grant_create: bool,
) -> HashMap<String, String> {
    db.client
        .batch_execute(&format!(
            "DO $$BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') THEN
                 CREATE ROLE {user} LOGIN PASSWORD 'reader-pw';
               END IF;
             END$$;
             GRANT CONNECT ON DATABASE \"{db}\" TO {user};
             GRANT USAGE ON SCHEMA public TO {user};
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user};
             CREATE SCHEMA IF NOT EXISTS {WORK};
             GRANT USAGE ON SCHEMA {WORK} TO {user};",
            db = db.name
        ))
        .await
        .unwrap();
    if grant_create {
        db.client
            .batch_execute(&format!("GRANT CREATE ON SCHEMA {WORK} TO {user}"))
            .await
            .unwrap();
    }
    let mut config = db.config.clone();
    config.insert("user".into(), user.into());
    config.insert("password".into(), "reader-pw".into());
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_keys_arrive_before_the_changed_rows_and_only_the_work_schema_is_written() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 50).await;
    let user = format!("reader_{}", db.name);
    let without_grant = least_privileged_user(&db, &user, false).await;
    let proxy = support::own_proxy(Default::default());
    let port = proxy.port().to_string();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;

    // Without CREATE on the work schema, the Update says what to grant.
    let refused = stream::try_update(
        &mut client,
        &with(&without_grant, &[("port", &port)]),
        None,
        None,
    )
    .await;
    let said = match &refused.error {
        Some(status) => status.message().to_string(),
        None => refused.log.tasks().join("\n"),
    };
    assert!(
        said.contains("GRANT CREATE ON SCHEMA \"sync_work\""),
        "{said}"
    );
    assert!(refused.log.records().is_empty());

    let config = with(
        &least_privileged_user(&db, &user, true).await,
        &[("port", &port), ("batch_size", "4")],
    );
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(first.upserts_of("items").len(), 50);
    assert!(deleted_ids(&first, "items", usize::MAX).is_empty());
    let state = first.last_state().unwrap();
    assert_eq!(snapshot_ids(&db, &state, "items").await, (1..=50).collect());

    db.client
        .batch_execute(
            "DELETE FROM public.items WHERE id IN (3, 10, 11, 12, 50);
             UPDATE public.items SET note = 'changed', updated_at = TIMESTAMP '2024-06-01' WHERE id IN (1, 2);
             INSERT INTO public.items VALUES (51, 'new', TIMESTAMP '2024-06-02');",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, Some(state)).await;
    let kinds = second.kinds_of("items");
    let deletes = kinds.iter().filter(|k| **k == RecordType::Delete).count();
    assert_eq!(deletes, 5, "{kinds:?}");
    // Every DELETE comes before the first changed row.
    assert!(
        kinds[..5].iter().all(|k| *k == RecordType::Delete),
        "{kinds:?}"
    );
    assert_eq!(
        deleted_ids(&second, "items", usize::MAX),
        BTreeSet::from([3, 10, 11, 12, 50])
    );
    let delete = second
        .records_of("items")
        .into_iter()
        .find(|r| r.kind == RecordType::Delete)
        .unwrap();
    assert_eq!(
        delete.data.keys().collect::<Vec<_>>(),
        ["id"],
        "a DELETE names the key alone"
    );
    let changed: BTreeSet<i32> = second
        .upserts_of("items")
        .iter()
        .map(|r| r["id"].parse().unwrap())
        .collect();
    assert_eq!(changed, BTreeSet::from([1, 2, 51]));
    assert!(second.warnings().is_empty(), "{:?}", second.warnings());
    assert_eq!(
        destination_ids([&first, &second], "items"),
        source_ids(&db, "items").await
    );
    // The new snapshot holds the keys there now; the previous one and the deleted keys stay
    // until an Update starts from a state past them.
    let state = second.last_state().unwrap();
    let suffixes = |tables: Vec<String>| -> Vec<String> {
        tables
            .into_iter()
            .map(|t| t.rsplit('_').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(suffixes(work_tables(&db).await), ["d2", "s1", "s2"]);
    assert_eq!(
        snapshot_ids(&db, &state, "items").await,
        source_ids(&db, "items").await
    );

    // A sync with nothing changed sends nothing, and drops them.
    let third = stream::update_ok(&mut client, &config, None, Some(state)).await;
    assert!(third.records().is_empty(), "{:?}", third.records());
    assert_eq!(suffixes(work_tables(&db).await), ["d3", "s2", "s3"]);

    // The statement log: every statement that writes names the work schema alone, and the
    // snapshots are made as Redshift makes them.
    let mut snapshots = 0;
    for sql in proxy.sql() {
        // As PostgreSQL's parser reads it once the proxy took Redshift's table attributes out.
        let translated = support::redshift::sql::judge(&sql, true).sql;
        let parsed = pg_query::parse(&translated).unwrap_or_else(|err| panic!("{sql}: {err}"));
        for table in parsed.ddl_tables().into_iter().chain(parsed.dml_tables()) {
            assert!(table.starts_with("sync_work."), "writes {table}: {sql}");
        }
        for kind in parsed.statement_types() {
            assert!(
                [
                    "SelectStmt",
                    "TransactionStmt",
                    "VariableSetStmt",
                    "CreateTableAsStmt",
                    "DropStmt",
                ]
                .contains(&kind),
                "{kind}: {sql}"
            );
        }
        if sql.contains("CREATE TABLE") {
            assert!(
                sql.contains(" BACKUP NO DISTKEY (\"k0\") SORTKEY (\"k0\") AS SELECT"),
                "{sql}"
            );
            snapshots += 1;
        }
        if sql.contains(" EXCEPT ") {
            assert!(sql.contains("CREATE TABLE \"sync_work\"."), "{sql}");
        }
    }
    // The first sync's snapshot; the second's and its deleted keys; the third's two.
    assert_eq!(snapshots, 5, "{:?}", proxy.sql());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_anywhere_inside_the_delete_stream_resumes_it_without_losing_a_delete() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 300).await;
    db.client
        .batch_execute(&format!("CREATE SCHEMA {WORK}"))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    // More deleted keys (100) than one query may read: the stream takes several.
    let config = with(
        &db.config,
        &[("batch_size", "9"), ("max_rows_per_query", "25")],
    );
    let first = stream::update_ok(&mut client, &config, None, None).await;

    db.client
        .batch_execute(
            "DELETE FROM public.items WHERE id % 3 = 0;
             UPDATE public.items SET note = 'changed', updated_at = TIMESTAMP '2024-06-01' WHERE id % 10 = 1;",
        )
        .await
        .unwrap();
    let deleted: BTreeSet<i32> = (1..=300).filter(|id| id % 3 == 0).collect();
    let changed: BTreeSet<i32> = (1..=300).filter(|id| id % 10 == 1 && id % 3 != 0).collect();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(deleted_ids(&second, "items", usize::MAX), deleted);

    let mut inside = 0;
    for (at, resumed) in
        stream::resume_from_each_checkpoint(&mut client, &config, None, &second).await
    {
        let mut union = deleted_ids(&second, "items", at.records_before);
        let before = union.len();
        union.extend(deleted_ids(&resumed, "items", usize::MAX));
        assert_eq!(union, deleted, "{}", at.state_json);
        if before > 0 && before < deleted.len() {
            inside += 1;
            // Inside the stream, the changed rows all come after the rest of the DELETEs.
            let upserted: BTreeSet<i32> = resumed
                .upserts_of("items")
                .iter()
                .map(|r| r["id"].parse().unwrap())
                .collect();
            assert_eq!(upserted, changed, "{}", at.state_json);
        }
        // What the host kept up to the checkpoint, then the resumed sync: equal to the source.
        let kept = UpdateLog {
            ops: second.ops[..at.op_index].to_vec(),
            batch_sizes: Vec::new(),
        };
        assert_eq!(
            destination_ids([&first, &kept, &resumed], "items"),
            source_ids(&db, "items").await,
            "{}",
            at.state_json
        );
        assert_eq!(resumed.truncates_of("items"), 0, "{}", at.state_json);
    }
    assert!(
        inside >= 5,
        "checkpoints inside the delete stream: {inside}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_the_destination_holds_is_in_the_next_snapshot_however_rows_change_during_a_sync()
{
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 1500).await;
    db.client
        .batch_execute(&format!(
            "CREATE SCHEMA {WORK};
             UPDATE public.items SET updated_at = NULL WHERE id % 50 = 0;"
        ))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    // Small queries, so the sync takes long enough for many changes to land inside it; a
    // second of lag covers a writer's commit.
    let config = with(
        &db.config,
        &[
            ("batch_size", "10"),
            ("max_rows_per_query", "20"),
            ("cursor_lag_s", "1"),
        ],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let client = support::cluster().connect(&db.name).await.unwrap();
        tokio::spawn(async move {
            let mut next_id = 100_000;
            let mut changes = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let id = 1 + (changes * 7919) % 1500;
                let sql = match changes % 4 {
                    0 => format!("DELETE FROM public.items WHERE id = {id}"),
                    1 => format!("UPDATE public.items SET note = 'moved', updated_at = clock_timestamp() AT TIME ZONE 'UTC' WHERE id = {}", id + 1),
                    2 => {
                        next_id += 1;
                        format!("INSERT INTO public.items VALUES ({next_id}, 'new', clock_timestamp() AT TIME ZONE 'UTC')")
                    }
                    _ => {
                        next_id += 1;
                        // A row without a cursor value, then deleted again at times.
                        if changes % 8 == 3 {
                            format!("DELETE FROM public.items WHERE id = {}", next_id - 2)
                        } else {
                            format!("INSERT INTO public.items VALUES ({next_id}, 'null cursor', NULL)")
                        }
                    }
                };
                client.batch_execute(&sql).await.unwrap();
                changes += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            changes
        })
    };

    let mut logs: Vec<UpdateLog> = Vec::new();
    let mut state = None;
    for _ in 0..3 {
        // Changes older than the lag are read by this sync, newer ones land during it.
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let log = stream::update_ok(&mut client, &config, None, state.clone()).await;
        state = log.last_state();
        logs.push(log);
        // The invariant, after each sync under concurrent changes.
        let held = destination_ids(&logs, "items");
        let snapshot = snapshot_ids(&db, state.as_deref().unwrap(), "items").await;
        let outside: Vec<_> = held.difference(&snapshot).collect();
        assert!(
            outside.is_empty(),
            "held but not in the snapshot: {outside:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let changes = writer.await.unwrap();
    assert!(changes > 100, "changes during the syncs: {changes}");

    // Once the changes are older than the lag, one more sync leaves the destination equal to
    // the source.
    // (The proxy's GETDATE() counts whole seconds, as Redshift's does.)
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let last = stream::update_ok(&mut client, &config, None, state).await;
    logs.push(last);
    let (held, source) = (
        destination_ids(&logs, "items"),
        source_ids(&db, "items").await,
    );
    let missing: Vec<_> = source.difference(&held).collect();
    let kept: Vec<_> = held.difference(&source).collect();
    assert!(
        missing.is_empty() && kept.is_empty(),
        "missing {missing:?}, deleted but kept {kept:?}"
    );
    assert!(logs
        .iter()
        .any(|log| !deleted_ids(log, "items", usize::MAX).is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_of_tables_no_longer_selected_are_dropped_and_keyless_tables_are_warned_of() {
    let db = support::fresh_database().await;
    support::create_items(&db, "alpha", 10).await;
    support::create_items(&db, "beta", 10).await;
    db.client
        .batch_execute(&format!(
            "CREATE SCHEMA {WORK};
             CREATE TABLE public.codes (code INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO public.codes VALUES (1, 'one');
             CREATE TABLE public.events (note VARCHAR(20), updated_at TIMESTAMP);
             INSERT INTO public.events VALUES ('a', TIMESTAMP '2024-01-01');"
        ))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[]);

    let first = stream::update_ok(&mut client, &config, None, None).await;
    let warnings = first.warnings();
    assert!(
        warnings.iter().any(|w| w.starts_with("table public.events")
            && w.contains("no primary key")
            && w.contains("delete_capture = resync")),
        "{warnings:?}"
    );
    let tables = work_tables(&db).await;
    // Not for `codes`, synced in full (its TRUNCATE covers deletes), nor the keyless table.
    assert_eq!(
        tables.len(),
        2,
        "one snapshot per keyed table read by a cursor: {tables:?}"
    );
    let state: serde_json::Value = serde_json::from_str(&first.last_state().unwrap()).unwrap();
    let alpha = stem(&state, "alpha").snapshot(1).table;
    let beta = stem(&state, "beta").snapshot(1).table;
    assert!(
        tables.contains(&alpha) && tables.contains(&beta),
        "{tables:?}"
    );
    let of_alpha = |name: &String| {
        (1..=2).any(|g| {
            let names = stem(&state, "alpha");
            *name == names.snapshot(g).table || *name == names.deleted(g).table
        })
    };

    // beta is no longer selected: its snapshot goes, alpha's stays.
    let only_alpha = stream::with_schema(
        false,
        vec![stream::schema("public", vec![stream::table("alpha")])],
    );
    let second =
        stream::update_ok(&mut client, &config, Some(only_alpha), first.last_state()).await;
    let tables = work_tables(&db).await;
    assert_eq!(
        tables.len(),
        3,
        "alpha's two snapshots and deleted keys: {tables:?}"
    );
    assert!(tables.iter().all(of_alpha), "{tables:?}");

    // Selected again, beta starts from scratch (its snapshot is gone), and says so.
    db.client
        .batch_execute("DELETE FROM public.beta WHERE id = 1")
        .await
        .unwrap();
    let third = stream::update_ok(&mut client, &config, None, second.last_state()).await;
    assert_eq!(third.truncates_of("beta"), 1);
    assert_eq!(third.upserts_of("beta").len(), 9);
    assert!(
        third
            .warnings()
            .iter()
            .any(|w| w.starts_with("table public.beta") && w.contains("no key snapshot")),
        "{:?}",
        third.warnings()
    );
    // The work schema is never synced.
    assert!(third
        .records()
        .iter()
        .all(|r| r.schema.as_deref() != Some(WORK)));
}

/// Text keys that Redshift's `=` and `EXCEPT` take for one (`'a'`, `'a '` and `'A'` in a
/// case-insensitive column, trailing blanks in a VARCHAR) are distinct keys to the scan and to
/// the host: deleting some while others stay sends exactly those as DELETEs, byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn deletes_of_text_keys_that_compare_equal_arrive_byte_for_byte() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "CREATE SCHEMA {WORK};
             CREATE TABLE public.codes (code VARCHAR(10) COLLATE case_insensitive NOT NULL,
                                        updated_at TIMESTAMP);
             -- Redshift's informational key: a non-unique index flagged primary.
             CREATE INDEX codes_key ON public.codes (code);
             UPDATE pg_index SET indisprimary = true WHERE indexrelid = 'public.codes_key'::regclass;
             INSERT INTO public.codes
               SELECT k, TIMESTAMP '2024-01-01'
               FROM unnest(ARRAY['a', 'a ', 'A', 'b', 'B  ', 'c']) AS u(k);"
        ))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(first.upserts_of("codes").len(), 6);

    db.client
        .batch_execute("DELETE FROM public.codes WHERE (code COLLATE \"C\") IN ('a ', 'A', 'B  ')")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    let deleted: BTreeSet<String> = second
        .records_of("codes")
        .iter()
        .filter(|r| r.kind == RecordType::Delete)
        .map(|r| r.data["code"].clone())
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from(["a ".to_string(), "A".to_string(), "B  ".to_string()])
    );
    assert_eq!(second.truncates_of("codes"), 0);
}

/// Two tables whose names share their first 60 characters keep snapshots of their own: each
/// table's deletes are its own, and never the other's.
#[tokio::test(flavor = "multi_thread")]
async fn tables_whose_names_share_a_long_prefix_keep_their_own_snapshots() {
    let db = support::fresh_database().await;
    let shared = "x".repeat(60);
    let (one, two) = (format!("{shared}_1"), format!("{shared}_2"));
    db.client
        .batch_execute(&format!("CREATE SCHEMA {WORK}"))
        .await
        .unwrap();
    for table in [&one, &two] {
        support::create_items(&db, table, 20).await;
    }
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(work_tables(&db).await.len(), 2, "a snapshot each");

    db.client
        .batch_execute(&format!(
            "DELETE FROM public.{one} WHERE id IN (1, 2); DELETE FROM public.{two} WHERE id = 20;"
        ))
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(
        deleted_ids(&second, &one, usize::MAX),
        BTreeSet::from([1, 2])
    );
    assert_eq!(deleted_ids(&second, &two, usize::MAX), BTreeSet::from([20]));
    for table in [&one, &two] {
        assert_eq!(
            snapshot_ids(&db, &second.last_state().unwrap(), table).await,
            source_ids(&db, table).await,
            "{table}"
        );
    }
}

/// Work tables of an earlier release (a 32-bit hash in the name, key columns under their own
/// names, no byte lengths) are converted in place by the first sync of this one: nothing is
/// re-synced, and the deletes since arrive.
#[tokio::test(flavor = "multi_thread")]
async fn an_earlier_releases_snapshots_are_converted_without_a_resync() {
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 30).await;
    db.client
        .batch_execute(&format!("CREATE SCHEMA {WORK}"))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let state_json = first.last_state().unwrap();
    let state: serde_json::Value = serde_json::from_str(&state_json).unwrap();
    // Put the snapshot back as the earlier release kept it.
    let names = stem(&state, "items");
    let now = names.snapshot(1);
    let legacy = names.legacy(&now);
    db.client
        .batch_execute(&format!(
            "CREATE TABLE {WORK}.\"{}\" AS SELECT k0 AS id FROM {WORK}.\"{}\";
             DROP TABLE {WORK}.\"{}\";",
            legacy.table, now.table, now.table
        ))
        .await
        .unwrap();
    assert!(legacy.table.starts_with(&format!(
        "redshift_sync_{}_items_",
        state["work_id"].as_str().unwrap()
    )));

    db.client
        .batch_execute("DELETE FROM public.items WHERE id IN (4, 5)")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, Some(state_json)).await;
    assert_eq!(second.truncates_of("items"), 0, "{:?}", second.warnings());
    assert!(second.warnings().is_empty(), "{:?}", second.warnings());
    assert_eq!(
        deleted_ids(&second, "items", usize::MAX),
        BTreeSet::from([4, 5])
    );
    let tables = work_tables(&db).await;
    assert!(!tables.contains(&legacy.table), "{tables:?}");
    assert_eq!(
        snapshot_ids(&db, &second.last_state().unwrap(), "items").await,
        source_ids(&db, "items").await
    );
}

/// `primary_key` gives a table without a declared key one (or replaces a declared one): Schema
/// reports it, the host keys the rows by it, and delete capture by key snapshot then sees the
/// table's deleted rows. An override naming a column the table lacks keeps the declared key
/// and says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_from_the_configuration_gives_a_keyless_table_deletes_by_key_snapshot() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "CREATE SCHEMA {WORK};
             CREATE TABLE public.lines (order_id INTEGER, line_no INTEGER, qty INTEGER,
                                        updated_at TIMESTAMP);
             INSERT INTO public.lines
               SELECT g / 3, g % 3, g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
               FROM generate_series(1, 30) g;"
        ))
        .await
        .unwrap();
    support::create_items(&db, "items", 5).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(
        &db.config,
        &[(
            "primary_key",
            "public.lines:order_id+line_no, public.items:no_such_column",
        )],
    );

    let schema = client
        .schema(fivetran_source::proto::SchemaRequest {
            configuration: config.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(fivetran_source::proto::schema_response::Response::WithSchema(list)) = schema.response
    else {
        panic!("no schema list");
    };
    let lines = list.schemas[0]
        .tables
        .iter()
        .find(|t| t.name == "lines")
        .unwrap();
    let keys: Vec<&str> = lines
        .columns
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(keys, ["order_id", "line_no"]);

    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(first.upserts_of("lines").len(), 30);
    let warnings = first.warnings();
    assert!(
        warnings.iter().any(|w| w.starts_with("table public.items")
            && w.contains("`no_such_column`")
            && w.contains("declared key is used (id)")),
        "{warnings:?}"
    );
    assert!(
        !warnings.iter().any(|w| w.contains("public.lines")),
        "{warnings:?}"
    );
    db.client
        .batch_execute("DELETE FROM public.lines WHERE order_id = 4")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    let deleted: BTreeSet<(String, String)> = second
        .records_of("lines")
        .iter()
        .filter(|r| r.kind == RecordType::Delete)
        .map(|r| (r.data["order_id"].clone(), r.data["line_no"].clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = [("4", "0"), ("4", "1"), ("4", "2")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(deleted, expected);
}
