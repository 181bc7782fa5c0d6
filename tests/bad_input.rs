//! Bad input gets INVALID_ARGUMENT before anything reaches the database: NUL characters in
//! configuration values or state positions, positions outside their column's range, a port in
//! `host`, a name that does not resolve, and `sslrootcert` values that name files other than a
//! CA bundle. Each case is called on a proxy of its own, so that the test can see that no
//! session was opened (or, where the catalog must be read to know a column's type, that no
//! statement read the table).

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fivetran_source::proto::SchemaRequest;
use support::redshift::{RedshiftProxy, Settings};
use support::{own_proxy, stream, TestDb, TestServer};
use tonic::Code;

fn with(config: &HashMap<String, String>, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

/// A database with one table, and the connector's configuration through a fresh proxy.
async fn setup() -> (TestDb, RedshiftProxy, HashMap<String, String>) {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.t (id INTEGER PRIMARY KEY, amount NUMERIC(18,4), updated_at TIMESTAMP);
             INSERT INTO public.t SELECT g, g * 1.5, TIMESTAMP '2024-01-01' FROM generate_series(1, 3) g;",
        )
        .await
        .unwrap();
    let proxy = own_proxy(Settings::default());
    let config = with(&db.config, &[("port", &proxy.port().to_string())]);
    (db, proxy, config)
}

/// How an RPC refused a configuration.
struct Refusal {
    rpc: &'static str,
    /// `None` for Test, which answers a failure for the user to read, not a status.
    code: Option<Code>,
    message: String,
}

/// Test (`connect`), Schema and Update with `config`: how each refused it.
async fn every_rpc(server: &TestServer, config: &HashMap<String, String>) -> Vec<Refusal> {
    let mut client = server.client().await;
    let test_failure = support::connect_test_failure(&mut client, config).await;
    let schema = client
        .schema(SchemaRequest {
            configuration: config.clone(),
        })
        .await
        .expect_err("Schema refuses bad configuration");
    let update = stream::try_update(&mut client, config, None, None).await;
    assert!(update.refused, "Update refused at the call, not mid-stream");
    let update = update.error.expect("Update refuses bad configuration");
    vec![
        Refusal {
            rpc: "Test",
            code: None,
            message: test_failure,
        },
        Refusal {
            rpc: "Schema",
            code: Some(schema.code()),
            message: schema.message().into(),
        },
        Refusal {
            rpc: "Update",
            code: Some(update.code()),
            message: update.message().into(),
        },
    ]
}

fn assert_refused(refusals: &[Refusal], needle: &str) {
    for Refusal { rpc, code, message } in refusals {
        if let Some(code) = code {
            assert_eq!(*code, Code::InvalidArgument, "{rpc}: {message}");
        }
        assert!(
            message.contains(needle),
            "{rpc}: `{needle}` not in {message}"
        );
        assert!(message.len() < 400, "{rpc}: a long message: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_in_any_configuration_value_is_refused_without_a_session() {
    let (_db, proxy, config) = setup().await;
    let server = TestServer::start().await;
    for key in [
        "schemas",
        "tables",
        "cursor_column",
        "user",
        "password",
        "database",
        "host",
    ] {
        let refusals = every_rpc(&server, &with(&config, &[(key, "public\0; DROP TABLE t")])).await;
        assert_refused(&refusals, &format!("`{key}`"));
        for refusal in &refusals {
            assert!(
                !refusal.message.contains("DROP"),
                "the value is echoed: {}",
                refusal.message
            );
        }
    }
    assert_eq!(
        proxy.sessions(),
        0,
        "a bad configuration reached the database"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn long_values_are_quoted_by_a_short_prefix_only() {
    let (_db, proxy, config) = setup().await;
    let server = TestServer::start().await;
    let long = "9".repeat(1 << 20);
    for key in ["port", "batch_size", "host", "sslmode"] {
        let value = if key == "host" {
            format!("{long}:5439")
        } else {
            long.clone()
        };
        let refusals = every_rpc(&server, &with(&config, &[(key, &value)])).await;
        assert_refused(&refusals, &format!("`{key}`"));
    }
    assert_eq!(proxy.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_in_host_is_named_without_a_session() {
    let (_db, proxy, config) = setup().await;
    let server = TestServer::start().await;
    for host in [
        "127.0.0.1:5439",
        "examplecluster.abc.us-east-1.redshift.amazonaws.com:5439",
    ] {
        let refusals = every_rpc(&server, &with(&config, &[("host", host)])).await;
        assert_refused(&refusals, "`port`");
    }
    // An IPv6 address is a host, not a host and a port: the test fails to connect instead.
    let mut client = server.client().await;
    let ipv6 = with(&config, &[("host", "::1:5439")]);
    let failure = support::connect_test_failure(&mut client, &ipv6).await;
    assert!(!failure.contains("includes a port"), "{failure}");
    assert_eq!(proxy.sessions(), 0);
}

/// A name that does not resolve is the user's to fix, not a transient failure: Test and
/// Schema say so at once, and Update ends with one Task (the contract's way to ask the user).
#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_does_not_resolve_fails_at_once() {
    let (_db, _proxy, config) = setup().await;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&config, &[("host", "no-such-cluster.invalid")]);
    let started = Instant::now();
    let failure = support::connect_test_failure(&mut client, &config).await;
    assert!(failure.contains("does not resolve"), "{failure}");
    let schema = client
        .schema(SchemaRequest {
            configuration: config.clone(),
        })
        .await
        .expect_err("Schema fails");
    stream::assert_invalid_argument(&schema, "no-such-cluster.invalid");
    let update = stream::try_update(&mut client, &config, None, None).await;
    let tasks = update.log.tasks();
    assert_eq!(tasks.len(), 1, "{:?}", update.log.ops);
    assert!(tasks[0].contains("no-such-cluster.invalid"), "{}", tasks[0]);
    // Retried as transient, this took about a minute.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_in_a_state_position_is_refused_without_a_session() {
    let (_db, proxy, config) = setup().await;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (cursor, key) in [
        ("\"2024-01-01 00:00:00\\u0000\"", "[\"1\"]"),
        ("\"2024-01-01 00:00:00\"", "[\"1\\u0000\"]"),
    ] {
        let state = position_state(cursor, key);
        let outcome = stream::try_update(&mut client, &config, None, Some(state)).await;
        assert!(outcome.refused);
        stream::assert_invalid_argument(&outcome.error.expect("an error"), "NUL");
    }
    assert_eq!(proxy.sessions(), 0, "a NUL position reached the database");
}

/// Positions of the right shape but outside the column's range: the catalog is read (the
/// column's type is needed), the table never is.
#[tokio::test(flavor = "multi_thread")]
async fn positions_out_of_their_columns_range_are_refused_before_the_scan() {
    let (_db, proxy, config) = setup().await;
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let cases = [
        // TIMESTAMP: year 0 does not exist (PostgreSQL reads it as 1 BC, Redshift refuses it).
        (
            "updated_at",
            "\"0000-01-01 00:00:00\"",
            "[\"1\"]",
            "`updated_at`",
        ),
        (
            "updated_at",
            "\"2024-13-01 00:00:00\"",
            "[\"1\"]",
            "`updated_at`",
        ),
        // INTEGER key beyond 2^31.
        (
            "updated_at",
            "\"2024-01-01 00:00:00\"",
            "[\"3000000000\"]",
            "`id`",
        ),
        // NUMERIC(18,4): 30 digits, and 5 decimals.
        (
            "amount",
            "\"123456789012345678901234567890\"",
            "[\"1\"]",
            "`amount`",
        ),
        ("amount", "\"1.00001\"", "[\"1\"]", "`amount`"),
    ];
    for (cursor_column, cursor, key, needle) in cases {
        let config = with(&config, &[("cursor_column", cursor_column)]);
        let state = format!(
            "{{\"version\": 1, \"tables\": {{\"public\": {{\"t\": {{\"mode\": \"incremental\", \
             \"cursor_column\": \"{cursor_column}\", \"key_columns\": [\"id\"], \
             \"position\": {{\"cursor\": {cursor}, \"key\": {key}}}}}}}}}}}"
        );
        let outcome = stream::try_update(&mut client, &config, None, Some(state.clone())).await;
        assert!(outcome.log.ops.is_empty(), "{state}: {:?}", outcome.log.ops);
        stream::assert_invalid_argument(&outcome.error.expect("an error"), needle);
    }
    let scans: Vec<String> = proxy
        .sql()
        .into_iter()
        .filter(|sql| sql.contains("\"t\"") && !sql.contains("svv_") && !sql.contains("pg_"))
        .collect();
    assert!(
        scans.is_empty(),
        "the table was read with a bad position: {scans:#?}"
    );
}

fn position_state(cursor: &str, key: &str) -> String {
    format!(
        "{{\"version\": 1, \"tables\": {{\"public\": {{\"t\": {{\"mode\": \"incremental\", \
         \"cursor_column\": \"updated_at\", \"key_columns\": [\"id\"], \
         \"position\": {{\"cursor\": {cursor}, \"key\": {key}}}}}}}}}}}"
    )
}

/// `sslrootcert` may be PEM text or the path of a small regular file. Anything else (a device
/// that never ends, a FIFO with no writer, a secret file, a directory, nothing) is one and the
/// same error, at once, with no session opened.
#[tokio::test(flavor = "multi_thread")]
async fn sslrootcert_paths_cannot_read_arbitrary_files() {
    let (_db, proxy, config) = setup().await;
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let fifo_c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    let huge = dir.path().join("huge.pem");
    std::fs::write(&huge, vec![b'-'; 2 << 20]).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "root:$6$hash:19000:0:99999:7:::").unwrap();
    let paths = [
        "/dev/zero".to_string(),
        fifo.display().to_string(),
        huge.display().to_string(),
        secret.display().to_string(),
        dir.path().display().to_string(),
        dir.path().join("missing.pem").display().to_string(),
    ];
    let mut messages = Vec::new();
    for path in &paths {
        let config = with(
            &config,
            &[("sslmode", "verify-full"), ("sslrootcert", path)],
        );
        let started = Instant::now();
        // Twice at once for the FIFO: the old code froze every RPC on a second such call.
        let (a, b) = tokio::join!(every_rpc(&server, &config), every_rpc(&server, &config));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: {:?}",
            started.elapsed()
        );
        for statuses in [a, b] {
            assert_refused(&statuses, "`sslrootcert`");
            for refusal in statuses {
                assert!(
                    !refusal.message.contains(path.as_str()),
                    "{path} echoed: {}",
                    refusal.message
                );
                messages.push(refusal.message);
            }
        }
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "the messages tell files apart: {messages:#?}"
    );
    assert_eq!(proxy.sessions(), 0);
}
