//! ConfigurationForm, Test and Schema against a real PostgreSQL standing in for Redshift.
//!
//! What a user sees before the first sync: the form lists every key the connector reads, `Test`
//! turns each way a setup can be wrong into a `failure` that says what to fix (never an error
//! status, never the password), and `Schema` lists exactly the tables the configured user can
//! read, with their primary keys, however odd their names are.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::proto::{
    form_field, schema_response, ConfigurationFormRequest, Schema, SchemaRequest, TestRequest,
    TextField,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;
use tonic::Code;

type Config = HashMap<String, String>;
/// schema -> table -> [(column, primary_key)], columns in table order.
type Layout = BTreeMap<String, BTreeMap<String, Vec<(String, bool)>>>;
/// Configuration entries added to a base configuration.
type Pairs<'a> = &'a [(&'a str, &'a str)];

/// The keys the connector documents (config.rs), spelled out here so that a key dropped from
/// the form or renamed shows up as a test failure rather than following along silently.
const KEYS: &[&str] = &[
    "host",
    "port",
    "database",
    "transport",
    "auth",
    "user",
    "password",
    "region",
    "cluster_identifier",
    "workgroup",
    "db_user",
    "auto_create",
    "db_groups",
    "aws_endpoint_url",
    "secret_arn",
    "sslmode",
    "sslrootcert",
    "ssh_host",
    "ssh_port",
    "ssh_user",
    "ssh_private_key",
    "ssh_private_key_passphrase",
    "ssh_host_key",
    "schemas",
    "tables",
    "cursor_column",
    "cursor_lag_s",
    "primary_key",
    "deleted_column",
    "delete_capture",
    "resync_interval_h",
    "work_schema",
    "new_column_backfill",
    "batch_size",
    "max_batch_bytes",
    "max_rows_per_query",
    "max_parallel_tables",
    "unload_s3_uri",
    "unload_iam_role",
    "unload_region",
    "unload_min_rows",
    "unload_s3_endpoint_url",
    "connect_timeout_s",
    "query_timeout_s",
    "retry_timeout_s",
];

fn with(config: &Config, pairs: &[(&str, &str)]) -> Config {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

async fn client() -> (support::TestServer, SourceConnectorClient<Channel>) {
    let server = support::TestServer::start().await;
    let client = server.client().await;
    (server, client)
}

use support::run_test;

async fn expect_failure(
    client: &mut SourceConnectorClient<Channel>,
    name: &str,
    config: &Config,
) -> String {
    match run_test(client, name, config).await {
        Ok(()) => panic!("Test `{name}` succeeded, but it must fail"),
        Err(reason) => reason,
    }
}

async fn expect_success(client: &mut SourceConnectorClient<Channel>, name: &str, config: &Config) {
    if let Err(reason) = run_test(client, name, config).await {
        panic!("Test `{name}` failed: {reason}");
    }
}

/// The schemas Schema reports (it must group by schema and allow selection).
async fn schema(client: &mut SourceConnectorClient<Channel>, config: &Config) -> Vec<Schema> {
    let response = client
        .schema(SchemaRequest {
            configuration: config.clone(),
        })
        .await
        .unwrap_or_else(|status| panic!("Schema failed: {status:?}"))
        .into_inner();
    assert_eq!(response.selection_not_supported, Some(false));
    match response.response {
        Some(schema_response::Response::WithSchema(list)) => list.schemas,
        other => panic!("Schema did not answer with_schema: {other:?}"),
    }
}

async fn schema_status(
    client: &mut SourceConnectorClient<Channel>,
    config: &Config,
) -> tonic::Status {
    match client
        .schema(SchemaRequest {
            configuration: config.clone(),
        })
        .await
    {
        Ok(response) => panic!(
            "Schema succeeded, but it must fail: {:?}",
            response.into_inner()
        ),
        Err(status) => status,
    }
}

/// What Schema reported, as a [`Layout`]; each schema and table must be listed once.
fn layout(schemas: &[Schema]) -> Layout {
    let mut out = BTreeMap::new();
    for schema in schemas {
        let previous = out.insert(
            schema.name.clone(),
            schema
                .tables
                .iter()
                .map(|table| {
                    let columns = table
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.primary_key))
                        .collect();
                    (table.name.clone(), columns)
                })
                .collect::<BTreeMap<_, _>>(),
        );
        assert!(
            previous.is_none(),
            "schema `{}` is listed twice",
            schema.name
        );
        let tables: BTreeSet<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tables.len(),
            schema.tables.len(),
            "a table is listed twice in `{}`",
            schema.name
        );
    }
    out
}

fn table_names(schemas: &[Schema]) -> BTreeSet<String> {
    schemas
        .iter()
        .flat_map(|s| {
            s.tables
                .iter()
                .map(move |t| format!("{}.{}", s.name, t.name))
        })
        .collect()
}

/// The cluster's `postgres` database, for tests that only connect and need no tables of their
/// own: creating a database per test costs most of a test's time.
async fn shared_database() -> support::TestDb {
    let cluster = support::cluster();
    support::TestDb {
        name: "postgres".to_string(),
        client: cluster.connect("postgres").await.unwrap(),
        config: cluster.connector_configuration("postgres"),
    }
}

/// A login role with an MD5 password (the cluster's `password_encryption`) and no grants.
/// Roles are cluster-wide, so the name includes the test's database.
async fn create_role(db: &support::TestDb, suffix: &str) -> (String, String) {
    let role = format!("{}_{}_{suffix}", db.name, std::process::id());
    let password = format!("pw-{suffix}-Q7x!");
    db.client
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"
        ))
        .await
        .unwrap();
    let md5: bool = db
        .client
        .query_one(
            "SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(md5, "the role's password must be MD5, as on Redshift");
    (role, password)
}

fn as_user(config: &Config, user: &str, password: &str) -> Config {
    with(config, &[("user", user), ("password", password)])
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// ConfigurationForm

#[tokio::test]
async fn the_form_has_every_key_the_tests_and_selection() {
    let (_server, mut client) = client().await;
    let form = client
        .configuration_form(ConfigurationFormRequest {})
        .await
        .unwrap()
        .into_inner();

    assert!(form.schema_selection_supported);
    assert!(form.table_selection_supported);

    // The direct transport's fields come in a group shown while `transport` is direct.
    let group = form
        .fields
        .iter()
        .find(|f| f.name == "direct_transport_settings")
        .expect("the direct transport's group");
    match &group.r#type {
        Some(form_field::Type::ConditionalFields(conditional)) => {
            let condition = conditional.condition.as_ref().expect("a condition");
            assert_eq!(condition.condition_field, "transport");
            assert!(conditional.fields.iter().any(|f| f.name == "host"));
        }
        other => panic!("the group is not conditional: {other:?}"),
    }
    let form_fields = support::form_leaves(&form.fields);
    let names: Vec<&str> = form_fields.iter().map(|f| f.name.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "a field is listed twice: {names:?}"
    );
    assert_eq!(unique, KEYS.iter().copied().collect::<BTreeSet<_>>());
    // The crate's own list of accepted keys agrees with the form.
    assert_eq!(
        unique,
        fivetran_source::config::keys::ALL
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
    );

    for field in &form_fields {
        assert!(
            !field.label.trim().is_empty(),
            "`{}` has no label",
            field.name
        );
        assert!(field.r#type.is_some(), "`{}` has no field type", field.name);
        // No key is needed by every sign-in method (a secret may name the database too): what
        // each needs is checked per `auth`, with an error naming the key.
        assert_eq!(
            field.required,
            Some(false),
            "`{}` required flag",
            field.name
        );
    }
    let password = form_fields.iter().find(|f| f.name == "password").unwrap();
    assert_eq!(
        password.r#type,
        Some(form_field::Type::TextField(TextField::Password as i32))
    );
    assert_eq!(password.default_value, None);
    // The secrets hide what the user types; nothing else does.
    const SECRETS: &[&str] = &["password", "ssh_private_key", "ssh_private_key_passphrase"];
    for name in SECRETS {
        let field = form_fields.iter().find(|f| f.name == *name).unwrap();
        assert_eq!(
            field.r#type,
            Some(form_field::Type::TextField(TextField::Password as i32)),
            "`{name}`"
        );
    }
    for field in form_fields
        .iter()
        .filter(|f| !SECRETS.contains(&f.name.as_str()))
    {
        assert_ne!(
            field.r#type,
            Some(form_field::Type::TextField(TextField::Password as i32)),
            "`{}`",
            field.name
        );
    }
    let sslmode = form_fields.iter().find(|f| f.name == "sslmode").unwrap();
    match &sslmode.r#type {
        Some(form_field::Type::DropdownField(dropdown)) => assert_eq!(
            dropdown.dropdown_field,
            ["disable", "prefer", "require", "verify-ca", "verify-full"]
        ),
        other => panic!("sslmode is not a dropdown: {other:?}"),
    }

    let tests: Vec<&str> = form.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tests, ["connect", "select"]);
    assert!(form.tests.iter().all(|t| !t.label.trim().is_empty()));
}

#[tokio::test]
async fn the_forms_default_values_are_a_working_configuration() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute("CREATE TABLE public.t (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    let (_server, mut client) = client().await;
    let form = client
        .configuration_form(ConfigurationFormRequest {})
        .await
        .unwrap()
        .into_inner();
    // What a user gets who fills in only the required fields and keeps every default shown.
    let mut config: Config = support::form_leaves(&form.fields)
        .iter()
        .filter_map(|f| Some((f.name.clone(), f.default_value.clone()?)))
        .collect();
    for key in [
        "host",
        "port",
        "database",
        "user",
        "password",
        "sslmode",
        "sslrootcert",
    ] {
        config.insert(key.to_string(), db.config[key].clone());
    }
    expect_success(&mut client, "connect", &config).await;
    expect_success(&mut client, "select", &config).await;
}

// ---------------------------------------------------------------------------------------------
// Test: successes

#[tokio::test]
async fn connect_and_select_pass_with_verify_full_on_localhost() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute("CREATE TABLE public.orders (id INTEGER PRIMARY KEY); INSERT INTO public.orders VALUES (1)")
        .await
        .unwrap();
    let (_server, mut client) = client().await;
    assert_eq!(db.config["sslmode"], "verify-full");
    assert_eq!(db.config["host"], "localhost");
    expect_success(&mut client, "connect", &db.config).await;
    expect_success(&mut client, "select", &db.config).await;
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let config = with(
        &db.config,
        &[("host", "127.0.0.1"), ("sslmode", "verify-ca")],
    );
    expect_success(&mut client, "connect", &config).await;

    // The chain is checked: a CA that did not sign the server certificate is refused.
    let other_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other_ca.path(), unrelated_ca_pem()).unwrap();
    let config = with(
        &config,
        &[("sslrootcert", other_ca.path().to_str().unwrap())],
    );
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(reason.contains("TLS"), "{reason}");
    assert!(reason.contains("sslrootcert"), "{reason}");
}

/// A self-signed CA certificate that has nothing to do with the test server.
fn unrelated_ca_pem() -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "unrelated test CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem().into_bytes()
}

#[tokio::test]
async fn every_sslmode_connects_to_a_server_that_offers_tls() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    for sslmode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
        let config = with(&db.config, &[("sslmode", sslmode)]);
        if let Err(reason) = run_test(&mut client, "connect", &config).await {
            panic!("sslmode={sslmode}: {reason}");
        }
    }

    // `sslrootcert` may be the PEM text itself instead of a path.
    let pem = String::from_utf8(support::cluster().ca_cert_pem().to_vec()).unwrap();
    let inline = with(&db.config, &[("sslrootcert", &pem)]);
    expect_success(&mut client, "connect", &inline).await;

    // Without it the system roots apply, and they do not know the test CA.
    let mut system_roots = db.config.clone();
    system_roots.remove("sslrootcert");
    let reason = expect_failure(&mut client, "connect", &system_roots).await;
    assert!(reason.contains("TLS"), "{reason}");
}

#[tokio::test]
async fn passwords_are_sent_verbatim() {
    // Quotes, backslashes, spaces (leading and trailing too), `=` and non-ASCII: a connector
    // that builds a connection string or trims the value would fail to log in.
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    for (i, password) in [" p@ss w'rd\\\"=ü ", "semi;colon sslmode=disable"]
        .into_iter()
        .enumerate()
    {
        let role = format!("{}_{}_verbatim{i}", db.name, std::process::id());
        db.client
            .execute(
                &format!(
                    "CREATE ROLE \"{role}\" LOGIN PASSWORD {}",
                    literal(password)
                ),
                &[],
            )
            .await
            .unwrap();
        let config = as_user(&db.config, &role, password);
        if let Err(reason) = run_test(&mut client, "connect", &config).await {
            panic!("password {password:?}: {reason}");
        }
        // Trimmed, it is another password.
        let config = as_user(&db.config, &role, password.trim());
        if password.trim() != password {
            let reason = expect_failure(&mut client, "connect", &config).await;
            assert!(
                reason.contains("password authentication failed"),
                "{reason}"
            );
        }
    }
}

/// A SQL string literal (standard_conforming_strings is on: only quotes are doubled).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---------------------------------------------------------------------------------------------
// Test: failures the user can fix come back as `failure`

#[tokio::test]
async fn an_unreachable_host_fails_quickly_and_names_host_and_port() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let port = closed_port();
    let config = with(
        &db.config,
        &[
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("connect_timeout_s", "2"),
        ],
    );
    for test in ["connect", "select"] {
        let started = Instant::now();
        let reason = expect_failure(&mut client, test, &config).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
        assert!(
            reason.contains("`host`") && reason.contains("`port`"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_silent_server_is_a_timeout_after_connect_timeout_s() {
    // Accepts TCP connections and never says a word, like a black-holed security group would
    // after the handshake.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let config = with(
        &db.config,
        &[
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("connect_timeout_s", "1"),
        ],
    );
    let started = Instant::now();
    let reason = expect_failure(&mut client, "connect", &config).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert!(reason.contains("timed out"), "{reason}");
    assert!(reason.contains("connect_timeout_s"), "{reason}");
    holder.abort();
}

#[tokio::test]
async fn a_wrong_password_names_the_user_and_never_the_password() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let wrong = "Wr0ng-Secret-4711";
    let config = with(&db.config, &[("password", wrong)]);
    for test in ["connect", "select"] {
        let reason = expect_failure(&mut client, test, &config).await;
        assert!(reason.contains("`sync_admin`"), "{reason}");
        assert!(reason.contains("password"), "{reason}");
        assert!(
            !reason.contains(wrong),
            "the failure shows the password: {reason}"
        );
    }

    // The same for an ordinary role, and an unknown user is not told apart from a bad password.
    let (role, password) = create_role(&db, "pw").await;
    let reason = expect_failure(&mut client, "connect", &as_user(&db.config, &role, wrong)).await;
    assert!(reason.contains(&format!("`{role}`")), "{reason}");
    assert!(
        !reason.contains(wrong) && !reason.contains(&password),
        "{reason}"
    );
    let reason = expect_failure(
        &mut client,
        "connect",
        &as_user(&db.config, "nobody_here", wrong),
    )
    .await;
    assert!(reason.contains("`nobody_here`"), "{reason}");
    assert!(!reason.contains(wrong), "{reason}");
}

#[tokio::test]
async fn an_unknown_database_is_named() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let config = with(&db.config, &[("database", "no_such_database_xyz")]);
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(reason.contains("`no_such_database_xyz`"), "{reason}");
    assert!(reason.contains("does not exist"), "{reason}");
    assert!(reason.contains("`database`"), "{reason}");
}

#[tokio::test]
async fn verify_full_rejects_a_host_name_the_certificate_lacks() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    // The harness certificate names only `localhost`.
    let config = with(&db.config, &[("host", "127.0.0.1")]);
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(reason.contains("TLS"), "{reason}");
    assert!(reason.contains("127.0.0.1"), "{reason}");
    assert!(
        reason.contains("verify-full") && reason.contains("sslmode=require"),
        "{reason}"
    );
    // And it is a TLS failure, not a password one: the server was never asked.
    assert!(!reason.contains("password authentication"), "{reason}");

    // sslmode=require encrypts without checking: the same host then connects.
    let config = with(&config, &[("sslmode", "require")]);
    expect_success(&mut client, "connect", &config).await;
}

#[tokio::test]
async fn select_fails_for_a_user_without_grants() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA sales;
             CREATE TABLE sales.orders (id INTEGER PRIMARY KEY);
             CREATE TABLE public.items (id INTEGER PRIMARY KEY);",
        )
        .await
        .unwrap();
    let (role, password) = create_role(&db, "nogrants").await;
    let (_server, mut client) = client().await;
    let config = as_user(&db.config, &role, &password);

    // Logging in works: connect passes, select cannot read anything.
    expect_success(&mut client, "connect", &config).await;
    let reason = expect_failure(&mut client, "select", &config).await;
    assert!(reason.contains(&format!("`{role}`")), "{reason}");
    assert!(
        reason.contains("grant") || reason.contains("GRANT"),
        "{reason}"
    );
    assert!(reason.contains("SELECT"), "{reason}");

    // With the grants the failure asks for, select passes.
    db.client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA sales TO \"{role}\";
             GRANT SELECT ON ALL TABLES IN SCHEMA sales TO \"{role}\";"
        ))
        .await
        .unwrap();
    expect_success(&mut client, "select", &config).await;
}

/// A server that answers the startup packet with authentication request `code` (Redshift's
/// 13 = SHA-256 password digest, 14 = identity-provider login), as tokio-postgres cannot.
/// Returns the port and a task yielding the user name the client sent, and what it sent after
/// the request.
async fn fake_redshift_auth(code: i32) -> (u16, tokio::task::JoinHandle<(String, Vec<u8>)>) {
    const SSL_REQUEST: i32 = 80_877_103;
    const PROTOCOL_3_0: i32 = 196_608;

    async fn read_message(socket: &mut TcpStream) -> Vec<u8> {
        let len = socket.read_i32().await.unwrap();
        assert!((8..10_000).contains(&len), "startup packet length {len}");
        let mut body = vec![0u8; len as usize - 4];
        socket.read_exact(&mut body).await.unwrap();
        body
    }

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut startup = read_message(&mut socket).await;
        if i32::from_be_bytes(startup[..4].try_into().unwrap()) == SSL_REQUEST {
            socket.write_all(b"N").await.unwrap();
            startup = read_message(&mut socket).await;
        }
        assert_eq!(
            i32::from_be_bytes(startup[..4].try_into().unwrap()),
            PROTOCOL_3_0
        );
        let params: Vec<&[u8]> = startup[4..].split(|b| *b == 0).collect();
        let user = params
            .windows(2)
            .find(|pair| pair[0] == b"user")
            .map(|pair| String::from_utf8(pair[1].to_vec()).unwrap())
            .expect("the startup packet names the user");

        // AuthenticationRequest: 'R', length, code, then the method's data (for 13: digest
        // type, salt and server nonce, each length-prefixed).
        let mut payload = Vec::new();
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&0i32.to_be_bytes());
        payload.extend_from_slice(&4i32.to_be_bytes());
        payload.extend_from_slice(b"salt");
        payload.extend_from_slice(&8i32.to_be_bytes());
        payload.extend_from_slice(b"nonce-01");
        let mut message = vec![b'R'];
        message.extend_from_slice(&(payload.len() as i32 + 4).to_be_bytes());
        message.extend_from_slice(&payload);
        socket.write_all(&message).await.unwrap();
        // Wait for the client to give up.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
        (user, rest)
    });
    (port, task)
}

/// A server that asks for the password in cleartext (auth code 3) over a connection whose
/// certificate was not verified gets nothing: an on-path attacker could have asked. The
/// failure says which sslmode to set.
#[tokio::test]
async fn a_cleartext_password_is_never_sent_over_an_unverified_connection() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    for sslmode in ["prefer", "disable"] {
        let (port, server) = fake_redshift_auth(3).await;
        let config = with(
            &db.config,
            &[
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("sslmode", sslmode),
                ("user", "plain_user"),
                ("password", "Plain-Secret-42"),
                ("connect_timeout_s", "3"),
            ],
        );
        let reason = expect_failure(&mut client, "connect", &config).await;
        let (user, sent) = server.await.unwrap();
        assert_eq!(user, "plain_user");
        assert!(
            !String::from_utf8_lossy(&sent).contains("Plain-Secret-42"),
            "sslmode={sslmode}: the password was sent"
        );
        assert!(reason.contains("cleartext"), "{reason}");
        assert!(reason.contains("verify-full"), "{reason}");
        assert!(!reason.contains("Plain-Secret-42"), "{reason}");
    }
}

/// Without `sslmode` the certificate is verified (verify-full): the test server's private CA
/// is not in the system roots, so it is refused until `sslrootcert` names it.
#[tokio::test]
async fn the_default_sslmode_verifies_the_certificate() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let mut defaults = db.config.clone();
    defaults.remove("sslmode");
    expect_success(&mut client, "connect", &defaults).await;
    defaults.remove("sslrootcert");
    let reason = expect_failure(&mut client, "connect", &defaults).await;
    assert!(reason.contains("TLS"), "{reason}");
    assert!(reason.contains("sslrootcert"), "{reason}");
}

/// Users whose Redshift password is kept as a SHA-256 digest (`PASSWORD 'sha256|…'`) sign in
/// with Redshift's authentication request 13. The proxy plays Redshift's side and checks the
/// digest with its own code; a wrong password is refused as one.
#[tokio::test]
async fn sha256_password_users_sign_in_and_a_wrong_password_is_refused() {
    let db = shared_database().await;
    let (role, password) = create_role(&db, "sha").await;
    let proxy = support::proxy();
    proxy.add_sha256_user(&role, &password);
    let through_proxy = proxy.connector_configuration("postgres");
    let (_server, mut client) = client().await;

    let before = proxy.sha256_sign_ins();
    expect_success(
        &mut client,
        "connect",
        &as_user(&through_proxy, &role, &password),
    )
    .await;
    assert_eq!(
        proxy.sha256_sign_ins(),
        before + 1,
        "signed in by request 13"
    );

    let wrong = "Wr0ng-Sha-Secret-7";
    let reason = expect_failure(
        &mut client,
        "connect",
        &as_user(&through_proxy, &role, wrong),
    )
    .await;
    assert!(reason.contains(&format!("`{role}`")), "{reason}");
    assert!(reason.contains("check `user` and `password`"), "{reason}");
    assert!(
        !reason.contains(wrong) && !reason.contains(&password),
        "{reason}"
    );
    assert_eq!(proxy.sha256_sign_ins(), before + 1);
}

/// Redshift's identity-provider sign-in (request 14) needs a browser or IdP plugin; the
/// failure names IAM sign-in, which reaches the same users without one.
#[tokio::test]
async fn identity_provider_authentication_says_what_to_use_instead() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    for sslmode in ["prefer", "disable"] {
        let (port, server) = fake_redshift_auth(14).await;
        let config = with(
            &db.config,
            &[
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("sslmode", sslmode),
                ("user", "sha_user"),
                ("password", "Sha-Secret-99"),
                ("connect_timeout_s", "3"),
            ],
        );
        let reason = expect_failure(&mut client, "connect", &config).await;
        assert_eq!(server.await.unwrap().0, "sha_user", "sslmode={sslmode}");
        assert!(reason.contains("`sha_user`"), "{reason}");
        assert!(reason.contains("authentication method"), "{reason}");
        assert!(reason.contains("MD5"), "{reason}");
        assert!(reason.contains("IAM"), "{reason}");
        assert!(!reason.contains("Sha-Secret-99"), "{reason}");
    }
}

#[tokio::test]
async fn a_server_without_tls_is_explained_when_tls_is_required() {
    // A cluster... or any server that answers the SSLRequest with 'N' (no TLS).
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let len = socket.read_i32().await.unwrap();
        let code = socket.read_i32().await.unwrap();
        assert_eq!((len, code), (8, 80_877_103), "not an SSLRequest");
        socket.write_all(b"N").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
        rest
    });
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let config = with(
        &db.config,
        &[
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("sslmode", "require"),
            ("connect_timeout_s", "3"),
        ],
    );
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(reason.contains("does not accept TLS"), "{reason}");
    assert!(reason.contains("sslmode=require"), "{reason}");
    assert!(reason.contains("sslmode=prefer"), "{reason}");
    // Nothing, least of all the password, was sent in the clear after the refusal.
    let sent = server.await.unwrap();
    assert!(
        sent.is_empty(),
        "sent {} bytes after TLS was refused",
        sent.len()
    );
}

#[tokio::test]
async fn a_bad_configuration_value_is_a_failure_naming_the_key() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let cases: &[(&str, &str)] = &[
        ("port", "abc"),
        ("port", "70000"),
        ("sslmode", "sometimes"),
        ("connect_timeout_s", "0"),
        ("batch_size", "lots"),
        ("tables", "no_schema_here"),
        ("sslrootcert", "/nonexistent/ca.pem"),
        ("colour", "blue"),
    ];
    for (key, value) in cases {
        for test in ["connect", "select"] {
            let reason =
                expect_failure(&mut client, test, &with(&db.config, &[(key, value)])).await;
            assert!(
                reason.contains(&format!("`{key}`")),
                "{key}={value}: {reason}"
            );
        }
    }
    // A missing required key is named too.
    let mut config = db.config.clone();
    config.remove("database");
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(reason.contains("`database`"), "{reason}");
}

#[tokio::test]
async fn an_unknown_test_name_is_invalid_argument() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let status = client
        .test(TestRequest {
            name: "ping".to_string(),
            configuration: db.config.clone(),
        })
        .await
        .expect_err("an unknown test is a status error");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("ping"), "{}", status.message());
    assert!(status.message().contains("connect") && status.message().contains("select"));
}

// ---------------------------------------------------------------------------------------------
// Schema

#[tokio::test]
async fn schema_groups_tables_by_schema() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA alpha; CREATE SCHEMA beta; CREATE SCHEMA empty_one;
             CREATE TABLE alpha.a1 (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE alpha.a2 (id BIGINT PRIMARY KEY);
             CREATE TABLE beta.b1 (k VARCHAR(10) PRIMARY KEY, n INTEGER, m DATE);
             CREATE TABLE public.p1 (id INTEGER);
             CREATE VIEW beta.b_view AS SELECT k, n FROM beta.b1;",
        )
        .await
        .unwrap();
    let (_server, mut client) = client().await;
    let schemas = schema(&mut client, &db.config).await;
    let layout = layout(&schemas);

    let expected: Layout = [
        (
            "alpha",
            vec![
                ("a1", vec![("id", true), ("v", false)]),
                ("a2", vec![("id", true)]),
            ],
        ),
        (
            "beta",
            vec![
                ("b1", vec![("k", true), ("n", false), ("m", false)]),
                ("b_view", vec![("k", false), ("n", false)]),
            ],
        ),
        ("public", vec![("p1", vec![("id", false)])]),
    ]
    .into_iter()
    .map(|(schema, tables)| {
        let tables = tables
            .into_iter()
            .map(|(table, columns)| {
                let columns = columns
                    .into_iter()
                    .map(|(c, pk)| (c.to_string(), pk))
                    .collect();
                (table.to_string(), columns)
            })
            .collect();
        (schema.to_string(), tables)
    })
    .collect();
    // Columns in table order; a schema without tables is not listed.
    assert_eq!(layout, expected);
}

#[tokio::test]
async fn a_select_only_user_sees_primary_keys_and_only_readable_tables() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA shop; CREATE SCHEMA locked;
             CREATE TABLE shop.customers (id INTEGER PRIMARY KEY, name TEXT);
             CREATE TABLE shop.order_lines (
                 note TEXT, order_id INTEGER, line_no SMALLINT, qty INTEGER,
                 PRIMARY KEY (order_id, line_no));
             CREATE TABLE shop.no_key (x INTEGER, y TEXT);
             CREATE TABLE shop.secret (id INTEGER PRIMARY KEY);
             CREATE TABLE locked.hidden (id INTEGER PRIMARY KEY);
             CREATE TABLE public.also_hidden (id INTEGER PRIMARY KEY);",
        )
        .await
        .unwrap();
    let (role, password) = create_role(&db, "reader").await;
    db.client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA shop TO \"{role}\";
             GRANT SELECT ON shop.customers, shop.order_lines, shop.no_key TO \"{role}\";
             -- SELECT on a table in a schema without USAGE is still unreadable.
             GRANT SELECT ON locked.hidden TO \"{role}\";"
        ))
        .await
        .unwrap();
    // The role really has nothing but USAGE and SELECT.
    let privileges: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM information_schema.role_table_grants
             WHERE grantee = $1 AND privilege_type <> 'SELECT'",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(privileges, 0);

    let (_server, mut client) = client().await;
    let config = as_user(&db.config, &role, &password);
    let layout = layout(&schema(&mut client, &config).await);
    let shop = |columns: &[(&str, bool)]| -> Vec<(String, bool)> {
        columns.iter().map(|(c, pk)| (c.to_string(), *pk)).collect()
    };
    let expected: Layout = [(
        "shop".to_string(),
        [
            ("customers", shop(&[("id", true), ("name", false)])),
            ("no_key", shop(&[("x", false), ("y", false)])),
            (
                "order_lines",
                shop(&[
                    ("note", false),
                    ("order_id", true),
                    ("line_no", true),
                    ("qty", false),
                ]),
            ),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_string(), c))
        .collect(),
    )]
    .into_iter()
    .collect();
    assert_eq!(layout, expected);
}

#[tokio::test]
async fn the_schemas_and_tables_filters_apply() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE SCHEMA alpha; CREATE SCHEMA beta; CREATE SCHEMA gamma;
             CREATE TABLE alpha.t1 (id INTEGER); CREATE TABLE alpha.t2 (id INTEGER);
             CREATE TABLE beta.t1 (id INTEGER); CREATE TABLE beta.t3 (id INTEGER);
             CREATE TABLE gamma.t1 (id INTEGER);",
        )
        .await
        .unwrap();
    let (_server, mut client) = client().await;
    let cases: &[(Pairs<'_>, &[&str])] = &[
        (
            &[],
            &["alpha.t1", "alpha.t2", "beta.t1", "beta.t3", "gamma.t1"],
        ),
        (&[("schemas", "alpha")], &["alpha.t1", "alpha.t2"]),
        (
            &[("schemas", " beta , gamma ")],
            &["beta.t1", "beta.t3", "gamma.t1"],
        ),
        (&[("tables", "alpha.t2, beta.t1")], &["alpha.t2", "beta.t1"]),
        (
            &[
                ("schemas", "alpha,beta"),
                ("tables", "alpha.t1,gamma.t1,beta.t3"),
            ],
            &["alpha.t1", "beta.t3"],
        ),
        (&[("schemas", "no_such_schema")], &[]),
        (&[("tables", "alpha.nope")], &[]),
        // Blank values mean "no filter", as an empty form field arrives.
        (
            &[("schemas", ""), ("tables", " ")],
            &["alpha.t1", "alpha.t2", "beta.t1", "beta.t3", "gamma.t1"],
        ),
    ];
    for (filters, expected) in cases {
        let names = table_names(&schema(&mut client, &with(&db.config, filters)).await);
        let expected: BTreeSet<String> = expected.iter().map(ToString::to_string).collect();
        assert_eq!(names, expected, "filters {filters:?}");
    }
}

#[tokio::test]
async fn quotes_spaces_capitals_and_non_ascii_names_survive() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            r#"CREATE SCHEMA "Sales Data";
               CREATE TABLE "Sales Data"."Order ""Items""" (
                   "Ünïcode Col" INTEGER,
                   "CamelCase" VARCHAR(20),
                   "with space" TEXT,
                   "quote""col" TEXT,
                   "日本語" TEXT,
                   PRIMARY KEY ("Ünïcode Col", "CamelCase"));
               CREATE TABLE "Sales Data"."MiXeD" ("Id" INTEGER PRIMARY KEY);
               CREATE TABLE public."semi;colon -- x" (id INTEGER);
               INSERT INTO "Sales Data"."Order ""Items""" VALUES (1, 'a', 'b', 'c', 'd');"#,
        )
        .await
        .unwrap();
    let (_server, mut client) = client().await;
    let layout = layout(&schema(&mut client, &db.config).await);
    let columns = |c: &[(&str, bool)]| c.iter().map(|(n, pk)| (n.to_string(), *pk)).collect();
    let expected: Layout = [
        (
            "Sales Data".to_string(),
            [
                ("MiXeD".to_string(), columns(&[("Id", true)])),
                (
                    "Order \"Items\"".to_string(),
                    columns(&[
                        ("Ünïcode Col", true),
                        ("CamelCase", true),
                        ("with space", false),
                        ("quote\"col", false),
                        ("日本語", false),
                    ]),
                ),
            ]
            .into_iter()
            .collect(),
        ),
        (
            "public".to_string(),
            [("semi;colon -- x".to_string(), columns(&[("id", false)]))]
                .into_iter()
                .collect(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(layout, expected);

    // The same names work in the filters, quoted as in SQL, and in the select test's query.
    let filtered = with(
        &db.config,
        &[
            ("schemas", "\"Sales Data\""),
            ("tables", "\"Sales Data\".\"Order \"\"Items\"\"\""),
        ],
    );
    assert_eq!(
        table_names(&schema(&mut client, &filtered).await),
        BTreeSet::from(["Sales Data.Order \"Items\"".to_string()])
    );
    expect_success(&mut client, "select", &filtered).await;
}

#[tokio::test]
async fn system_schemas_are_never_listed() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.real_data (id INTEGER PRIMARY KEY);
             -- Redshift's own catalog schema (here it holds the tests' Redshift emulation).
             CREATE TABLE catalog_history.snapshot (id INTEGER);
             CREATE TEMPORARY TABLE scratch (id INTEGER);",
        )
        .await
        .unwrap();
    let (_server, mut client) = client().await;
    // The admin is a superuser: it could read every catalog table.
    let schemas = schema(&mut client, &db.config).await;
    let names: Vec<&str> = schemas.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["public"]);
    assert_eq!(
        table_names(&schemas),
        BTreeSet::from(["public.real_data".to_string()])
    );

    // Asking for a system schema by name does not bring it back.
    let config = with(
        &db.config,
        &[("schemas", "pg_catalog,information_schema,catalog_history")],
    );
    assert!(schema(&mut client, &config).await.is_empty());
}

#[tokio::test]
async fn schema_errors_map_to_status_codes() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;

    // Bad configuration: INVALID_ARGUMENT naming the key, before any connection is tried.
    for (key, value) in [("port", "abc"), ("batch_size", "0"), ("sslmode", "maybe")] {
        let status = schema_status(&mut client, &with(&db.config, &[(key, value)])).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{key}: {status:?}");
        assert!(
            status.message().contains(&format!("`{key}`")),
            "{}",
            status.message()
        );
    }

    // Unreachable host: UNAVAILABLE (the host may retry).
    let port = closed_port().to_string();
    let config = with(
        &db.config,
        &[
            ("host", "127.0.0.1"),
            ("port", &port),
            ("connect_timeout_s", "2"),
        ],
    );
    let status = schema_status(&mut client, &config).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains(&port), "{}", status.message());

    // Wrong password: UNAUTHENTICATED, naming the user, not the password.
    let wrong = "Not-The-Pa55word";
    let status = schema_status(&mut client, &with(&db.config, &[("password", wrong)])).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains("`sync_admin`"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains(wrong), "{}", status.message());
    assert!(!format!("{status:?}").contains(wrong));
}

/// A server that signs the client in and then stops in the middle of its answer's first
/// message cannot hold Test: after `connect_timeout_s` without the rest, the session fails.
#[tokio::test]
async fn a_server_that_stops_mid_message_does_not_hold_the_test() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // Startup packet (no TLS asked for with sslmode=disable).
        let len = socket.read_i32().await.unwrap();
        let mut startup = vec![0u8; len as usize - 4];
        socket.read_exact(&mut startup).await.unwrap();
        let mut answer = Vec::new();
        answer.extend_from_slice(b"R\0\0\0\x08\0\0\0\0"); // AuthenticationOk
        answer.extend_from_slice(b"S\0\0\0\x19server_version\x008.0.2\0");
        answer.extend_from_slice(b"Z\0\0\0\x05I"); // ReadyForQuery
        socket.write_all(&answer).await.unwrap();
        // Whatever is asked next: the first 3 bytes of a RowDescription, then silence.
        let mut request = [0u8; 1024];
        let _ = socket.read(&mut request).await.unwrap();
        socket.write_all(b"T\0\0").await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let config = with(
        &db.config,
        &[
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("sslmode", "disable"),
            ("connect_timeout_s", "2"),
        ],
    );
    let started = Instant::now();
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(reason.contains("middle of a message"), "{reason}");
    server.abort();
}

/// `sslmode = verify-ca` checks a certificate's chain but not its name: against the system
/// roots any public certificate for any domain would pass, so it needs `sslrootcert` and is
/// refused without it, before anything connects, naming what to set.
#[tokio::test]
async fn verify_ca_without_sslrootcert_is_refused() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let mut config = with(&db.config, &[("sslmode", "verify-ca")]);
    config.remove("sslrootcert");
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(reason.contains("`sslmode`"), "{reason}");
    assert!(reason.contains("sslrootcert"), "{reason}");
    assert!(reason.contains("verify-full"), "{reason}");
    let status = client
        .schema(SchemaRequest {
            configuration: config,
        })
        .await
        .expect_err("Schema refuses it");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

/// A server whose certificate chains to a trusted root but names another host (the harness
/// certificate names `localhost`; the connector is told `127.0.0.1`) asks for the password in
/// cleartext: with verify-full it never receives it, because TLS ends before sign-in.
#[tokio::test]
async fn a_trusted_certificate_for_another_name_never_receives_the_password() {
    let db = shared_database().await;
    let (_server, mut client) = client().await;
    let (port, server) = tls_server_asking_for_cleartext().await;
    let config = with(
        &db.config,
        &[
            ("host", "127.0.0.1"),
            ("port", &port.to_string()),
            ("sslmode", "verify-full"),
            ("user", "plain_user"),
            ("password", "Plain-Secret-42"),
            ("connect_timeout_s", "3"),
        ],
    );
    let reason = expect_failure(&mut client, "connect", &config).await;
    assert!(reason.contains("TLS"), "{reason}");
    let received = server.await.unwrap();
    assert!(
        !String::from_utf8_lossy(&received).contains("Plain-Secret-42"),
        "the password reached a server that is not who it claims"
    );
}

/// A TLS server with the harness certificate that asks for the password in cleartext; yields
/// every byte it received inside TLS after its request (nothing if the handshake failed).
async fn tls_server_asking_for_cleartext() -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    use rustls_pki_types::pem::PemObject;
    let (cert, key) = support::cluster().server_certificate_pem().unwrap();
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await.unwrap();
        socket.write_all(b"S").await.unwrap();
        let Ok(mut tls) = acceptor.accept(socket).await else {
            return Vec::new();
        };
        let length = tls.read_i32().await.unwrap();
        let mut startup = vec![0u8; length as usize - 4];
        tls.read_exact(&mut startup).await.unwrap();
        let mut request = vec![b'R'];
        request.extend(8i32.to_be_bytes());
        request.extend(3i32.to_be_bytes());
        tls.write_all(&request).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
        rest
    });
    (port, task)
}
