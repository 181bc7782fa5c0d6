//! Checks the stream as a host does, with the hosts' own protocol descriptors:
//! `crates/test-kit/src/host_check.py` runs on the PyPI connector SDK (in a virtual environment under
//! `target/`, see `support::python`) against this server, on a database with several tables
//! and types: once as an initial sync, once resuming from its last state.

use crate::support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// What `host_check.py` reported: the JSON object it prints.
fn run_checker(addr: &str, config: &Path, state: &str, extra: &[&str]) -> Value {
    let output = Command::new(support::python::python())
        .arg(support::python::host_check_script())
        .arg(addr)
        .arg("--config")
        .arg(config)
        .arg("--state")
        .arg(state)
        .args(extra)
        .output()
        .expect("run host_check.py");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "host_check.py found the stream broken ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_checker_accepts_initial_and_incremental_syncs() {
    // Built before the database, so that a first run's install does not hold a test database.
    tokio::task::spawn_blocking(support::python::venv)
        .await
        .unwrap();
    let db = support::fresh_database().await;
    let server = support::TestServer::start().await;
    let config = db.config.clone();
    checker_accepts_initial_and_incremental_syncs(&db, &server.addr().to_string(), config).await;
}

/// The same through the Redshift Data API (`support::data_api`), the connector as its own
/// process with AWS credentials in its environment.
#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_checker_accepts_syncs_through_the_data_api() {
    use support::aws::{credentials_env, AwsEmulator};
    tokio::task::spawn_blocking(support::python::venv)
        .await
        .unwrap();
    let db = support::fresh_database().await;
    let aws = AwsEmulator::launch(support::proxy().port()).await;
    aws.data_api().set(support::data_api::DataApiSettings {
        page_rows: 300,
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let server = support::ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    let config = support::data_api::connector_configuration(&aws.endpoint_url(), &db.name);
    let addr = format!("127.0.0.1:{}", server.port());
    checker_accepts_initial_and_incremental_syncs(&db, &addr, config).await;
    assert!(aws.data_api().statements().len() > 10);
}

/// Three tables of several types and shapes; the checker runs an initial sync (with the form
/// and both tests), then one from its last state after changes.
async fn checker_accepts_initial_and_incremental_syncs(
    db: &support::TestDb,
    addr: &str,
    mut config: std::collections::HashMap<String, String>,
) {
    db.client
        .batch_execute(
            "CREATE SCHEMA sales;
             CREATE TABLE public.customers (
                 customer_id INTEGER PRIMARY KEY, name VARCHAR(100), email VARCHAR(256),
                 balance NUMERIC(38,10), active BOOLEAN, born DATE, updated_at TIMESTAMP);
             INSERT INTO public.customers
               SELECT g, 'customer ' || g, 'c' || g || '@example.com', g * 1.25, g % 2 = 0,
                      DATE '1980-01-01' + g, TIMESTAMP '2024-01-01' + (g / 10) * INTERVAL '1 minute'
               FROM generate_series(1, 1500) g;
             CREATE TABLE sales.orders (
                 region CHAR(2), order_id BIGINT, amount DOUBLE PRECISION, qty SMALLINT,
                 ratio REAL, note TEXT, placed_at TIMESTAMPTZ, updated_at TIMESTAMP,
                 PRIMARY KEY (region, order_id));
             INSERT INTO sales.orders
               SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, g / 3.0, (g % 100)::SMALLINT,
                      (g % 7) / 7.0, CASE WHEN g % 5 = 0 THEN NULL ELSE 'näme ' || g END,
                      TIMESTAMPTZ '2024-03-01 00:00:00+00' + g * INTERVAL '1 second',
                      CASE WHEN g % 50 = 0 THEN NULL ELSE TIMESTAMP '2024-03-01' + (g % 13) * INTERVAL '1 microsecond' END
               FROM generate_series(1, 2200) g;
             CREATE TABLE sales.regions (code CHAR(2) PRIMARY KEY, label VARCHAR(20));
             INSERT INTO sales.regions VALUES ('eu', 'Europe'), ('us', 'United States');",
        )
        .await
        .expect("create the tables");

    let addr = addr.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("configuration.json");
    config.insert("batch_size".into(), "500".into());
    // Tables synced at once, so the checker also sees records of several tables interleave.
    config.insert("max_parallel_tables".into(), "3".into());
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();

    let (addr_a, path_a) = (addr.clone(), config_path.clone());
    let initial = tokio::task::spawn_blocking(move || {
        run_checker(
            &addr_a,
            &path_a,
            "{}",
            &[
                "--form",
                "--test",
                "connect",
                "--test",
                "select",
                "--expect-rows",
                "3702",
            ],
        )
    })
    .await
    .unwrap();
    // 1500 + 2200 + 2 rows, and one TRUNCATE per table.
    assert_eq!(initial["rows"], 3702, "{initial}");
    assert_eq!(initial["truncates"], 3, "{initial}");
    assert_eq!(initial["tables"]["sales.orders"], 2200, "{initial}");

    db.client
        .batch_execute(
            "UPDATE public.customers SET name = 'changed', updated_at = TIMESTAMP '2025-01-01' WHERE customer_id <= 10;
             INSERT INTO sales.orders VALUES ('eu', 999999, 1.5, 1, 0.5, 'new', now(), TIMESTAMP '2025-01-01');",
        )
        .await
        .unwrap();
    let state = initial["last_state"]
        .as_str()
        .expect("the initial sync ends with a checkpoint")
        .to_string();
    // The regions table has no cursor column: it is re-sent in full (TRUNCATE + 2 rows); the
    // 44 orders whose cursor is NULL are read again, as by every sync after the first.
    let incremental = tokio::task::spawn_blocking(move || {
        run_checker(&addr, &config_path, &state, &["--expect-rows", "57"])
    })
    .await
    .unwrap();
    // 10 changed customers, 1 new order and the 44 NULL-cursor ones; regions re-sent in full:
    // TRUNCATE and 2 rows.
    assert_eq!(
        incremental["tables"]["public.customers"], 10,
        "{incremental}"
    );
    assert_eq!(incremental["tables"]["sales.orders"], 45, "{incremental}");
    assert_eq!(incremental["truncates"], 1, "{incremental}");
    let warnings = incremental["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{incremental}");
}
