//! What a real Redshift cluster does that PostgreSQL does not, one test per behaviour, all
//! through the Redshift-shaped proxy (crates/test-kit/src/redshift). Each test first shows the
//! cluster behaviour that broke syncs (a function's limit, a refusal, a fold, a fault), then
//! that the connector syncs every row anyway. Where a test has a proxy of its own, it also
//! checks that the proxy refused nothing the connector sent.

use crate::support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use fivetran_source::config::Config;
use support::redshift::{Faults, RedshiftProxy, Settings};
use support::stream::{self, by_key, query_rows, Row, UpdateLog};
use support::{cluster, fresh_database, own_proxy, TestDb, TestServer};

fn with(config: &HashMap<String, String>, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

/// A proxy of the test's own, and the database's configuration through it.
fn own(db: &TestDb, settings: Settings) -> (RedshiftProxy, HashMap<String, String>) {
    let proxy = own_proxy(settings);
    let mut config = db.config.clone();
    config.insert("port".into(), proxy.port().to_string());
    (proxy, config)
}

async fn sync(config: &HashMap<String, String>) -> UpdateLog {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    stream::update_ok(&mut client, config, None, None).await
}

/// Runs `sql` through the proxy on a session of the connector's (with its session settings).
async fn through_proxy(
    config: &HashMap<String, String>,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let config = Config::from_request(config).await.unwrap();
    let mut session = fivetran_source::source::connect(&config.connection)
        .await
        .map_err(|e| e.to_string())?;
    session.query(sql, &[]).await.map_err(|e| e.to_string())
}

/// Runs `sql` through the proxy on a plain session: no `enable_case_sensitive_identifier`.
async fn plain_session(port: u16, database: &str, sql: &str) -> Result<(), String> {
    use fivetran_source::source::wire::{
        tls::{Roots, TlsMode},
        ConnectOptions, Connection,
    };
    let pg = cluster();
    let tls = TlsMode::verified(Roots::Pem(pg.ca_cert_pem()), true).unwrap();
    let mut connection = Connection::connect(&ConnectOptions {
        host: "localhost",
        port,
        database,
        user: pg.admin_user(),
        password: pg.admin_password(),
        tls: &tls,
        timeout: Duration::from_secs(10),
        application_name: "plain session",
        ssh: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    connection
        .query(sql, &[])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A table's upserts by id.
fn by_id(log: &UpdateLog, table: &str) -> BTreeMap<String, Row> {
    by_key(&log.upserts_of(table), &["id"])
        .into_iter()
        .map(|(k, v)| (k[0].clone(), v))
        .collect()
}

/// Checks that every row `sql` returns (an `id`, then each other column's expected text)
/// arrived in `synced` with exactly those values.
async fn assert_arrived(
    client: &tokio_postgres::Client,
    synced: &BTreeMap<String, Row>,
    sql: &str,
) {
    for row in query_rows(client, sql).await {
        let id = &row["id"];
        for (column, expected) in row.iter().filter(|(column, _)| *column != "id") {
            assert_eq!(&synced[id][column], expected, "{column} of row {id}");
        }
    }
}

/// The `ValueType` fields `column` of `table` arrived in (NULLs left out).
fn kinds(log: &UpdateLog, table: &str, column: &str) -> BTreeSet<&'static str> {
    log.records_of(table)
        .iter()
        .filter_map(|r| r.value_kinds.get(column).copied())
        .filter(|kind| *kind != "null")
        .collect()
}

/// Resumes from every checkpoint of `first` and checks that the rows before the checkpoint
/// plus the resumed sync's are every row of `table` exactly once.
async fn assert_every_checkpoint_resumes_exactly(
    config: &HashMap<String, String>,
    first: &UpdateLog,
    table: &str,
    key: &[&str],
) {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let all: Vec<Vec<String>> = by_key(&first.upserts_of(table), key).into_keys().collect();
    let checkpoints = stream::resume_from_each_checkpoint(&mut client, config, None, first).await;
    assert!(
        checkpoints.len() > 2,
        "too few checkpoints to test: {}",
        checkpoints.len()
    );
    for (at, resumed) in checkpoints {
        let before = stream::upserts_before(first, &at, table);
        let after = resumed.upserts_of(table);
        let mut keys: Vec<Vec<String>> = before
            .iter()
            .chain(&after)
            .map(|row| key.iter().map(|c| row[*c].clone()).collect())
            .collect();
        let delivered = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(
            delivered,
            keys.len(),
            "{table}: a row repeated after checkpoint {}",
            at.op_index
        );
        assert_eq!(
            keys, all,
            "{table}: rows lost after checkpoint {}",
            at.op_index
        );
    }
}

/// JSON_SERIALIZE turns a SQL NULL into the JSON text `null` and fails above 65,535 bytes,
/// while a SUPER holds 16 MB: NULLs must stay NULL and every value arrive whole.
#[tokio::test(flavor = "multi_thread")]
async fn super_values_arrive_whole_and_sql_nulls_stay_null() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.docs (id INTEGER PRIMARY KEY, doc SUPER, updated_at TIMESTAMP);
             INSERT INTO public.docs VALUES
               (1, NULL, '2024-01-01'),
               (2, 'null', '2024-01-01'),
               (3, '{\"a\": [1, 2.5, \"é\\\"x\"], \"b\": {\"c\": true}}', '2024-01-01'),
               (4, ('{\"big\": \"' || repeat('ü', 150000) || '\"}')::jsonb, '2024-01-01');",
        )
        .await
        .unwrap();
    // What Redshift's JSON_SERIALIZE makes of these.
    let serialized = through_proxy(
        &db.config,
        "SELECT JSON_SERIALIZE(doc) FROM public.docs WHERE id = 1",
    )
    .await
    .unwrap();
    assert_eq!(
        serialized[0][0].as_deref(),
        Some("null"),
        "a SQL NULL serialized"
    );
    let err = through_proxy(
        &db.config,
        "SELECT JSON_SERIALIZE(doc) FROM public.docs WHERE id = 4",
    )
    .await
    .unwrap_err();
    assert!(err.contains("65535"), "{err}");

    let (proxy, config) = own(&db, Settings::default());
    let log = sync(&config).await;
    let docs = by_id(&log, "docs");
    assert_eq!(docs["1"]["doc"], stream::NULL, "a SQL NULL arrives as NULL");
    assert_eq!(docs["2"]["doc"], "null", "a JSON null is a value");
    assert_arrived(
        &db.client,
        &docs,
        "SELECT id::text AS id, doc::jsonb::text AS doc FROM public.docs WHERE id > 2 ORDER BY id",
    )
    .await;
    assert!(docs["4"]["doc"].len() > 300_000);
    assert_eq!(kinds(&log, "docs", "doc"), BTreeSet::from(["json"]));
    assert_eq!(proxy.refusals(), Vec::<String>::new());
}

/// ST_AsEWKT rounds coordinates and fails above 64 KB: shapes travel as the hex EWKB Redshift
/// prints for them, exactly, however large.
#[tokio::test(flavor = "multi_thread")]
async fn geometries_arrive_as_their_exact_hex_ewkb() {
    let db = fresh_database().await;
    // POINT(0.1 0.2) with SRID 4326, and a shape of about 100 KB.
    let point = "0101000020E61000009A9999999999B93F9A9999999999C93F";
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.shapes (id INTEGER PRIMARY KEY, shape GEOMETRY, area GEOGRAPHY, updated_at TIMESTAMP);
             INSERT INTO public.shapes VALUES
               (1, '{point}', '{point}', '2024-01-01'),
               (2, '0102000020E6100000' || repeat('9A9999999999B93F', 12500), NULL, '2024-01-01'),
               (3, NULL, NULL, '2024-01-01');"
        ))
        .await
        .unwrap();
    let err = through_proxy(
        &db.config,
        "SELECT ST_AsEWKT(shape) FROM public.shapes WHERE id = 2",
    )
    .await
    .unwrap_err();
    assert!(err.contains("64 KB"), "{err}");

    let (proxy, config) = own(&db, Settings::default());
    let log = sync(&config).await;
    let shapes = by_id(&log, "shapes");
    assert_arrived(
        &db.client,
        &shapes,
        "SELECT id::text AS id, shape::text AS shape, area::text AS area FROM public.shapes ORDER BY id",
    )
    .await;
    assert_eq!(shapes["1"]["shape"], point);
    assert_eq!(kinds(&log, "shapes", "shape"), BTreeSet::from(["string"]));
    assert_eq!(proxy.refusals(), Vec::<String>::new());
}

/// TO_HEX returns a VARCHAR and fails above 32,767 input bytes, while a VARBYTE holds 16 MB:
/// every value must arrive intact.
#[tokio::test(flavor = "multi_thread")]
async fn varbyte_values_arrive_intact_whatever_their_size() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.blobs (id INTEGER PRIMARY KEY, data VARBYTE, updated_at TIMESTAMP);
             INSERT INTO public.blobs VALUES
               (1, NULL, '2024-01-01'),
               (2, '\\x'::bytea, '2024-01-01'),
               (3, '\\x00ff10'::bytea, '2024-01-01'),
               (4, decode(repeat('0123456789abcdef', 6250), 'hex'), '2024-01-01'),
               (5, decode(repeat('f0e1d2c3b4a59687', 131072), 'hex'), '2024-01-01');",
        )
        .await
        .unwrap();
    let err = through_proxy(
        &db.config,
        "SELECT TO_HEX(data) FROM public.blobs WHERE id = 4",
    )
    .await
    .unwrap_err();
    assert!(err.contains("too long"), "{err}");

    let (proxy, config) = own(&db, Settings::default());
    let log = sync(&config).await;
    let blobs = by_id(&log, "blobs");
    assert_arrived(
        &db.client,
        &blobs,
        "SELECT id::text AS id, COALESCE(encode(data::bytea, 'hex'), 'NULL') AS data FROM public.blobs ORDER BY id",
    )
    .await;
    assert_eq!(blobs["5"]["data"].len(), 2 * 1024 * 1024, "1 MiB, as hex");
    assert_eq!(kinds(&log, "blobs", "data"), BTreeSet::from(["binary"]));
    assert_eq!(proxy.refusals(), Vec::<String>::new());
}

/// Redshift folds quoted identifiers to lower case unless the session sets
/// enable_case_sensitive_identifier: a table created with mixed-case names while it was on
/// cannot be read, and a catalog query that checks privileges by name fails for every table.
/// Configured names resolve as Redshift resolves identifiers.
#[tokio::test(flavor = "multi_thread")]
async fn mixed_case_names_sync_and_configured_names_resolve_as_in_sql() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.\"MixedCase\" (\"Id\" INTEGER PRIMARY KEY, \"UpdatedAt\" TIMESTAMP, \"Note\" TEXT);
             INSERT INTO public.\"MixedCase\"
               SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second', 'n' || g FROM generate_series(1, 20) g;
             CREATE TABLE public.plain (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.plain SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 5) g;",
        )
        .await
        .unwrap();
    let port = support::proxy().port();
    for sql in [
        "SELECT count(*) FROM public.\"MixedCase\"",
        "SELECT has_table_privilege('\"public\".\"MixedCase\"', 'SELECT')",
    ] {
        let err = plain_session(port, &db.name, sql).await.unwrap_err();
        assert!(err.contains("does not exist"), "{sql}: {err}");
    }

    let config = with(
        &db.config,
        &[(
            "cursor_column",
            "updated_at, public.\"MixedCase\":\"UpdatedAt\"",
        )],
    );
    let log = sync(&config).await;
    assert!(log.warnings().is_empty(), "{:?}", log.warnings());
    let ids: BTreeSet<String> = log
        .upserts_of("MixedCase")
        .iter()
        .map(|row| row["Id"].clone())
        .collect();
    assert_eq!(ids.len(), 20);
    assert_eq!(log.upserts_of("plain").len(), 5);
    let state = log.last_state_value();
    assert_eq!(
        state["tables"]["public"]["MixedCase"]["cursor_column"],
        "UpdatedAt"
    );
    assert_eq!(
        state["tables"]["public"]["MixedCase"]["mode"],
        "incremental"
    );

    // Unquoted, a name folds to lower case, as in SQL; quoted, it keeps its case.
    let folded = sync(&with(&db.config, &[("tables", "public.MixedCase")])).await;
    assert!(folded.upserts().is_empty());
    assert!(
        folded.warnings()[0].contains("no readable table matches"),
        "{:?}",
        folded.warnings()
    );
    let quoted = sync(&with(&db.config, &[("tables", "public.\"MixedCase\"")])).await;
    assert_eq!(quoted.upserts_of("MixedCase").len(), 20);
}

/// A view over catalog tables runs on Redshift's leader node, where a named portal does not
/// survive its first batch: it is read without a row limit. A table that cannot be read is
/// skipped with a Warning naming it and why, and the other tables sync.
#[tokio::test(flavor = "multi_thread")]
async fn one_tables_failure_is_that_tables_alone() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE VIEW public.relation_names AS SELECT oid::int AS id, relname::text AS name FROM pg_class;
             CREATE TABLE public.orders (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.orders SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 100) g;
             CREATE VIEW public.broken AS SELECT id, 1 / (id - id) AS boom FROM public.orders;",
        )
        .await
        .unwrap();
    let (proxy, config) = own(&db, Settings::default());
    let log = sync(&with(&config, &[("batch_size", "50")])).await;
    let warnings = log.warnings();
    let broken = warnings
        .iter()
        .find(|w| w.contains("public.broken was skipped"))
        .unwrap_or_else(|| panic!("no warning about public.broken: {warnings:?}"));
    assert!(broken.contains("division by zero"), "{broken}");
    assert_eq!(log.upserts_of("orders").len(), 100);

    let relations = query_rows(&db.client, "SELECT oid::int::text AS id FROM pg_class").await;
    let expected: BTreeSet<String> = relations.iter().map(|r| r["id"].clone()).collect();
    let synced: BTreeSet<String> = log
        .upserts_of("relation_names")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert!(expected.len() > 100, "more than two batches of relations");
    assert_eq!(synced, expected);
    // The leader node lost the portal once, then the view was read in one go.
    let lost = proxy
        .refusals()
        .iter()
        .filter(|r| r.starts_with("34000"))
        .count();
    assert_eq!(lost, 1, "{:?}", proxy.refusals());
}

/// Redshift reports a serializable isolation violation as XX000 `1023`, not 40001: it is
/// retried like any conflict, and every row arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn serializable_isolation_violations_are_retried() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.events SELECT g, TIMESTAMP '2024-01-01' + (g / 7) * INTERVAL '1 second'
             FROM generate_series(1, 200) g;",
        )
        .await
        .unwrap();
    let (proxy, config) = own(
        &db,
        Settings {
            faults: Faults {
                // After the catalog's three queries, the scan's third fetch.
                serializable_violation_at: Some(6),
                ..Faults::default()
            },
            ..Settings::default()
        },
    );
    let log = sync(&with(&config, &[("batch_size", "40")])).await;
    let ids: Vec<String> = log
        .upserts_of("events")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 200, "every row");
    assert_eq!(ids.len(), 200, "none twice");
    assert!(
        proxy
            .refusals()
            .iter()
            .any(|r| r.starts_with("XX000: 1023")),
        "the violation was injected: {:?}",
        proxy.refusals()
    );
}

/// Redshift's statement timeout says "cancelled on user's request", not PostgreSQL's text:
/// the table is skipped with what to change, the others sync.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_timeout_names_the_setting_to_raise() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE VIEW public.slow AS
               SELECT g AS id FROM generate_series(1, 4) g WHERE pg_sleep(0.6) IS NOT NULL;
             CREATE TABLE public.quick (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.quick VALUES (1, '2024-01-01');",
        )
        .await
        .unwrap();
    let log = sync(&with(&db.config, &[("query_timeout_s", "1")])).await;
    let warnings = log.warnings();
    let slow = warnings
        .iter()
        .find(|w| w.contains("public.slow was skipped"))
        .unwrap_or_else(|| panic!("{warnings:?}"));
    assert!(
        slow.contains("cancelled on user's request") && slow.contains("query_timeout_s"),
        "{slow}"
    );
    assert_eq!(log.upserts_of("quick").len(), 1);
}

/// Long sorts send nothing for minutes and firewalls drop idle flows: the scan's own
/// connection must carry keepalives that give up on a dead peer within about a minute. Checked
/// on the live socket while the server has gone silent mid-scan.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_scan_connection_is_watched_by_keepalives() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.events SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let (proxy, config) = own(
        &db,
        Settings {
            faults: Faults {
                // Past the catalog's statements, the count of repeated keys (a first sync)
                // and the clock's (the cursor's bound): the scan's second fetch.
                silence_at: Some(7),
                ..Faults::default()
            },
            ..Settings::default()
        },
    );
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut updates = stream::start_update(
        &mut client,
        &with(&config, &[("batch_size", "10")]),
        None,
        None,
    )
    .await
    .unwrap();
    // The first batch arrives; then the server goes silent.
    tokio::time::timeout(Duration::from_secs(30), updates.message())
        .await
        .expect("the first batch arrives before the silence")
        .unwrap()
        .expect("a first message");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sockets = connected_sockets(proxy.port());
    assert!(!sockets.is_empty(), "the scan's connection is open");
    for socket in sockets {
        assert_eq!(socket.keepalive, Some(true));
        let (idle, interval, probes, user_timeout) = (
            socket.idle,
            socket.interval,
            socket.probes,
            socket.user_timeout,
        );
        let gives_up_after = idle + interval * probes;
        assert!(gives_up_after <= Duration::from_secs(70), "{socket:?}");
        assert!(
            user_timeout > Duration::ZERO && user_timeout <= Duration::from_secs(70),
            "{socket:?}"
        );
    }
    drop(updates);
}

#[cfg(target_os = "linux")]
#[derive(Debug)]
struct SocketOptions {
    keepalive: Option<bool>,
    idle: Duration,
    interval: Duration,
    probes: u32,
    user_timeout: Duration,
}

/// The options of this process's TCP sockets connected to `port` on the loopback.
#[cfg(target_os = "linux")]
fn connected_sockets(port: u16) -> Vec<SocketOptions> {
    use std::os::fd::BorrowedFd;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        {
            continue;
        }
        // SAFETY: only read through, for the duration of this loop; a descriptor closed or
        // reused meanwhile makes the calls below fail, which is skipped.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        if peer.map(|p| p.port()) != Some(port) {
            continue;
        }
        found.push(SocketOptions {
            keepalive: socket.keepalive().ok(),
            idle: socket.tcp_keepalive_time().unwrap_or_default(),
            interval: socket.tcp_keepalive_interval().unwrap_or_default(),
            probes: socket.tcp_keepalive_retries().unwrap_or_default(),
            user_timeout: socket.tcp_user_timeout().ok().flatten().unwrap_or_default(),
        });
    }
    found
}

/// Redshift ignores trailing blanks when comparing VARCHARs and a column may be
/// case-insensitive, so `'a'`, `'A'` and `'a '` compare equal: ordered by value alone, a
/// checkpoint among them skips the rest on resume. Keys are unenforced on Redshift, so all
/// three can be keys of one table.
#[tokio::test(flavor = "multi_thread")]
async fn keys_that_compare_equal_still_resume_exactly() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.codes (code VARCHAR(10) COLLATE case_insensitive NOT NULL,
                                        updated_at TIMESTAMP, n INTEGER);
             -- Redshift's informational key: a non-unique index flagged primary.
             CREATE INDEX codes_key ON public.codes (code);
             UPDATE pg_index SET indisprimary = true WHERE indexrelid = 'public.codes_key'::regclass;
             INSERT INTO public.codes
               SELECT k, TIMESTAMP '2024-01-01', n::int
               FROM unnest(ARRAY['a', 'A', 'a ', 'b', 'B', 'b  ', 'c', 'C ']) WITH ORDINALITY AS u(k, n);",
        )
        .await
        .unwrap();
    let equal = through_proxy(
        &db.config,
        "SELECT count(*) FROM public.codes WHERE code = 'a'",
    )
    .await
    .unwrap();
    assert_eq!(
        equal[0][0].as_deref(),
        Some("3"),
        "'a', 'A' and 'a ' compare equal"
    );

    let config = with(&db.config, &[("batch_size", "1")]);
    let first = sync(&config).await;
    let codes: BTreeSet<String> = first
        .upserts_of("codes")
        .iter()
        .map(|r| r["code"].clone())
        .collect();
    assert_eq!(codes.len(), 8, "{codes:?}");
    assert_every_checkpoint_resumes_exactly(&config, &first, "codes", &["code"]).await;
}

/// Redshift may return fewer rows than an Execute asks and still have more: the end of a
/// result is CommandComplete, never a short page.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_page_is_not_the_end_of_the_table() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.events SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let (proxy, config) = own(
        &db,
        Settings {
            page_cap: Some(7),
            ..Settings::default()
        },
    );
    let log = sync(&with(&config, &[("batch_size", "50")])).await;
    assert_eq!(log.upserts_of("events").len(), 100);
    assert_eq!(proxy.refusals(), Vec::<String>::new());
}

/// Single-node clusters refuse fetches of more than 1000 rows: after the first refusal every
/// table fetches 1000 rows at a time.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_node_cluster_is_read_1000_rows_at_a_time() {
    let db = fresh_database().await;
    for table in ["a", "b"] {
        db.client
            .batch_execute(&format!(
                "CREATE TABLE public.{table} (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
                 INSERT INTO public.{table} SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(1, 2500) g;"
            ))
            .await
            .unwrap();
    }
    let (proxy, config) = own(
        &db,
        Settings {
            single_node: true,
            ..Settings::default()
        },
    );
    let log = sync(&config).await;
    for table in ["a", "b"] {
        let ids: BTreeSet<String> = log
            .upserts_of(table)
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        assert_eq!(ids.len(), 2500, "{table}");
        assert_eq!(log.upserts_of(table).len(), 2500, "{table}: no repeats");
    }
    let refusals = proxy.refusals();
    assert_eq!(
        refusals.len(),
        1,
        "refused once, then 1000 at a time: {refusals:?}"
    );
    assert!(refusals[0].contains("single node"), "{refusals:?}");
}

/// The late-commit bound is the database's clock minus the lag, not this machine's: a cluster
/// whose clock is two hours behind must not have rows read that are fresher than the lag by
/// its own clock.
#[tokio::test(flavor = "multi_thread")]
async fn the_cursor_lag_counts_from_the_databases_clock() {
    let db = fresh_database().await;
    db.client
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET redshift.clock_offset = '-2 hours';
             CREATE TABLE public.events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
             INSERT INTO public.events VALUES
               (1, (now() AT TIME ZONE 'UTC') - INTERVAL '2 hours' - INTERVAL '3 hours'),
               (2, (now() AT TIME ZONE 'UTC') - INTERVAL '2 hours' - INTERVAL '1 minute');",
            db.name
        ))
        .await
        .unwrap();
    let log = sync(&with(&db.config, &[("cursor_lag_s", "600")])).await;
    let ids: Vec<String> = log
        .upserts_of("events")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        ids,
        ["1"],
        "the row a minute old by the cluster's clock waits for the lag"
    );
}

/// No query reads more than `max_rows_per_query` rows: a table is read by consecutive keyset
/// queries, resumable from every checkpoint; and a query monitoring rule that aborts queries by
/// returned rows is avoided by lowering it (its abort says so).
#[tokio::test(flavor = "multi_thread")]
async fn queries_are_bounded_by_max_rows_per_query() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, note TEXT);
             INSERT INTO public.events
               SELECT g, TIMESTAMP '2024-01-01' + (g / 7) * INTERVAL '1 second', 'e' || g
               FROM generate_series(1, 300) g;",
        )
        .await
        .unwrap();
    let (proxy, config) = own(
        &db,
        Settings {
            max_returned_rows: Some(100),
            ..Settings::default()
        },
    );
    let aborted = sync(&with(&config, &[("batch_size", "20")])).await;
    let warning = aborted
        .warnings()
        .into_iter()
        .find(|w| w.contains("public.events was skipped"))
        .expect("the rule aborted the unbounded query");
    assert!(
        warning.contains("Query Monitoring Rule") && warning.contains("max_rows_per_query"),
        "{warning}"
    );

    let proxy_refusals_before = proxy.refusals().len();
    let bounded = with(
        &config,
        &[("batch_size", "20"), ("max_rows_per_query", "90")],
    );
    let first = sync(&bounded).await;
    assert_eq!(first.upserts_of("events").len(), 300);
    assert_eq!(
        proxy.refusals().len(),
        proxy_refusals_before,
        "{:?}",
        proxy.refusals()
    );
    assert_every_checkpoint_resumes_exactly(&bounded, &first, "events", &["id"]).await;
}

/// information_schema does not list Redshift's external (Spectrum) tables or late-binding
/// views; svv_columns does.
#[tokio::test(flavor = "multi_thread")]
async fn external_tables_are_discovered_through_svv_views() {
    let db = fresh_database().await;
    let csv = cluster()
        .directory()
        .join(format!("{}-events.csv", db.name));
    std::fs::write(
        &csv,
        "1,first,2024-01-01 00:00:00\n2,second,2024-01-02 00:00:00\n",
    )
    .unwrap();
    db.client
        .batch_execute(&format!(
            "CREATE SCHEMA spectrum;
             CREATE FOREIGN TABLE spectrum.events (id INTEGER, name TEXT, updated_at TIMESTAMP)
               SERVER spectrum OPTIONS (filename '{}', format 'csv');",
            csv.display()
        ))
        .await
        .unwrap();
    let listed = through_proxy(
        &db.config,
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'spectrum'",
    )
    .await
    .unwrap();
    assert_eq!(
        listed[0][0].as_deref(),
        Some("FOREIGN"),
        "not a BASE TABLE or VIEW"
    );

    let log = sync(&db.config).await;
    let names: BTreeSet<String> = log
        .upserts_of("events")
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["first".to_string(), "second".to_string()])
    );
}

/// Redshift does not enforce primary keys: a declared key whose values repeat (`'a'` and
/// `'a '` are two values, byte for byte, as the scan reads them) is found by one query at the
/// table's sync from scratch and reported in one Warning naming the table and how many values
/// repeat; every row is read once, nothing loops, and the next incremental sync says nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_declared_key_whose_values_repeat_syncs_every_row_and_warns() {
    let db = fresh_database().await;
    db.client
        .batch_execute(
            "CREATE TABLE public.dups (code VARCHAR(10) NOT NULL, updated_at TIMESTAMP, n INTEGER);
             CREATE INDEX dups_key ON public.dups (code);
             UPDATE pg_index SET indisprimary = true WHERE indexrelid = 'public.dups_key'::regclass;
             INSERT INTO public.dups VALUES
               ('a', '2024-01-01', 1), ('a', '2024-01-02', 2),
               ('b', '2024-01-01', 3), ('b', '2024-01-01', 4), ('b', '2024-01-01', 5),
               ('a ', '2024-01-01', 6), ('c', '2024-01-01', 7);",
        )
        .await
        .unwrap();
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let config = with(&db.config, &[("batch_size", "2")]);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let sent: BTreeSet<String> = first
        .upserts_of("dups")
        .iter()
        .map(|r| r["n"].clone())
        .collect();
    assert_eq!(sent.len(), 7, "every row once: {sent:?}");
    assert_eq!(first.upserts_of("dups").len(), 7);
    let warnings = first.warnings();
    assert!(
        warnings.iter().any(|w| w.starts_with("table public.dups")
            && w.contains("2 values of its primary key (code)")
            && w.contains("5 rows")
            && w.contains("`primary_key`")),
        "{warnings:?}"
    );
    let second = stream::update_ok(&mut client, &config, None, first.last_state()).await;
    assert!(second.warnings().is_empty(), "{:?}", second.warnings());
}
