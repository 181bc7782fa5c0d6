//! IAM sign-in (`auth` = iam) against a local AWS API emulator (moto, see `support::aws`):
//! the connector runs as its own process, as hosts run it, and finds AWS credentials through
//! the standard chain (here the environment, or a profile file). Every temporary password
//! the emulator hands out is installed in PostgreSQL valid until its expiration.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use fivetran_source::proto::SchemaRequest;
use support::aws::{
    credentials_env, isolated_env, AwsEmulator, FrontSettings, CLUSTER, REGION, WORKGROUP,
};
use support::redshift::{Faults, RedshiftProxy, Settings};
use support::{own_proxy, stream, ServerProcess, TestDb};
use tonic::Code;

/// A database with two small tables, its proxy, and the emulator in front of moto.
async fn setup() -> (TestDb, RedshiftProxy, AwsEmulator) {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.a (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.a SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 minute' FROM generate_series(1, 300) g;
             CREATE TABLE public.b (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.b SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 minute' FROM generate_series(1, 300) g;",
        )
        .await
        .unwrap();
    let proxy = own_proxy(Settings::default());
    let port = proxy.port();
    let aws = AwsEmulator::launch(port).await;
    (db, proxy, aws)
}

/// A database user of the test's own: users are shared by every database of the server.
fn db_user(db: &TestDb) -> String {
    format!("loader_{}", db.name)
}

/// The connector's configuration for IAM sign-in: no host, user or password.
fn iam_config(db: &TestDb, aws: &AwsEmulator, target: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config: HashMap<String, String> = db
        .config
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "host" | "port" | "user" | "password"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    config.insert("auth".into(), "iam".into());
    config.insert("region".into(), REGION.into());
    config.insert("aws_endpoint_url".into(), aws.endpoint_url());
    config.insert("batch_size".into(), "100".into());
    for (key, value) in target {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

/// A provisioned cluster with `db_user`, found by DescribeClusters (no host): syncs, keeps the
/// temporary password while it is valid, and fetches a new one for any session opened after
/// it expired, including a reconnect in the middle of a table.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_sync_signs_in_and_renews_expired_passwords() {
    let (db, proxy, aws) = setup().await;
    let home = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    let mut client = server.client().await;
    let user = db_user(&db);
    let config = iam_config(
        &db,
        &aws,
        &[("cluster_identifier", CLUSTER), ("db_user", &user)],
    );

    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(
        first.upserts_of("a").len() + first.upserts_of("b").len(),
        600
    );
    let state = first.last_state().expect("a checkpoint");
    stream::update_ok(&mut client, &config, None, Some(state.clone())).await;
    assert_eq!(
        aws.calls("DescribeClusters"),
        1,
        "the endpoint is asked once"
    );
    assert_eq!(
        aws.calls("GetClusterCredentials"),
        1,
        "one password for every session of both syncs"
    );
    // The database user is the one AWS named.
    let users = db
        .client
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname = $1",
            &[&format!("IAM:{user}")],
        )
        .await
        .unwrap();
    assert_eq!(users.len(), 1);

    // Passwords now good for exactly the connector's one-minute margin: each is used for the
    // session it was fetched for, and a later session needs a new one (whatever the retry's
    // jittered pause); another database user, so that nothing cached applies. The proxy drops
    // the connection in the middle of table `a`: the reconnect needs a new password.
    aws.set(FrontSettings {
        lifetime: Some(Duration::from_secs(60)),
        ..FrontSettings::default()
    });
    let config = iam_config(
        &db,
        &aws,
        &[
            ("cluster_identifier", CLUSTER),
            ("db_user", &format!("{user}_2")),
        ],
    );
    db.client
        .batch_execute(
            "UPDATE public.a SET updated_at = TIMESTAMP '2025-01-01' + id * INTERVAL '1 second'",
        )
        .await
        .unwrap();
    proxy.set(Settings {
        faults: Faults {
            // Past the catalog's statements: a fetch of table `a`.
            drop_at: Some(6),
            ..Faults::default()
        },
        ..Settings::default()
    });
    let second = stream::update_ok(&mut client, &config, None, Some(state)).await;
    assert_eq!(second.upserts_of("a").len(), 300);
    assert!(
        aws.calls("GetClusterCredentials") >= 3,
        "the reconnect signed in with a new password: {} calls",
        aws.calls("GetClusterCredentials")
    );
}

/// The database refuses a password the connector believes valid (clocks disagree, or it was
/// superseded): it is forgotten and one new password is fetched.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_temporary_password_is_fetched_again() {
    let (db, _proxy, aws) = setup().await;
    aws.set(FrontSettings {
        expired_in_database: 1,
        ..FrontSettings::default()
    });
    let home = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    let mut client = server.client().await;
    let config = iam_config(
        &db,
        &aws,
        &[("cluster_identifier", CLUSTER), ("db_user", &db_user(&db))],
    );
    let log = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(log.upserts_of("a").len(), 300);
    assert_eq!(aws.calls("GetClusterCredentials"), 2);
}

/// An identity without the permission: Test fails and Schema is PERMISSION_DENIED, both
/// naming the action to grant; Update ends with one Task saying the same.
#[tokio::test(flavor = "multi_thread")]
async fn access_denied_names_the_missing_permission() {
    let (db, _proxy, aws) = setup().await;
    let home = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(&credentials_env(&aws.outsider, home.path()));
    let mut client = server.client().await;
    let config = iam_config(
        &db,
        &aws,
        &[
            ("host", "localhost"),
            ("cluster_identifier", CLUSTER),
            ("db_user", &db_user(&db)),
        ],
    );

    let failure = support::connect_test_failure(&mut client, &config).await;
    assert!(
        failure.contains("redshift:GetClusterCredentials"),
        "{failure}"
    );
    assert!(
        failure.contains("not authorized"),
        "AWS's own words are kept: {failure}"
    );

    let schema = client
        .schema(SchemaRequest {
            configuration: config.clone(),
        })
        .await
        .expect_err("Schema fails");
    assert_eq!(schema.code(), Code::PermissionDenied, "{schema:?}");

    let update = stream::try_update(&mut client, &config, None, None).await;
    let tasks = update.log.tasks();
    assert_eq!(tasks.len(), 1, "{:?}", update.log.ops);
    assert!(
        tasks[0].contains("redshift:GetClusterCredentials"),
        "{}",
        tasks[0]
    );
    assert!(
        tasks[0].contains(&format!("dbuser:{CLUSTER}/{}", db_user(&db))),
        "the resource too: {}",
        tasks[0]
    );
}

/// No AWS credentials anywhere in the chain: the message says where the connector looks.
#[tokio::test(flavor = "multi_thread")]
async fn missing_aws_credentials_say_where_to_put_them() {
    let (db, _proxy, aws) = setup().await;
    let home = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(&isolated_env(home.path()));
    let mut client = server.client().await;
    let config = iam_config(
        &db,
        &aws,
        &[("cluster_identifier", CLUSTER), ("db_user", &db_user(&db))],
    );
    let schema = client
        .schema(SchemaRequest {
            configuration: config,
        })
        .await
        .expect_err("Schema fails");
    assert_eq!(schema.code(), Code::Unauthenticated, "{schema:?}");
    assert!(
        schema.message().contains("AWS_ACCESS_KEY_ID"),
        "{}",
        schema.message()
    );
    assert_eq!(
        aws.calls("GetClusterCredentials"),
        0,
        "nothing unsigned was sent"
    );
}

/// Redshift Serverless (GetWorkgroup for the endpoint, GetCredentials) and a provisioned
/// cluster without `db_user` (GetClusterCredentialsWithIAM): both sign in as the IAM
/// identity. Credentials come from a profile in the shared credentials file.
#[tokio::test(flavor = "multi_thread")]
async fn serverless_and_iam_identity_sign_in_with_profile_credentials() {
    let (db, _proxy, aws) = setup().await;
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[sync]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            aws.syncer.id, aws.syncer.secret
        ),
    )
    .unwrap();
    let mut env = isolated_env(home.path());
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        credentials.display().to_string(),
    ));
    env.push(("AWS_PROFILE".into(), "sync".into()));
    let server = ServerProcess::start_in(&env);
    let mut client = server.client().await;

    let serverless = iam_config(&db, &aws, &[("workgroup", WORKGROUP)]);
    let log = stream::update_ok(&mut client, &serverless, None, None).await;
    assert_eq!(log.upserts_of("a").len(), 300);
    assert_eq!(
        (aws.calls("GetWorkgroup"), aws.calls("GetCredentials")),
        (1, 1)
    );

    let identity = iam_config(&db, &aws, &[("cluster_identifier", CLUSTER)]);
    let log = stream::update_ok(&mut client, &identity, None, None).await;
    assert_eq!(log.upserts_of("b").len(), 300);
    assert_eq!(aws.calls("GetClusterCredentialsWithIAM"), 1);

    // A workgroup that does not exist is named, with the keys to check.
    let missing = iam_config(&db, &aws, &[("workgroup", "nope")]);
    let schema = client
        .schema(SchemaRequest {
            configuration: missing,
        })
        .await
        .expect_err("Schema fails");
    assert_eq!(schema.code(), Code::InvalidArgument, "{schema:?}");
    assert!(
        schema.message().contains("`workgroup`"),
        "{}",
        schema.message()
    );
}
