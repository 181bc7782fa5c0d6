//! The Redshift-shaped proxy itself (crates/test-kit/src/redshift): each behaviour the connector's
//! tests rely on, checked against a real PostgreSQL behind it, with a client that does what
//! the connector must not (tokio-postgres asks for binary results everywhere) and with the
//! connector's own wire client.

use crate::support;

use fivetran_source::source::wire::tls::{Roots, TlsMode};
use fivetran_source::source::wire::{ConnectOptions, Connection, Fetched, Format, WireError};
use support::redshift::{sql, Faults, Settings, SERVER_VERSION};
use support::{chain, cluster, fresh_database, own_proxy, proxy};

fn rejected(sql: &str) -> Option<String> {
    sql::judge(sql, true).rejection.map(|r| r.message)
}

#[test]
fn what_redshift_rejects() {
    for sql in [
        "SELECT * FROM t WHERE (a, b) > (1, 2)",
        "SELECT * FROM t WHERE a = ANY($1::text[])",
        "SELECT ARRAY[1, 2]",
        "SELECT * FROM (VALUES (1), (2)) v(x)",
        "SELECT * FROM t WHERE updated_at < now()",
        "SELECT * FROM t WHERE updated_at < CURRENT_TIMESTAMP",
        "COPY (SELECT 1) TO STDOUT",
        "   ",
        "SELECT * FROM t LIMIT $1",
    ] {
        assert!(rejected(sql).is_some(), "{sql} passed");
    }
}

#[test]
fn what_redshift_accepts() {
    for sql in [
        "SELECT * FROM t WHERE a > $1 OR (a = $1 AND b > $2) ORDER BY a NULLS FIRST, b LIMIT $3::BIGINT",
        "SELECT now()",
        "SELECT * FROM pg_catalog.pg_class WHERE relname = now()::text",
        "SELECT * FROM t WHERE a IN (1, 2)",
        "SELECT GETDATE()",
    ] {
        assert_eq!(rejected(sql), None, "{sql}");
    }
}

#[test]
fn collate_calls_and_case_settings_are_translated() {
    let judged = sql::judge(
        "SELECT 1 FROM t WHERE COLLATE(\"src\".\"k\", 'case_sensitive') > COLLATE($1::VARCHAR(65535), 'cs')",
        true,
    );
    assert_eq!(
        judged.sql,
        "SELECT 1 FROM t WHERE ((\"src\".\"k\") COLLATE \"C\") > (($1::VARCHAR(65535)) COLLATE \"C\")"
    );
    assert_eq!(judged.rejection, None);
    let judged = sql::judge(
        "SET DateStyle TO ISO; SET enable_case_sensitive_identifier TO true",
        false,
    );
    assert!(judged
        .sql
        .ends_with("SET redshift.enable_case_sensitive_identifier TO true"));
    assert_eq!(judged.sets_case_sensitive, Some(true));
}

#[test]
fn redshift_table_attributes_of_create_table_are_taken_out() {
    let translated = sql::judge(
        "DROP TABLE IF EXISTS \"w\".\"s2\"; CREATE TABLE \"w\".\"s2\" BACKUP NO DISTKEY (\"id\") SORTKEY (\"id\", \"k\") AS SELECT \"id\", \"k\" FROM \"w\".\"s1\" EXCEPT SELECT \"id\", \"k\" FROM \"t\"",
        true,
    )
    .sql;
    assert_eq!(
        translated.split_whitespace().collect::<Vec<_>>().join(" "),
        "DROP TABLE IF EXISTS \"w\".\"s2\"; CREATE TABLE \"w\".\"s2\" AS SELECT \"id\", \"k\" FROM \"w\".\"s1\" EXCEPT SELECT \"id\", \"k\" FROM \"t\""
    );
    let interleaved = sql::judge(
        "CREATE TABLE t DISTSTYLE KEY DISTKEY (a) INTERLEAVED SORTKEY (a, b) AS SELECT 1 AS a, 2 AS b",
        true,
    )
    .sql;
    assert_eq!(
        interleaved.split_whitespace().collect::<Vec<_>>().join(" "),
        "CREATE TABLE t AS SELECT 1 AS a, 2 AS b"
    );
    // Outside CREATE TABLE the words are names like any other.
    assert_eq!(
        sql::judge("SELECT backup FROM t", true).sql,
        "SELECT backup FROM t"
    );
}

#[test]
fn quoted_identifiers_fold_unless_case_sensitive() {
    assert_eq!(
        sql::judge("SELECT \"Id\" FROM \"public\".\"MixedCase\"", false).sql,
        "SELECT \"id\" FROM \"public\".\"mixedcase\""
    );
    assert_eq!(
        sql::judge("SELECT \"Id\" FROM \"MixedCase\"", true).sql,
        "SELECT \"Id\" FROM \"MixedCase\""
    );
}

#[test]
fn plain_numeric_is_redshift_s_numeric_18_0_and_varchar_has_no_boolean_cast() {
    assert_eq!(
        sql::judge("SELECT CAST($1::VARCHAR(65535) AS NUMERIC)", true).sql,
        "SELECT CAST($1::VARCHAR(65535) AS NUMERIC(18,0))"
    );
    assert_eq!(
        sql::judge("SELECT CAST($1::VARCHAR(65535) AS NUMERIC(38,4))", true).sql,
        "SELECT CAST($1::VARCHAR(65535) AS NUMERIC(38,4))"
    );
    assert!(rejected("SELECT CAST($1::VARCHAR(65535) AS BOOLEAN)").is_some());
    assert!(rejected("SELECT ($1::VARCHAR(65535) = 'true')").is_none());
}

/// A session of the connector's wire client through `port`, trusting the test CA.
async fn wire(port: u16, database: &str) -> Connection {
    let pg = cluster();
    let tls = TlsMode::verified(Roots::Pem(pg.ca_cert_pem()), true).unwrap();
    let options = ConnectOptions {
        host: "localhost",
        port,
        database,
        user: pg.admin_user(),
        password: pg.admin_password(),
        tls: &tls,
        timeout: std::time::Duration::from_secs(10),
        application_name: "proxy test",
        ssh: None,
    };
    Connection::connect(&options)
        .await
        .unwrap_or_else(|err| panic!("{}", chain(&err)))
}

/// A tokio-postgres client through the shared proxy.
async fn tokio_client(database: &str) -> tokio_postgres::Client {
    let pg = cluster();
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .port(proxy().port())
        .user(pg.admin_user())
        .password(pg.admin_password())
        .dbname(database)
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, connection) = config.connect(pg.tls_connector().unwrap()).await.unwrap();
    tokio::spawn(connection);
    client
}

fn db_error(err: WireError) -> (String, String) {
    match err {
        WireError::Db(db) => (db.code.clone(), db.full_message()),
        other => panic!("not a database error: {other}"),
    }
}

/// Runs `sql` (no parameters) through a named portal, `max_rows` at a time; returns the rows
/// of the first batch and how it ended.
async fn first_batch(
    connection: &mut Connection,
    portal: &str,
    sql: &str,
    max_rows: i32,
) -> Result<(usize, Fetched), WireError> {
    connection.prepare("s", sql, &[]).await?;
    connection.simple_query("BEGIN").await?;
    connection
        .start_portal(portal, "s", &[], &[Format::Text], max_rows)
        .await?;
    let mut rows = 0;
    loop {
        match connection.next_row().await? {
            Fetched::Row => rows += 1,
            end => return Ok((rows, end)),
        }
    }
}

#[tokio::test]
async fn sessions_report_redshift_s_version() {
    let db = fresh_database().await;
    let connection = wire(proxy().port(), &db.name).await;
    assert_eq!(connection.parameter("server_version"), Some(SERVER_VERSION));
}

#[tokio::test]
async fn binary_results_are_refused_for_types_redshift_encodes_differently() {
    let db = fresh_database().await;
    let client = tokio_client(&db.name).await;
    // Integers, text and timestamps: the binary forms Redshift shares with PostgreSQL.
    let row = client
        .query_one("SELECT 7::int, 'x'::text, TIMESTAMP '2024-01-01'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    for sql in [
        "SELECT 1.5::numeric",
        "SELECT DATE '2024-01-01'",
        "SELECT '\\x00'::bytea",
    ] {
        let err = client.query(sql, &[]).await.unwrap_err();
        let text = chain(&err);
        assert!(
            text.contains("binary format is not supported"),
            "{sql}: {text}"
        );
    }
}

#[tokio::test]
async fn a_suspended_portal_allows_only_execute_close_and_sync() {
    let db = fresh_database().await;
    let mut connection = wire(proxy().port(), &db.name).await;
    let (rows, end) = first_batch(&mut connection, "p", "SELECT generate_series(1, 10)", 4)
        .await
        .unwrap();
    assert_eq!((rows, end), (4, Fetched::Suspended));
    let (code, message) = db_error(connection.prepare("t", "SELECT 1", &[]).await.unwrap_err());
    assert_eq!(code, "08P01");
    assert!(
        message.contains("Invalid protocol sequence 'P' while in PortalSuspended state"),
        "{message}"
    );
}

#[tokio::test]
async fn the_unnamed_portal_ignores_the_row_limit() {
    let db = fresh_database().await;
    let mut connection = wire(proxy().port(), &db.name).await;
    let (rows, end) = first_batch(&mut connection, "", "SELECT generate_series(1, 10)", 4)
        .await
        .unwrap();
    assert_eq!((rows, end), (10, Fetched::Complete));
}

#[tokio::test]
async fn short_pages_and_single_node_fetch_limits() {
    let db = fresh_database().await;
    let proxy = own_proxy(Settings {
        page_cap: Some(3),
        ..Settings::default()
    });
    let mut connection = wire(proxy.port(), &db.name).await;
    let (rows, end) = first_batch(&mut connection, "p", "SELECT generate_series(1, 10)", 8)
        .await
        .unwrap();
    assert_eq!(
        (rows, end),
        (3, Fetched::Suspended),
        "a short page that is not the end"
    );

    proxy.set(Settings {
        single_node: true,
        ..Settings::default()
    });
    let mut connection = wire(proxy.port(), &db.name).await;
    let err = first_batch(&mut connection, "p", "SELECT generate_series(1, 10)", 5000)
        .await
        .unwrap_err();
    let (_, message) = db_error(err);
    assert!(
        message.contains("exceeds the limit of 1000 for a single node configuration"),
        "{message}"
    );
    let mut connection = wire(proxy.port(), &db.name).await;
    let (rows, end) = first_batch(&mut connection, "p", "SELECT generate_series(1, 10)", 1000)
        .await
        .unwrap();
    assert_eq!((rows, end), (10, Fetched::Complete));
    assert_eq!(proxy.refusals().len(), 1, "{:?}", proxy.refusals());
}

#[tokio::test]
async fn portals_of_leader_node_queries_last_one_batch() {
    let db = fresh_database().await;
    db.client
        .batch_execute("CREATE VIEW public.relations AS SELECT oid::int AS id, relname::text AS name FROM pg_class;
                        CREATE TABLE public.numbers AS SELECT generate_series(1, 10) AS n;")
        .await
        .unwrap();
    let mut connection = wire(proxy().port(), &db.name).await;
    let (rows, end) = first_batch(&mut connection, "p", "SELECT id FROM public.relations", 2)
        .await
        .unwrap();
    assert_eq!((rows, end), (2, Fetched::Suspended));
    connection.continue_portal("p", 2).await.unwrap();
    let (code, message) = db_error(connection.next_row().await.unwrap_err());
    assert_eq!(code, "34000");
    assert!(message.contains("portal \"p\" does not exist"), "{message}");

    // A user table's portal lasts.
    let mut connection = wire(proxy().port(), &db.name).await;
    first_batch(&mut connection, "p", "SELECT n FROM public.numbers", 2)
        .await
        .unwrap();
    connection.continue_portal("p", 2).await.unwrap();
    assert_eq!(connection.next_row().await.unwrap(), Fetched::Row);
}

#[tokio::test]
async fn faults_fire_at_the_requested_fetch() {
    let db = fresh_database().await;
    let proxy = own_proxy(Settings {
        faults: Faults {
            serializable_violation_at: Some(2),
            ..Faults::default()
        },
        ..Settings::default()
    });
    let mut connection = wire(proxy.port(), &db.name).await;
    first_batch(&mut connection, "p", "SELECT generate_series(1, 10)", 4)
        .await
        .unwrap();
    connection.continue_portal("p", 4).await.unwrap();
    let (code, message) = db_error(connection.next_row().await.unwrap_err());
    assert_eq!(code, "XX000");
    assert!(
        message.starts_with("1023") && message.contains("Serializable isolation violation"),
        "{message}"
    );

    proxy.set(Settings {
        faults: Faults {
            drop_at: Some(1),
            ..Faults::default()
        },
        ..Settings::default()
    });
    let mut connection = wire(proxy.port(), &db.name).await;
    let err = first_batch(&mut connection, "p", "SELECT generate_series(1, 10)", 4)
        .await
        .unwrap_err();
    assert!(matches!(err, WireError::Io(_)), "{err}");
}

#[tokio::test]
async fn a_query_monitoring_rule_aborts_queries_that_return_too_many_rows() {
    let db = fresh_database().await;
    let proxy = own_proxy(Settings {
        max_returned_rows: Some(5),
        ..Settings::default()
    });
    let mut connection = wire(proxy.port(), &db.name).await;
    first_batch(&mut connection, "p", "SELECT generate_series(1, 100)", 4)
        .await
        .unwrap();
    connection.continue_portal("p", 4).await.unwrap();
    while connection.next_row().await.unwrap() == Fetched::Row {}
    connection.continue_portal("p", 4).await.unwrap();
    let (code, message) = db_error(connection.next_row().await.unwrap_err());
    assert_eq!(code, "57014");
    assert!(message.contains("Query Monitoring Rule"), "{message}");
}
