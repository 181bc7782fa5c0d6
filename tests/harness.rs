//! The test harness itself, against a real server: the local PostgreSQL is configured like
//! Redshift where the connector depends on it (TLS that verifies only `localhost`, MD5
//! passwords), databases are isolated, servers clean up after themselves, and the in-process
//! gRPC server answers.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fivetran_source::config::{Config, RootCertificates, SslMode};
use support::{chain, cluster, fresh_database, TestServer};
use test_kit::local_postgres::LocalPostgres;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Connects with `config` and `tls`, driving the connection on this runtime.
async fn connect(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn verify_full_succeeds_for_localhost() {
    let pg = cluster();
    assert_eq!(pg.host(), "localhost");
    let client = pg.connect("postgres").await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the session is not encrypted");
}

#[tokio::test]
async fn verify_full_fails_for_a_host_name_the_certificate_lacks() {
    let pg = cluster();
    let config = pg.client_config_for_host("127.0.0.1", "postgres");

    let err = connect(&config, pg.tls_connector().unwrap())
        .await
        .expect_err("127.0.0.1 is not in the certificate, so verify-full must refuse it");
    let text = chain(&err);
    assert!(text.contains("TLS handshake"), "not a TLS failure: {text}");

    // Same address, same CA, host name check off (the connector's verify-ca): it works, so
    // the name alone was the problem.
    let mut verify_ca = Config::from_map(&pg.connector_configuration("postgres")).unwrap();
    verify_ca.connection.host = "127.0.0.1".to_string();
    verify_ca.connection.sslmode = SslMode::VerifyCa;
    verify_ca.load_files().await.unwrap();
    let mut session = fivetran_source::source::connect(&verify_ca.connection)
        .await
        .unwrap_or_else(|err| panic!("{}", chain(&err)));
    session.query("SELECT 1", &[]).await.unwrap();
}

#[tokio::test]
async fn passwords_are_md5_as_on_redshift() {
    let db = fresh_database().await;
    let stored_md5: bool = db
        .client
        .query_one(
            "SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(stored_md5, "the admin's password is not stored as MD5");

    let encryption: String = db
        .client
        .query_one("SHOW password_encryption", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(encryption, "md5");

    // No `trust`, no SCRAM: every way in asks for the MD5 password.
    let rules = db
        .client
        .query(
            "SELECT type, auth_method, error FROM pg_hba_file_rules ORDER BY line_number",
            &[],
        )
        .await
        .unwrap();
    assert!(rules.iter().any(|r| r.get::<_, String>(0) == "hostssl"));
    for rule in &rules {
        let (kind, method, error): (String, String, Option<String>) =
            (rule.get(0), rule.get(1), rule.get(2));
        assert_eq!(error, None, "pg_hba.conf has an invalid line");
        assert_eq!(method, "md5", "a `{kind}` rule authenticates with {method}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_rejected_with_28p01() {
    let pg = cluster();
    let mut config = pg.client_config("postgres");
    config.password("not-the-password");
    let err = connect(&config, pg.tls_connector().unwrap())
        .await
        .expect_err("a wrong password must be refused");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PASSWORD),
        "{}",
        chain(&err)
    );
    // Nothing in the error tells the real password.
    assert!(!chain(&err).contains(pg.admin_password()));
}

#[tokio::test]
async fn each_test_gets_a_distinct_empty_database() {
    let a = fresh_database().await;
    let b = fresh_database().await;
    assert_ne!(a.name, b.name);

    for db in [&a, &b] {
        let row = db
            .client
            .query_one(
                "SELECT current_database()::text, count(*) FROM information_schema.tables
                 WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'catalog_history')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), db.name);
        assert_eq!(row.get::<_, i64>(1), 0, "{} is not empty", db.name);
    }

    a.client
        .batch_execute("CREATE TABLE public.only_in_a (id int)")
        .await
        .unwrap();
    let seen_in_b: i64 = b
        .client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_in_a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen_in_b, 0);
}

#[tokio::test]
async fn the_connector_configuration_is_valid_and_verify_full() {
    let db = fresh_database().await;
    let config = Config::from_request(&db.config)
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let connection = config.connection;
    assert_eq!(connection.host, "localhost");
    // Through the Redshift-shaped proxy in front of the server.
    assert_eq!(connection.port, Some(support::proxy().port()));
    assert_eq!(connection.database, db.name);
    assert_eq!(
        connection.authentication.configured_user(),
        Some(cluster().admin_user())
    );
    assert_eq!(connection.sslmode, SslMode::VerifyFull);
    assert_eq!(
        connection.root_certificates,
        RootCertificates::Pem(cluster().ca_cert_pem().to_vec())
    );
}

#[tokio::test]
async fn the_in_process_grpc_server_answers() {
    let server = TestServer::start().await;
    assert!(server.addr().ip().is_loopback());

    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "fivetran_sdk.v2.SourceConnector"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("health check of `{service}`: {status}"));
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    }

    // The connector service is routed: it answers, whether with a form or a status.
    let mut client = server.client().await;
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.configuration_form(fivetran_source::proto::ConfigurationFormRequest {}),
    )
    .await;
    assert!(answer.is_ok(), "ConfigurationForm did not answer");
}

fn postmaster_pid(data_dir: &Path) -> String {
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap();
    pid_file.lines().next().unwrap().trim().to_string()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn process_alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn dropping_the_server_stops_it_and_removes_its_directory() {
    let pg = LocalPostgres::start().unwrap_or_else(|err| panic!("{}", chain(&err)));
    let dir = pg.directory().to_path_buf();
    let pid = postmaster_pid(&dir.join("data"));
    assert!(process_alive(&pid));
    assert!(pg.ca_cert_path().is_file());

    drop(pg);
    assert!(!dir.exists(), "{} is left behind", dir.display());
    // pg_ctl returns once the pid file is gone, a moment before the process itself.
    wait_until(Duration::from_secs(10), || !process_alive(&pid));
    assert!(!process_alive(&pid), "postmaster {pid} still runs");
}

#[test]
fn the_watchdog_cleans_up_after_the_process_it_watches() {
    // Stands in for the test process: the server is tied to it, then leaked as a static would be.
    let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
    let pg = LocalPostgres::start_with_watchdog_on(owner.id())
        .unwrap_or_else(|err| panic!("{}", chain(&err)));
    let dir = pg.directory().to_path_buf();
    let pid = postmaster_pid(&dir.join("data"));
    let _leaked = std::mem::ManuallyDrop::new(pg);

    owner.kill().unwrap();
    owner.wait().unwrap(); // a zombie would still count as alive
    wait_until(Duration::from_secs(20), || {
        !dir.exists() && !process_alive(&pid)
    });
    assert!(!process_alive(&pid), "postmaster {pid} outlived its owner");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
