//! A checkpoint's position is text that the next scan casts back to the column's type
//! (src/state.rs). For every orderable type used as a cursor or as a primary key, resuming from
//! each checkpoint inside the table must continue exactly after the last row sent: a position
//! that does not survive the round trip through text shows up as lost or repeated rows.

use crate::support;

use std::collections::{BTreeMap, HashMap};

use fivetran_source::proto::RecordType;
use support::stream::{self, by_key, schema, table, upserts_before, with_schema, Row};

/// (table, key columns, DDL + data). Each table has 8 rows, cursor values with ties.
const TABLES: &[(&str, &[&str], &str)] = &[
    (
        "c_date",
        &["id"],
        "CREATE TABLE public.c_date (id INTEGER PRIMARY KEY, cur DATE);
         INSERT INTO public.c_date SELECT g, DATE '1999-12-31' + (g % 3) FROM generate_series(1, 8) g;",
    ),
    (
        // Text order is not numeric order here ('10' < '9', '-1' < '-2'): the scan must order
        // by the number, as its resume predicate compares.
        "c_numeric_digits",
        &["id"],
        "CREATE TABLE public.c_numeric_digits (id INTEGER PRIMARY KEY, cur NUMERIC(10,0));
         INSERT INTO public.c_numeric_digits
           SELECT g, (ARRAY[-2, 9, 10])[g % 3 + 1] FROM generate_series(1, 8) g;",
    ),
    (
        "k_numeric",
        &["k"],
        "CREATE TABLE public.k_numeric (k NUMERIC(18,0) PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO public.k_numeric SELECT g, TIMESTAMP '2024-01-01' FROM generate_series(-1, 13, 2) g;",
    ),
    (
        // No declared precision: Redshift would take a plain NUMERIC cast as NUMERIC(18,0) and
        // round 1.25 to 1 (the proxy does too), so positions must keep their own scale.
        "k_numeric_plain",
        &["k"],
        "CREATE TABLE public.k_numeric_plain (k NUMERIC PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO public.k_numeric_plain SELECT g / 4.0, TIMESTAMP '2024-01-01' FROM generate_series(1, 8) g;",
    ),
    (
        "c_bigint",
        &["id"],
        "CREATE TABLE public.c_bigint (id INTEGER PRIMARY KEY, cur BIGINT);
         INSERT INTO public.c_bigint
           SELECT g, (g % 3 - 1) * 9000000000000000000 FROM generate_series(1, 8) g;",
    ),
    (
        "c_numeric",
        &["id"],
        "CREATE TABLE public.c_numeric (id INTEGER PRIMARY KEY, cur NUMERIC(38,10));
         INSERT INTO public.c_numeric
           SELECT g, (g % 3) * 1234567890123456.0000000001 - 0.0000000001 FROM generate_series(1, 8) g;",
    ),
    (
        "c_varchar",
        &["id"],
        "CREATE TABLE public.c_varchar (id INTEGER PRIMARY KEY, cur VARCHAR(20));
         INSERT INTO public.c_varchar
           SELECT g, (ARRAY['', 'it''s', 'Zürich 9'])[g % 3 + 1] FROM generate_series(1, 8) g;",
    ),
    (
        "c_real",
        &["id"],
        "CREATE TABLE public.c_real (id INTEGER PRIMARY KEY, cur REAL);
         INSERT INTO public.c_real
           SELECT g, (ARRAY[0.1, 3.4e38, -1.17549435e-38])[g % 3 + 1]::REAL FROM generate_series(1, 8) g;",
    ),
    (
        "c_double",
        &["id"],
        "CREATE TABLE public.c_double (id INTEGER PRIMARY KEY, cur DOUBLE PRECISION);
         INSERT INTO public.c_double
           SELECT g, (ARRAY[0.1::float8, 1e-300, 2.0 / 3])[g % 3 + 1] FROM generate_series(1, 8) g;",
    ),
    (
        "c_time",
        &["id"],
        "CREATE TABLE public.c_time (id INTEGER PRIMARY KEY, cur TIME);
         INSERT INTO public.c_time
           SELECT g, TIME '23:59:59.999998' + (g % 3) * INTERVAL '1 microsecond' - INTERVAL '1 microsecond'
           FROM generate_series(1, 8) g;",
    ),
    (
        "c_timestamptz",
        &["id"],
        "CREATE TABLE public.c_timestamptz (id INTEGER PRIMARY KEY, cur TIMESTAMPTZ);
         INSERT INTO public.c_timestamptz
           SELECT g, TIMESTAMPTZ '2024-03-31 01:59:59.999999+02' + (g % 3) * INTERVAL '1 microsecond'
           FROM generate_series(1, 8) g;",
    ),
    (
        // Past edges only: cursor values later than the database's clock wait for their time
        // (tests/update.rs, the future-dated row).
        "c_timestamp_edges",
        &["id"],
        "CREATE TABLE public.c_timestamp_edges (id INTEGER PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO public.c_timestamp_edges
           SELECT g, (ARRAY[TIMESTAMP '1900-01-01 00:00:00', TIMESTAMP '1970-01-01 00:00:00.000001',
                            TIMESTAMP '2000-02-29 23:59:59.999999'])[g % 3 + 1]
           FROM generate_series(1, 8) g;",
    ),
    (
        "k_text",
        &["k"],
        "CREATE TABLE public.k_text (k VARCHAR(20) PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO public.k_text
           SELECT k, TIMESTAMP '2024-01-01' FROM unnest(ARRAY['', ' ', 'a', 'A', 'a ', 'é', 'it''s', '%_\\']) k;",
    ),
    (
        "k_char",
        &["k"],
        "CREATE TABLE public.k_char (k CHAR(3) PRIMARY KEY, updated_at TIMESTAMP);
         INSERT INTO public.k_char
           SELECT k, TIMESTAMP '2024-01-01' FROM unnest(ARRAY['a', 'ab', 'abc', 'b', 'B', ' c', '1', '']) k;",
    ),
    (
        "k_mixed",
        &["n", "d", "t", "x"],
        "CREATE TABLE public.k_mixed (
           n NUMERIC(30,10), d DATE, t TIMESTAMP, x DOUBLE PRECISION, updated_at TIMESTAMP,
           PRIMARY KEY (n, d, t, x));
         INSERT INTO public.k_mixed
           SELECT -1.5 + (g % 2), DATE '2024-02-28' + (g % 2), TIMESTAMP '2024-01-01' + (g / 4) * INTERVAL '1 microsecond',
                  g / 3.0, TIMESTAMP '2024-01-01'
           FROM generate_series(1, 8) g;",
    ),
    (
        // Redshift has no cast from VARCHAR to BOOLEAN (the proxy refuses one).
        "k_smallint_bool",
        &["s", "b"],
        "CREATE TABLE public.k_smallint_bool (s SMALLINT, b BOOLEAN, updated_at TIMESTAMP, PRIMARY KEY (s, b));
         INSERT INTO public.k_smallint_bool
           SELECT (g % 4 - 2) * 16000, g > 4, TIMESTAMP '2024-01-01' FROM generate_series(1, 8) g;",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn positions_of_every_cursor_and_key_type_resume_exactly() {
    let db = support::fresh_database().await;
    for (_, _, sql) in TABLES {
        db.client.batch_execute(sql).await.unwrap();
    }
    let overrides: Vec<String> = TABLES
        .iter()
        .filter(|(name, ..)| name.starts_with("c_") && *name != "c_timestamp_edges")
        .map(|(name, ..)| format!("public.{name}:cur"))
        .collect();
    let mut config: HashMap<String, String> = db.config.clone();
    config.insert("batch_size".into(), "3".into());
    config.insert(
        "cursor_column".into(),
        format!("updated_at,{}", overrides.join(",")),
    );

    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let first = stream::update_ok(&mut client, &config, None, None).await;
    assert!(
        first.warnings().is_empty(),
        "every table is incremental: {:?}",
        first.warnings()
    );

    for (name, key, _) in TABLES {
        let all = by_key(&first.upserts_of(name), key);
        assert_eq!(all.len(), 8, "{name}: every row once in the initial sync");
        let state = first.last_state_value();
        if *name == "c_numeric_digits" {
            // The end of the initial sync is the greatest value as a number, not as text.
            assert_eq!(state["tables"]["public"][*name]["position"]["cursor"], "10");
        }
        assert_eq!(
            state["tables"]["public"][*name]["mode"], "incremental",
            "{name}"
        );

        // Each distinct position of this table, resumed with only this table selected.
        let selection = with_schema(false, vec![schema("public", vec![table(name)])]);
        let mut seen = BTreeMap::new();
        for at in first.checkpoints() {
            let Some(position) = stream::position(&at.state_json, "public", name) else {
                continue;
            };
            if seen.insert(position.clone(), ()).is_some() {
                continue;
            }
            let resumed = stream::update_ok(
                &mut client,
                &config,
                Some(selection.clone()),
                Some(at.state_json.clone()),
            )
            .await;
            assert!(
                !resumed.kinds_of(name).contains(&RecordType::Truncate),
                "{name}"
            );
            let before = by_key(&upserts_before(&first, &at, name), key);
            let after = by_key(&resumed.upserts_of(name), key);
            let repeated: Vec<_> = after.keys().filter(|k| before.contains_key(*k)).collect();
            assert!(
                repeated.is_empty(),
                "{name} from {position:?}: repeated {repeated:?}"
            );
            let mut union: BTreeMap<Vec<String>, Row> = before;
            union.extend(after);
            let lost: Vec<_> = all.keys().filter(|k| !union.contains_key(*k)).collect();
            assert!(lost.is_empty(), "{name} from {position:?}: lost {lost:?}");
        }
        assert_eq!(seen.len(), 3, "{name}: 3 fetch batches of 3, 3 and 2 rows");
    }
}
