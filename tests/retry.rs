//! Transient failures inside a table scan: the server terminates the scan's connection (as a
//! cluster restart or failover does, SQLSTATE 57P01), or the whole database goes away for
//! longer than a minute (a reboot, a maintenance window); the Update reconnects and resumes
//! after the last row it sent, so every row arrives exactly once and the stream ends normally.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use test_kit::local_postgres::LocalPostgres;

use support::interrupt;

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
    interrupt::create_items(&db.client).await;
    // Kill the scan's connection while it waits, as a failover would.
    let (log, terminated) =
        interrupt::update_interrupted(&interrupt::small_batches(&db.config), || {
            terminate_connector_sessions(&db.client)
        })
        .await;
    assert_eq!(terminated, 1, "exactly the scan's connection was open");
    interrupt::assert_each_row_once(&log);
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
        tokio::time::sleep(Duration::from_millis(500)).await;
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
    interrupt::create_items(&admin).await;
    let config = interrupt::small_batches(&postgres.connector_configuration("postgres"));
    let (log, (stopped_at, back)) = interrupt::update_interrupted(&config, || async {
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
        (stopped_at, back)
    })
    .await;
    let back_at = back.await.unwrap();
    assert!(
        back_at - stopped_at >= OUTAGE,
        "the database was away for {:?}",
        back_at - stopped_at
    );
    interrupt::assert_each_row_once(&log);
    assert!(log.tasks().is_empty(), "{:?}", log.tasks());
}
