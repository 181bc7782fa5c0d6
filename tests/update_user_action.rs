//! Problems only the user can fix, met during Update: the stream ends with one Task that says
//! what to do (and never holds the password) rather than an error status a host would retry;
//! a table that stopped being readable since Schema is skipped with a Warning.

use crate::support;

use support::stream;

#[tokio::test(flavor = "multi_thread")]
async fn credentials_and_tls_problems_end_the_update_with_one_task() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.t (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.t VALUES (1, TIMESTAMP '2024-01-01');",
        )
        .await
        .unwrap();
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let password = "Wr0ng-Passw0rd-For-The-Test";

    let mut wrong_password = db.config.clone();
    wrong_password.insert("password".into(), password.into());
    let mut wrong_host_name = db.config.clone();
    // The harness certificate names only `localhost`; verify-full must refuse 127.0.0.1.
    wrong_host_name.insert("host".into(), "127.0.0.1".into());

    for (config, needle) in [
        (&wrong_password, "password authentication failed"),
        (&wrong_host_name, "TLS"),
    ] {
        let outcome = stream::try_update(&mut client, config, None, None).await;
        assert!(
            outcome.error.is_none(),
            "a Task, not a status: {:?}",
            outcome.error
        );
        let tasks = outcome.log.tasks();
        assert_eq!(tasks.len(), 1, "{:?}", outcome.log.ops);
        assert_eq!(
            outcome.log.ops.len(),
            1,
            "nothing but the Task: {:?}",
            outcome.log.ops
        );
        assert!(tasks[0].contains(needle), "{}", tasks[0]);
        assert!(!tasks[0].contains(password), "{}", tasks[0]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_no_longer_readable_is_skipped_with_a_warning() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.open (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             CREATE TABLE public.closed (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.open VALUES (1, TIMESTAMP '2024-01-01');
             INSERT INTO public.closed VALUES (1, TIMESTAMP '2024-01-01');
             CREATE ROLE reader LOGIN PASSWORD 'reader-pw';
             GRANT USAGE ON SCHEMA public TO reader;
             GRANT SELECT ON public.open TO reader;",
        )
        .await
        .unwrap();
    let mut config = db.config.clone();
    config.insert("user".into(), "reader".into());
    config.insert("password".into(), "reader-pw".into());
    // The host selected both tables when `closed` was still readable.
    let selection = stream::with_schema(
        false,
        vec![stream::schema(
            "public",
            vec![stream::table("open"), stream::table("closed")],
        )],
    );
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let log = stream::update_ok(&mut client, &config, Some(selection), None).await;
    assert_eq!(log.upserts_of("open").len(), 1);
    assert!(log.records_of("closed").is_empty());
    assert!(
        log.warnings()
            .iter()
            .any(|w| w.contains("public.closed") && w.contains("not readable")),
        "{:?}",
        log.warnings()
    );
    assert!(log.tasks().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_that_matches_no_table_says_why() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute("CREATE TABLE public.t (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);")
        .await
        .unwrap();
    let mut config = db.config.clone();
    config.insert("schemas".into(), "pubilc".into()); // a typo
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let log = stream::update_ok(&mut client, &config, None, None).await;
    assert!(log.records().is_empty());
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("no readable table") && warnings[0].contains("pubilc"),
        "{}",
        warnings[0]
    );
    assert!(
        log.last_state().is_some(),
        "a state to persist all the same"
    );
}
