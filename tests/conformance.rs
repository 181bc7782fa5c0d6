//! Runs the hosts' own conformance checker (`shared/conformance/check.sh`, which calls the server
//! with the protocol descriptors of the PyPI connector SDK) against this server, on a database
//! with several tables and types: once as an initial sync, once resuming from its last state.

mod support;

use std::path::PathBuf;
use std::process::Command;

/// The checker lives in the shared folder beside the repository; `CONFORMANCE_CHECK` overrides.
fn checker() -> PathBuf {
    if let Ok(path) = std::env::var("CONFORMANCE_CHECK") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/check.sh")
}

fn run_checker(addr: &str, config: &std::path::Path, state: &str, extra: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(checker())
        .arg(addr)
        .arg("--config")
        .arg(format!("@{}", config.display()))
        .arg("--state")
        .arg(state)
        .args(extra)
        .output()
        .expect("run the conformance checker");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance checker failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("conformance: OK"), "{stdout}");
    println!("{stdout}");
    stdout
}

/// The `last  checkpoint state_json:` line of the checker's summary.
fn last_state(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("last  checkpoint state_json: "))
        .expect("the checker prints the last checkpoint")
        .to_string()
}

fn rows_line(stdout: &str) -> u64 {
    let line = stdout.lines().last().expect("a summary line");
    line.split_whitespace()
        .find_map(|part| part.strip_prefix("rows="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rows= in {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_checker_accepts_initial_and_incremental_syncs() {
    assert!(
        checker().exists(),
        "the conformance checker is not at {}; set CONFORMANCE_CHECK to its check.sh",
        checker().display()
    );
    let db = support::fresh_database().await;
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

    let server = support::TestServer::start().await;
    let addr = server.addr().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("configuration.json");
    let mut config = db.config.clone();
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
                "3705",
            ],
        )
    })
    .await
    .unwrap();
    // 1500 + 2200 + 2 rows, plus one TRUNCATE per table.
    assert_eq!(rows_line(&initial), 3705, "{initial}");

    db.client
        .batch_execute(
            "UPDATE public.customers SET name = 'changed', updated_at = TIMESTAMP '2025-01-01' WHERE customer_id <= 10;
             INSERT INTO sales.orders VALUES ('eu', 999999, 1.5, 1, 0.5, 'new', now(), TIMESTAMP '2025-01-01');",
        )
        .await
        .unwrap();
    let state = last_state(&initial);
    // The regions table has no cursor column: it is re-sent in full (TRUNCATE + 2 rows).
    let incremental = tokio::task::spawn_blocking(move || {
        run_checker(&addr, &config_path, &state, &["--expect-rows", "14"])
    })
    .await
    .unwrap();
    assert!(incremental.contains("warnings=1"), "{incremental}");
}
