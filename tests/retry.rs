//! Transient failures inside a table scan: the server terminates the scan's connection (as a
//! cluster restart or failover does, SQLSTATE 57P01), or the whole database goes away for
//! longer than a minute (a reboot, a maintenance window); the Update reconnects and resumes
//! after the last row it sent, so every row arrives exactly once and the stream ends normally.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fivetran_source::debug::local_postgres::LocalPostgres;

use support::stream;

const ROWS: i32 = 3000;

/// Terminates the connector's sessions on the test's database, as an administrator (or a
/// failover) does; how many there were.
async fn terminate_connector_sessions(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'redshift-sync'
               AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminated_scan_connection_resumes_after_the_last_row_sent() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.items (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, pad TEXT);
             INSERT INTO public.items
               SELECT g, TIMESTAMP '2024-01-01' + (g / 100) * INTERVAL '1 second', repeat('x', 1000)
               FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let mut config = db.config.clone();
    config.insert("batch_size".into(), "100".into());
    // A small byte budget, so the engine waits for the host after a few batches instead of
    // buffering the whole table.
    config.insert("max_batch_bytes".into(), "65536".into());
    let mut updates = stream::start_update(&mut client, &config, None, None)
        .await
        .unwrap();

    let mut log = stream::UpdateLog::default();
    let mut terminated = 0;
    while let Some(message) = updates
        .message()
        .await
        .expect("the stream survives the failure")
    {
        stream::push(&mut log, message.operation);
        // The host pauses after the 5th checkpoint; rows of 1 KB fill the transport's buffers,
        // so the scan waits idle in its transaction. Kill it there, as a failover would.
        if log.checkpoints().len() == 5 && terminated == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            terminated = terminate_connector_sessions(&db.client).await;
        }
    }
    let ids: Vec<i32> = log
        .upserts()
        .iter()
        .map(|row| row["id"].parse().expect("an INT id"))
        .collect();
    assert_eq!(terminated, 1, "exactly the scan's connection was open");
    let distinct: BTreeSet<i32> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ROWS as usize, "every row arrived");
    assert_eq!(ids.len(), ROWS as usize, "and none twice");
}

/// A FATAL error (here an administrator's `pg_terminate_backend` while a statement runs) is
/// followed by the server closing the socket: it keeps its SQLSTATE and text, and is
/// classified by them (transient), instead of reading "the connection was lost".
#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_error_keeps_its_sqlstate_and_text() {
    use fivetran_source::source::SourceError;

    let db = support::fresh_database().await;
    let config = fivetran_source::config::Config::from_request(&db.config)
        .await
        .unwrap();
    let mut session = fivetran_source::source::connect(&config.connection)
        .await
        .expect("connect");
    let terminate = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        terminate_connector_sessions(&db.client).await
    };
    let (result, terminated) = tokio::join!(session.query("SELECT pg_sleep(30)", &[]), terminate);
    assert_eq!(terminated, 1);
    match result {
        Err(SourceError::Database {
            code,
            message,
            transient,
        }) => {
            assert_eq!(code, "57P01");
            assert!(message.contains("administrator command"), "{message}");
            assert!(transient);
        }
        other => panic!("expected the FATAL error, got {other:?}"),
    }
}

/// Longer than the retries of earlier versions lasted (5 tries, 2 to 32 s: 62 s), and than the
/// minute or two a Redshift reboot takes.
const OUTAGE: Duration = Duration::from_secs(75);

/// The database stops in the middle of a table's scan (`pg_ctl stop -m fast`, as a reboot:
/// sessions end with FATAL 57P01, then connections are refused) and comes back after
/// [`OUTAGE`]. The Update waits it out within `retry_timeout_s` and completes: every row once.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_outlasts_a_database_outage_longer_than_a_minute() {
    // A server of this test's own: the other tests of this binary keep theirs.
    let postgres = Arc::new(
        tokio::task::spawn_blocking(LocalPostgres::start_with_watchdog)
            .await
            .unwrap()
            .expect("a PostgreSQL server of the test's own"),
    );
    let admin = postgres.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE public.items (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, pad TEXT);
             INSERT INTO public.items
               SELECT g, TIMESTAMP '2024-01-01' + (g / 100) * INTERVAL '1 second', repeat('x', 1000)
               FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let mut config = postgres.connector_configuration("postgres");
    config.insert("batch_size".into(), "100".into());
    config.insert("max_batch_bytes".into(), "65536".into());
    let mut updates = stream::start_update(&mut client, &config, None, None)
        .await
        .unwrap();

    let mut log = stream::UpdateLog::default();
    let mut outage: Option<(Instant, tokio::task::JoinHandle<Instant>)> = None;
    while let Some(message) = updates
        .message()
        .await
        .expect("the stream survives the outage")
    {
        stream::push(&mut log, message.operation);
        // As in the test above, the host pauses after the 5th checkpoint, so the scan waits in
        // its transaction when the database goes down.
        if log.checkpoints().len() == 5 && outage.is_none() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let stopping = Arc::clone(&postgres);
            tokio::task::spawn_blocking(move || stopping.stop_for_outage())
                .await
                .unwrap()
                .expect("pg_ctl stop");
            let stopped_at = Instant::now();
            let starting = Arc::clone(&postgres);
            let back = tokio::spawn(async move {
                tokio::time::sleep(OUTAGE).await;
                tokio::task::spawn_blocking(move || starting.start_again())
                    .await
                    .unwrap()
                    .expect("pg_ctl start");
                Instant::now()
            });
            outage = Some((stopped_at, back));
        }
    }
    let (stopped_at, back) = outage.expect("the database was stopped mid-sync");
    let back_at = back.await.unwrap();
    assert!(
        back_at - stopped_at >= OUTAGE,
        "the database was away for {:?}",
        back_at - stopped_at
    );
    let ids: Vec<i32> = log
        .upserts()
        .iter()
        .map(|row| row["id"].parse().expect("an INT id"))
        .collect();
    let distinct: BTreeSet<i32> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ROWS as usize, "every row arrived");
    assert_eq!(ids.len(), ROWS as usize, "and none twice");
    assert!(log.tasks().is_empty(), "{:?}", log.tasks());
}
