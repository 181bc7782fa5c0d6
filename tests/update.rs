//! Update against a real database: what an initial and an incremental sync stream, tables read
//! in full, the host's Selection, bad input, and concurrent Updates on one server.
//!
//! Resuming from checkpoints is in update_resume.rs; the host going away and backpressure in
//! update_host.rs.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fivetran_source::proto::RecordType;
use serde_json::json;
use support::stream::{
    self, all_tables_of, by_key, query_rows, schema, table, table_columns, with_schema, Row,
    UpdateLog,
};
use support::TestDb;

fn with(config: &HashMap<String, String>, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

/// `public.orders`: one column of each common type, NULLs, microsecond timestamps, and the
/// newest row (by cursor, then key) made recognisable.
async fn create_orders(db: &TestDb, rows: i32) {
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.orders (
               id INTEGER PRIMARY KEY, customer VARCHAR(40), amount NUMERIC(12,2),
               paid BOOLEAN, big BIGINT, ratio DOUBLE PRECISION, updated_at TIMESTAMP);
             INSERT INTO public.orders
               SELECT g,
                      CASE WHEN g % 7 = 0 THEN NULL ELSE 'customer ' || (g % 13) END,
                      (g * 3.17)::NUMERIC(12,2),
                      CASE WHEN g % 11 = 0 THEN NULL ELSE g % 2 = 0 END,
                      g::BIGINT * 10000000000,
                      g / 8.0,
                      TIMESTAMP '2024-02-01 00:00:00' + (g % 17) * INTERVAL '1 second'
                        + (g % 3) * INTERVAL '1 microsecond'
               FROM generate_series(1, {rows}) g;
             UPDATE public.orders SET updated_at = TIMESTAMP '2024-02-02 03:04:05.123457'
               WHERE id IN (12, 5);"
        ))
        .await
        .unwrap();
}

/// `public.orders` as the connector should render it, in scan order. (The ORDER BY names the
/// table's columns, not the text columns of the same name.)
async fn orders_rows(db: &TestDb, predicate: &str) -> Vec<Row> {
    query_rows(
        &db.client,
        &format!(
            "SELECT id::text AS id, customer, amount::text AS amount, paid::text AS paid,
                    big::text AS big, ratio::text AS ratio, {}
             FROM public.orders o {predicate} ORDER BY o.updated_at, o.id",
            stream::ts_sql("updated_at")
        ),
    )
    .await
}

/// How many records of `table` arrived between consecutive checkpoints.
fn records_between_checkpoints(log: &UpdateLog) -> Vec<usize> {
    let mut previous = 0;
    log.checkpoints()
        .iter()
        .map(|c| {
            let n = c.records_before - previous;
            previous = c.records_before;
            n
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_sync_truncates_then_upserts_every_row_with_a_checkpoint_per_batch() {
    let db = support::fresh_database().await;
    create_orders(&db, 250).await;
    let expected = orders_rows(&db, "").await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("batch_size", "120")]);

    let log = stream::update_ok(&mut client, &config, None, None).await;

    assert!(log.warnings().is_empty(), "{:?}", log.warnings());
    assert!(log.tasks().is_empty(), "{:?}", log.tasks());
    let records = log.records();
    assert_eq!(
        records[0].kind,
        RecordType::Truncate,
        "TRUNCATE comes first"
    );
    assert_eq!(records[0].schema.as_deref(), Some("public"));
    assert_eq!(records[0].table, "orders");
    assert_eq!(log.truncates_of("orders"), 1);
    assert!(records[1..]
        .iter()
        .all(|r| r.kind == RecordType::Upsert && r.table_name() == "public.orders"));
    // Every row, every column, values exact (NUMERIC as its decimal text, timestamps to the
    // microsecond), in (cursor, key) order.
    assert_eq!(log.upserts(), expected);

    assert!(
        log.batch_sizes.iter().all(|&n| (1..=100).contains(&n)),
        "at most 100 records per message: {:?}",
        log.batch_sizes
    );
    assert_eq!(log.batch_sizes.iter().sum::<usize>(), 251);
    // A checkpoint after each fetch batch (120, 120, 10 rows; TRUNCATE + first batch before
    // the first one), the last one at the table's end; none twice for the same position.
    assert_eq!(records_between_checkpoints(&log), [121, 120, 10]);
    assert!(matches!(log.ops.last(), Some(stream::Op::Checkpoint(_))));

    // The table's identity is its relation's OID; its columns are those sent, with types.
    let oid: i64 = db
        .client
        .query_one("SELECT 'public.orders'::regclass::oid::int8", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        log.last_state_value(),
        json!({"version": 2, "tables": {"public": {"orders": {
            "mode": "incremental",
            "cursor_column": "updated_at",
            "key_columns": ["id"],
            "position": {"cursor": "2024-02-02 03:04:05.123457", "key": ["12"]},
            "table_id": oid,
            "columns": [["id", "INTEGER"], ["customer", "VARCHAR(40)"], ["amount", "NUMERIC(12,2)"],
                        ["paid", "BOOLEAN"], ["big", "BIGINT"], ["ratio", "DOUBLE PRECISION"],
                        ["updated_at", "TIMESTAMP"]]
        }}}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_sync_sends_exactly_the_new_and_changed_rows() {
    let db = support::fresh_database().await;
    create_orders(&db, 60).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("batch_size", "7")]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(first.upserts().len(), 60);

    // The newest row moves forward by one microsecond, an old row jumps to that same value
    // (a tie the key must break), another old row moves far ahead, one row changes without
    // touching its cursor (invisible to a cursor-based sync), and two rows are new.
    db.client
        .batch_execute(
            "UPDATE public.orders SET updated_at = updated_at + INTERVAL '1 microsecond',
                                      customer = 'moved 1us' WHERE id = 12;
             UPDATE public.orders SET updated_at = TIMESTAMP '2024-02-02 03:04:05.123458',
                                      amount = 1.01 WHERE id = 3;
             UPDATE public.orders SET updated_at = TIMESTAMP '2025-01-01', paid = NULL WHERE id = 40;
             UPDATE public.orders SET customer = 'silent' WHERE id = 41;
             INSERT INTO public.orders VALUES
               (61, 'new', 6.10, true, 61, 0.5, TIMESTAMP '2024-06-01 00:00:00.000001'),
               (62, NULL, NULL, NULL, NULL, NULL, TIMESTAMP '2024-02-02 03:04:05.123458');",
        )
        .await
        .unwrap();
    let changed = orders_rows(&db, "WHERE id IN (12, 3, 40, 61, 62)").await;

    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert!(
        second
            .kinds_of("orders")
            .iter()
            .all(|k| *k == RecordType::Upsert),
        "no TRUNCATE in an incremental sync: {:?}",
        second.kinds_of("orders")
    );
    assert_eq!(
        second.upserts(),
        changed,
        "exactly the changed rows, in scan order"
    );
    assert_eq!(
        stream::position(&second.last_state().unwrap(), "public", "orders"),
        Some((Some("2025-01-01 00:00:00.000000".into()), vec!["40".into()]))
    );

    // Nothing changed since: nothing to send, and the state stays where it was.
    let third = stream::update_ok(&mut client, &config, None, second.last_state()).await;
    assert!(third.records().is_empty(), "{:?}", third.records());
    assert_eq!(third.last_state(), second.last_state());
}

/// One row dated 2099 (a typo, a test row) does not carry the position past every current
/// row: time cursors are read up to the database's clock even with `cursor_lag_s` = 0, the row
/// waits for its time with one Warning per sync saying how many rows wait and until when, and
/// rows changed later are delivered.
#[tokio::test(flavor = "multi_thread")]
async fn a_future_dated_row_waits_and_hides_no_later_change() {
    let db = support::fresh_database().await;
    create_orders(&db, 10).await;
    db.client
        .batch_execute(
            "INSERT INTO public.orders (id, customer, updated_at)
             VALUES (99, 'from the future', TIMESTAMP '2099-12-31 00:00:00')",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("cursor_lag_s", "0")]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let ids = |log: &UpdateLog| -> BTreeSet<String> {
        log.upserts().iter().map(|row| row["id"].clone()).collect()
    };
    assert_eq!(ids(&first), (1..=10).map(|i| i.to_string()).collect());
    let warnings = first.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("public.orders: 1 row"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("2099-12-31"), "{}", warnings[0]);
    assert!(warnings[0].contains("`cursor_lag_s`"), "{}", warnings[0]);

    // Five rows change now (two seconds ago: the clock the next sync reads counts whole
    // seconds on Redshift).
    db.client
        .batch_execute(
            "UPDATE public.orders
             SET customer = 'changed', updated_at = (now() AT TIME ZONE 'UTC') - INTERVAL '2 seconds'
             WHERE id <= 5",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(ids(&second), (1..=5).map(|i| i.to_string()).collect());
    assert!(second
        .upserts()
        .iter()
        .all(|row| row["customer"] == "changed"));
    assert_eq!(second.warnings().len(), 1, "{:?}", second.warnings());
}

/// Rows whose cursor is NULL are read by the initial sync, and again by every later one
/// (nothing says when they change), before the changed rows: a change to one arrives; a sync
/// resumed inside the re-read goes on after the last key sent and then from the scan's own
/// position, losing nothing; without a key they are read by one query; when many, a Warning
/// says what it costs.
#[tokio::test(flavor = "multi_thread")]
async fn null_cursor_rows_are_read_again_by_every_later_sync() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.keyed (id INTEGER PRIMARY KEY, note TEXT, updated_at TIMESTAMP);
             INSERT INTO public.keyed
               SELECT g, 'row ' || g,
                      CASE WHEN g % 3 = 0 THEN NULL
                           ELSE TIMESTAMP '2024-01-01' + g * INTERVAL '1 second' END
               FROM generate_series(1, 12) g;
             CREATE TABLE public.keyless (v INTEGER, updated_at TIMESTAMP);
             INSERT INTO public.keyless SELECT g, NULL FROM generate_series(1, 10000) g;
             INSERT INTO public.keyless VALUES (0, TIMESTAMP '2024-01-01');",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(
        &db.config,
        &[("batch_size", "1"), ("max_rows_per_query", "2")],
    );
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(first.upserts_of("keyed").len(), 12);
    assert_eq!(first.upserts_of("keyless").len(), 10_001);
    assert!(
        first.warnings().iter().all(|w| !w.contains("NULL `")),
        "{:?}",
        first.warnings()
    );

    // A NULL-cursor row changes without a cursor, another is new, a dated row changes.
    db.client
        .batch_execute(
            "UPDATE public.keyed SET note = 'changed, cursor still NULL' WHERE id = 6;
             INSERT INTO public.keyed VALUES (13, 'new without a cursor', NULL);
             UPDATE public.keyed SET note = 'dated change', updated_at = TIMESTAMP '2024-06-01'
               WHERE id = 4;",
        )
        .await
        .unwrap();
    let ids = |rows: Vec<Row>| -> Vec<String> { rows.iter().map(|r| r["id"].clone()).collect() };
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(second.truncates_of("keyed"), 0);
    assert_eq!(second.truncates_of("keyless"), 0);
    // The NULL-cursor rows by key, then the changed row.
    assert_eq!(
        ids(second.upserts_of("keyed")),
        ["3", "6", "9", "12", "13", "4"]
    );
    let keyed = by_key(&second.upserts_of("keyed"), &["id"]);
    assert_eq!(
        keyed[&vec!["6".to_string()]]["note"],
        "changed, cursor still NULL"
    );
    // Without a key: the NULL-cursor rows, and the row at the last cursor value, which a
    // keyless table's scan reads again.
    assert_eq!(second.upserts_of("keyless").len(), 10_001);
    let warnings = second.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("public.keyless: 10000 rows have a NULL `updated_at`"),
        "{}",
        warnings[0]
    );
    // The scan's position is where the first sync left it plus the dated change.
    assert_eq!(
        stream::position(&second.last_state().unwrap(), "public", "keyed"),
        Some((Some("2024-06-01 00:00:00.000000".into()), vec!["4".into()]))
    );

    // A sync resumed from each checkpoint inside the re-read of `keyed` sends the NULL-cursor
    // rows after the last key sent, then the changed row; none is lost.
    let mut resumed_inside = 0;
    for (at, resumed) in stream::resume_from_each_checkpoint(
        &mut client,
        &config,
        Some(with_schema(
            false,
            vec![schema("public", vec![table("keyed")])],
        )),
        &second,
    )
    .await
    {
        let state: serde_json::Value = serde_json::from_str(&at.state_json).unwrap();
        let Some(after_key) = state["tables"]["public"]["keyed"]["null_rescan"].as_array() else {
            continue;
        };
        resumed_inside += 1;
        let after: i32 = after_key[0].as_str().unwrap().parse().unwrap();
        let expected: Vec<String> = [3, 6, 9, 12, 13]
            .into_iter()
            .filter(|&id| id > after)
            .chain([4])
            .map(|id| id.to_string())
            .collect();
        assert_eq!(
            ids(resumed.upserts_of("keyed")),
            expected,
            "resumed after key {after}"
        );
    }
    assert!(
        resumed_inside >= 4,
        "checkpoints inside the re-read: {resumed_inside}"
    );
}

/// `deleted_column`: rows a BOOLEAN marks true, or a TIMESTAMPTZ marks set, go out as DELETE
/// records carrying the key alone, in the same scan as the UPSERTs (so in the initial sync and
/// whenever a row is marked later); tables that cannot use the column say why in a Warning and
/// sync as usual.
#[tokio::test(flavor = "multi_thread")]
async fn soft_deleted_rows_go_out_as_deletes_carrying_the_key() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.accounts (
               id INTEGER PRIMARY KEY, name TEXT, is_deleted BOOLEAN, updated_at TIMESTAMP);
             INSERT INTO public.accounts
               SELECT g, 'account ' || g,
                      CASE WHEN g = 3 THEN true WHEN g = 4 THEN NULL ELSE false END,
                      TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
               FROM generate_series(1, 6) g;
             CREATE TABLE public.events (
               region TEXT, id INTEGER, deleted_at TIMESTAMPTZ, updated_at TIMESTAMP,
               PRIMARY KEY (region, id));
             INSERT INTO public.events VALUES
               ('eu', 1, NULL, '2024-01-01'), ('eu', 2, '2024-02-01 00:00:00+00', '2024-01-02'),
               ('us', 1, NULL, '2024-01-03');
             CREATE TABLE public.keyless (v INTEGER, is_deleted BOOLEAN, updated_at TIMESTAMP);
             INSERT INTO public.keyless VALUES (1, true, '2024-01-01');
             CREATE TABLE public.texty (id INTEGER PRIMARY KEY, is_deleted TEXT, updated_at TIMESTAMP);
             INSERT INTO public.texty VALUES (1, 'yes', '2024-01-01');
             CREATE TABLE public.unmarked (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.unmarked VALUES (1, '2024-01-01');",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(
        &db.config,
        &[(
            "deleted_column",
            "is_deleted, public.events:deleted_at, public.unmarked:gone",
        )],
    );
    let deletes = |log: &UpdateLog, table: &str| -> Vec<Row> {
        log.records_of(table)
            .into_iter()
            .filter(|r| r.kind == RecordType::Delete)
            .map(|r| r.data.clone())
            .collect()
    };
    let row = |pairs: &[(&str, &str)]| -> Row {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(
        first.kinds_of("accounts"),
        [
            RecordType::Truncate,
            RecordType::Upsert,
            RecordType::Upsert,
            RecordType::Delete,
            RecordType::Upsert,
            RecordType::Upsert,
            RecordType::Upsert
        ]
    );
    assert_eq!(deletes(&first, "accounts"), [row(&[("id", "3")])]);
    // A NULL mark is not deleted; the mark itself is sent with the live rows.
    let live = by_key(&first.upserts_of("accounts"), &["id"]);
    assert_eq!(live[&vec!["4".to_string()]]["is_deleted"], stream::NULL);
    assert_eq!(live[&vec!["5".to_string()]]["is_deleted"], "false");
    assert_eq!(
        deletes(&first, "events"),
        [row(&[("region", "eu"), ("id", "2")])]
    );
    assert_eq!(first.upserts_of("events").len(), 2);
    for table in ["keyless", "texty", "unmarked"] {
        assert_eq!(first.upserts_of(table).len(), 1, "{table} syncs as usual");
        assert!(deletes(&first, table).is_empty());
    }
    let warnings = first.warnings();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let warned = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(
        warned("table public.keyless: it has no primary key"),
        "{warnings:?}"
    );
    assert!(
        warned("table public.texty: its `deleted_column` `is_deleted` is of type Text"),
        "{warnings:?}"
    );
    assert!(
        warned("table public.unmarked: it has no column `gone`"),
        "{warnings:?}"
    );

    // Marked deleted later (the mark moves the cursor, as an application's soft delete does),
    // and one row un-deleted.
    db.client
        .batch_execute(
            "UPDATE public.accounts SET is_deleted = true, updated_at = '2024-06-01' WHERE id = 5;
             UPDATE public.accounts SET is_deleted = false, updated_at = '2024-06-02' WHERE id = 3;
             UPDATE public.events SET deleted_at = now(), updated_at = '2024-06-01'
               WHERE region = 'us';",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(deletes(&second, "accounts"), [row(&[("id", "5")])]);
    assert_eq!(
        second
            .upserts_of("accounts")
            .iter()
            .map(|r| r["id"].as_str())
            .collect::<Vec<_>>(),
        ["3"]
    );
    assert_eq!(
        deletes(&second, "events"),
        [row(&[("region", "us"), ("id", "1")])]
    );
    assert!(second.upserts_of("events").is_empty());
}

/// `delete_capture = resync`: a table synced incrementally starts over (TRUNCATE, then every
/// row) once its last sync from scratch is complete and `resync_interval_h` old, so rows
/// deleted in Redshift are marked deleted by the host; not before, and never in the middle of
/// one (a resume goes on); a state that records none (the mode just turned on) re-syncs at once.
#[tokio::test(flavor = "multi_thread")]
async fn resync_mode_starts_a_table_over_once_its_interval_passed() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.items (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.items
               SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
               FROM generate_series(1, 30) g;",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let plain = with(&db.config, &[("batch_size", "5")]);
    let daily = with(&plain, &[("delete_capture", "resync")]);
    let always = with(&daily, &[("resync_interval_h", "0")]);

    // Turned on over a state that records no re-sync: one at once.
    let before = stream::update_ok(&mut client, &plain, None, None).await;
    let first = stream::update_ok(&mut client, &daily, None, before.last_state()).await;
    assert_eq!(first.truncates_of("items"), 1);
    assert_eq!(first.upserts_of("items").len(), 30);
    let resync = &first.last_state_value()["tables"]["public"]["items"]["resync"];
    assert_eq!(resync["done"], true, "{resync}");

    db.client
        .batch_execute("DELETE FROM public.items WHERE id <= 5")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &daily, None, first.last_state()).await;
    assert_eq!(second.truncates_of("items"), 0, "not due for a day");
    assert!(second.records().is_empty());

    let third = stream::update_ok(&mut client, &always, None, second.last_state()).await;
    assert_eq!(third.kinds_of("items")[0], RecordType::Truncate);
    let ids = |rows: Vec<Row>| -> BTreeSet<i32> {
        rows.iter().map(|r| r["id"].parse().unwrap()).collect()
    };
    assert_eq!(ids(third.upserts_of("items")), (6..=30).collect());

    // From a checkpoint inside the re-sync, the pass goes on (no second TRUNCATE) and the rows
    // before and after it are every row.
    let mut inside = 0;
    for (at, resumed) in
        stream::resume_from_each_checkpoint(&mut client, &always, None, &third).await
    {
        let state: serde_json::Value = serde_json::from_str(&at.state_json).unwrap();
        if state["tables"]["public"]["items"]["resync"]["done"] == true {
            continue;
        }
        inside += 1;
        assert_eq!(resumed.truncates_of("items"), 0, "{}", at.state_json);
        let mut union = ids(stream::upserts_before(&third, &at, "items"));
        union.extend(ids(resumed.upserts_of("items")));
        assert_eq!(union, (6..=30).collect(), "{}", at.state_json);
    }
    assert!(inside >= 4, "checkpoints inside the re-sync: {inside}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_without_the_cursor_column_are_resent_in_full_with_a_warning() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.plain (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO public.plain SELECT g, 'v' || g FROM generate_series(1, 25) g;",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("batch_size", "10")]);

    let first = stream::update_ok(&mut client, &config, None, None).await;
    let warnings = first.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("public.plain")
            && warnings[0].contains("in full")
            && warnings[0].contains("updated_at"),
        "{}",
        warnings[0]
    );
    assert_eq!(first.kinds_of("plain")[0], RecordType::Truncate);
    assert_eq!(first.truncates_of("plain"), 1);
    let expected = query_rows(
        &db.client,
        "SELECT id::text AS id, v FROM public.plain p ORDER BY p.id",
    )
    .await;
    assert_eq!(first.upserts_of("plain"), expected);
    let mut plain = first.last_state_value()["tables"]["public"]["plain"].clone();
    assert!(plain["table_id"].is_u64(), "{plain}");
    plain.as_object_mut().unwrap().remove("table_id");
    assert_eq!(
        plain,
        json!({"mode": "full", "key_columns": ["id"], "in_progress": false, "position": null,
               "columns": [["id", "INTEGER"], ["v", "TEXT"]]})
    );

    // The next sync cannot tell what changed: TRUNCATE and every row again, new rows included.
    db.client
        .batch_execute("INSERT INTO public.plain VALUES (26, 'new'); UPDATE public.plain SET v = 'w' WHERE id = 1;")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(second.warnings().len(), 1);
    assert_eq!(second.kinds_of("plain")[0], RecordType::Truncate);
    assert_eq!(second.truncates_of("plain"), 1);
    let expected = query_rows(
        &db.client,
        "SELECT id::text AS id, v FROM public.plain p ORDER BY p.id",
    )
    .await;
    assert_eq!(second.upserts_of("plain"), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_column_names_the_default_and_per_table_overrides() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.orders (id INTEGER PRIMARY KEY, modified_at TIMESTAMP, total INTEGER);
             INSERT INTO public.orders
               SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 minute', g FROM generate_series(1, 9) g;
             CREATE TABLE public.items (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.items
               SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 minute' FROM generate_series(1, 5) g;",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;

    // A default that no table has: both tables are read in full, each with a warning naming it.
    let missing = with(&db.config, &[("cursor_column", "changed_on")]);
    let log = stream::update_ok(&mut client, &missing, None, None).await;
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for (table, warning) in ["public.items", "public.orders"].iter().zip(&warnings) {
        assert!(
            warning.contains(table)
                && warning.contains("changed_on")
                && warning.contains("in full"),
            "{warning}"
        );
    }
    assert_eq!(
        (
            log.upserts_of("orders").len(),
            log.upserts_of("items").len()
        ),
        (9, 5)
    );
    let again = stream::update_ok(&mut client, &missing, None, log.last_state()).await;
    assert_eq!(again.truncates_of("orders"), 1);
    assert_eq!(
        (
            again.upserts_of("orders").len(),
            again.upserts_of("items").len()
        ),
        (9, 5)
    );

    // The default for `items`, an override for `orders`: both incremental, no warning.
    let config = with(
        &db.config,
        &[("cursor_column", "updated_at, public.orders:modified_at")],
    );
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert!(first.warnings().is_empty(), "{:?}", first.warnings());
    let state = first.last_state_value();
    assert_eq!(state["tables"]["public"]["orders"]["mode"], "incremental");
    assert_eq!(
        state["tables"]["public"]["orders"]["cursor_column"],
        "modified_at"
    );
    assert_eq!(
        state["tables"]["public"]["items"]["cursor_column"],
        "updated_at"
    );
    assert_eq!(
        state["tables"]["public"]["orders"]["position"],
        json!({"cursor": "2024-01-01 00:09:00.000000", "key": ["9"]})
    );
    db.client
        .batch_execute(
            "UPDATE public.orders SET modified_at = modified_at + INTERVAL '1 microsecond', total = -9 WHERE id = 9;
             UPDATE public.orders SET total = -1 WHERE id = 1;",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(second.truncates_of("orders"), 0);
    let ids: Vec<&str> = second.records().iter().map(|r| r.get("id")).collect();
    assert_eq!(ids, ["9"], "only the row whose modified_at moved");
    assert_eq!(
        second.records()[0].get("modified_at"),
        "2024-01-01 00:09:00.000001"
    );
}

/// public.t1, public.t2 and sales.s1, each with a few rows.
async fn three_tables(db: &TestDb) {
    db.client
        .batch_execute(
            "CREATE TABLE public.t1 (id INTEGER PRIMARY KEY, note TEXT, secret TEXT, updated_at TIMESTAMP);
             INSERT INTO public.t1
               SELECT g, 'note ' || g, 'secret ' || g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 hour'
               FROM generate_series(1, 6) g;
             CREATE TABLE public.t2 (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.t2 SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 4) g;
             CREATE SCHEMA sales;
             CREATE TABLE sales.s1 (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO sales.s1 SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 3) g;",
        )
        .await
        .unwrap();
}

/// schema.table -> number of UPSERTs, for every table that got a TRUNCATE or records.
fn tables_synced(log: &UpdateLog) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for record in log.records() {
        let count = out.entry(record.table_name()).or_insert(0);
        if record.kind == RecordType::Upsert {
            *count += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn selection_decides_tables_and_columns() {
    let db = support::fresh_database().await;
    three_tables(&db).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = &db.config;
    let synced = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
        pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    };

    // No selection: everything.
    let log = stream::update_ok(&mut client, config, None, None).await;
    assert_eq!(
        tables_synced(&log),
        synced(&[("public.t1", 6), ("public.t2", 4), ("sales.s1", 3)])
    );
    assert_eq!(log.upserts_of("t1")[0].len(), 4, "every column");

    // Only t1, with `note` only: the key comes anyway (even deselected), `secret` and the
    // cursor do not; a listed table that does not exist is a warning, not a failure.
    let only_t1 = with_schema(
        false,
        vec![schema(
            "public",
            vec![
                table_columns(
                    "t1",
                    &[
                        ("id", false),
                        ("note", true),
                        ("secret", false),
                        ("updated_at", false),
                    ],
                ),
                table("ghost"),
            ],
        )],
    );
    let log = stream::update_ok(&mut client, config, Some(only_t1.clone()), None).await;
    assert_eq!(tables_synced(&log), synced(&[("public.t1", 6)]));
    for row in log.upserts_of("t1") {
        assert_eq!(row.keys().collect::<Vec<_>>(), ["id", "note"], "{row:?}");
    }
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("public.ghost"), "{}", warnings[0]);
    // The deselected cursor still drives the incremental sync.
    assert_eq!(
        stream::position(&log.last_state().unwrap(), "public", "t1"),
        Some((Some("2024-01-01 06:00:00.000000".into()), vec!["6".into()]))
    );
    db.client
        .batch_execute("UPDATE public.t1 SET updated_at = TIMESTAMP '2024-02-01', note = 'changed' WHERE id = 2")
        .await
        .unwrap();
    let next = stream::update_ok(&mut client, config, Some(only_t1), log.last_state()).await;
    assert_eq!(
        next.upserts(),
        [Row::from([
            ("id".into(), "2".into()),
            ("note".into(), "changed".into())
        ])]
    );

    // include_new_tables: tables of a listed schema that are not listed follow the flag.
    let mut public = schema("public", vec![table("t1")]);
    public.include_new_tables = true;
    let log = stream::update_ok(
        &mut client,
        config,
        Some(with_schema(false, vec![public])),
        None,
    )
    .await;
    assert_eq!(
        tables_synced(&log),
        synced(&[("public.t1", 6), ("public.t2", 4)])
    );

    // A table listed as not included stays out, even with include_new_tables.
    let mut public = schema("public", vec![table("t1")]);
    public.include_new_tables = true;
    public.tables[0].included = false;
    let log = stream::update_ok(
        &mut client,
        config,
        Some(with_schema(false, vec![public])),
        None,
    )
    .await;
    assert_eq!(tables_synced(&log), synced(&[("public.t2", 4)]));

    // include_new_schemas: schemas that are not listed follow it; listed ones their own rules.
    let selection = with_schema(true, vec![schema("public", vec![table("t1")])]);
    let log = stream::update_ok(&mut client, config, Some(selection), None).await;
    assert_eq!(
        tables_synced(&log),
        synced(&[("public.t1", 6), ("sales.s1", 3)])
    );

    // A schema listed as not included stays out, even with include_new_schemas.
    let mut public = schema("public", vec![table("t1")]);
    public.included = false;
    let log = stream::update_ok(
        &mut client,
        config,
        Some(with_schema(true, vec![public])),
        None,
    )
    .await;
    assert_eq!(tables_synced(&log), synced(&[("sales.s1", 3)]));
    assert!(log.warnings().is_empty(), "{:?}", log.warnings());

    // A whole schema, and nothing else.
    let log = stream::update_ok(&mut client, config, Some(all_tables_of("sales")), None).await;
    assert_eq!(tables_synced(&log), synced(&[("sales.s1", 3)]));

    // A listed table in a schema that does not exist: a warning naming it, the rest syncs.
    let selection = with_schema(
        false,
        vec![
            schema("public", vec![table("t2")]),
            schema("nowhere", vec![table("t9")]),
        ],
    );
    let log = stream::update_ok(&mut client, config, Some(selection), None).await;
    assert_eq!(tables_synced(&log), synced(&[("public.t2", 4)]));
    assert!(
        log.warnings().iter().any(|w| w.contains("nowhere.t9")),
        "{:?}",
        log.warnings()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_state_or_configuration_is_refused_before_any_message() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.t (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.t SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 3) g;",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;

    for (state, needle) in [
        ("not json", "state_json"),
        ("[1, 2]", "state_json"),
        ("{\"version\": 99, \"tables\": {}}", "99"),
        (
            "{\"version\": 1, \"tables\": {\"public\": {\"t\": {\"mode\": \"sideways\"}}}}",
            "state_json",
        ),
    ] {
        let outcome = stream::try_update(&mut client, &db.config, None, Some(state.into())).await;
        assert!(
            outcome.refused,
            "{state}: refused at the call, not mid-stream"
        );
        assert!(outcome.log.ops.is_empty());
        stream::assert_invalid_argument(&outcome.error.expect("an error"), needle);
    }

    // Well-formed states whose positions do not fit the table's columns: refused before any
    // message, rather than failing mid-stream on every retry of the host.
    let position = |cursor: &str, key: &str| {
        format!(
            "{{\"version\": 1, \"tables\": {{\"public\": {{\"t\": {{\"mode\": \"incremental\", \
             \"cursor_column\": \"updated_at\", \"key_columns\": [\"id\"], \
             \"position\": {{\"cursor\": {cursor}, \"key\": {key}}}}}}}}}}}"
        )
    };
    for (state, needle) in [
        (position("\"not a time\"", "[\"1\"]"), "`updated_at`"),
        (position("\"2024-01-01 00:00:00\"", "[\"one\"]"), "`id`"),
        (
            position("\"2024-01-01 00:00:00\"", "[\"1\", \"2\"]"),
            "key values",
        ),
    ] {
        let outcome = stream::try_update(&mut client, &db.config, None, Some(state.clone())).await;
        assert!(outcome.log.ops.is_empty(), "{state}: {:?}", outcome.log.ops);
        let status = outcome.error.expect("an error");
        stream::assert_invalid_argument(&status, needle);
        assert!(
            status.message().contains("public.t"),
            "{}",
            status.message()
        );
    }

    for (key, value) in [
        ("batch_size", "0"),
        ("batch_size", "many"),
        ("cursor_column", "public.t:"),
    ] {
        let config = with(&db.config, &[(key, value)]);
        let outcome = stream::try_update(&mut client, &config, None, None).await;
        assert!(outcome.refused, "{key}={value}");
        stream::assert_invalid_argument(&outcome.error.expect("an error"), key);
    }

    // Absent, empty and `{}` all mean a first sync.
    for state in [None, Some(String::new()), Some("{}".to_string())] {
        let log = stream::update_ok(&mut client, &db.config, None, state.clone()).await;
        assert_eq!(log.kinds_of("t")[0], RecordType::Truncate, "{state:?}");
        assert_eq!(log.upserts_of("t").len(), 3, "{state:?}");
    }
}

/// Three Updates at once on one server: two on different tables of one database (with
/// selections), one on another database. Each gets exactly its own rows.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_updates_on_one_server_do_not_mix() {
    let first_db = support::fresh_database().await;
    let second_db = support::fresh_database().await;
    for (db, tables) in [
        (&first_db, ["a", "b"].as_slice()),
        (&second_db, ["a"].as_slice()),
    ] {
        for t in tables {
            db.client
                .batch_execute(&format!(
                    "CREATE TABLE public.{t} (id INTEGER PRIMARY KEY, origin TEXT, updated_at TIMESTAMP);
                     INSERT INTO public.{t}
                       SELECT g, '{}.{t}', TIMESTAMP '2024-01-01' + (g % 10) * INTERVAL '1 second'
                       FROM generate_series(1, 1500) g;",
                    db.name
                ))
                .await
                .unwrap();
        }
    }
    let server = support::TestServer::start().await;
    let only = |t: &str| with_schema(false, vec![schema("public", vec![table(t)])]);
    let run = |db: &TestDb, t: &'static str| {
        let config = with(&db.config, &[("batch_size", "50")]);
        let selection = only(t);
        let server = &server;
        async move {
            let mut client = server.client().await;
            stream::update_ok(&mut client, &config, Some(selection), None).await
        }
    };
    let (one, two, three) = tokio::join!(
        run(&first_db, "a"),
        run(&first_db, "b"),
        run(&second_db, "a")
    );
    for (log, db, t) in [
        (&one, &first_db, "a"),
        (&two, &first_db, "b"),
        (&three, &second_db, "a"),
    ] {
        let origins: BTreeSet<&str> = log
            .records()
            .iter()
            .filter(|r| r.kind == RecordType::Upsert)
            .map(|r| r.get("origin"))
            .collect();
        let origin = format!("{}.{t}", db.name);
        assert_eq!(origins, BTreeSet::from([origin.as_str()]));
        let rows = log.upserts_of(t);
        assert_eq!(by_key(&rows, &["id"]).len(), 1500);
        assert_eq!(rows.len(), 1500);
        assert_eq!(log.truncates_of(t), 1);
        // One per fetch batch; the table's end moves nothing, so sends no second one.
        assert_eq!(log.checkpoints().len(), 30);
    }
}

/// `deleted_column` on a table synced in full (no cursor column): every sync's TRUNCATE is
/// followed by the live rows as UPSERTs and the marked ones as DELETEs, so a row marked
/// between syncs is deleted and one unmarked comes back.
#[tokio::test(flavor = "multi_thread")]
async fn soft_deleted_rows_of_a_table_synced_in_full_go_out_as_deletes_after_its_truncate() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.flags (id INTEGER PRIMARY KEY, name TEXT, is_deleted BOOLEAN);
             INSERT INTO public.flags SELECT g, 'flag ' || g, g % 3 = 0 FROM generate_series(1, 9) g;",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("deleted_column", "is_deleted")]);
    let split = |log: &UpdateLog| {
        let ids = |kind: RecordType| -> Vec<i32> {
            log.records_of("flags")
                .into_iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.data["id"].parse().unwrap())
                .collect()
        };
        (
            log.truncates_of("flags"),
            ids(RecordType::Upsert),
            ids(RecordType::Delete),
        )
    };
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(first.kinds_of("flags")[0], RecordType::Truncate);
    assert_eq!(split(&first), (1, vec![1, 2, 4, 5, 7, 8], vec![3, 6, 9]));
    let warnings = first.warnings();
    assert!(
        warnings.iter().all(|w| !w.contains("deleted_column")),
        "the column is usable: {warnings:?}"
    );

    db.client
        .batch_execute("UPDATE public.flags SET is_deleted = NOT is_deleted WHERE id IN (1, 3)")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert_eq!(second.kinds_of("flags")[0], RecordType::Truncate);
    assert_eq!(split(&second), (1, vec![2, 3, 4, 5, 7, 8], vec![1, 6, 9]));
}
