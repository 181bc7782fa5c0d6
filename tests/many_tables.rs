//! Many tables in one Update stay cheap: checkpoints carry the whole state, so they go out at a
//! bounded rate (their bytes a fraction of the records', not one state per batch of every
//! table), never twice for the same state, and the tables share sessions instead of opening
//! one each.

use crate::support;

use std::collections::{BTreeSet, HashMap};

use fivetran_source::proto::update_response::Operation;
use fivetran_source::proto::RecordType;
use prost::Message as _;
use support::redshift::Settings;
use support::stream;

const TABLES: usize = 300;
const ROWS: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_of_many_tables_cost_a_fraction_of_their_records_and_sessions_are_shared() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "CREATE SCHEMA many;
             DO $$ BEGIN FOR i IN 1..{TABLES} LOOP
               EXECUTE format('CREATE TABLE many.t%s (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, v TEXT)', i);
               EXECUTE format('INSERT INTO many.t%s SELECT g, TIMESTAMP ''2024-01-01'' + g * INTERVAL ''1 second'', ''value '' || g FROM generate_series(1, {ROWS}) g', i);
             END LOOP; END $$;"
        ))
        .await
        .unwrap();
    let proxy = support::own_proxy(Settings::default());
    let mut config: HashMap<String, String> = proxy.connector_configuration(&db.name);
    config.insert("schemas".into(), "many".into());
    let server = support::TestServer::start().await;
    let mut client = server.client().await;

    let mut updates = stream::start_update(&mut client, &config, None, None)
        .await
        .unwrap();
    let (mut record_bytes, mut checkpoint_bytes) = (0usize, 0usize);
    let mut states: Vec<String> = Vec::new();
    let mut log = stream::UpdateLog::default();
    while let Some(message) = updates.message().await.expect("the update completes") {
        match &message.operation {
            Some(Operation::Records(_)) => record_bytes += message.encoded_len(),
            Some(Operation::Checkpoint(c)) => {
                checkpoint_bytes += message.encoded_len();
                states.push(c.state_json.clone());
            }
            _ => {}
        }
        stream::push(&mut log, message.operation);
    }
    assert_eq!(log.upserts().len(), TABLES * ROWS);
    assert_eq!(
        log.records()
            .iter()
            .filter(|r| r.kind == RecordType::Truncate)
            .count(),
        TABLES
    );
    // One checkpoint a batch of every table was 600 states averaging ~20 KB: 60 times the
    // records. Now a quarter of the records' bytes once the state is large, a checkpoint a
    // batch while it is small (under 4 KiB), and the last one.
    let last = states.last().expect("a final checkpoint");
    assert!(
        last.len() > 4096 * 4,
        "the state is large: {} bytes",
        last.len()
    );
    assert!(
        checkpoint_bytes <= record_bytes + 2 * last.len() && states.len() <= 60,
        "{checkpoint_bytes} bytes of checkpoints for {record_bytes} of records ({} checkpoints)",
        states.len()
    );
    let distinct: BTreeSet<&String> = states.iter().collect();
    assert_eq!(distinct.len(), states.len(), "a state was sent twice");
    // The final state names every table.
    let state: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(state["tables"]["many"].as_object().unwrap().len(), TABLES);
    // The catalog's session read every table: one sign-in for 300 tables.
    assert_eq!(proxy.sessions(), 1, "sessions opened");

    // The next sync has nothing to send and one state to hand back.
    let second = stream::update_ok(&mut client, &config, None, log.last_state()).await;
    assert!(second.upserts().is_empty());
    assert_eq!(second.checkpoints().len(), 1);
    assert_eq!(second.last_state().as_deref(), Some(last.as_str()));

    // A resume from a checkpoint in the middle delivers exactly the rows not covered by it.
    let at = &log.checkpoints()[log.checkpoints().len() / 2];
    let resumed = stream::update_ok(&mut client, &config, None, Some(at.state_json.clone())).await;
    let before: BTreeSet<(String, String)> = log
        .records()
        .into_iter()
        .take(at.records_before)
        .filter(|r| r.kind == RecordType::Upsert)
        .map(|r| (r.table.clone(), r.get("id").to_string()))
        .collect();
    let after: Vec<(String, String)> = resumed
        .records()
        .into_iter()
        .filter(|r| r.kind == RecordType::Upsert)
        .map(|r| (r.table.clone(), r.get("id").to_string()))
        .collect();
    assert!(
        after.iter().all(|row| !before.contains(row)),
        "rows repeated"
    );
    assert_eq!(before.len() + after.len(), TABLES * ROWS, "rows lost");
}
