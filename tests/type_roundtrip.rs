//! Every column type PostgreSQL shares with Redshift, from the table through Schema and Update.
//!
//! One table holds a column of each type; rows hold NULLs, the extremes of each type and the
//! values that break naive conversions (38-digit decimals, float specials, years 1 and 9999,
//! microseconds, offsets, non-ASCII and control characters). Schema must describe each column
//! with the right DataType and parameters, and Update must send each value as exactly the
//! expected `ValueType` oneof. Expected timestamps are computed here with chrono, not taken from
//! the connector: NAIVE_DATE is midnight of the date as if UTC, NAIVE_DATETIME the wall clock as
//! if UTC, UTC_DATETIME the instant.

use crate::support;

use std::collections::BTreeMap;

use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use fivetran_source::proto::data_type_params::Params;
use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::proto::value_type::Inner;
use fivetran_source::proto::{
    schema_response, update_response::Operation, DataType, DecimalParams, Record, RecordType,
    SchemaRequest,
};
use prost_types::Timestamp;
use support::stream;
use tonic::transport::Channel;

/// The columns: name, SQL type, expected DataType and parameters.
fn columns() -> Vec<(&'static str, &'static str, DataType, Option<Params>)> {
    let decimal = |precision, scale| Some(Params::Decimal(DecimalParams { precision, scale }));
    vec![
        ("c_smallint", "SMALLINT", DataType::Short, None),
        ("c_integer", "INTEGER", DataType::Int, None),
        ("c_bigint", "BIGINT", DataType::Long, None),
        (
            "c_dec38_0",
            "NUMERIC(38,0)",
            DataType::Decimal,
            decimal(38, 0),
        ),
        (
            "c_dec38_10",
            "NUMERIC(38,10)",
            DataType::Decimal,
            decimal(38, 10),
        ),
        (
            "c_dec38_37",
            "NUMERIC(38,37)",
            DataType::Decimal,
            decimal(38, 37),
        ),
        ("c_real", "REAL", DataType::Float, None),
        ("c_double", "DOUBLE PRECISION", DataType::Double, None),
        ("c_bool", "BOOLEAN", DataType::Boolean, None),
        (
            "c_char",
            "CHAR(10)",
            DataType::String,
            Some(Params::StringByteLength(10)),
        ),
        (
            "c_varchar",
            "VARCHAR(100)",
            DataType::String,
            Some(Params::StringByteLength(100)),
        ),
        ("c_text", "TEXT", DataType::String, None),
        ("c_date", "DATE", DataType::NaiveDate, None),
        // Times travel as strings: sources must not send NAIVE_TIME.
        ("c_time", "TIME", DataType::String, None),
        ("c_timetz", "TIMETZ", DataType::String, None),
        ("c_timestamp", "TIMESTAMP", DataType::NaiveDatetime, None),
        ("c_timestamptz", "TIMESTAMPTZ", DataType::UtcDatetime, None),
        // PostgreSQL's stand-in for Redshift's VARBYTE.
        ("c_bytea", "BYTEA", DataType::Binary, None),
        // Types the connector does not know are read as text.
        ("c_uuid", "UUID", DataType::String, None),
        ("c_jsonb", "JSONB", DataType::String, None),
    ]
}

/// A wall-clock date and time carried as if UTC.
fn wall(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micro: u32) -> Timestamp {
    let utc = NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, micro)
        .unwrap()
        .and_utc();
    Timestamp {
        seconds: utc.timestamp(),
        nanos: utc.timestamp_subsec_nanos() as i32,
    }
}

/// The instant of a wall-clock time at a UTC offset of `offset_s` seconds east.
#[allow(clippy::too_many_arguments)]
fn instant(
    y: i32,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    micro: u32,
    offset_s: i32,
) -> Timestamp {
    let local = NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, micro)
        .unwrap();
    let utc = FixedOffset::east_opt(offset_s)
        .unwrap()
        .from_local_datetime(&local)
        .single()
        .unwrap()
        .with_timezone(&Utc);
    Timestamp {
        seconds: utc.timestamp(),
        nanos: utc.timestamp_subsec_nanos() as i32,
    }
}

fn date(y: i32, mo: u32, d: u32) -> Inner {
    Inner::NaiveDate(wall(y, mo, d, 0, 0, 0, 0))
}

fn s(text: &str) -> Inner {
    Inner::String(text.to_string())
}

fn dec(text: &str) -> Inner {
    Inner::Decimal(text.to_string())
}

/// One row: its id, and (column, value as SQL input text, expected value) for the columns it
/// sets; every other column is NULL.
struct Row {
    id: i32,
    values: Vec<(&'static str, String, Inner)>,
}

fn row(id: i32, values: Vec<(&'static str, &str, Inner)>) -> Row {
    Row {
        id,
        values: values
            .into_iter()
            .map(|(column, input, expected)| (column, input.to_string(), expected))
            .collect(),
    }
}

fn rows() -> Vec<Row> {
    let nines38 = "9".repeat(38);
    let long_text = "中🦀".repeat(20_000);
    let control = "it's \"quoted\" \\ back\\slash\nnew line\r\n\ttab \u{1}\u{7f} end";
    vec![
        // NULL in every column.
        row(1, vec![]),
        // The largest value of each type.
        row(
            2,
            vec![
                ("c_smallint", "32767", Inner::Short(i16::MAX.into())),
                ("c_integer", "2147483647", Inner::Int(i32::MAX)),
                ("c_bigint", "9223372036854775807", Inner::Long(i64::MAX)),
                ("c_dec38_0", &nines38, dec(&nines38)),
                (
                    "c_dec38_10",
                    "9999999999999999999999999999.9999999999",
                    dec("9999999999999999999999999999.9999999999"),
                ),
                (
                    "c_dec38_37",
                    "9.9999999999999999999999999999999999999",
                    dec("9.9999999999999999999999999999999999999"),
                ),
                ("c_real", "3.4028235e38", Inner::Float(f32::MAX)),
                (
                    "c_double",
                    "1.7976931348623157e308",
                    Inner::Double(f64::MAX),
                ),
                ("c_bool", "true", Inner::Bool(true)),
                ("c_char", "ZZZZZZZZZZ", s("ZZZZZZZZZZ")),
                ("c_varchar", &"x".repeat(100), s(&"x".repeat(100))),
                ("c_text", &long_text, s(&long_text)),
                ("c_date", "9999-12-31", date(9999, 12, 31)),
                ("c_time", "23:59:59.999999", s("23:59:59.999999")),
                ("c_timetz", "23:59:59.999999+14", s("23:59:59.999999+14")),
                (
                    "c_timestamp",
                    "9999-12-31 23:59:59.999999",
                    Inner::NaiveDatetime(wall(9999, 12, 31, 23, 59, 59, 999_999)),
                ),
                (
                    "c_timestamptz",
                    "9999-12-31 23:59:59.999999+00",
                    Inner::UtcDatetime(wall(9999, 12, 31, 23, 59, 59, 999_999)),
                ),
                ("c_bytea", "\\xffffffff", Inner::Binary(vec![0xff; 4])),
                (
                    "c_uuid",
                    "ffffffff-ffff-ffff-ffff-ffffffffffff",
                    s("ffffffff-ffff-ffff-ffff-ffffffffffff"),
                ),
                ("c_jsonb", r#"{"k": "v"}"#, s(r#"{"k": "v"}"#)),
            ],
        ),
        // The smallest value of each type; empty strings are not NULL.
        row(
            3,
            vec![
                ("c_smallint", "-32768", Inner::Short(i16::MIN.into())),
                ("c_integer", "-2147483648", Inner::Int(i32::MIN)),
                ("c_bigint", "-9223372036854775808", Inner::Long(i64::MIN)),
                (
                    "c_dec38_0",
                    &format!("-{nines38}"),
                    dec(&format!("-{nines38}")),
                ),
                (
                    "c_dec38_10",
                    "-9999999999999999999999999999.9999999999",
                    dec("-9999999999999999999999999999.9999999999"),
                ),
                (
                    "c_dec38_37",
                    "-9.9999999999999999999999999999999999999",
                    dec("-9.9999999999999999999999999999999999999"),
                ),
                ("c_real", "-3.4028235e38", Inner::Float(-f32::MAX)),
                (
                    "c_double",
                    "-1.7976931348623157e308",
                    Inner::Double(-f64::MAX),
                ),
                ("c_bool", "false", Inner::Bool(false)),
                ("c_char", "", s("          ")),
                ("c_varchar", "", s("")),
                ("c_text", "", s("")),
                ("c_date", "0001-01-01", date(1, 1, 1)),
                ("c_time", "00:00:00", s("00:00:00")),
                ("c_timetz", "00:00:00-12", s("00:00:00-12")),
                (
                    "c_timestamp",
                    "0001-01-01 00:00:00",
                    Inner::NaiveDatetime(wall(1, 1, 1, 0, 0, 0, 0)),
                ),
                (
                    "c_timestamptz",
                    "0001-01-01 00:00:00+00",
                    Inner::UtcDatetime(wall(1, 1, 1, 0, 0, 0, 0)),
                ),
                ("c_bytea", "\\x", Inner::Binary(Vec::new())),
                (
                    "c_uuid",
                    "00000000-0000-0000-0000-000000000000",
                    s("00000000-0000-0000-0000-000000000000"),
                ),
                ("c_jsonb", "[]", s("[]")),
            ],
        ),
        // Float specials.
        row(
            4,
            vec![
                ("c_real", "NaN", Inner::Float(f32::NAN)),
                ("c_double", "NaN", Inner::Double(f64::NAN)),
            ],
        ),
        row(
            5,
            vec![
                ("c_real", "Infinity", Inner::Float(f32::INFINITY)),
                ("c_double", "-Infinity", Inner::Double(f64::NEG_INFINITY)),
            ],
        ),
        row(
            6,
            vec![
                ("c_real", "-Infinity", Inner::Float(f32::NEG_INFINITY)),
                ("c_double", "Infinity", Inner::Double(f64::INFINITY)),
            ],
        ),
        row(
            7,
            vec![
                ("c_real", "-0", Inner::Float(-0.0)),
                ("c_double", "-0", Inner::Double(-0.0)),
            ],
        ),
        // The smallest subnormals.
        row(
            8,
            vec![
                ("c_real", "1e-45", Inner::Float(f32::from_bits(1))),
                ("c_double", "5e-324", Inner::Double(f64::from_bits(1))),
            ],
        ),
        // Ordinary values that still need care: microseconds, a leap day, decimals with their
        // scale, non-ASCII and control characters, an offset that is not whole hours.
        row(
            9,
            vec![
                ("c_smallint", "0", Inner::Short(0)),
                ("c_integer", "-1", Inner::Int(-1)),
                ("c_bigint", "1", Inner::Long(1)),
                ("c_dec38_0", "0", dec("0")),
                ("c_dec38_10", "1.5", dec("1.5000000000")),
                (
                    "c_dec38_37",
                    "-0.0000000000000000000000000000000000001",
                    dec("-0.0000000000000000000000000000000000001"),
                ),
                ("c_real", "0.1", Inner::Float(0.1)),
                ("c_double", "0.1", Inner::Double(0.1)),
                ("c_char", "ü中🦀", s("ü中🦀       ")),
                ("c_varchar", control, s(control)),
                (
                    "c_text",
                    "🦀 Ferris — 中文 日本語 한국어 ✓",
                    s("🦀 Ferris — 中文 日本語 한국어 ✓"),
                ),
                ("c_date", "2024-02-29", date(2024, 2, 29)),
                ("c_time", "12:34:56", s("12:34:56")),
                ("c_timetz", "12:34:56.789+05:30", s("12:34:56.789+05:30")),
                (
                    "c_timestamp",
                    "2024-02-29 23:59:59.999999",
                    Inner::NaiveDatetime(wall(2024, 2, 29, 23, 59, 59, 999_999)),
                ),
                (
                    "c_timestamptz",
                    "2024-06-30 22:30:00.123456-07:00",
                    Inner::UtcDatetime(instant(2024, 6, 30, 22, 30, 0, 123_456, -7 * 3600)),
                ),
                (
                    "c_bytea",
                    "\\x00ff10",
                    Inner::Binary(vec![0x00, 0xff, 0x10]),
                ),
                (
                    "c_uuid",
                    "123E4567-E89B-12D3-A456-426614174000",
                    s("123e4567-e89b-12d3-a456-426614174000"),
                ),
                (
                    "c_jsonb",
                    r#"{"b": [1, 2.50, null],   "a": "é\n"}"#,
                    s(r#"{"a": "é\n", "b": [1, 2.50, null]}"#),
                ),
            ],
        ),
        // An instant given at a +05:45 offset across midnight and a year boundary; a
        // one-space string is neither empty nor NULL.
        row(
            10,
            vec![
                ("c_text", " ", s(" ")),
                ("c_varchar", "NULL", s("NULL")),
                (
                    "c_timestamp",
                    "1999-12-31 23:59:59",
                    Inner::NaiveDatetime(wall(1999, 12, 31, 23, 59, 59, 0)),
                ),
                (
                    "c_timestamptz",
                    "2024-01-01 00:00:00.000001+05:45",
                    Inner::UtcDatetime(instant(2024, 1, 1, 0, 0, 0, 1, 5 * 3600 + 45 * 60)),
                ),
                ("c_date", "1970-01-01", date(1970, 1, 1)),
            ],
        ),
    ]
}

/// Creates the table and inserts [`rows`], every value passed as text and converted by the
/// server's own input function (as a literal would be), so nothing needs escaping.
async fn create_types_table(db: &support::TestDb) {
    let columns = columns();
    let definition: Vec<String> = columns
        .iter()
        .map(|(name, sql, _, _)| format!("{name} {sql}"))
        .collect();
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.types (id INTEGER PRIMARY KEY, {})",
            definition.join(", ")
        ))
        .await
        .unwrap();
    for row in rows() {
        let names: Vec<&str> = row.values.iter().map(|(c, _, _)| *c).collect();
        let casts: Vec<String> = row
            .values
            .iter()
            .enumerate()
            .map(|(i, (column, _, _))| {
                let sql = columns.iter().find(|c| c.0 == *column).unwrap().1;
                format!("${}::TEXT::{sql}", i + 2)
            })
            .collect();
        let sql = format!(
            "INSERT INTO public.types (id{}) VALUES ($1{})",
            names.iter().map(|n| format!(", {n}")).collect::<String>(),
            casts.iter().map(|c| format!(", {c}")).collect::<String>(),
        );
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&row.id];
        for (_, input, _) in &row.values {
            params.push(input);
        }
        db.client
            .execute(&sql, &params)
            .await
            .unwrap_or_else(|e| panic!("row {}: {e}", row.id));
    }
}

/// Runs an Update of everything and returns the UPSERTs of `public.types` by id.
async fn synced_rows(
    client: &mut SourceConnectorClient<Channel>,
    config: &std::collections::HashMap<String, String>,
) -> BTreeMap<i32, Record> {
    let mut updates = stream::start_update(client, config, None, None)
        .await
        .unwrap_or_else(|status| panic!("Update refused: {status:?}"));
    let mut out = BTreeMap::new();
    let mut checkpoints = 0;
    while let Some(message) = updates
        .message()
        .await
        .unwrap_or_else(|status| panic!("Update failed: {status:?}"))
    {
        match message.operation {
            Some(Operation::Records(records)) => {
                for record in records.records {
                    assert_eq!(record.schema_name.as_deref(), Some("public"));
                    assert_eq!(record.table_name, "types");
                    if record.r#type == RecordType::Truncate as i32 {
                        assert!(out.is_empty(), "TRUNCATE after upserts");
                        continue;
                    }
                    assert_eq!(record.r#type, RecordType::Upsert as i32, "{record:?}");
                    let Some(Inner::Int(id)) = record.data["id"].inner else {
                        panic!("id is not an INT: {:?}", record.data["id"]);
                    };
                    assert!(out.insert(id, record).is_none(), "row {id} sent twice");
                }
            }
            Some(Operation::Checkpoint(_)) => checkpoints += 1,
            // The table has no `updated_at`: it is re-read in full, and the user is told so.
            Some(Operation::Warning(warning)) if warning.message.contains("no cursor column") => {}
            other => panic!("unexpected operation: {other:?}"),
        }
    }
    assert!(checkpoints > 0, "the Update never checkpointed");
    out
}

/// Equal as wire values: floats by bit pattern (so NaN equals NaN and -0.0 differs from 0.0),
/// everything else by `==`.
fn same(expected: &Inner, got: &Inner) -> bool {
    match (expected, got) {
        (Inner::Float(a), Inner::Float(b)) => a.to_bits() == b.to_bits(),
        (Inner::Double(a), Inner::Double(b)) => a.to_bits() == b.to_bits(),
        _ => expected == got,
    }
}

/// A short form of a value for failure messages (the long text would drown everything).
fn show(value: &Inner) -> String {
    let text = format!("{value:?}");
    let count = text.chars().count();
    if count > 200 {
        format!(
            "{}... ({count} chars)",
            text.chars().take(200).collect::<String>()
        )
    } else {
        text
    }
}

/// Compares every synced row with [`rows`], column by column.
fn assert_rows(synced: &BTreeMap<i32, Record>) {
    let expected_rows = rows();
    assert_eq!(
        synced.keys().copied().collect::<Vec<_>>(),
        expected_rows.iter().map(|r| r.id).collect::<Vec<_>>()
    );
    let mut mismatches = Vec::new();
    for row in &expected_rows {
        let record = &synced[&row.id];
        let mut names: Vec<&str> = vec!["id"];
        names.extend(columns().iter().map(|c| c.0));
        let mut got_names: Vec<&str> = record.data.keys().map(String::as_str).collect();
        got_names.sort_unstable();
        names.sort_unstable();
        assert_eq!(got_names, names, "row {}: the columns sent", row.id);

        for (column, _, _, _) in columns() {
            let expected = row
                .values
                .iter()
                .find(|(c, _, _)| *c == column)
                .map_or(Inner::Null(true), |(_, _, e)| e.clone());
            let got = record.data[column]
                .inner
                .clone()
                .unwrap_or_else(|| panic!("row {} {column}: an empty ValueType", row.id));
            if !same(&expected, &got) {
                mismatches.push(format!(
                    "row {} {column}: expected {}, got {}",
                    row.id,
                    show(&expected),
                    show(&got)
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn expected_timestamps_are_the_known_epoch_offsets() {
    // Cross-checks the chrono arithmetic the expectations rely on against well-known values.
    assert_eq!(
        wall(1970, 1, 1, 0, 0, 0, 0),
        Timestamp {
            seconds: 0,
            nanos: 0
        }
    );
    assert_eq!(wall(1, 1, 1, 0, 0, 0, 0).seconds, -62_135_596_800);
    assert_eq!(
        wall(9999, 12, 31, 23, 59, 59, 999_999),
        Timestamp {
            seconds: 253_402_300_799,
            nanos: 999_999_000
        }
    );
    assert_eq!(
        instant(2024, 6, 30, 22, 30, 0, 123_456, -7 * 3600),
        wall(2024, 7, 1, 5, 30, 0, 123_456)
    );
    assert_eq!(
        instant(2024, 1, 1, 0, 0, 0, 1, 5 * 3600 + 45 * 60),
        wall(2023, 12, 31, 18, 15, 0, 1)
    );
}

#[tokio::test]
async fn schema_reports_each_type_and_its_parameters() {
    let db = support::fresh_database().await;
    create_types_table(&db).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let response = client
        .schema(SchemaRequest {
            configuration: db.config.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(schema_response::Response::WithSchema(list)) = response.response else {
        panic!("no with_schema: {:?}", response.response)
    };
    assert_eq!(list.schemas.len(), 1);
    assert_eq!(list.schemas[0].name, "public");
    let table = &list.schemas[0].tables[0];
    assert_eq!(table.name, "types");

    let mut expected = vec![("id".to_string(), DataType::Int, None, true)];
    expected.extend(
        columns()
            .into_iter()
            .map(|(name, _, data_type, params)| (name.to_string(), data_type, params, false)),
    );
    let got: Vec<_> = table
        .columns
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                DataType::try_from(c.r#type).unwrap(),
                c.params.and_then(|p| p.params),
                c.primary_key,
            )
        })
        .collect();
    assert_eq!(got, expected);
    for column in &table.columns {
        assert_ne!(column.r#type, DataType::NaiveTime as i32, "{}", column.name);
        assert_ne!(
            column.r#type,
            DataType::Unspecified as i32,
            "{}",
            column.name
        );
        // DataTypeParams may be absent, but never present and empty.
        if let Some(params) = &column.params {
            assert!(
                params.params.is_some(),
                "{}: empty DataTypeParams",
                column.name
            );
        }
    }
}

#[tokio::test]
async fn update_sends_every_value_as_its_exact_wire_value() {
    let db = support::fresh_database().await;
    create_types_table(&db).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let synced = synced_rows(&mut client, &db.config).await;
    assert_rows(&synced);
}

#[tokio::test]
async fn values_do_not_depend_on_the_databases_session_defaults() {
    // Databases whose sessions default to another DateStyle, time zone and float digits (and,
    // on PostgreSQL, bytea format, which Redshift does not have): the connector's own session
    // settings and binary reads must make these irrelevant, on both kinds of server.
    for through_proxy in [true, false] {
        let db = support::fresh_database().await;
        create_types_table(&db).await;
        let mut settings = vec![
            "datestyle = 'SQL, DMY'",
            "timezone = 'Asia/Kathmandu'",
            "extra_float_digits = 0",
        ];
        if !through_proxy {
            settings.push("bytea_output = 'escape'");
        }
        for setting in settings {
            db.client
                .batch_execute(&format!("ALTER DATABASE \"{}\" SET {setting}", db.name))
                .await
                .unwrap();
        }
        // The defaults really apply to new sessions.
        let probe = support::cluster().connect(&db.name).await.unwrap();
        let style: String = probe.query_one("SHOW datestyle", &[]).await.unwrap().get(0);
        assert_eq!(style, "SQL, DMY");

        let config = if through_proxy {
            db.config.clone()
        } else {
            support::cluster().connector_configuration(&db.name)
        };
        let server = support::TestServer::start().await;
        let mut client = server.client().await;
        let synced = synced_rows(&mut client, &config).await;
        assert_rows(&synced);
    }
}

/// Redshift stores dates beyond year 9999 (and BC); a Timestamp cannot carry them. The table
/// is skipped with a Warning naming the table, the column and the fix (but not the value)
/// instead of dropping or altering the value; the Update itself (and any other table) goes on.
#[tokio::test(flavor = "multi_thread")]
async fn dates_a_timestamp_cannot_carry_fail_with_the_fix() {
    for value in ["DATE '10000-01-01'", "DATE '0044-03-15 BC'"] {
        let db = support::fresh_database().await;
        db.client
            .batch_execute(&format!(
                "CREATE TABLE public.far (id INTEGER PRIMARY KEY, d DATE, updated_at TIMESTAMP);
                 INSERT INTO public.far VALUES (1, {value}, TIMESTAMP '2024-01-01');"
            ))
            .await
            .unwrap();
        let server = support::TestServer::start().await;
        let mut client = server.client().await;
        let log = stream::update_ok(&mut client, &db.config, None, None).await;
        let warnings = log.warnings();
        let warning = warnings
            .iter()
            .find(|w| w.contains("public.far"))
            .unwrap_or_else(|| panic!("{value}: no warning about the table: {warnings:?}"));
        for needle in ["skipped", "`d`", "0001-9999", "deselect the column"] {
            assert!(
                warning.contains(needle),
                "{value}: `{needle}` not in {warning}"
            );
        }
        // Row values never reach a Warning.
        for value in ["10000", "0044", "BC"] {
            assert!(!warning.contains(value), "{warning}");
        }
        assert!(
            log.upserts().is_empty(),
            "no row was sent as something else"
        );
    }
}

/// Through the Data API (the emulator in `support::data_api`, JSON values by type, on the same
/// database through the same proxy) every value arrives exactly as the direct path sends it:
/// integers and floats come as JSON numbers there, timestamps and decimals as text, and each is
/// turned back into what the wire would have carried.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_api_sends_every_value_exactly_as_the_direct_path() {
    use support::aws::{credentials_env, AwsEmulator};
    let db = support::fresh_database().await;
    create_types_table(&db).await;
    let aws = AwsEmulator::launch(support::proxy().port()).await;
    // The table's widest row (two VARCHAR(65535) at their limit) is over the real service's
    // 64 KB per row; the limit itself is tested in `data_api`.
    aws.data_api().set(support::data_api::DataApiSettings {
        page_rows: 2,
        max_row_bytes: 1 << 20,
        ..Default::default()
    });
    let home = tempfile::tempdir().unwrap();
    let server = support::ServerProcess::start_in(&credentials_env(&aws.syncer, home.path()));
    let mut client = server.client().await;

    let direct = synced_rows(&mut client, &db.config).await;
    let mut through_api = support::data_api::connector_configuration(&aws.endpoint_url(), &db.name);
    through_api.insert("batch_size".into(), "3".into());
    let via_data_api = synced_rows(&mut client, &through_api).await;
    assert_rows(&via_data_api);
    assert_eq!(direct.len(), via_data_api.len());
    for (id, record) in &direct {
        let other = &via_data_api[id];
        for (column, value) in &record.data {
            let (Some(expected), Some(got)) = (&value.inner, &other.data[column].inner) else {
                assert_eq!(value.inner, other.data[column].inner, "row {id} {column}");
                continue;
            };
            assert!(
                same(expected, got),
                "row {id} {column}: direct {} but Data API {}",
                show(expected),
                show(got)
            );
        }
    }
    assert!(
        aws.data_api()
            .statements()
            .iter()
            .any(|sql| sql.contains("public")),
        "the rows came through the Data API"
    );
}
