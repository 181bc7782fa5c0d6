//! Secrets Manager sign-in (`auth` = secret) against the AWS API emulator (moto, see
//! `support::aws`): the connector runs as its own process, as hosts run it, finds AWS
//! credentials through the standard chain, and reads the user, password, endpoint and database
//! from a secret in the JSON AWS writes for Redshift.

use crate::support;

use std::collections::HashMap;

use support::aws::{credentials_env, AwsEmulator};
use support::redshift::{RedshiftProxy, Settings};
use support::{own_proxy, stream, ServerProcess, TestDb};

/// A database with a small table, a database user of the test's own that may read it, its
/// proxy, and the emulator in front of moto.
async fn setup(password: &str) -> (TestDb, RedshiftProxy, AwsEmulator, String) {
    let db = support::fresh_database().await;
    let user = format!("secret_{}", db.name);
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.a (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.a SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 minute' FROM generate_series(1, 250) g;
             CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}';
             GRANT USAGE ON SCHEMA public TO \"{user}\";
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{user}\";"
        ))
        .await
        .unwrap();
    let proxy = own_proxy(Settings::default());
    let port = proxy.port();
    let aws = AwsEmulator::launch(port).await;
    (db, proxy, aws, user)
}

/// The secret as AWS writes it for a Redshift cluster, pointing at the test's proxy.
fn secret_text(user: &str, password: &str, proxy: &RedshiftProxy, db: &TestDb) -> String {
    serde_json::json!({
        "username": user,
        "password": password,
        "engine": "redshift",
        "host": "localhost",
        "port": proxy.port(),
        "dbname": db.name,
    })
    .to_string()
}

/// The connector's configuration for a secret: no host, port, database, user or password.
fn secret_config(db: &TestDb, aws: &AwsEmulator, arn: &str) -> HashMap<String, String> {
    let mut config: HashMap<String, String> = db
        .config
        .iter()
        .filter(|(key, _)| {
            !matches!(
                key.as_str(),
                "host" | "port" | "database" | "user" | "password"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    config.insert("auth".into(), "secret".into());
    config.insert("secret_arn".into(), arn.into());
    config.insert("aws_endpoint_url".into(), aws.endpoint_url());
    config.insert("batch_size".into(), "100".into());
    config
}

/// The endpoint, database, user and password all come from the secret, which is read once for
/// every session of two syncs; after a rotation (the database's password and the secret's
/// changed together) the refused password makes the connector read the secret again, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_signs_in_with_the_secret_and_reads_it_again_after_a_rotation() {
    let (db, proxy, aws, user) = setup("First-pass-1").await;
    let arn = aws
        .put_secret(
            "redshift/sync",
            &secret_text(&user, "First-pass-1", &proxy, &db),
        )
        .await;
    let home = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    let mut client = server.client().await;
    let config = secret_config(&db, &aws, &arn);

    support::run_test(&mut client, "connect", &config)
        .await
        .unwrap_or_else(|failure| panic!("connect: {failure}"));
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert_eq!(first.upserts_of("a").len(), 250);
    let state = first.last_state().expect("a checkpoint");
    db.client
        .batch_execute("UPDATE public.a SET updated_at = TIMESTAMP '2025-01-01' WHERE id <= 5")
        .await
        .unwrap();
    let second = stream::update_ok(&mut client, &config, None, Some(state.clone())).await;
    assert_eq!(second.upserts_of("a").len(), 5);
    assert_eq!(
        aws.calls("GetSecretValue"),
        1,
        "one read of the secret for the Test and both syncs"
    );

    // A rotation: the database's password, then the secret.
    db.client
        .batch_execute(&format!("ALTER ROLE \"{user}\" PASSWORD 'Second-pass-2'"))
        .await
        .unwrap();
    aws.put_secret(
        "redshift/sync",
        &secret_text(&user, "Second-pass-2", &proxy, &db),
    )
    .await;
    let state = second.last_state().expect("a checkpoint");
    let third = stream::update_ok(&mut client, &config, None, Some(state)).await;
    assert!(third.tasks().is_empty(), "{:?}", third.ops);
    assert_eq!(
        aws.calls("GetSecretValue"),
        2,
        "the refused password made the connector read the secret once more"
    );
}

/// Without `secretsmanager:GetSecretValue`, or with a secret that does not exist or does not
/// hold what AWS writes, Test says what to grant or fix, and the Update ends with one Task
/// saying the same; no message carries the secret's password.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_permission_a_wrong_arn_and_a_malformed_secret_are_named() {
    let (db, proxy, aws, user) = setup("Never-shown-9").await;
    let arn = aws
        .put_secret(
            "redshift/denied",
            &secret_text(&user, "Never-shown-9", &proxy, &db),
        )
        .await;
    let home = tempfile::tempdir().unwrap();

    let outsider = ServerProcess::start_in(&credentials_env(&aws.outsider, home.path()));
    let mut client = outsider.client().await;
    let config = secret_config(&db, &aws, &arn);
    let denied = support::connect_test_failure(&mut client, &config).await;
    assert!(denied.contains("secretsmanager:GetSecretValue"), "{denied}");
    assert!(denied.contains(&arn), "the secret is named: {denied}");
    let update = stream::try_update(&mut client, &config, None, None).await;
    let tasks = update.log.tasks();
    assert_eq!(tasks.len(), 1, "{:?}", update.log.ops);
    let task = tasks[0].to_string();
    assert!(task.contains("secretsmanager:GetSecretValue"), "{task}");

    let syncer = ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    let mut client = syncer.client().await;
    let missing = arn.replace("redshift/denied", "redshift/absent");
    let not_found =
        support::connect_test_failure(&mut client, &secret_config(&db, &aws, &missing)).await;
    assert!(not_found.contains("not found"), "{not_found}");
    assert!(not_found.contains("secret_arn"), "{not_found}");

    let malformed = aws
        .put_secret(
            "redshift/malformed",
            r#"{"user": "someone", "password": "Never-shown-9"}"#,
        )
        .await;
    let malformed =
        support::connect_test_failure(&mut client, &secret_config(&db, &aws, &malformed)).await;
    assert!(malformed.contains("has no `username`"), "{malformed}");
    for message in [denied, task, not_found, malformed] {
        assert!(!message.contains("Never-shown-9"), "{message}");
    }
}
