//! Initial syncs through UNLOAD: the Redshift-shaped proxy runs each `UNLOAD` as Redshift does
//! (see `support::redshift::unload`), writing Parquet part files and a manifest into moto's S3,
//! which enforces the IAM policies of `aws_setup.py`; the connector (a real server process,
//! with the `syncer` user's AWS credentials in its environment) reads them back.
//!
//! The oracle is the direct path: a table exported and a table read by queries must arrive as
//! the same records, value for value and kind for kind.

use crate::support;

use std::collections::{BTreeMap, HashMap};

use fivetran_source::proto::RecordType;
use support::aws::{AccessKey, AwsEmulator};
use support::redshift::unload::{self, UnloadEmulation};
use support::redshift::{RedshiftProxy, Settings};
use support::stream::{self, Op, UpdateLog};
use support::{fresh_database, own_proxy, ServerProcess, TestDb};

const ROLE: &str = "arn:aws:iam::123456789012:role/redshift-unload";

struct Setup {
    db: TestDb,
    proxy: RedshiftProxy,
    aws: AwsEmulator,
}

async fn setup() -> Setup {
    let db = fresh_database().await;
    let proxy = own_proxy(Settings::default());
    let aws = AwsEmulator::launch(0).await;
    proxy.set(emulation(&aws));
    Setup { db, proxy, aws }
}

/// The proxy's settings: UNLOAD into moto, the `unloader` user standing in for the role.
fn emulation(aws: &AwsEmulator) -> Settings {
    Settings {
        unload: Some(UnloadEmulation {
            s3_endpoint: aws.moto_url(),
            role_key: (aws.unloader.id.clone(), aws.unloader.secret.clone()),
            roles: vec![ROLE.to_string()],
            default_role: None,
            cluster_region: "us-east-1".to_string(),
            bucket_regions: vec![("sync-eu".to_string(), "eu-west-1".to_string())],
            slices: 2,
            rows_per_file: 700,
            miscount: false,
        }),
        ..Settings::default()
    }
}

impl Setup {
    fn proxy_settings(&self) -> Settings {
        emulation(&self.aws)
    }

    /// A server process whose AWS credentials are `key`'s.
    fn server(&self, key: &AccessKey) -> ServerProcess {
        ServerProcess::start(&[
            ("AWS_ACCESS_KEY_ID", &key.id),
            ("AWS_SECRET_ACCESS_KEY", &key.secret),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("RUST_BACKTRACE", "1"),
        ])
    }

    /// The connector's configuration: exports to `bucket` for tables of 100 rows or more.
    fn config(&self, bucket: &str) -> HashMap<String, String> {
        let mut config = self.proxy.connector_configuration(&self.db.name);
        for (key, value) in [
            ("unload_s3_uri", format!("s3://{bucket}/exports/")),
            ("unload_iam_role", ROLE.to_string()),
            ("unload_min_rows", "100".to_string()),
            ("unload_s3_endpoint_url", self.aws.moto_url()),
            ("batch_size", "250".to_string()),
        ] {
            config.insert(key.to_string(), value);
        }
        config
    }

    /// The same without a staging location: every table by queries.
    fn direct_config(&self) -> HashMap<String, String> {
        let mut config = self.config("unused");
        config.retain(|key, _| !key.starts_with("unload_"));
        config
    }

    fn unloads(&self) -> Vec<String> {
        self.proxy
            .sql()
            .into_iter()
            .filter(|sql| sql.trim_start().starts_with("UNLOAD"))
            .collect()
    }

    /// An S3 client with the connector's credentials.
    fn s3(&self) -> aws_sdk_s3::Client {
        self.s3_as(&self.aws.syncer)
    }

    /// An S3 client with `key`'s credentials.
    fn s3_as(&self, key: &AccessKey) -> aws_sdk_s3::Client {
        unload::s3_client_as(&self.aws.moto_url(), &key.id, &key.secret, "us-east-1")
    }

    /// Keys under `prefix` in `bucket`, listed with the connector's credentials.
    async fn objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let listed = self
            .s3()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list the bucket");
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// Deletes `key` from the staging bucket, as a lifecycle rule would.
    async fn delete(&self, key: &str) {
        self.s3()
            .delete_object()
            .bucket("sync-staging")
            .key(key)
            .send()
            .await
            .expect("delete the file");
    }
}

/// Every type Parquet carries, NULLs and extremes; a key and a cursor.
async fn create_typed_table(db: &TestDb, rows: i64) {
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.typed (
                 id BIGINT PRIMARY KEY, updated_at TIMESTAMP,
                 c_smallint SMALLINT, c_integer INTEGER, c_dec38_0 NUMERIC(38,0),
                 c_dec12_4 NUMERIC(12,4), c_dec38_37 NUMERIC(38,37), c_real REAL,
                 c_double DOUBLE PRECISION, c_bool BOOLEAN, c_char CHAR(10),
                 c_varchar VARCHAR(100), c_text TEXT, c_date DATE, c_time TIME, c_timetz TIMETZ,
                 c_timestamptz TIMESTAMPTZ, c_super SUPER);
             INSERT INTO public.typed
             SELECT g, CASE WHEN g % 50 = 0 THEN NULL ELSE TIMESTAMP '2024-01-01' + g * INTERVAL '1.000001 second' END,
                    CASE g % 3 WHEN 0 THEN -32768 WHEN 1 THEN 32767 ELSE NULL END,
                    (g * 7919) % 2147483647 - 1073741823,
                    CASE WHEN g % 2 = 0 THEN 99999999999999999999999999999999999999 ELSE -g END,
                    g * 1.2345 - 500, CASE WHEN g % 2 = 0 THEN 9.9999999999999999999999999999999999999 ELSE 0.0000000000000000000000000000000000001 END,
                    CASE g % 4 WHEN 0 THEN 'NaN'::REAL WHEN 1 THEN '-Infinity'::REAL WHEN 2 THEN -0.0 ELSE g / 3.0 END,
                    CASE g % 4 WHEN 0 THEN 'Infinity'::FLOAT8 WHEN 1 THEN 1e308 ELSE g / 7.0 END,
                    CASE WHEN g % 5 = 0 THEN NULL ELSE g % 2 = 0 END,
                    'c' || g % 10, 'é ' || g || E'\\t\"quoted\"', repeat('x', (g % 50)::int),
                    CASE g % 3 WHEN 0 THEN DATE '0001-01-01' WHEN 1 THEN DATE '9999-12-31' ELSE DATE '2024-02-29' END,
                    TIME '23:59:59.999999', TIMETZ '12:00:00+05:30',
                    TIMESTAMPTZ '2024-06-01 12:00:00.123456+02' + g * INTERVAL '1 minute',
                    CASE WHEN g % 9 = 0 THEN NULL ELSE ('{{\"n\": ' || g || ', \"s\": \"é\"}}')::jsonb END
             FROM generate_series(1, {rows}) AS g;"
        ))
        .await
        .expect("create the typed table");
}

/// A keyless table without a cursor column (read in full each sync), with duplicate rows.
async fn create_keyless_table(db: &TestDb, rows: i64) {
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.facts (amount INTEGER, label VARCHAR(20));
             INSERT INTO public.facts SELECT g % 97, 'l' || g % 13 FROM generate_series(1, {rows}) AS g;"
        ))
        .await
        .expect("create the keyless table");
}

/// What a destination holds after applying `logs` in order: per table, live rows by key
/// (`id`), or, without a key, every row with how often it was sent.
fn destination(logs: &[&UpdateLog]) -> BTreeMap<String, BTreeMap<String, (String, usize)>> {
    let mut tables: BTreeMap<String, BTreeMap<String, (String, usize)>> = BTreeMap::new();
    for log in logs {
        for op in &log.ops {
            let Op::Record(record) = op else { continue };
            let table = tables.entry(record.table.clone()).or_default();
            match record.kind {
                RecordType::Truncate => table.clear(),
                RecordType::Upsert => {
                    let text = format!("{:?} {:?}", record.data, record.value_kinds);
                    match record.data.get("id") {
                        Some(id) => {
                            table.insert(id.clone(), (text, 1));
                        }
                        None => table.entry(text.clone()).or_insert((text, 0)).1 += 1,
                    }
                }
                other => panic!("unexpected record kind {other:?}"),
            }
        }
    }
    tables
}

fn assert_same(
    exported: &BTreeMap<String, BTreeMap<String, (String, usize)>>,
    direct: &BTreeMap<String, BTreeMap<String, (String, usize)>>,
) {
    assert_eq!(
        exported.keys().collect::<Vec<_>>(),
        direct.keys().collect::<Vec<_>>()
    );
    for (table, rows) in direct {
        let got = &exported[table];
        assert_eq!(got.len(), rows.len(), "rows of {table}");
        for (key, row) in rows {
            assert_eq!(got.get(key), Some(row), "{table} row {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_arrives_exactly_as_the_direct_path_reads_the_table() {
    let setup = setup().await;
    create_typed_table(&setup.db, 3000).await;
    create_keyless_table(&setup.db, 1500).await;
    // Below unload_min_rows, and with a type Parquet cannot carry: both read by queries.
    setup
        .db
        .client
        .batch_execute(
            "CREATE TABLE public.small (id INT PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.small SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 10) g;
             CREATE TABLE public.blobs (id INT PRIMARY KEY, updated_at TIMESTAMP, b VARBYTE);
             INSERT INTO public.blobs SELECT g, TIMESTAMP '2024-01-01', '\\x00ff'::BYTEA FROM generate_series(1, 200) g;",
        )
        .await
        .unwrap();
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let exported = stream::update_ok(&mut client, &setup.config("sync-staging"), None, None).await;
    let unexpected: Vec<_> = exported
        .warnings()
        .into_iter()
        .filter(|w| !w.contains("public.facts is synced in full"))
        .collect();
    assert!(
        exported.tasks().is_empty() && unexpected.is_empty(),
        "{unexpected:?}"
    );

    let unloads = setup.unloads();
    assert_eq!(unloads.len(), 2, "{unloads:#?}");
    assert!(unloads.iter().any(|sql| sql.contains("\"typed\"")));
    assert!(unloads
        .iter()
        .any(|sql| sql.contains("\"facts\"") && !sql.contains("WHERE")));
    // The incremental table's export is bounded by the database's clock; the keyless full
    // one reads every row, in one piece.
    assert!(unloads
        .iter()
        .any(|sql| sql.contains("\"updated_at\" IS NULL OR \"src\".\"updated_at\" <= CAST(")));

    let direct = stream::update_ok(&mut client, &setup.direct_config(), None, None).await;
    let (exported_rows, direct_rows) = (destination(&[&exported]), destination(&[&direct]));
    assert_eq!(exported_rows["typed"].len(), 3000);
    assert_eq!(
        exported_rows["facts"].values().map(|r| r.1).sum::<usize>(),
        1500
    );
    assert_same(&exported_rows, &direct_rows);

    // The pass is done: the state reads on after the bound, the files are gone.
    let state = exported.last_state_value();
    let typed = &state["tables"]["public"]["typed"];
    assert!(typed.get("export").is_none(), "{typed}");
    assert_eq!(typed["position"]["kind"], "after_cursor", "{typed}");
    assert!(setup.objects("sync-staging", "exports/").await.is_empty());

    // The next sync reads only what changed, by queries.
    setup
        .db
        .client
        .batch_execute("UPDATE public.typed SET c_text = 'changed', updated_at = now() + INTERVAL '1 second' WHERE id <= 5")
        .await
        .unwrap();
    settle(&setup.db).await;
    let next = stream::update_ok(
        &mut client,
        &setup.config("sync-staging"),
        None,
        exported.last_state(),
    )
    .await;
    assert_eq!(
        setup.unloads().len(),
        3,
        "only the full table is exported again"
    );
    // The changed rows, after the rows whose cursor is NULL, which every sync reads again.
    let rows = next.upserts_of("typed");
    let (null_cursor, changed): (Vec<_>, Vec<_>) = rows
        .iter()
        .partition(|row| row["updated_at"] == stream::NULL);
    assert_eq!(changed.len(), 5, "{changed:?}");
    assert!(changed.iter().all(|row| row["c_text"] == "changed"));
    let nulls = stream::query_rows(
        &setup.db.client,
        "SELECT id::text AS id FROM public.typed WHERE updated_at IS NULL",
    )
    .await;
    assert_eq!(null_cursor.len(), nulls.len());
    assert_eq!(
        rows[..nulls.len()],
        null_cursor.into_iter().cloned().collect::<Vec<_>>()[..]
    );
}

/// The export's checkpoints, by (files done, rows of the next file).
/// Waits until the database's clock, in whole seconds as Redshift's GETDATE() counts them,
/// has passed every `updated_at` of `public.typed`: syncs read time cursors only up to that
/// clock, so the rows the tests just changed (stamped a second or two ahead) are readable.
async fn settle(db: &TestDb) {
    for _ in 0..100 {
        let passed: bool = db
            .client
            .query_one(
                "SELECT date_trunc('second', clock_timestamp() AT TIME ZONE 'UTC')
                        > (SELECT max(updated_at) FROM public.typed)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if passed {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the database's clock did not pass the newest updated_at within 10 s");
}

fn export_progress(state_json: &str) -> Option<(u64, u64)> {
    let state: serde_json::Value = serde_json::from_str(state_json).unwrap();
    let export = state["tables"]["public"]["typed"].get("export")?;
    Some((
        export["files_done"].as_u64()?,
        export["rows_done"].as_u64()?,
    ))
}

/// Reads an Update until its `n`-th checkpoint, then kills the server: what a host holds
/// after a crash at that moment.
async fn until_checkpoint(
    setup: &Setup,
    config: &HashMap<String, String>,
    state: Option<String>,
    n: usize,
) -> UpdateLog {
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let mut stream = stream::start_update(&mut client, config, None, state)
        .await
        .unwrap();
    let mut log = UpdateLog::default();
    let mut seen = 0;
    while let Some(message) = stream.message().await.unwrap() {
        stream::push(&mut log, message.operation);
        if matches!(log.ops.last(), Some(Op::Checkpoint(_))) {
            seen += 1;
            if seen == n {
                break;
            }
        }
    }
    drop(server);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_anywhere_in_its_export_resumes_equal_to_the_source() {
    let setup = setup().await;
    // Large enough that the server, which runs ahead of the host by its output budget, is
    // still inside the export when the host stops reading.
    const ROWS: usize = 12_000;
    create_typed_table(&setup.db, ROWS as i64).await;
    let config = {
        let mut config = setup.config("sync-staging");
        config.insert("tables".into(), "public.typed".into());
        // Small batches: the server cannot run far ahead of a host that stops reading.
        config.insert("max_batch_bytes".into(), "65536".into());
        config
    };
    // A whole run, to count its checkpoints (its files are deleted at its end).
    let whole = {
        let server = setup.server(&setup.aws.syncer);
        let mut client = server.client().await;
        stream::update_ok(&mut client, &config, None, None).await
    };
    let checkpoints = whole.checkpoints().len();
    let inside: Vec<_> = whole
        .checkpoints()
        .iter()
        .filter_map(|c| export_progress(&c.state_json))
        .collect();
    assert!(
        inside.len() >= 8,
        "checkpoints inside the export: {inside:?}"
    );
    assert!(
        inside.iter().any(|&(files, rows)| files > 0 && rows > 0),
        "{inside:?}"
    );

    // Killed at a stratified sample: the first checkpoint (export begun, nothing read), inside
    // the first file, at file boundaries, and late; rows change while it is down.
    let sample = [1, 2, checkpoints / 3, checkpoints / 2, checkpoints - 2];
    let mut resumed_from_files = 0;
    for (round, &n) in sample.iter().enumerate() {
        let killed = until_checkpoint(&setup, &config, None, n).await;
        let Some(Op::Checkpoint(state)) = killed.ops.last().cloned() else {
            panic!("no checkpoint {n}")
        };
        setup
            .db
            .client
            .batch_execute(&format!(
                "UPDATE public.typed SET c_text = 'round {round}', updated_at = now() + INTERVAL '1 second' WHERE id % 500 = {round};
                 INSERT INTO public.typed (id, updated_at, c_text) VALUES ({}, now() + INTERVAL '1 second', 'new');",
                100_000 + round
            ))
            .await
            .unwrap();
        settle(&setup.db).await;
        let server = setup.server(&setup.aws.syncer);
        let mut client = server.client().await;
        let unloads_before = setup.unloads().len();
        let resumed = stream::update_ok(&mut client, &config, None, Some(state.clone())).await;
        // The UNLOAD runs again only when the kill came before anything was read (and its
        // manifest may then be there already).
        let unloads_run = setup.unloads().len() - unloads_before;
        let again = resumed.warnings().iter().any(|w| w.contains("are gone"));
        if export_progress(&state) == Some((0, 0)) || again {
            assert!(unloads_run <= 1, "round {round}");
        } else {
            assert_eq!(
                unloads_run, 0,
                "round {round}: files were there, yet UNLOAD ran again"
            );
            resumed_from_files += 1;
        }
        let direct = stream::update_ok(
            &mut client,
            &{
                let mut direct = setup.direct_config();
                direct.insert("tables".into(), "public.typed".into());
                direct
            },
            None,
            None,
        )
        .await;
        assert_same(&destination(&[&killed, &resumed]), &destination(&[&direct]));
        // Nothing sent twice: the resume starts at the exact row of the checkpoint (and the
        // rows changed since come once more). Unless the server had finished the pass and
        // deleted the files before it was killed: then the table is exported again.
        let before = killed.upserts_of("typed").len();
        let after = resumed.upserts_of("typed").len();
        let limit = ROWS + (ROWS / 500 + 1) * (round + 1) + if again { before } else { 0 };
        assert!(
            before + after <= limit,
            "round {round}: {before} + {after} sent"
        );
    }
    assert!(
        resumed_from_files >= 2,
        "kills inside the export: {resumed_from_files}"
    );
    let left = setup.objects("sync-staging", "exports/").await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_problems_end_in_a_task_that_says_what_to_grant() {
    let setup = setup().await;
    create_typed_table(&setup.db, 300).await;
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;

    // The cluster's role may not write the bucket: Redshift's S3ServiceException, as a Task.
    let denied = stream::update_ok(&mut client, &setup.config("sync-denied"), None, None).await;
    let tasks = denied.tasks();
    assert_eq!(tasks.len(), 1, "{:?}", denied.ops);
    assert!(
        tasks[0].contains(ROLE)
            && tasks[0].contains("s3://sync-denied")
            && tasks[0].contains("s3:PutObject"),
        "{}",
        tasks[0]
    );

    // A bucket in another region without `unload_region`; then with it.
    let other_region = stream::update_ok(&mut client, &setup.config("sync-eu"), None, None).await;
    assert!(
        other_region
            .tasks()
            .iter()
            .any(|t| t.contains("unload_region")),
        "{:?}",
        other_region.tasks()
    );
    let mut with_region = setup.config("sync-eu");
    with_region.insert("unload_region".into(), "eu-west-1".into());
    let exported = stream::update_ok(&mut client, &with_region, None, None).await;
    assert!(exported.tasks().is_empty(), "{:?}", exported.tasks());
    assert_eq!(exported.upserts_of("typed").len(), 300);

    // The connector's own credentials cannot read the files.
    drop(client);
    let outsider = setup.server(&setup.aws.outsider);
    let mut client = outsider.client().await;
    let unreadable =
        stream::update_ok(&mut client, &setup.config("sync-staging"), None, None).await;
    let tasks = unreadable.tasks();
    assert!(
        tasks
            .iter()
            .any(|t| t.contains("s3:GetObject") && t.contains("sync-staging")),
        "{tasks:?}"
    );
    // A Task, not a retry loop: no UNLOAD ran for the unreadable bucket (the manifest's
    // refusal came first), and none ran twice.
    assert_eq!(setup.unloads().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_file_that_vanished_is_named_in_a_task() {
    let setup = setup().await;
    create_typed_table(&setup.db, 3000).await;
    let mut config = setup.config("sync-staging");
    config.insert("max_batch_bytes".into(), "65536".into());
    let killed = until_checkpoint(&setup, &config, None, 3).await;
    let Some(Op::Checkpoint(state)) = killed.ops.last().cloned() else {
        panic!("no checkpoint")
    };
    let files: Vec<String> = setup
        .objects("sync-staging", "exports/")
        .await
        .into_iter()
        .filter(|key| key.ends_with(".parquet"))
        .collect();
    let last = files.iter().max().expect("part files").clone();
    setup.delete(&last).await;
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let resumed = stream::update_ok(&mut client, &config, None, Some(state)).await;
    let tasks = resumed.tasks();
    assert!(
        tasks
            .iter()
            .any(|t| t.contains(&last) && t.contains("missing")),
        "{tasks:?}"
    );
}

/// The rows of `table` in a debug runner's warehouse, every column but the sync time.
fn warehouse_rows(path: &std::path::Path, table: &str) -> Vec<Vec<rusqlite::types::Value>> {
    let connection = rusqlite::Connection::open(path).expect("open the warehouse");
    let columns: Vec<String> = connection
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .unwrap()
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|name| name != "_fivetran_synced")
        .collect();
    assert!(columns.len() > 3, "{table}: {columns:?}");
    let select = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut statement = connection
        .prepare(&format!(
            "SELECT {select} FROM \"{table}\" WHERE _fivetran_deleted = 0 ORDER BY 1"
        ))
        .unwrap();
    let width = statement.column_count();
    statement
        .query_map([], |row| (0..width).map(|i| row.get(i)).collect())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The debug runner, as users try the connector: its warehouse after an UNLOAD initial sync
/// killed mid-export and resumed, and after an incremental sync, equals the warehouse the
/// direct path fills from the same source (which `tests/debug_runner.rs` holds equal to the
/// source, value for value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_runners_warehouse_after_an_export_equals_the_direct_paths() {
    use fivetran_source::debug::client::ServerTarget;
    use fivetran_source::debug::{run_sync, DebugError, RunOptions, StopPoint};

    let setup = setup().await;
    create_typed_table(&setup.db, 3000).await;
    let server = setup.server(&setup.aws.syncer);
    let dir = tempfile::tempdir().unwrap();
    let runner = |config: HashMap<String, String>, name: &str| RunOptions {
        server: ServerTarget::Remote(server.addr()),
        tables: Some(vec!["public.typed".into()]),
        ..RunOptions::new(
            config,
            dir.path().join(format!("{name}.state.json")),
            dir.path().join(format!("{name}.db")),
        )
    };
    let mut exported_config = setup.config("sync-staging");
    exported_config.insert("max_batch_bytes".into(), "65536".into());
    let exported = runner(exported_config, "exported");

    let stopped = run_sync(&RunOptions {
        stop: Some(StopPoint::AfterCheckpoint(3)),
        ..exported.clone()
    })
    .await;
    assert!(
        matches!(stopped, Err(DebugError::Stopped { .. })),
        "{stopped:?}"
    );
    assert!(setup.unloads().len() == 1);
    let changes = [
        "UPDATE public.typed SET c_text = 'during', updated_at = now() + INTERVAL '1 second' WHERE id % 100 = 7",
        "INSERT INTO public.typed (id, updated_at, c_text) VALUES (50001, now() + INTERVAL '1 second', 'new')",
    ];
    setup
        .db
        .client
        .batch_execute(&changes.join(";"))
        .await
        .unwrap();
    settle(&setup.db).await;
    let resumed = run_sync(&exported).await.expect("the resumed run");
    assert!(resumed.tables["public.typed"].upserts > 0, "{resumed}");
    setup
        .db
        .client
        .batch_execute(
            "UPDATE public.typed SET c_integer = -1, updated_at = now() + INTERVAL '2 seconds' WHERE id % 250 = 3",
        )
        .await
        .unwrap();
    settle(&setup.db).await;
    let incremental = run_sync(&exported).await.expect("the incremental run");
    assert_eq!(
        incremental.tables["public.typed"].truncates, 0,
        "{incremental}"
    );

    let direct = runner(setup.direct_config(), "direct");
    run_sync(&direct).await.expect("the direct run");
    let (by_export, by_queries) = (
        warehouse_rows(&exported.warehouse, "public.typed"),
        warehouse_rows(&direct.warehouse, "public.typed"),
    );
    assert_eq!(by_export.len(), 3001);
    assert_eq!(by_export, by_queries);
}

/// A file holding other than the manifest's `record_count` rows fails its table, named; the
/// other tables sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_rows_differ_from_the_manifest_fails_its_table_by_name() {
    let setup = setup().await;
    create_typed_table(&setup.db, 300).await;
    setup
        .db
        .client
        .batch_execute(
            "CREATE TABLE public.small (id INT PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.small SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    let mut settings = setup.proxy_settings();
    if let Some(unload) = settings.unload.as_mut() {
        unload.miscount = true;
    }
    setup.proxy.set(settings);
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let log = stream::update_ok(&mut client, &setup.config("sync-staging"), None, None).await;
    let warnings = log.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("public.typed")
            && w.contains("0000_part_00.parquet")
            && w.contains("manifest says")),
        "{warnings:?}"
    );
    assert_eq!(log.upserts_of("small").len(), 10);
}

/// Exports left behind by abandoned syncs (older than 48 hours, named by this connector, in
/// no table's state) are deleted by a later sync; recent ones, ones a state names, and
/// anything else under the prefix stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_sync_deletes_abandoned_exports_and_nothing_else() {
    let setup = setup().await;
    create_typed_table(&setup.db, 10).await;
    let recent = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let keys = [
        "exports/redshift-sync-20200101T000000Z-deadbeef/public.t-1/0000_part_00.parquet",
        "exports/redshift-sync-20200101T000000Z-deadbeef/public.t-1/manifest",
        "exports/redshift-sync-20200102T000000Z-0badcafe/public.kept-2/manifest",
        &format!("exports/redshift-sync-{recent}-12345678/public.t-1/manifest"),
        "exports/someone-elses/file",
        "elsewhere/redshift-sync-20200101T000000Z-deadbeef/x",
    ];
    // The role's user may write the bucket (the connector's may not).
    let writer = setup.s3_as(&setup.aws.unloader);
    for key in keys {
        writer
            .put_object()
            .bucket("sync-staging")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .expect("put a leftover");
    }
    // A state whose (deselected) table still reads the second old export.
    let state = serde_json::json!({"version": 1, "tables": {"public": {"kept": {
        "mode": "full", "key_columns": [], "in_progress": true, "position": null,
        "export": {"url": "s3://sync-staging/exports/redshift-sync-20200102T000000Z-0badcafe/public.kept-2/",
                   "files_done": 0, "rows_done": 0}}}}});
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let config = setup.config("sync-staging");
    stream::update_ok(&mut client, &config, None, Some(state.to_string())).await;
    // The cleanup runs beside the sync: wait for it.
    let started = std::time::Instant::now();
    let left = loop {
        let left = setup.objects("sync-staging", "").await;
        if !left
            .iter()
            .any(|k| k.contains("20200101T000000Z-deadbeef/public.t-1"))
            || started.elapsed() > std::time::Duration::from_secs(20)
        {
            break left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut expected: Vec<String> = keys[2..].iter().map(ToString::to_string).collect();
    expected.sort();
    // (The 10-row table is below unload_min_rows: no export of this sync's own.)
    let mut left = left;
    left.sort();
    assert_eq!(left, expected);
}

/// `deleted_column` through an export: the rows marked deleted arrive as the same DELETE
/// records, carrying the key alone, as the direct path sends, and the others as UPSERTs.
#[tokio::test(flavor = "multi_thread")]
async fn soft_deletes_arrive_through_an_export_as_by_queries() {
    let setup = setup().await;
    create_typed_table(&setup.db, 600).await;
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let soft = |mut config: HashMap<String, String>| {
        config.insert("deleted_column".into(), "public.typed:c_bool".into());
        config
    };
    let exported =
        stream::update_ok(&mut client, &soft(setup.config("sync-staging")), None, None).await;
    assert_eq!(setup.unloads().len(), 1, "the table is exported");
    let direct = stream::update_ok(&mut client, &soft(setup.direct_config()), None, None).await;
    let split = |log: &UpdateLog| {
        let mut deleted = std::collections::BTreeSet::new();
        let mut live = std::collections::BTreeSet::new();
        for record in log.records_of("typed") {
            match record.kind {
                RecordType::Delete => {
                    assert_eq!(record.data.len(), 1, "a DELETE carries the key alone");
                    deleted.insert(record.get("id").parse::<i32>().unwrap());
                }
                RecordType::Upsert => {
                    live.insert(record.get("id").parse::<i32>().unwrap());
                }
                _ => {}
            }
        }
        (deleted, live)
    };
    let marked: std::collections::BTreeSet<i32> = setup
        .db
        .client
        .query("SELECT id::INT4 FROM public.typed WHERE c_bool", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!marked.is_empty());
    let (exported_deleted, exported_live) = split(&exported);
    assert_eq!(exported_deleted, marked);
    assert_eq!(exported_live.len() + marked.len(), 600);
    assert_eq!(split(&direct), (exported_deleted, exported_live));
}

/// `delete_capture = keys` with an export: the initial sync exports the rows up to the bound
/// taken with the key snapshot (rows without a cursor value only if their key is in it), and
/// the next sync sends the deleted keys, those of rows without a cursor value included.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_keys_are_captured_after_an_export_as_after_queries() {
    let setup = setup().await;
    create_typed_table(&setup.db, 600).await;
    setup
        .db
        .client
        .batch_execute("CREATE SCHEMA sync_work")
        .await
        .unwrap();
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let mut config = setup.config("sync-staging");
    config.insert("delete_capture".into(), "keys".into());
    config.insert("work_schema".into(), "sync_work".into());
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let unloads = setup.unloads();
    assert_eq!(unloads.len(), 1, "the table is exported");
    assert!(
        unloads[0].contains("IS NULL AND EXISTS (SELECT 1 FROM \"sync_work\"."),
        "{}",
        unloads[0]
    );
    assert_eq!(first.upserts_of("typed").len(), 600);

    // Rows deleted, one of them without a cursor value.
    setup
        .db
        .client
        .batch_execute("DELETE FROM public.typed WHERE id <= 10 OR id = 50")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    let deleted: std::collections::BTreeSet<i64> = second
        .records_of("typed")
        .into_iter()
        .filter(|r| r.kind == RecordType::Delete)
        .map(|r| r.get("id").parse().unwrap())
        .collect();
    assert_eq!(deleted, (1..=10).chain([50]).collect());
    assert_eq!(setup.unloads().len(), 1, "no second export");
}

/// The connector's AWS identity may read and list the staging bucket but not delete in it:
/// the Update still ends, promptly, with every row delivered, and Warnings name the missing
/// permission, the bucket and the prefix, for the export it read and for an abandoned one it
/// found. (S3 refuses such deletes key by key inside a successful response: nothing may list
/// and retry them without end, nor go on in a task after the Update.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_delete_permission_the_update_ends_with_every_row_and_a_warning() {
    let setup = setup().await;
    create_typed_table(&setup.db, 600).await;
    let abandoned = "exports/redshift-sync-20200101T000000Z-deadbeef/public.t-1/manifest";
    setup
        .s3_as(&setup.aws.unloader)
        .put_object()
        .bucket("sync-staging")
        .key(abandoned)
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect("put a leftover");
    let server = setup.server(&setup.aws.keeper);
    let mut client = server.client().await;
    let config = setup.config("sync-staging");
    let log = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        stream::update_ok(&mut client, &config, None, None),
    )
    .await
    .expect("the Update ends");
    assert_eq!(setup.unloads().len(), 1, "the table is exported");
    let ids: std::collections::BTreeSet<String> = log
        .upserts_of("typed")
        .iter()
        .map(|row| row["id"].clone())
        .collect();
    assert_eq!(ids.len(), 600, "every row once");
    let warnings = log.warnings();
    let exported = warnings.iter().find(|w| w.contains("public.typed"));
    let exported = exported.unwrap_or_else(|| panic!("no Warning for the export: {warnings:?}"));
    for part in [
        "s3:DeleteObject",
        "s3://sync-staging/exports/redshift-sync-",
    ] {
        assert!(exported.contains(part), "{exported}");
    }
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("abandoned") && w.contains("s3:DeleteObject")),
        "{warnings:?}"
    );
    // What could not be deleted is still there: nothing was lost, nothing pretended.
    assert!(setup
        .objects("sync-staging", "exports/")
        .await
        .iter()
        .any(|key| key == abandoned));
}

/// Every way to change one value of a state the connector wrote: quotes and statement breaks,
/// locations outside the connector's own (the bucket root, the prefix itself, another table's
/// export, a path that climbs), names and ids of other forms, and numbers out of range.
fn mutations(foreign_export: &str) -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!("x'; DROP TABLE other.victim; --"),
        json!("s3://sync-staging/exports/x/' IAM_ROLE 'arn:aws:iam::123456789012:role/x' FORMAT AS PARQUET; DROP TABLE other.victim; --"),
        json!("s3://sync-staging/"),
        json!("s3://sync-staging/exports/"),
        json!(foreign_export),
        json!(format!("{foreign_export}../")),
        json!("s3://sync-staging/victim/"),
        json!("other\\\"victim"),
        json!("feedf00d"),
        json!(""),
        json!("é".repeat(5000)),
        json!(0),
        json!(-1),
        json!(4294967295u64),
        json!(18446744073709551615u64),
        json!(1.5),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
    ]
}

/// Every leaf (and object key) of `value`, as a path of keys and indexes.
fn leaves(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                path.push(key.clone());
                out.push([path.clone(), vec!["<key>".to_string()]].concat());
                leaves(item, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                leaves(item, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

/// `state` with the leaf at `path` replaced by `value` (or, for a `<key>` path, the key
/// renamed to `value`'s text).
fn mutate(state: &serde_json::Value, path: &[String], value: &serde_json::Value) -> String {
    let mut state = state.clone();
    let (last, parents) = path.split_last().expect("a path");
    let rename = last == "<key>";
    let parents = if rename {
        &parents[..parents.len() - 1]
    } else {
        parents
    };
    let mut at = &mut state;
    for step in parents {
        at = match at {
            serde_json::Value::Object(map) => map.get_mut(step).unwrap(),
            serde_json::Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
            _ => unreachable!(),
        };
    }
    if rename {
        let key = &path[path.len() - 2];
        let map = at.as_object_mut().unwrap();
        let item = map.remove(key).unwrap();
        let name = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        map.insert(name, item);
    } else {
        *at = value.clone();
    }
    state.to_string()
}

/// A state the connector did not write cannot make it run foreign SQL, read or delete what is
/// not its own, or panic. Valid states of an export under way, of a pass sending deleted keys
/// and of finished syncs are mutated one value (or key) at a time; each mutated state goes to
/// an Update (the server process logging nothing but what the proxy sees). Then: no statement
/// carried anything from a mutation, every UNLOAD wrote under this connection's prefix for this
/// table, every table dropped was this connection's work table, the planted objects of
/// "others" (a table, a work table, S3 objects inside and outside the staging prefix, another
/// table's export) are all still there, and the server answered every call with a status or
/// a stream, never a crash. `STATE_FUZZ_CASES` runs more than the default sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_the_connector_did_not_write_runs_no_foreign_sql_and_touches_nothing_foreign() {
    const DEFAULT_CASES: usize = 600;
    let setup = setup().await;
    support::create_items(&setup.db, "items", 300).await;
    let recent = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let foreign_prefix = format!(
        "exports/redshift-sync-{recent}-0123456789abcdef/public.victim-{}/",
        "0".repeat(32)
    );
    setup
        .db
        .client
        .batch_execute(
            "CREATE SCHEMA sync_work; CREATE SCHEMA other;
             CREATE TABLE other.victim (id INTEGER);
             CREATE TABLE sync_work.redshift_sync_feedf00d_abcdefghijklmnopqrstuvwxyz_s1 (k0 INTEGER);",
        )
        .await
        .unwrap();
    let planted = [
        "victim/keep".to_string(),
        "exports/someone-elses/keep".to_string(),
        format!("{foreign_prefix}manifest"),
        format!("{foreign_prefix}0000_part_00.parquet"),
    ];
    let writer = setup.s3_as(&setup.aws.unloader);
    for key in &planted {
        writer
            .put_object()
            .bucket("sync-staging")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .expect("plant an object");
    }
    let server = setup.server(&setup.aws.syncer);
    let mut client = server.client().await;
    let mut config = setup.config("sync-staging");
    for (key, value) in [
        ("schemas", "public"),
        ("delete_capture", "keys"),
        ("work_schema", "sync_work"),
        ("batch_size", "100"),
    ] {
        config.insert(key.into(), value.into());
    }

    // Valid states: an export under way, its end, a pass sending deleted keys, its end.
    let first = stream::update_ok(&mut client, &config, None, None).await;
    setup
        .db
        .client
        .batch_execute("DELETE FROM public.items WHERE id % 7 = 0")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    let states: Vec<serde_json::Value> = first
        .checkpoints()
        .into_iter()
        .chain(second.checkpoints())
        .map(|c| serde_json::from_str(&c.state_json).unwrap())
        .collect();
    let export_under_way = states
        .iter()
        .find(|s| s["tables"]["public"]["items"].get("export").is_some())
        .expect("a state with an export under way");
    let deleting = states
        .iter()
        .find(|s| s["tables"]["public"]["items"]["key_snapshot"]["stage"] == "deleting")
        .expect("a state sending deleted keys");
    let bases = [
        export_under_way.clone(),
        deleting.clone(),
        states.last().unwrap().clone(),
    ];
    let foreign_export = format!("s3://sync-staging/{foreign_prefix}");
    let mut cases = Vec::new();
    for (b, base) in bases.iter().enumerate() {
        let mut paths = Vec::new();
        leaves(base, &mut Vec::new(), &mut paths);
        for path in paths {
            for value in mutations(&foreign_export) {
                cases.push((b, path.clone(), value));
            }
        }
    }
    // A deterministic sample that reaches every base state and most paths.
    let wanted = std::env::var("STATE_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES)
        .min(cases.len());
    let step = cases.len() as f64 / wanted as f64;
    let sample: Vec<_> = (0..wanted)
        .map(|i| cases[(i as f64 * step) as usize].clone())
        .collect();
    let statements_before = setup.proxy.sql().len();
    let mut outcomes = BTreeMap::<String, usize>::new();
    for (b, path, value) in &sample {
        let state = mutate(&bases[*b], path, value);
        let outcome = stream::try_update(&mut client, &config, None, Some(state.clone())).await;
        let kind = match &outcome.error {
            None => "ok".to_string(),
            Some(status) => {
                assert!(
                    !status.message().contains("unexpectedly"),
                    "{path:?} = {value}: {status:?}"
                );
                format!("{:?}", status.code())
            }
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    eprintln!("{} mutated states: {outcomes:?}", sample.len());
    // Each either synced (the state still made sense: the table starts over, or goes on) or
    // was refused as the caller's input; nothing else.
    assert!(
        outcomes.keys().all(|k| k == "ok" || k == "InvalidArgument"),
        "{outcomes:?}"
    );
    assert!(outcomes.contains_key("ok") && outcomes.contains_key("InvalidArgument"));

    // What the mutated states made the connector send.
    for sql in &setup.proxy.sql()[statements_before..] {
        assert!(!sql.contains("victim"), "a mutation reached SQL: {sql}");
        if let Some(rest) = sql
            .split(" TO '")
            .nth(1)
            .filter(|_| sql.starts_with("UNLOAD"))
        {
            let destination = rest.split('\'').next().unwrap();
            assert!(
                destination.starts_with("s3://sync-staging/exports/redshift-sync-")
                    && destination.contains("/public.items-"),
                "{sql}"
            );
        }
        for dropped in sql.split("DROP TABLE").skip(1) {
            for name in dropped.split(';').next().unwrap().split(", ") {
                let name = name.trim().trim_start_matches("IF EXISTS ");
                assert!(
                    name.starts_with("\"sync_work\".\"redshift_sync_")
                        && !name.contains("feedf00d"),
                    "{sql}"
                );
            }
        }
    }
    // Nothing of anyone else's is gone.
    let left = setup.objects("sync-staging", "").await;
    for key in &planted {
        assert!(left.contains(key), "{key} was deleted: {left:?}");
    }
    let kept: i64 = setup
        .db
        .client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN
               ('victim', 'redshift_sync_feedf00d_abcdefghijklmnopqrstuvwxyz_s1')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2, "another's table was dropped");
    // Still serving, with a valid state.
    stream::update_ok(&mut client, &config, None, second.last_state()).await;
}
