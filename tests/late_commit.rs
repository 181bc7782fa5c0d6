//! Rows that commit late with an older cursor value (docs/design.md, "Late commits").
//!
//! A load that stamps `updated_at` with the transaction's start time (Redshift's SYSDATE;
//! PostgreSQL's `now()`) makes rows visible only at commit, possibly after a sync has already
//! checkpointed a later cursor. These tests reproduce that with two concurrent transactions:
//! without a lag the late row is skipped for good (the documented limit); with `cursor_lag_s`
//! the sync holds back recent cursor values and delivers it.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::stream;

/// Runs one Update; returns the ids upserted and the last checkpoint's state.
async fn sync(
    server: &support::TestServer,
    config: &std::collections::HashMap<String, String>,
    state: &str,
) -> (BTreeSet<i32>, String) {
    let mut client = server.client().await;
    let log = stream::update_ok(&mut client, config, None, Some(state.to_string())).await;
    let ids = log
        .upserts()
        .iter()
        .map(|row| row["id"].parse().expect("an INT id"))
        .collect();
    (ids, log.last_state().unwrap_or_else(|| state.to_string()))
}

/// Seeds an old row, then leaves row 2 uncommitted in `loader` (stamped with the transaction's
/// start) while row 3, stamped later, commits.
async fn race(db: &support::TestDb) -> tokio_postgres::Client {
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.events VALUES (1, TIMESTAMP '2024-01-01 00:00:00');",
        )
        .await
        .unwrap();
    let loader = support::cluster().connect(&db.name).await.unwrap();
    loader
        .batch_execute(
            "SET TIME ZONE 'UTC'; BEGIN;
             INSERT INTO public.events VALUES (2, now()::TIMESTAMP);",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    db.client
        .batch_execute(
            "INSERT INTO public.events VALUES (3, (clock_timestamp() AT TIME ZONE 'UTC')::TIMESTAMP);",
        )
        .await
        .unwrap();
    loader
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_lag_a_late_commit_behind_the_checkpoint_is_skipped() {
    let db = support::fresh_database().await;
    let server = support::TestServer::start().await;
    let loader = race(&db).await;
    // Even without a lag, a sync reads cursor values only up to the database's clock, which
    // counts whole seconds: in the next second row 3 is behind it.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (first, state) = sync(&server, &db.config, "{}").await;
    assert_eq!(first, BTreeSet::from([1, 3]));
    loader.batch_execute("COMMIT").await.unwrap();
    let (second, _) = sync(&server, &db.config, &state).await;
    // The documented limit of cursor_lag_s = 0: row 2 is behind the checkpoint for good.
    assert!(second.is_empty(), "{second:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_lag_holds_back_recent_rows_until_late_commits_are_visible() {
    let db = support::fresh_database().await;
    let server = support::TestServer::start().await;
    let lag = Duration::from_secs(4);
    let mut config = db.config.clone();
    config.insert("cursor_lag_s".into(), lag.as_secs().to_string());
    let loader = race(&db).await;

    let (first, state) = sync(&server, &config, "{}").await;
    // Rows 2 and 3 are newer than now - lag: not read, and the checkpoint stays before them.
    assert_eq!(first, BTreeSet::from([1]));
    loader.batch_execute("COMMIT").await.unwrap();
    // The bound is the database's GETDATE() minus the lag; GETDATE() counts whole seconds.
    tokio::time::sleep(lag + Duration::from_millis(1500)).await;
    let (second, _) = sync(&server, &config, &state).await;
    assert_eq!(
        second,
        BTreeSet::from([2, 3]),
        "the late row must not be lost"
    );
}
