//! Several tables synced at once within one Update (`max_parallel_tables`): as many scans run
//! as configured, and checkpoints stay honest although records of different tables interleave:
//! no checkpoint moves a table backwards, and resuming from any of them delivers every row of
//! every table exactly once.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::stream;

const TABLES: [(&str, i64); 4] = [("a", 60), ("b", 45), ("c", 30), ("d", 7)];

async fn create_tables(db: &support::TestDb, scale: i64, pad: usize) {
    for (name, rows) in TABLES {
        let rows = rows * scale;
        db.client
            .batch_execute(&format!(
                "CREATE TABLE public.{name} (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, pad TEXT);
                 INSERT INTO public.{name}
                   SELECT g, TIMESTAMP '2024-01-01' + (g / 4) * INTERVAL '1 microsecond', repeat('x', {pad})
                   FROM generate_series(1, {rows}) g;"
            ))
            .await
            .unwrap();
    }
}

fn with_parallel(
    config: &std::collections::HashMap<String, String>,
    n: usize,
) -> std::collections::HashMap<String, String> {
    let mut config = config.clone();
    config.insert("max_parallel_tables".into(), n.to_string());
    config.insert("batch_size".into(), "7".into());
    config
}

/// The ids of each table's upserts, in arrival order.
fn ids_by_table(rows: &[(String, i64)]) -> BTreeMap<String, Vec<i64>> {
    let mut by_table: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (table, id) in rows {
        by_table.entry(table.clone()).or_default().push(*id);
    }
    by_table
}

fn upserted(log: &stream::UpdateLog, records_before: usize) -> Vec<(String, i64)> {
    log.records()
        .into_iter()
        .take(records_before)
        .filter(|r| r.kind == fivetran_source::proto::RecordType::Upsert)
        .map(|r| (r.table.clone(), r.get("id").parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn as_many_scans_run_as_configured() {
    for parallel in [1, 3] {
        let db = support::fresh_database().await;
        // Tables of MBs (rows of 2 KB) fill the transport's buffers, so a paused host holds
        // every scan open.
        create_tables(&db, 50, 2000).await;
        let server = support::TestServer::start().await;
        let mut client = server.client().await;
        let config = with_parallel(&db.config, parallel);
        let mut updates = stream::start_update(&mut client, &config, None, None)
            .await
            .unwrap();
        let mut log = stream::UpdateLog::default();
        let first = updates.message().await.unwrap().expect("a first message");
        stream::push(&mut log, first.operation);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let sessions: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'redshift-sync'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            sessions, parallel as i64,
            "scans open with max_parallel_tables={parallel}"
        );
        while let Some(message) = updates.message().await.unwrap() {
            stream::push(&mut log, message.operation);
        }
        let by_table = ids_by_table(&upserted(&log, usize::MAX));
        for (name, rows) in TABLES {
            let ids: BTreeSet<i64> = by_table[name].iter().copied().collect();
            assert_eq!(ids.len(), rows as usize * 50, "{name}");
            assert_eq!(
                by_table[name].len(),
                rows as usize * 50,
                "{name}: no repeats"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn interleaved_tables_resume_from_every_checkpoint_exactly() {
    let db = support::fresh_database().await;
    create_tables(&db, 3, 10).await;
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    let config = with_parallel(&db.config, 3);
    let first = stream::update_ok(&mut client, &config, None, None).await;
    let delivered = upserted(&first, usize::MAX);
    let order: BTreeMap<(String, i64), usize> = delivered
        .iter()
        .enumerate()
        .map(|(i, row)| (row.clone(), i))
        .collect();

    // The tables really ran at once: their records interleave on the stream (one table
    // after the other would switch tables only three times).
    let switches = delivered.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(
        switches >= TABLES.len(),
        "tables did not interleave: {switches} switches"
    );

    // No checkpoint moves a table's position back, and none claims a row not yet delivered.
    let checkpoints = first.checkpoints();
    assert!(checkpoints.len() >= 4, "{}", checkpoints.len());
    let mut last_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for at in &checkpoints {
        for (name, _) in TABLES {
            let Some((_, key)) = stream::position(&at.state_json, "public", name) else {
                continue;
            };
            let id: i64 = key[0].parse().unwrap();
            let index = order[&(name.to_string(), id)];
            let before = upserted(&first, at.records_before).len();
            assert!(
                index < before,
                "checkpoint claims {name}.{id} before it was sent"
            );
            let previous = last_seen.insert(name, index).unwrap_or(0);
            assert!(index >= previous, "{name} moved back");
        }
    }

    for (at, resumed) in
        stream::resume_from_each_checkpoint(&mut client, &config, None, &first).await
    {
        let truncates = |log: &stream::UpdateLog, before: usize, name: &str| {
            log.records()
                .into_iter()
                .take(before)
                .filter(|r| {
                    r.table == name && r.kind == fivetran_source::proto::RecordType::Truncate
                })
                .count()
        };
        for (name, _) in TABLES {
            let total =
                truncates(&first, at.records_before, name) + truncates(&resumed, usize::MAX, name);
            assert_eq!(
                total, 1,
                "{name}: TRUNCATE lost or doubled around checkpoint {}",
                at.op_index
            );
        }
        let mut rows = upserted(&first, at.records_before);
        rows.extend(upserted(&resumed, usize::MAX));
        let by_table = ids_by_table(&rows);
        for (name, count) in TABLES {
            let ids = by_table.get(name).cloned().unwrap_or_default();
            let distinct: BTreeSet<i64> = ids.iter().copied().collect();
            assert_eq!(
                distinct,
                (1..=count * 3).collect(),
                "{name} after checkpoint {}",
                at.op_index
            );
            assert_eq!(
                ids.len(),
                count as usize * 3,
                "{name}: a row repeated after checkpoint {}",
                at.op_index
            );
        }
    }
}
