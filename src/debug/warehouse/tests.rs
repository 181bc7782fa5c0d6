//! The apply logic against hand-made records, on a real SQLite file.

use rusqlite::types::Value;

use super::*;
use crate::proto::value_type::Inner;
use crate::proto::ValueType;

fn column(name: &str, data_type: DataType, primary_key: bool) -> proto::Column {
    proto::Column {
        name: name.into(),
        r#type: data_type as i32,
        primary_key,
        params: None,
    }
}

fn customers() -> TableDef {
    TableDef::from_proto(&proto::Table {
        name: "customers".into(),
        columns: vec![
            column("id", DataType::Int, true),
            column("name", DataType::String, false),
            column("balance", DataType::Decimal, false),
        ],
    })
    .unwrap()
}

fn key() -> TableKey {
    TableKey::new(Some("public"), "customers")
}

fn record(record_type: RecordType, data: &[(&str, Inner)]) -> proto::Record {
    proto::Record {
        schema_name: Some("public".into()),
        table_name: "customers".into(),
        r#type: record_type as i32,
        data: data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    ValueType {
                        inner: Some(v.clone()),
                    },
                )
            })
            .collect(),
    }
}

fn upsert(id: i32, name: &str) -> proto::Record {
    record(
        RecordType::Upsert,
        &[
            ("id", Inner::Int(id)),
            ("name", Inner::String(name.into())),
            ("balance", Inner::Decimal("1.10".into())),
        ],
    )
}

fn open() -> (tempfile::TempDir, Warehouse) {
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = Warehouse::open(&dir.path().join("nested/warehouse.db")).unwrap();
    assert_eq!(
        warehouse.declare(&key(), customers()).unwrap(),
        Declared::Created
    );
    (dir, warehouse)
}

/// `(id, name, balance, deleted)` of every row, by id.
fn rows(warehouse: &mut Warehouse) -> Vec<(i64, Option<String>, Option<String>, bool)> {
    // A loaded table's duplicates go when its key index is built (a run builds it at its end).
    warehouse.build_key_indexes().unwrap();
    let mut statement = warehouse
        .conn
        .prepare(
            "SELECT id, name, balance, _fivetran_deleted FROM \"public.customers\" ORDER BY id",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn upsert_replaces_by_primary_key() {
    let (_dir, mut warehouse) = open();
    warehouse.apply(&upsert(1, "Ann")).unwrap();
    warehouse.apply(&upsert(2, "Bob")).unwrap();
    warehouse.apply(&upsert(1, "Anne")).unwrap();
    warehouse.commit().unwrap();
    assert_eq!(
        rows(&mut warehouse),
        vec![
            (1, Some("Anne".into()), Some("1.10".into()), false),
            (2, Some("Bob".into()), Some("1.10".into()), false),
        ]
    );
}

#[test]
fn update_changes_only_the_columns_it_carries() {
    let (_dir, mut warehouse) = open();
    warehouse.apply(&upsert(1, "Ann")).unwrap();
    let (table, record_type) = warehouse
        .apply(&record(
            RecordType::Update,
            &[
                ("id", Inner::Int(1)),
                ("balance", Inner::Decimal("2.00".into())),
            ],
        ))
        .unwrap();
    assert_eq!((table, record_type), (key(), RecordType::Update));
    assert_eq!(
        rows(&mut warehouse),
        vec![(1, Some("Ann".into()), Some("2.00".into()), false)]
    );
}

#[test]
fn delete_is_soft_and_upsert_revives() {
    let (_dir, mut warehouse) = open();
    warehouse.apply(&upsert(1, "Ann")).unwrap();
    warehouse.apply(&upsert(2, "Bob")).unwrap();
    warehouse
        .apply(&record(RecordType::Delete, &[("id", Inner::Int(1))]))
        .unwrap();
    let deleted: Vec<bool> = rows(&mut warehouse).iter().map(|r| r.3).collect();
    assert_eq!(deleted, vec![true, false]);
    warehouse.apply(&upsert(1, "Ann")).unwrap();
    assert!(rows(&mut warehouse).iter().all(|r| !r.3));
}

#[test]
fn truncate_deletes_only_rows_synced_before_it() {
    let (_dir, mut warehouse) = open();
    warehouse.apply(&upsert(1, "Ann")).unwrap();
    warehouse.apply(&upsert(2, "Bob")).unwrap();
    warehouse.commit().unwrap();
    // In one transaction and within the same microsecond as far as the wall clock knows.
    warehouse.apply(&record(RecordType::Truncate, &[])).unwrap();
    warehouse.apply(&upsert(2, "Bob")).unwrap();
    warehouse.apply(&upsert(3, "Cy")).unwrap();
    warehouse.commit().unwrap();
    let live: Vec<(i64, bool)> = rows(&mut warehouse).iter().map(|r| (r.0, r.3)).collect();
    assert_eq!(live, vec![(1, true), (2, false), (3, false)]);
}

#[test]
fn rollback_drops_uncommitted_writes_and_reopen_keeps_committed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warehouse.db");
    {
        let mut warehouse = Warehouse::open(&path).unwrap();
        warehouse.declare(&key(), customers()).unwrap();
        warehouse.apply(&upsert(1, "Ann")).unwrap();
        warehouse.commit().unwrap();
        warehouse.apply(&upsert(2, "Bob")).unwrap();
        warehouse.rollback().unwrap();
        assert_eq!(rows(&mut warehouse).len(), 1);
        warehouse.apply(&upsert(3, "Cy")).unwrap();
        // Dropped without commit: as if the process had been killed.
    }
    let mut warehouse = Warehouse::open(&path).unwrap();
    assert_eq!(
        warehouse.declare(&key(), customers()).unwrap(),
        Declared::Unchanged
    );
    let ids: Vec<i64> = rows(&mut warehouse).iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1]);
}

#[test]
fn clock_resumes_after_the_committed_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warehouse.db");
    let future = Utc::now() + chrono::TimeDelta::hours(2);
    {
        let mut warehouse = Warehouse::open(&path).unwrap();
        warehouse.clock = SyncClock::after(Some(future));
        warehouse.declare(&key(), customers()).unwrap();
        warehouse.apply(&upsert(1, "Ann")).unwrap();
        warehouse.commit().unwrap();
    }
    let mut warehouse = Warehouse::open(&path).unwrap();
    assert!(warehouse.clock.tick() > future);
}

#[test]
fn keyless_tables_key_on_the_row_hash() {
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = Warehouse::open(&dir.path().join("w.db")).unwrap();
    let events = TableKey::new(None, "events");
    let def = TableDef::from_proto(&proto::Table {
        name: "events".into(),
        columns: vec![column("payload", DataType::Json, false)],
    })
    .unwrap();
    warehouse.declare(&events, def).unwrap();
    let event = |payload: &str, record_type: RecordType| proto::Record {
        schema_name: None,
        table_name: "events".into(),
        r#type: record_type as i32,
        data: [(
            "payload".to_string(),
            ValueType {
                inner: Some(Inner::Json(payload.into())),
            },
        )]
        .into(),
    };
    warehouse
        .apply(&event("{\"a\":1}", RecordType::Upsert))
        .unwrap();
    warehouse
        .apply(&event("{\"a\":1}", RecordType::Upsert))
        .unwrap();
    warehouse
        .apply(&event("{\"a\":2}", RecordType::Upsert))
        .unwrap();
    warehouse
        .apply(&event("{\"a\":2}", RecordType::Delete))
        .unwrap();
    let counts: (i64, i64) = warehouse
        .conn
        .query_row(
            "SELECT COUNT(*), SUM(_fivetran_deleted) FROM \"events\"",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(counts, (2, 1));
    let update = warehouse.apply(&event("{\"a\":3}", RecordType::Update));
    assert!(matches!(update, Err(WarehouseError::Invalid { .. })));
}

#[test]
fn invalid_records_are_named() {
    let (_dir, mut warehouse) = open();
    let mut other = upsert(1, "Ann");
    other.table_name = "orders".into();
    let err = warehouse.apply(&other).unwrap_err().to_string();
    assert!(err.contains("public.orders"), "{err}");

    let wrong_type = record(RecordType::Upsert, &[("id", Inner::Long(1))]);
    let err = warehouse.apply(&wrong_type).unwrap_err().to_string();
    assert!(err.contains("declared INT but carries a long"), "{err}");

    let no_key = record(RecordType::Upsert, &[("name", Inner::String("x".into()))]);
    let err = warehouse.apply(&no_key).unwrap_err().to_string();
    assert!(err.contains("lacks primary-key column `id`"), "{err}");

    let null_key = record(RecordType::Delete, &[("id", Inner::Null(true))]);
    let err = warehouse.apply(&null_key).unwrap_err().to_string();
    assert!(err.contains("`id` is NULL"), "{err}");
}

#[test]
fn undeclared_columns_are_added_with_an_inferred_type() {
    let (_dir, mut warehouse) = open();
    warehouse
        .apply(&record(
            RecordType::Upsert,
            &[("id", Inner::Int(1)), ("score", Inner::Double(1.5))],
        ))
        .unwrap();
    warehouse.build_key_indexes().unwrap();
    let score: f64 = warehouse
        .conn
        .query_row("SELECT score FROM \"public.customers\"", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(score, 1.5);
}

#[test]
fn redeclaring_adds_columns_and_refuses_a_new_key() {
    let (_dir, mut warehouse) = open();
    let mut wider = customers();
    wider.columns.push(("email".into(), DataType::String));
    assert_eq!(
        warehouse.declare(&key(), wider).unwrap(),
        Declared::ColumnsAdded(vec!["email".into()])
    );
    let mut rekeyed = customers();
    rekeyed.primary_key = vec!["name".into()];
    let err = warehouse.declare(&key(), rekeyed).unwrap_err();
    assert!(matches!(err, WarehouseError::KeyChanged { .. }), "{err}");
}

#[test]
fn values_are_stored_with_their_sqlite_types() {
    let (_dir, mut warehouse) = open();
    warehouse.apply(&upsert(1, "Zoë")).unwrap();
    warehouse.build_key_indexes().unwrap();
    let (synced, balance): (Value, Value) = warehouse
        .conn
        .query_row(
            "SELECT _fivetran_synced, balance FROM \"public.customers\"",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    // Decimals stay exact text; `_fivetran_synced` is UTC ISO-8601 with microseconds.
    assert_eq!(balance, Value::Text("1.10".into()));
    let Value::Text(synced) = synced else {
        panic!("synced is not text: {synced:?}")
    };
    assert_eq!(
        synced.len(),
        "2024-05-01T12:30:00.000001Z".len(),
        "{synced}"
    );
    assert!(synced.ends_with('Z'));
}

/// The key index of a table (if built) and the live rows' ids, by id.
fn key_index(warehouse: &Warehouse) -> Option<String> {
    warehouse
        .conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'public.customers'",
            [],
            |row| row.get(0),
        )
        .optional()
        .unwrap()
}

#[test]
fn a_load_appends_in_any_key_order_and_builds_its_key_index_at_the_end() {
    let (_dir, mut warehouse) = open();
    // A new table loads with its key index set aside; a key sent twice (a row changed during
    // the load) keeps its later row once the index is built.
    for id in [5, 3, 9, 1, 3] {
        let name = if id == 3 { "later" } else { "x" };
        warehouse.apply(&upsert(id, name)).unwrap();
    }
    warehouse.apply(&upsert(3, "latest")).unwrap();
    assert_eq!(key_index(&warehouse), None, "no index while loading");
    assert_eq!(warehouse.build_key_indexes().unwrap(), 1);
    let index = key_index(&warehouse).expect("the key index");
    assert!(index.starts_with("CREATE UNIQUE INDEX"), "{index}");
    let rows = rows(&mut warehouse);
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1, 3, 5, 9]);
    assert_eq!(rows[1].1.as_deref(), Some("latest"));
    // From then on UPSERTs replace by key through the index.
    warehouse.apply(&upsert(9, "again")).unwrap();
    let rows = self::rows(&mut warehouse);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3].1.as_deref(), Some("again"));
}

#[test]
fn a_truncate_sets_the_index_aside_and_a_delete_builds_it_first() {
    let (_dir, mut warehouse) = open();
    warehouse.apply(&upsert(1, "a")).unwrap();
    warehouse.apply(&upsert(2, "b")).unwrap();
    warehouse.build_key_indexes().unwrap();
    assert!(key_index(&warehouse).is_some());
    warehouse.apply(&record(RecordType::Truncate, &[])).unwrap();
    assert_eq!(key_index(&warehouse), None, "a re-sync loads appended");
    warehouse.apply(&upsert(2, "b2")).unwrap();
    // A DELETE finds its row by key: the index is built first (the re-sent row replaces the
    // truncated one).
    warehouse
        .apply(&record(RecordType::Delete, &[("id", Inner::Int(2))]))
        .unwrap();
    assert!(key_index(&warehouse).is_some());
    let live: Vec<(i64, Option<String>, bool)> = rows(&mut warehouse)
        .into_iter()
        .map(|r| (r.0, r.1, r.3))
        .collect();
    assert_eq!(
        live,
        vec![(1, Some("a".into()), true), (2, Some("b2".into()), true)]
    );
}

#[test]
fn a_load_killed_before_its_index_was_built_is_healed_when_the_warehouse_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warehouse.db");
    {
        let mut warehouse = Warehouse::open(&path).unwrap();
        warehouse.declare(&key(), customers()).unwrap();
        warehouse.apply(&upsert(2, "old")).unwrap();
        warehouse.apply(&upsert(1, "a")).unwrap();
        warehouse.apply(&upsert(2, "new")).unwrap();
        warehouse.commit().unwrap();
        // Killed: the index was never built, and key 2 has two rows.
    }
    let mut warehouse = Warehouse::open(&path).unwrap();
    assert!(
        key_index(&warehouse).is_some(),
        "built when the warehouse opened"
    );
    warehouse.declare(&key(), customers()).unwrap();
    let rows = rows(&mut warehouse);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].1.as_deref(), Some("new"));
}

#[test]
fn an_earlier_releases_table_keeps_its_primary_key_and_loads_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warehouse.db");
    {
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE \"public.customers\" (\"id\" INTEGER NOT NULL, \"name\" TEXT, \
                 \"balance\" TEXT, \"_fivetran_synced\" TEXT NOT NULL, \
                 \"_fivetran_deleted\" BOOLEAN NOT NULL DEFAULT 0, PRIMARY KEY (\"id\"))",
            )
            .unwrap();
    }
    let mut warehouse = Warehouse::open(&path).unwrap();
    assert_eq!(
        warehouse.declare(&key(), customers()).unwrap(),
        Declared::Unchanged
    );
    warehouse.apply(&record(RecordType::Truncate, &[])).unwrap();
    for id in [2, 1, 2] {
        warehouse.apply(&upsert(id, "x")).unwrap();
    }
    assert_eq!(warehouse.build_key_indexes().unwrap(), 0);
    assert_eq!(rows(&mut warehouse).len(), 2);
}
