//! The Redshift Data API transport (`transport = data_api`) against the emulator in
//! `support::data_api`: statements go over the Data API's JSON protocol to the AWS front, which
//! runs them through the Redshift-shaped proxy on the tests' PostgreSQL. The connector runs as
//! its own process with the `syncer` user's AWS credentials in its environment, as hosts run it.
//!
//! The oracle is the direct path and the source itself: a table read through the Data API must
//! arrive as the same records, and the shapes, limits and failures of the service (pages,
//! throttling, expired sessions, the 64 KB row limit, refusals) must be met as the direct path
//! meets its own.

use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use fivetran_source::proto::SchemaRequest;
use support::aws::{credentials_env, AwsEmulator};
use support::data_api::{DataApi, DataApiSettings};
use support::stream::{self, UpdateLog};
use support::{ServerProcess, TestDb};

struct Setup {
    db: TestDb,
    aws: AwsEmulator,
    _home: tempfile::TempDir,
    server: ServerProcess,
}

/// A fresh database, the AWS front on the shared proxy, and the connector's process with the
/// `syncer` user's credentials.
async fn setup() -> Setup {
    let db = support::fresh_database().await;
    let aws = AwsEmulator::launch(support::proxy().port()).await;
    let home = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    Setup {
        db,
        aws,
        _home: home,
        server,
    }
}

impl Setup {
    fn config(&self, pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut config =
            support::data_api::connector_configuration(&self.aws.endpoint_url(), &self.db.name);
        for (key, value) in pairs {
            config.insert(key.to_string(), value.to_string());
        }
        config
    }

    /// The ids of `table`'s rows in the source.
    async fn source_ids(&self, table: &str) -> BTreeSet<String> {
        self.db
            .client
            .query(&format!("SELECT id::TEXT FROM public.{table}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// The distinct ids of `table`'s upserts.
fn synced_ids(log: &UpdateLog, table: &str) -> BTreeSet<String> {
    log.upserts_of(table)
        .iter()
        .map(|row| row["id"].clone())
        .collect()
}

const SHAPES: &str = "
    CREATE TABLE public.keyed (id INTEGER PRIMARY KEY, note VARCHAR(20), updated_at TIMESTAMP);
    INSERT INTO public.keyed
      SELECT g, 'n' || g, CASE WHEN g % 9 = 0 THEN NULL ELSE TIMESTAMP '2024-01-01' + (g / 4) * INTERVAL '1 second' END
      FROM generate_series(1, 45) g;
    CREATE TABLE public.composite (region VARCHAR(8), id BIGINT, updated_at TIMESTAMPTZ, PRIMARY KEY (region, id));
    INSERT INTO public.composite
      SELECT CASE g % 3 WHEN 0 THEN 'eu' WHEN 1 THEN 'EU' ELSE 'eu ' END, g, TIMESTAMPTZ '2024-01-01 00:00:00+00' + (g / 5) * INTERVAL '1 minute'
      FROM generate_series(1, 31) g;
    CREATE TABLE public.keyless (id INTEGER, updated_at TIMESTAMP);
    INSERT INTO public.keyless SELECT g, TIMESTAMP '2024-01-01' + (g / 6) * INTERVAL '1 hour' FROM generate_series(1, 23) g;
    CREATE TABLE public.nocursor (id INTEGER PRIMARY KEY, v TEXT);
    INSERT INTO public.nocursor SELECT g, repeat('v', g) FROM generate_series(1, 12) g;";

/// Each table shape (a key with NULL and tied cursors, a composite text key whose values differ
/// only by case and trailing space, no key, no cursor) syncs whole through the Data API at
/// queries of 7 rows, batches of 5 and pages of 3; Schema says what the direct path says; and
/// a second sync from the first one's state sends exactly the changed rows.
#[tokio::test(flavor = "multi_thread")]
async fn every_table_shape_syncs_at_small_queries_and_resumes_exactly() {
    let setup = setup().await;
    setup.db.client.batch_execute(SHAPES).await.unwrap();
    setup.aws.data_api().set(DataApiSettings {
        page_rows: 3,
        ..Default::default()
    });
    let mut client = setup.server.client().await;
    let config = setup.config(&[("max_rows_per_query", "7"), ("batch_size", "5")]);

    support::run_test(&mut client, "connect", &config)
        .await
        .unwrap_or_else(|failure| panic!("connect: {failure}"));
    support::run_test(&mut client, "select", &config)
        .await
        .unwrap_or_else(|failure| panic!("select: {failure}"));
    let schema = |configuration: HashMap<String, String>| {
        let mut client = client.clone();
        async move {
            client
                .schema(SchemaRequest { configuration })
                .await
                .unwrap_or_else(|status| panic!("Schema: {status:?}"))
                .into_inner()
        }
    };
    assert_eq!(
        schema(config.clone()).await,
        schema(setup.db.config.clone()).await,
        "Schema through the Data API differs from the direct path's"
    );

    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert!(first.tasks().is_empty(), "{:?}", first.tasks());
    for table in ["keyed", "composite", "keyless", "nocursor"] {
        assert_eq!(
            synced_ids(&first, table),
            setup.source_ids(table).await,
            "{table}"
        );
    }
    // Each row once, keyed or not (a keyless table resumes inclusively, but not here).
    assert_eq!(first.upserts_of("keyed").len(), 45);
    assert_eq!(first.upserts_of("composite").len(), 31);
    assert_eq!(first.upserts_of("keyless").len(), 23);
    // Long polling: one description a statement, answered when it ends.
    let statements = setup.aws.calls("ExecuteStatement") + setup.aws.calls("BatchExecuteStatement");
    assert_eq!(
        setup.aws.calls("DescribeStatement"),
        statements,
        "a statement was described more than once"
    );
    let direct = stream::update_ok(&mut client, &setup.db.config, None, None).await;
    for table in ["keyed", "composite", "keyless", "nocursor"] {
        assert_eq!(
            stream::by_key(&first.upserts_of(table), &["id"]),
            stream::by_key(&direct.upserts_of(table), &["id"]),
            "{table}: the Data API's records differ from the direct path's"
        );
    }

    setup
        .db
        .client
        .batch_execute(
            "UPDATE public.keyed SET note = 'changed', updated_at = TIMESTAMP '2025-01-01' WHERE id IN (3, 9, 44);
             INSERT INTO public.composite VALUES ('eu', 100, TIMESTAMPTZ '2025-01-01 00:00:00+00');",
        )
        .await
        .unwrap();
    let state = first.last_state().expect("a checkpoint");
    let second = stream::update_ok(&mut client, &config, None, Some(state)).await;
    // The changed rows, and the rows whose cursor is NULL (re-read by every sync: no cursor
    // value can say they did not change), as the direct path sends them.
    assert_eq!(
        synced_ids(&second, "keyed"),
        ["18", "27", "3", "36", "44", "45", "9"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        synced_ids(&second, "composite"),
        ["100"].map(String::from).into()
    );
    let direct_state = direct.last_state().expect("a checkpoint");
    let direct_second =
        stream::update_ok(&mut client, &setup.db.config, None, Some(direct_state)).await;
    for table in ["keyed", "composite", "keyless", "nocursor"] {
        assert_eq!(
            stream::by_key(&second.upserts_of(table), &["id"]),
            stream::by_key(&direct_second.upserts_of(table), &["id"]),
            "{table}: the second syncs differ"
        );
    }
    assert!(second
        .upserts_of("keyed")
        .iter()
        .filter(|row| ["3", "9", "44"].contains(&row["id"].as_str()))
        .all(|row| row["note"] == "changed"));
}

/// Throttling and too many active statements are retried within the retry budget, and a
/// session that expires in the middle of a sync is a lost connection: the sync resumes from
/// its checkpoint on a new session and delivers every row exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_an_expired_session_are_retried_and_lose_nothing() {
    let setup = setup().await;
    setup
        .db
        .client
        .batch_execute(
            "CREATE TABLE public.items (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.items SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second' FROM generate_series(1, 400) g;",
        )
        .await
        .unwrap();
    let data_api = setup.aws.data_api();
    data_api.set(DataApiSettings {
        throttle_next: 2,
        active_statements_exceeded_next: 1,
        page_rows: 10,
        latency: std::time::Duration::from_millis(5),
        ..Default::default()
    });
    let mut client = setup.server.client().await;
    let config = setup.config(&[("max_rows_per_query", "50"), ("batch_size", "10")]);

    // Expire every session once a few queries of the table have run.
    let expired = tokio::spawn(expire_sessions_mid_sync(Arc::clone(&data_api)));
    let log = stream::update_ok(&mut client, &config, None, None).await;
    let sessions_expired = expired.await.unwrap();
    assert!(
        sessions_expired,
        "the sync ended before a session could expire"
    );
    assert!(
        data_api.ended_session_refusals() >= 1,
        "the connector never met its expired session"
    );
    let ids: Vec<String> = log
        .upserts_of("items")
        .iter()
        .map(|row| row["id"].clone())
        .collect();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(distinct, setup.source_ids("items").await);
    assert_eq!(
        ids.len(),
        distinct.len(),
        "a row was sent twice after the resume"
    );
    let settings = data_api.settings();
    assert_eq!(
        (
            settings.throttle_next,
            settings.active_statements_exceeded_next
        ),
        (0, 0),
        "every refusal was met"
    );
}

/// Waits until the sync has run a few of the table's queries, expires every session, and says
/// whether it got there before the sync ended.
async fn expire_sessions_mid_sync(data_api: Arc<DataApi>) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let queries = data_api
            .statements()
            .iter()
            .filter(|sql| sql.contains("\"items\"") && sql.contains("LIMIT"))
            .count();
        if queries >= 3 {
            data_api.expire_sessions();
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    false
}

/// A row over the Data API's limit per row skips its table with a Warning that names the limit
/// and the way out; the other tables sync. Over the cap per statement, likewise.
#[tokio::test(flavor = "multi_thread")]
async fn rows_and_results_over_the_data_api_limits_skip_their_table_with_the_way_out() {
    let setup = setup().await;
    setup
        .db
        .client
        .batch_execute(
            "CREATE TABLE public.wide (id INTEGER PRIMARY KEY, body VARCHAR(65535), updated_at TIMESTAMP);
             INSERT INTO public.wide SELECT g, repeat('w', CASE WHEN g = 7 THEN 5000 ELSE 10 END), TIMESTAMP '2024-01-01' FROM generate_series(1, 10) g;
             CREATE TABLE public.narrow (id INTEGER PRIMARY KEY, pad VARCHAR(100), updated_at TIMESTAMP);
             INSERT INTO public.narrow SELECT g, repeat('p', 50), TIMESTAMP '2024-01-01' FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    // Limits scaled down with the data: 4 KB a row (the real service's is 64 KB).
    setup.aws.data_api().set(DataApiSettings {
        max_row_bytes: 4096,
        ..Default::default()
    });
    let mut client = setup.server.client().await;
    let config = setup.config(&[]);
    let log = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(synced_ids(&log, "narrow").len(), 2000);
    let warning = log
        .warnings()
        .into_iter()
        .find(|w| w.contains("public.wide"))
        .unwrap_or_else(|| panic!("no Warning for the wide table: {:?}", log.warnings()));
    assert!(warning.contains("64 KB per row"), "{warning}");
    assert!(warning.contains("transport` = direct"), "{warning}");
    assert!(
        !warning.contains("wwwwwwww"),
        "a value in a Warning: {warning}"
    );

    // A result over the cap per statement (scaled down to 32 KB from 100-500 MB, which
    // `max_rows_per_query = auto` stays under): named, with `max_rows_per_query` as the way
    // out, which then works.
    setup.aws.data_api().set(DataApiSettings {
        max_result_bytes: 32 * 1024,
        ..Default::default()
    });
    let log = stream::update_ok(&mut client, &config, None, None).await;
    let warning = log
        .warnings()
        .into_iter()
        .find(|w| w.contains("public.narrow"))
        .unwrap_or_else(|| panic!("no Warning for the narrow table: {:?}", log.warnings()));
    assert!(warning.contains("max_rows_per_query"), "{warning}");
    let bounded = setup.config(&[("max_rows_per_query", "200")]);
    let log = stream::update_ok(&mut client, &bounded, None, None).await;
    assert_eq!(
        synced_ids(&log, "narrow").len(),
        2000,
        "{:?}",
        log.warnings()
    );
}

/// Without `redshift-data:ExecuteStatement` Test names it; a secret whose password the
/// database refuses is named as the secret's; with a good secret both Test and Update pass, and
/// its password is in no message or state.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_named_and_the_secret_never_shows() {
    let setup = setup().await;
    let user = format!("dataapi_{}", setup.db.name);
    setup
        .db
        .client
        .batch_execute(&format!(
            "CREATE TABLE public.a (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.a SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 20) g;
             CREATE ROLE \"{user}\" LOGIN PASSWORD 'Good-pass-1';
             GRANT USAGE ON SCHEMA public TO \"{user}\";
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{user}\";"
        ))
        .await
        .unwrap();

    // The outsider may not use the Data API.
    let home = tempfile::tempdir().unwrap();
    let outsider = ServerProcess::start_in(&credentials_env(&setup.aws.outsider, home.path()));
    let mut client = outsider.client().await;
    let failure = support::connect_test_failure(&mut client, &setup.config(&[])).await;
    assert!(
        failure.contains("redshift-data:ExecuteStatement")
            && failure.contains("redshift:GetClusterCredentialsWithIAM"),
        "{failure}"
    );
    let outcome = stream::try_update(&mut client, &setup.config(&[]), None, None).await;
    assert_eq!(outcome.log.tasks().len(), 1, "{:?}", outcome.log.ops);

    // A secret out of step with the database.
    let secret = |password: &str| {
        serde_json::json!({ "username": user, "password": password, "engine": "redshift" })
            .to_string()
    };
    let arn = setup
        .aws
        .put_secret("redshift/data-api", &secret("Wrong-pass-2"))
        .await;
    let config = setup.config(&[("secret_arn", &arn)]);
    // A server that logs everything it may: the password must still be in no line.
    let mut env = credentials_env(&setup.aws.syncer, home.path());
    env.push(("RUST_LOG".into(), "debug".into()));
    let verbose = ServerProcess::start_in(&env);
    let mut client = verbose.client().await;
    let failure = support::connect_test_failure(&mut client, &config).await;
    assert!(failure.contains("secret"), "{failure}");
    assert!(!failure.contains("Wrong-pass-2"), "{failure}");

    // The secret made right: the sync runs as its user.
    setup
        .aws
        .put_secret("redshift/data-api", &secret("Good-pass-1"))
        .await;
    support::run_test(&mut client, "connect", &config)
        .await
        .unwrap_or_else(|failure| panic!("connect: {failure}"));
    let log = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(synced_ids(&log, "a").len(), 20);
    let everything = format!("{:?} {:?}", log.ops, log.last_state());
    assert!(!everything.contains("Good-pass-1"), "the password leaked");
    assert!(!setup
        .aws
        .data_api()
        .statements()
        .iter()
        .any(|sql| sql.contains("Good-pass-1")));
    let log = verbose.log();
    assert!(log.len() > 10, "the server logged {} lines", log.len());
    for password in ["Good-pass-1", "Wrong-pass-2"] {
        assert!(
            !log.iter().any(|line| line.contains(password)),
            "a log line holds the secret's password"
        );
    }
}

/// `delete_capture = keys` through the Data API: the key snapshot, its bound and the deleted
/// keys are statements of one Data API session (its transaction holds across them), and the
/// second sync sends exactly the deleted keys, then the changed rows.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_rows_are_captured_through_the_data_api() {
    let setup = setup().await;
    support::create_items(&setup.db, "items", 40).await;
    // The IAM identity the emulator signs in as (a role of this database's own), with CREATE
    // on the work schema.
    let identity = support::aws::data_api_identity_user("syncer", &setup.db.name);
    setup
        .db
        .client
        .batch_execute(&format!(
            "CREATE ROLE \"{identity}\" LOGIN;
             CREATE SCHEMA sync_work;
             GRANT USAGE, CREATE ON SCHEMA sync_work TO \"{identity}\";"
        ))
        .await
        .unwrap();
    let mut client = setup.server.client().await;
    let config = setup.config(&[
        ("delete_capture", "keys"),
        ("work_schema", "sync_work"),
        ("batch_size", "6"),
    ]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(synced_ids(&first, "items").len(), 40);
    setup
        .db
        .client
        .batch_execute(
            "DELETE FROM public.items WHERE id IN (4, 17, 40);
             UPDATE public.items SET note = 'changed', updated_at = TIMESTAMP '2024-06-01' WHERE id = 1;",
        )
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    let deleted: BTreeSet<String> = second
        .records_of("items")
        .into_iter()
        .filter(|r| r.kind == fivetran_source::proto::RecordType::Delete)
        .map(|r| r.get("id").to_string())
        .collect();
    assert_eq!(deleted, ["17", "4", "40"].map(String::from).into());
    assert_eq!(synced_ids(&second, "items"), ["1"].map(String::from).into());
    let statements = setup.aws.data_api().statements();
    assert!(
        statements.iter().any(|sql| sql.contains("sync_work")),
        "the snapshot was taken through the Data API"
    );
}

/// A table over `unload_min_rows` is exported through UNLOAD, sent as plain SQL through the
/// Data API, and read back from S3 as on the direct path: the same records.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_table_is_exported_through_unload_over_the_data_api() {
    use support::redshift::unload::UnloadEmulation;
    use support::redshift::Settings;
    let db = support::fresh_database().await;
    support::create_items(&db, "items", 300).await;
    let proxy = support::own_proxy(Settings::default());
    let aws = AwsEmulator::launch(proxy.port()).await;
    let role = "arn:aws:iam::123456789012:role/redshift-unload";
    proxy.set(Settings {
        unload: Some(UnloadEmulation {
            s3_endpoint: aws.moto_url(),
            role_key: (aws.unloader.id.clone(), aws.unloader.secret.clone()),
            roles: vec![role.to_string()],
            default_role: None,
            cluster_region: "us-east-1".to_string(),
            bucket_regions: Vec::new(),
            slices: 2,
            rows_per_file: 70,
            miscount: false,
        }),
        ..Settings::default()
    });
    let home = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    let mut client = server.client().await;
    let mut config = support::data_api::connector_configuration(&aws.endpoint_url(), &db.name);
    for (key, value) in [
        ("unload_s3_uri", "s3://sync-staging/exports/".to_string()),
        ("unload_iam_role", role.to_string()),
        ("unload_min_rows", "100".to_string()),
        ("unload_s3_endpoint_url", aws.moto_url()),
    ] {
        config.insert(key.into(), value);
    }
    let exported = stream::update_ok(&mut client, &config, None, None).await;
    assert!(
        aws.data_api()
            .statements()
            .iter()
            .any(|sql| sql.trim_start().starts_with("UNLOAD")),
        "no UNLOAD went through the Data API"
    );
    let mut direct_config = proxy.connector_configuration(&db.name);
    direct_config.insert("batch_size".into(), "50".into());
    let direct = stream::update_ok(&mut client, &direct_config, None, None).await;
    assert_eq!(
        stream::by_key(&exported.upserts_of("items"), &["id"]),
        stream::by_key(&direct.upserts_of("items"), &["id"]),
        "the export's records differ from the direct path's"
    );
    assert_eq!(synced_ids(&exported, "items").len(), 300);
}

/// A statement the host no longer waits for is cancelled (`CancelStatement`): the host leaves
/// while the table's slow query runs, and the emulator sees it aborted.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_the_host_leaves_is_cancelled() {
    let setup = setup().await;
    support::create_items(&setup.db, "items", 10).await;
    let data_api = setup.aws.data_api();
    let scan = "FROM \"public\".\"items\"";
    data_api.set(DataApiSettings {
        run_time: std::time::Duration::from_secs(60),
        slow_sql: Some(scan.to_string()),
        ..Default::default()
    });
    let mut client = setup.server.client().await;
    let config = setup.config(&[]);
    let updates = stream::start_update(&mut client, &config, None, None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !data_api.statements().iter().any(|sql| sql.contains(scan)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the scan never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The host leaves.
    drop(updates);
    drop(client);
    while data_api.aborted() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the running statement was not cancelled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A column added between two syncs through the Data API: the second declares it (a
/// SchemaChange first) and re-sends the table's rows with its values, as the direct path does.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_column_is_declared_and_backfilled_through_the_data_api() {
    let setup = setup().await;
    support::create_items(&setup.db, "items", 30).await;
    let mut client = setup.server.client().await;
    let config = setup.config(&[("batch_size", "7")]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(synced_ids(&first, "items").len(), 30);
    setup
        .db
        .client
        .batch_execute("ALTER TABLE public.items ADD COLUMN region VARCHAR(8) DEFAULT 'eu'")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert!(
        matches!(second.ops.first(), Some(stream::Op::SchemaChange(_))),
        "{:?}",
        second.ops.first()
    );
    let rows = second.upserts_of("items");
    assert_eq!(synced_ids(&second, "items").len(), 30);
    assert!(rows.iter().all(|row| row["region"] == "eu"), "{rows:?}");
}

/// A Serverless workgroup (signed in as the IAM identity) and a provisioned cluster with a
/// `db_user` (temporary credentials for that user) both sync; a workgroup the account does not
/// have is named.
#[tokio::test(flavor = "multi_thread")]
async fn a_workgroup_and_a_database_user_are_targets_too() {
    let setup = setup().await;
    support::create_items(&setup.db, "items", 12).await;
    let mut client = setup.server.client().await;
    let mut workgroup = setup.config(&[("workgroup", support::aws::WORKGROUP)]);
    workgroup.remove("cluster_identifier");
    let log = stream::update_ok(&mut client, &workgroup, None, None).await;
    assert_eq!(synced_ids(&log, "items").len(), 12);

    let db_user = setup.config(&[("db_user", "sync_reader")]);
    let log = stream::update_ok(&mut client, &db_user, None, None).await;
    assert_eq!(synced_ids(&log, "items").len(), 12);
    let signed_in: Vec<String> = setup
        .db
        .client
        .query(
            "SELECT usename::TEXT FROM pg_stat_activity WHERE application_name = 'redshift-data'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        signed_in.iter().any(|user| user == "sync_reader"),
        "{signed_in:?}"
    );

    let mut no_database = workgroup.clone();
    no_database.insert("database".into(), "no_such_database".into());
    let failure = support::connect_test_failure(&mut client, &no_database).await;
    assert!(
        failure.contains("database `no_such_database` does not exist"),
        "{failure}"
    );

    let mut unknown = workgroup.clone();
    unknown.insert("workgroup".into(), "no-such-workgroup".into());
    let failure = support::connect_test_failure(&mut client, &unknown).await;
    assert!(failure.contains("no-such-workgroup"), "{failure}");
}

/// Throttling that outlasts `retry_timeout_s` ends the Update with UNAVAILABLE naming it (the
/// host retries later), not with a Task for the user.
#[tokio::test(flavor = "multi_thread")]
async fn throttling_beyond_the_retry_budget_ends_the_update_for_the_host_to_retry() {
    let setup = setup().await;
    support::create_items(&setup.db, "items", 5).await;
    setup.aws.data_api().set(DataApiSettings {
        throttle_next: u32::MAX,
        ..Default::default()
    });
    let mut client = setup.server.client().await;
    let config = setup.config(&[("retry_timeout_s", "2")]);
    let outcome = stream::try_update(&mut client, &config, None, None).await;
    let status = outcome.error.expect("the Update failed");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("ThrottlingException"),
        "{status:?}"
    );
    assert!(outcome.log.tasks().is_empty(), "{:?}", outcome.log.tasks());
}

/// A host that sends the form's defaults for every field, the hidden direct-transport ones too,
/// with the Data API's keys filled in: a working configuration.
#[tokio::test(flavor = "multi_thread")]
async fn the_forms_defaults_with_the_data_api_keys_are_a_working_configuration() {
    let setup = setup().await;
    support::create_items(&setup.db, "items", 3).await;
    let mut client = setup.server.client().await;
    let mut config = support::form_defaults(&mut client).await;
    assert_eq!(config["transport"], "direct");
    config.extend(setup.config(&[]));
    support::run_test(&mut client, "connect", &config)
        .await
        .unwrap_or_else(|failure| panic!("connect: {failure}"));
    let log = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(synced_ids(&log, "items").len(), 3);
}
