//! The debug runner end to end: the real connector (in-process or over `--server`) reading a
//! throwaway PostgreSQL, the runner filling its SQLite warehouse. After every sync the warehouse
//! must equal the source row for row, every column, every type; a run killed at any point
//! (by the runner's stop hook or by SIGKILL of the binary) must be healed by the next run.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fivetran_source::debug::client::ServerTarget;
use fivetran_source::debug::{run_sync, DebugError, RunOptions, StopPoint, Summary};
use rusqlite::types::Value;

/// Small batches: one checkpoint every 7 rows, so a run has many places to die.
const BATCH_SIZE: &str = "7";

/// Every type the issue names, NULLs in every nullable column, non-ASCII text, extreme
/// decimals, and few distinct cursor values (ties the keyset must break by key).
const CREATE_ALL_TYPES: &str = "
    CREATE TABLE public.all_types (
        id INTEGER PRIMARY KEY,
        big BIGINT,
        amount NUMERIC(38,10),
        name VARCHAR(100),
        flag BOOLEAN,
        day DATE,
        at TIMESTAMP,
        at_tz TIMESTAMPTZ,
        ratio DOUBLE PRECISION,
        updated_at TIMESTAMP NOT NULL
    )";

fn insert_all_types(from: i32, to: i32, updated_at: &str) -> String {
    format!(
        "INSERT INTO public.all_types
         SELECT g,
                CASE WHEN g % 5 = 0 THEN NULL ELSE 9223372036854775000 - g END,
                CASE WHEN g % 5 = 1 THEN NULL
                     WHEN g % 2 = 0 THEN 1234567890123456789012345678.0123456789 - g
                     ELSE -g / 7.0 END,
                CASE WHEN g % 5 = 2 THEN NULL ELSE 'Zoë 東京 🚀 ' || g END,
                CASE WHEN g % 5 = 3 THEN NULL ELSE g % 2 = 0 END,
                CASE WHEN g % 5 = 4 THEN NULL ELSE DATE '1900-01-01' + g * 97 END,
                CASE WHEN g % 5 = 0 THEN NULL
                     ELSE TIMESTAMP '1999-12-31 23:59:59.999999' + g * INTERVAL '1 hour 1.000001 second' END,
                CASE WHEN g % 5 = 1 THEN NULL
                     ELSE TIMESTAMPTZ '2024-06-01 12:00:00.5+02' + g * INTERVAL '1 microsecond' END,
                CASE WHEN g % 5 = 2 THEN NULL ELSE g / 3.0::DOUBLE PRECISION * 1e-5 END,
                TIMESTAMP '{updated_at}' + (g % 3) * INTERVAL '1 second'
         FROM generate_series({from}, {to}) AS g"
    )
}

/// The source rows in the warehouse's representation (see `debug::warehouse::value`).
const SOURCE_ROWS: &str = "
    SELECT id::BIGINT, big, amount::TEXT, name,
           CASE WHEN flag THEN 1 WHEN NOT flag THEN 0 END::BIGINT,
           to_char(day, 'YYYY-MM-DD'),
           to_char(at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'),
           to_char(at_tz AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
           ratio,
           to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')
    FROM public.all_types ORDER BY id";

const WAREHOUSE_ROWS: &str = "
    SELECT id, big, amount, name, flag, day, at, at_tz, ratio, updated_at
    FROM \"public.all_types\" WHERE _fivetran_deleted = 0 ORDER BY id";

async fn source_rows(client: &tokio_postgres::Client) -> Vec<Vec<Value>> {
    let rows = client
        .query(SOURCE_ROWS, &[])
        .await
        .expect("read the source");
    rows.iter()
        .map(|row| {
            let int = |i| {
                row.get::<_, Option<i64>>(i)
                    .map_or(Value::Null, Value::Integer)
            };
            let text = |i| {
                row.get::<_, Option<String>>(i)
                    .map_or(Value::Null, Value::Text)
            };
            vec![
                int(0),
                int(1),
                text(2),
                text(3),
                int(4),
                text(5),
                text(6),
                text(7),
                row.get::<_, Option<f64>>(8)
                    .map_or(Value::Null, Value::Real),
                text(9),
            ]
        })
        .collect()
}

fn warehouse_rows(path: &Path, sql: &str) -> Vec<Vec<Value>> {
    let connection = rusqlite::Connection::open(path).expect("open the warehouse");
    let mut statement = connection.prepare(sql).expect("prepare");
    let width = statement.column_count();
    statement
        .query_map([], |row| {
            (0..width).map(|i| row.get::<_, Value>(i)).collect()
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("read rows")
}

/// A source query's rows as warehouse values: its columns must be BIGINT or text.
async fn source_values(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Value>> {
    let rows = client.query(sql, &[]).await.expect("read the source");
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| match *row.columns()[i].type_() {
                    tokio_postgres::types::Type::INT8 => row
                        .get::<_, Option<i64>>(i)
                        .map_or(Value::Null, Value::Integer),
                    _ => row
                        .get::<_, Option<String>>(i)
                        .map_or(Value::Null, Value::Text),
                })
                .collect()
        })
        .collect()
}

/// The warehouse equals the source: same rows, same values, in every column.
async fn assert_warehouse_equals_source(client: &tokio_postgres::Client, warehouse: &Path) {
    let source = source_rows(client).await;
    let copied = warehouse_rows(warehouse, WAREHOUSE_ROWS);
    assert_eq!(copied.len(), source.len(), "row counts differ");
    for (source_row, copied_row) in source.iter().zip(&copied) {
        assert_eq!(source_row, copied_row, "a row differs");
    }
}

struct Files {
    _dir: tempfile::TempDir,
    state: PathBuf,
    warehouse: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().expect("temp dir");
    Files {
        state: dir.path().join("files/state.json"),
        warehouse: dir.path().join("files/warehouse.db"),
        _dir: dir,
    }
}

fn options(config: &HashMap<String, String>, files: &Files) -> RunOptions {
    let mut config = config.clone();
    config.insert("batch_size".into(), BATCH_SIZE.into());
    RunOptions::new(config, files.state.clone(), files.warehouse.clone())
}

/// A run that dies at `stop`, as a kill there would leave it.
async fn run_stopped_at(options: &RunOptions, stop: StopPoint) {
    let stopped = run_sync(&RunOptions {
        stop: Some(stop),
        ..options.clone()
    })
    .await;
    assert!(
        matches!(stopped, Err(DebugError::Stopped { .. })),
        "{stop:?}: {stopped:?}"
    );
}

async fn sync(options: &RunOptions) -> Summary {
    match run_sync(options).await {
        Ok(summary) => summary,
        Err(err) => panic!("sync failed: {}", support::chain(&err)),
    }
}

async fn all_types_database() -> support::TestDb {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "{CREATE_ALL_TYPES}; {}",
            insert_all_types(1, 60, "2024-01-01 00:00:00")
        ))
        .await
        .expect("create the all_types table");
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_then_incremental_sync_copies_every_row_and_type() {
    let db = all_types_database().await;
    let files = files();
    let options = options(&db.config, &files);

    // Every column holds values, not only NULLs, or the comparisons below would prove little.
    let source = source_rows(&db.client).await;
    for column in 0..10 {
        assert!(
            source.iter().any(|row| row[column] != Value::Null),
            "column {column} is all NULL"
        );
    }

    let first = sync(&options).await;
    let counts = first.tables["public.all_types"];
    assert_eq!((counts.upserts, counts.truncates), (60, 1), "{first}");
    // The warehouse (and its write-ahead log) and the state hold the source's rows and
    // positions: readable by their owner alone.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let wal = files.warehouse.with_extension("db-wal");
        for path in [&files.warehouse, &wal, &files.state] {
            if !path.exists() {
                continue;
            }
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
    }
    assert!(first.checkpoints >= 60 / 7, "{first}");
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;

    // Declared types give the intended SQLite affinities.
    let declared = warehouse_rows(
        &files.warehouse,
        "SELECT name, type FROM pragma_table_info('public.all_types') ORDER BY cid",
    );
    let declared: Vec<String> = declared
        .iter()
        .map(|row| match (&row[0], &row[1]) {
            (Value::Text(name), Value::Text(kind)) => format!("{name} {kind}"),
            other => panic!("unexpected pragma row {other:?}"),
        })
        .collect();
    assert_eq!(
        declared,
        [
            "id INTEGER",
            "big INTEGER",
            "amount TEXT",
            "name TEXT",
            "flag BOOLEAN",
            "day TEXT",
            "at TEXT",
            "at_tz TEXT",
            "ratio REAL",
            "updated_at TEXT",
            "_fivetran_synced TEXT",
            "_fivetran_deleted BOOLEAN",
        ]
    );

    db.client
        .batch_execute(&format!(
            "UPDATE public.all_types
             SET name = name || ' ✓', amount = amount + 1, flag = NOT flag,
                 updated_at = TIMESTAMP '2024-03-01 10:00:00.654321'
             WHERE id % 3 = 0;
             {}",
            insert_all_types(61, 75, "2024-03-01 10:00:00.654321")
        ))
        .await
        .expect("change the source");

    let second = sync(&options).await;
    let counts = second.tables["public.all_types"];
    // 20 updated + 15 inserted rows; nothing older is re-sent, nothing is truncated.
    assert_eq!((counts.upserts, counts.truncates), (35, 0), "{second}");
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;

    // The state file holds the cursor: the newest updated_at the source has.
    let newest: String = db
        .client
        .query_one("SELECT max(updated_at)::TEXT FROM public.all_types", &[])
        .await
        .expect("newest cursor")
        .get(0);
    let state = std::fs::read_to_string(&files.state).expect("the state file");
    serde_json::from_str::<serde_json::Value>(&state).expect("the state is JSON");
    assert!(state.contains(&newest), "cursor {newest} not in {state}");

    // A third sync with nothing new changes nothing.
    let third = sync(&options).await;
    assert_eq!(third.total().rows(), 0, "{third}");
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;
}

/// Dies at three kinds of moment; each time, source changes follow and the next run heals.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_anywhere_is_healed_by_the_next() {
    let stops = [
        StopPoint::AfterCheckpoint(3),
        StopPoint::BeforeStateSaved(4),
        StopPoint::AfterRecords(40),
    ];
    for stop in stops {
        let db = all_types_database().await;
        let files = files();
        let options = options(&db.config, &files);

        run_stopped_at(&options, stop).await;
        let partial = warehouse_rows(&files.warehouse, WAREHOUSE_ROWS).len();
        assert!(partial < 60, "{stop:?}: the stopped run copied everything");

        db.client
            .batch_execute(&format!(
                "UPDATE public.all_types SET big = -1, updated_at = TIMESTAMP '2024-02-01'
                 WHERE id IN (1, 59);
                 {}",
                insert_all_types(61, 64, "2024-02-01 00:00:00")
            ))
            .await
            .expect("change the source");

        let healed = sync(&options).await;
        assert_eq!(healed.tables["public.all_types"].truncates, 0, "{stop:?}");
        assert_warehouse_equals_source(&db.client, &files.warehouse).await;
    }
}

/// The real binary, killed with SIGKILL in the middle of its initial sync, three times; then a
/// normal run finishes the job.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_killed_mid_sync_resumes_where_it_stopped() {
    let db = support::fresh_database().await;
    let config = db.config.clone();
    killed_three_times_then_healed(&db, config, &[]).await;
}

/// The same through the Redshift Data API (the emulator in `support::data_api`): the binary
/// finds AWS credentials in its environment, as hosts run it.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_killed_mid_sync_through_the_data_api_resumes_where_it_stopped() {
    use support::aws::{credentials_env, AwsEmulator};
    let db = support::fresh_database().await;
    let aws = AwsEmulator::launch(support::proxy().port()).await;
    // Small pages, so that a kill can come between two of them.
    aws.data_api().set(support::data_api::DataApiSettings {
        page_rows: 100,
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let config = support::data_api::connector_configuration(&aws.endpoint_url(), &db.name);
    killed_three_times_then_healed(&db, config, &credentials_env(&aws.syncer, home.path())).await;
    assert!(
        aws.data_api().statements().len() > 10,
        "the rows came through the Data API"
    );
}

/// Fills `public.all_types` with 3000 rows, kills the debug runner's binary (configured with
/// `config`, its environment `env`) three times at growing moments after a new checkpoint,
/// changes the source, and lets a last run finish: the warehouse must equal the source.
async fn killed_three_times_then_healed(
    db: &support::TestDb,
    mut config: HashMap<String, String>,
    env: &[(String, String)],
) {
    db.client
        .batch_execute(&format!(
            "{CREATE_ALL_TYPES}; {}",
            insert_all_types(1, 3000, "2024-01-01 00:00:00")
        ))
        .await
        .expect("create the all_types table");
    let files = files();
    let dir = files.state.parent().expect("a files dir").to_path_buf();
    std::fs::create_dir_all(&dir).expect("files dir");
    let configuration = dir.join("configuration.json");
    config.insert("batch_size".into(), BATCH_SIZE.into());
    std::fs::write(
        &configuration,
        serde_json::to_string(&config).expect("json"),
    )
    .expect("write the configuration");

    let debug = |files: &Files| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fivetran_source"));
        command
            .arg("debug")
            .arg("--configuration")
            .arg(&configuration)
            .arg("--state")
            .arg(&files.state)
            .arg("--warehouse")
            .arg(&files.warehouse)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        command
    };

    let mut last_state = String::new();
    for kill in 1..=3 {
        let mut child = debug(&files)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the binary");
        // Wait for a state newer than the one the previous kill left, then a little more.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = std::fs::read_to_string(&files.state).unwrap_or_default();
            if !state.is_empty() && state != last_state {
                break;
            }
            assert!(Instant::now() < deadline, "kill {kill}: no new checkpoint");
            assert!(
                child.try_wait().expect("poll the child").is_none(),
                "kill {kill}: the binary ended before it could be killed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(37 * kill)).await;
        assert!(
            child.try_wait().expect("poll the child").is_none(),
            "kill {kill}: the binary finished the sync before the kill; give it more rows"
        );
        child.kill().expect("SIGKILL the binary");
        child.wait().expect("reap the binary");
        last_state = std::fs::read_to_string(&files.state).expect("a saved state");
        let copied = warehouse_rows(&files.warehouse, WAREHOUSE_ROWS).len();
        assert!(copied < 3000, "kill {kill}: everything was already copied");
    }

    db.client
        .batch_execute(&format!(
            "UPDATE public.all_types SET name = 'changed while down', updated_at = TIMESTAMP '2024-05-01'
             WHERE id % 400 = 0;
             {}",
            insert_all_types(3001, 3010, "2024-05-01 00:00:00")
        ))
        .await
        .expect("change the source");

    let output = debug(&files).output().expect("run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Sync SUCCEEDED"), "{stdout}");
    assert!(stdout.contains("public.all_types"), "{stdout}");
    assert!(
        !stdout.contains(&db.config["password"]),
        "the password was printed"
    );
    if let Some(password) = config.get("password") {
        assert!(!stdout.contains(password), "the password was printed");
    }
    println!("{stdout}");
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;
}

/// `--tables` syncs only the named tables, over `--server`; unknown names are refused.
#[tokio::test(flavor = "multi_thread")]
async fn named_tables_only_over_a_running_server() {
    let db = all_types_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.other (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.other VALUES (1, TIMESTAMP '2024-01-01');",
        )
        .await
        .expect("create a second table");
    let server = support::TestServer::start().await;
    let files = files();
    let options = RunOptions {
        server: ServerTarget::Remote(server.addr().to_string()),
        tables: Some(vec!["public.all_types".into()]),
        ..options(&db.config, &files)
    };

    let summary = sync(&options).await;
    assert_eq!(
        summary.tables.keys().collect::<Vec<_>>(),
        ["public.all_types"],
        "{summary}"
    );
    assert!(summary.server.contains(&server.addr().to_string()));
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;
    let tables = warehouse_rows(
        &files.warehouse,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'public.other'",
    );
    assert!(tables.is_empty(), "public.other was created");

    let unknown = run_sync(&RunOptions {
        tables: Some(vec!["public.nope".into()]),
        ..options.clone()
    })
    .await;
    match unknown {
        Err(DebugError::UnknownTables { missing, available }) => {
            assert_eq!(missing, ["public.nope"]);
            assert!(available.contains(&"public.other".to_string()));
        }
        other => panic!("expected UnknownTables, got {other:?}"),
    }
}

/// A failing configuration test stops the run before Update, with the test's reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_configuration_test_stops_the_run() {
    let db = support::fresh_database().await;
    let files = files();
    let mut config = db.config.clone();
    config.insert("password".into(), "wrong-password".into());
    let result = run_sync(&options(&config, &files)).await;
    match result {
        Err(err @ DebugError::TestFailed { .. }) => {
            let text = err.to_string();
            assert!(!text.contains("wrong-password"), "{text}");
        }
        other => panic!("expected TestFailed, got {other:?}"),
    }
    assert!(!files.state.exists(), "a failed run saved state");
    assert!(
        !files.warehouse.exists() && !files.warehouse.parent().unwrap().exists(),
        "a failed first run left an empty warehouse (or its folder) behind"
    );
}

/// A run that fails after an earlier one synced keeps the warehouse: it holds that data.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_later_run_keeps_the_warehouse() {
    let db = all_types_database().await;
    let files = files();
    sync(&options(&db.config, &files)).await;
    let mut config = db.config.clone();
    config.insert("password".into(), "wrong-password".into());
    assert!(run_sync(&options(&config, &files)).await.is_err());
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;
}

/// `reset` deletes the state and the warehouse, syncs nothing; `--port` before a subcommand
/// that starts no listening server is reported as ignored.
#[tokio::test(flavor = "multi_thread")]
async fn the_reset_subcommand_deletes_state_and_warehouse() {
    let db = all_types_database().await;
    let files = files();
    sync(&options(&db.config, &files)).await;
    assert!(files.state.exists() && files.warehouse.exists());
    let output = Command::new(env!("CARGO_BIN_EXE_fivetran_source"))
        .args(["--port", "7000", "reset", "--state"])
        .arg(&files.state)
        .arg("--warehouse")
        .arg(&files.warehouse)
        .output()
        .expect("run reset");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("`--port 7000` is ignored"), "{stderr}");
    assert!(!files.state.exists(), "reset left the state file");
    assert!(!files.warehouse.exists(), "reset left the warehouse");
}

/// `--reset` starts over: a row deleted in the source disappears from the new warehouse.
#[tokio::test(flavor = "multi_thread")]
async fn reset_resyncs_from_scratch() {
    let db = all_types_database().await;
    let files = files();
    let options = options(&db.config, &files);
    sync(&options).await;
    db.client
        .batch_execute("DELETE FROM public.all_types WHERE id <= 5")
        .await
        .expect("delete rows");
    let again = sync(&RunOptions {
        reset: true,
        ..options
    })
    .await;
    let counts = again.tables["public.all_types"];
    assert_eq!((counts.upserts, counts.truncates), (55, 1), "{again}");
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;
}

/// A table without a cursor column is re-sent in full each sync, after a TRUNCATE: rows gone
/// from the source end up soft-deleted, the others live, and the connector's warning is shown.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_resync_soft_deletes_rows_gone_from_the_source() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.regions (code CHAR(2) PRIMARY KEY, label VARCHAR(20));
             INSERT INTO public.regions VALUES ('eu', 'Europe'), ('us', 'United States'), ('ap', 'Asia');",
        )
        .await
        .expect("create the regions table");
    let files = files();
    let options = options(&db.config, &files);
    let first = sync(&options).await;
    assert_eq!(first.tables["public.regions"].upserts, 3, "{first}");

    db.client
        .batch_execute(
            "DELETE FROM public.regions WHERE code = 'ap';
             UPDATE public.regions SET label = 'Europa' WHERE code = 'eu';",
        )
        .await
        .expect("change the source");
    let second = sync(&options).await;
    let counts = second.tables["public.regions"];
    assert_eq!((counts.upserts, counts.truncates), (2, 1), "{second}");
    assert!(
        !second.warnings.is_empty(),
        "no warning about the missing cursor: {second}"
    );

    let rows = warehouse_rows(
        &files.warehouse,
        "SELECT code, label, _fivetran_deleted FROM \"public.regions\" ORDER BY code",
    );
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(
        rows,
        [
            vec![text("ap"), text("Asia"), Value::Integer(1)],
            vec![text("eu"), text("Europa"), Value::Integer(0)],
            vec![text("us"), text("United States"), Value::Integer(0)],
        ]
    );
}

/// Soft deletes through the debug runner: rows the `deleted_column` marks (in the initial sync,
/// and later) are deleted in the warehouse, an un-deleted row is live again, and the live rows
/// equal the source's unmarked rows, column for column.
#[tokio::test(flavor = "multi_thread")]
async fn soft_deleted_rows_are_deleted_in_the_warehouse() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.accounts (
               id INTEGER PRIMARY KEY, name TEXT, is_deleted BOOLEAN, updated_at TIMESTAMP);
             INSERT INTO public.accounts
               SELECT g, 'account ' || g, g % 4 = 0, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
               FROM generate_series(1, 40) g;",
        )
        .await
        .expect("create the accounts table");
    let files = files();
    let mut config = db.config.clone();
    config.insert("deleted_column".into(), "is_deleted".into());
    let options = options(&config, &files);
    let source = "SELECT id::BIGINT, name, CASE WHEN is_deleted THEN 1 ELSE 0 END::BIGINT
                  FROM public.accounts WHERE is_deleted IS NOT TRUE ORDER BY id";
    let live = "SELECT id, name, is_deleted FROM \"public.accounts\"
                WHERE _fivetran_deleted = 0 ORDER BY id";
    let assert_live_rows_equal_the_source = || async {
        let expected = source_values(&db.client, source).await;
        assert_eq!(warehouse_rows(&files.warehouse, live), expected);
    };

    let first = sync(&options).await;
    assert_eq!(first.tables["public.accounts"].deletes, 10, "{first}");
    assert_live_rows_equal_the_source().await;

    db.client
        .batch_execute(
            "UPDATE public.accounts SET is_deleted = true, updated_at = '2024-06-01' WHERE id IN (1, 2);
             UPDATE public.accounts SET is_deleted = false, updated_at = '2024-06-01' WHERE id = 4;",
        )
        .await
        .expect("mark rows");
    let second = sync(&options).await;
    let counts = second.tables["public.accounts"];
    assert_eq!((counts.upserts, counts.deletes), (1, 2), "{second}");
    assert_live_rows_equal_the_source().await;
}

/// `delete_capture = resync` through the debug runner: rows deleted in the source are marked
/// deleted in the warehouse by the re-sync's TRUNCATE, and the live rows equal the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_resync_marks_hard_deleted_rows_deleted_in_the_warehouse() {
    let db = all_types_database().await;
    let files = files();
    let mut config = db.config.clone();
    config.insert("delete_capture".into(), "resync".into());
    config.insert("resync_interval_h".into(), "0".into());
    let options = options(&config, &files);
    let first = sync(&options).await;
    assert_eq!(first.tables["public.all_types"].upserts, 60, "{first}");
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;

    db.client
        .batch_execute("DELETE FROM public.all_types WHERE id % 3 = 0")
        .await
        .expect("delete rows");
    let second = sync(&options).await;
    let counts = second.tables["public.all_types"];
    assert_eq!((counts.truncates, counts.upserts), (1, 40), "{second}");
    assert_warehouse_equals_source(&db.client, &files.warehouse).await;
}

/// Schema changes through the debug runner: after an added column with a default (backfilled
/// by a re-sync), a dropped column, and a table dropped and created again, the warehouse's live
/// rows equal the source, column for column (the dropped column stays in the warehouse, as
/// hosts keep it).
#[tokio::test(flavor = "multi_thread")]
async fn schema_changes_leave_the_warehouse_equal_to_the_source() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.accounts (id INTEGER PRIMARY KEY, name TEXT, updated_at TIMESTAMP);
             INSERT INTO public.accounts
               SELECT g, 'account ' || g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
               FROM generate_series(1, 30) g;",
        )
        .await
        .expect("create the accounts table");
    let files = files();
    let options = options(&db.config, &files);
    let assert_live_rows_equal_the_source = |columns: &'static str| {
        let (client, warehouse) = (&db.client, &files.warehouse);
        async move {
            let source = format!(
                "SELECT id::BIGINT, {columns}, to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')
                 FROM public.accounts ORDER BY id"
            );
            let expected = source_values(client, &source).await;
            let live = format!(
                "SELECT id, {columns}, updated_at FROM \"public.accounts\"
                 WHERE _fivetran_deleted = 0 ORDER BY id"
            );
            assert_eq!(warehouse_rows(warehouse, &live), expected, "{columns}");
        }
    };

    sync(&options).await;
    assert_live_rows_equal_the_source("name").await;

    db.client
        .batch_execute("ALTER TABLE public.accounts ADD COLUMN tier TEXT DEFAULT 'gold'")
        .await
        .expect("add a column");
    let added = sync(&options).await;
    let counts = added.tables["public.accounts"];
    assert_eq!((counts.truncates, counts.upserts), (1, 30), "{added}");
    assert_eq!(added.schema_changes, 1, "{added}");
    assert_live_rows_equal_the_source("name, tier").await;

    db.client
        .batch_execute(
            "ALTER TABLE public.accounts DROP COLUMN name;
             UPDATE public.accounts SET tier = 'silver', updated_at = '2024-06-01' WHERE id = 3;",
        )
        .await
        .expect("drop a column");
    let dropped = sync(&options).await;
    let counts = dropped.tables["public.accounts"];
    assert_eq!((counts.truncates, counts.upserts), (0, 1), "{dropped}");
    assert_live_rows_equal_the_source("tier").await;

    db.client
        .batch_execute(
            "DROP TABLE public.accounts;
             CREATE TABLE public.accounts (id INTEGER PRIMARY KEY, tier TEXT, updated_at TIMESTAMP);
             INSERT INTO public.accounts
               SELECT g, 'bronze', TIMESTAMP '2020-01-01' + g * INTERVAL '1 second'
               FROM generate_series(20, 45) g;",
        )
        .await
        .expect("re-create the table");
    let recreated = sync(&options).await;
    let counts = recreated.tables["public.accounts"];
    assert_eq!((counts.truncates, counts.upserts), (1, 26), "{recreated}");
    assert_live_rows_equal_the_source("tier").await;
}

/// Killed inside a backfill that also carries soft deletes (a new column re-syncs the table;
/// rows marked deleted go out as DELETEs in the same pass), at each kind of moment: the next
/// run heals, and the live rows equal the source's unmarked rows with the new column.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_inside_a_backfill_with_deletes_is_healed_by_the_next() {
    for stop in [
        StopPoint::AfterCheckpoint(3),
        StopPoint::BeforeStateSaved(4),
        StopPoint::AfterRecords(45),
    ] {
        let db = support::fresh_database().await;
        db.client
            .batch_execute(
                "CREATE TABLE public.accounts (
                   id INTEGER PRIMARY KEY, name TEXT, is_deleted BOOLEAN, updated_at TIMESTAMP);
                 INSERT INTO public.accounts
                   SELECT g, 'account ' || g, g % 5 = 0, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
                   FROM generate_series(1, 80) g;",
            )
            .await
            .expect("create the accounts table");
        let files = files();
        let mut config = db.config.clone();
        config.insert("deleted_column".into(), "is_deleted".into());
        let options = RunOptions {
            commit_interval: Duration::ZERO,
            ..options(&config, &files)
        };
        sync(&options).await;
        db.client
            .batch_execute(
                "ALTER TABLE public.accounts ADD COLUMN tier TEXT DEFAULT 'gold';
                 UPDATE public.accounts SET is_deleted = true WHERE id % 7 = 0;",
            )
            .await
            .expect("add a column and mark rows");
        run_stopped_at(&options, stop).await;
        sync(&options).await;
        let source = "SELECT id::BIGINT, name, tier FROM public.accounts
                      WHERE is_deleted IS NOT TRUE ORDER BY id";
        let expected = source_values(&db.client, source).await;
        let live = "SELECT id, name, tier FROM \"public.accounts\"
                    WHERE _fivetran_deleted = 0 ORDER BY id";
        assert_eq!(warehouse_rows(&files.warehouse, live), expected, "{stop:?}");
    }
}

/// `delete_capture = keys` through the debug runner: rows deleted in the source arrive as
/// DELETEs computed from key snapshots, and a run killed inside that stream of deletes (after
/// a checkpoint, before its state is saved, in the middle of a batch) is healed by the next:
/// the warehouse's live rows equal the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_inside_a_hard_delete_stream_is_healed_by_the_next() {
    for stop in [
        StopPoint::AfterCheckpoint(2),
        StopPoint::BeforeStateSaved(3),
        StopPoint::AfterRecords(12),
    ] {
        let db = support::fresh_database().await;
        db.client
            .batch_execute(
                "CREATE SCHEMA sync_work;
                 CREATE TABLE public.accounts (id INTEGER PRIMARY KEY, name TEXT, updated_at TIMESTAMP);
                 INSERT INTO public.accounts
                   SELECT g, 'account ' || g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second'
                   FROM generate_series(1, 80) g;",
            )
            .await
            .expect("create the accounts table");
        let files = files();
        let mut config = db.config.clone();
        config.insert("delete_capture".into(), "keys".into());
        config.insert("work_schema".into(), "sync_work".into());
        config.insert("batch_size".into(), "5".into());
        let options = RunOptions {
            commit_interval: Duration::ZERO,
            ..options(&config, &files)
        };
        sync(&options).await;
        db.client
            .batch_execute(
                "DELETE FROM public.accounts WHERE id % 3 = 0;
                 UPDATE public.accounts SET name = 'renamed', updated_at = '2024-06-01' WHERE id % 10 = 1;",
            )
            .await
            .expect("delete and change rows");
        run_stopped_at(&options, stop).await;
        let healed = sync(&options).await;
        assert!(
            healed.tables["public.accounts"].deletes > 0,
            "{stop:?}: the rest of the deletes: {healed}"
        );
        let source = "SELECT id::BIGINT, name FROM public.accounts ORDER BY id";
        let expected = source_values(&db.client, source).await;
        let live =
            "SELECT id, name FROM \"public.accounts\" WHERE _fivetran_deleted = 0 ORDER BY id";
        assert_eq!(warehouse_rows(&files.warehouse, live), expected, "{stop:?}");
    }
}

/// SQLite compares names without regard to case, and a dot may fall inside a schema or a
/// table name: `"public"."Orders"` and `"public"."orders"`, `"a.b"."c"` and `"a"."b.c"` (and
/// columns `Id` and `id`) are each distinct source tables (columns), and each lands in a
/// warehouse table of its own with its own rows.
#[tokio::test(flavor = "multi_thread")]
async fn names_that_sqlite_would_confuse_land_in_tables_of_their_own() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA \"a.b\"; CREATE SCHEMA a;
             CREATE TABLE \"a.b\".c (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             CREATE TABLE a.\"b.c\" (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             CREATE TABLE public.\"Orders\" (\"Id\" INTEGER PRIMARY KEY, id INTEGER, updated_at TIMESTAMP);
             CREATE TABLE public.orders (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO \"a.b\".c SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 1) g;
             INSERT INTO a.\"b.c\" SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 2) g;
             INSERT INTO public.\"Orders\" SELECT g, -g, TIMESTAMP '2024-01-01' FROM generate_series(1, 3) g;
             INSERT INTO public.orders SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 4) g;",
        )
        .await
        .unwrap();
    let files = files();
    let summary = sync(&options(&db.config, &files)).await;
    for (table, rows) in [
        ("\"a.b\".c", 1),
        ("a.\"b.c\"", 2),
        ("public.Orders", 3),
        ("public.orders", 4),
    ] {
        assert_eq!(summary.tables[table].upserts, rows, "{table}: {summary}");
    }
    let tables = warehouse_rows(
        &files.warehouse,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name",
    );
    assert_eq!(tables.len(), 4, "{tables:?}");
    let mut counts = Vec::new();
    for row in &tables {
        let Value::Text(name) = &row[0] else {
            panic!("{row:?}")
        };
        let count = warehouse_rows(
            &files.warehouse,
            &format!("SELECT COUNT(*) FROM \"{}\"", name.replace('"', "\"\"")),
        );
        counts.push((name.clone(), count[0][0].clone()));
    }
    let mut sizes: Vec<i64> = counts
        .iter()
        .map(|(_, n)| match n {
            Value::Integer(n) => *n,
            other => panic!("{other:?}"),
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, [1, 2, 3, 4], "{counts:?}");
    // `Id` and `id` are two columns, each with its own values.
    let orders = counts
        .iter()
        .find(|(name, _)| name.starts_with("public.Orders~"))
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| panic!("{counts:?}"));
    let columns = warehouse_rows(
        &files.warehouse,
        &format!("SELECT name FROM pragma_table_info('{orders}') ORDER BY cid"),
    );
    assert_eq!(
        columns.len(),
        5,
        "Id, id and the three the warehouse adds: {columns:?}"
    );
}
