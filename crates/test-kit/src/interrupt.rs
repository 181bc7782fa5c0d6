//! One shape of test, shared: a table's scan is interrupted in the middle (its connection
//! terminated, the database stopped, the SSH tunnel killed) and the Update must still deliver
//! every row exactly once.
//!
//! The host pauses after the [`AT_CHECKPOINT`]th checkpoint: rows of 1 KB fill the transport's
//! buffers, so the scan waits idle in its transaction when the interruption comes.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use super::stream::{self, UpdateLog};

/// Rows of the `public.items` table.
pub const ROWS: i32 = 3000;
/// The checkpoint after which the host pauses and the interruption runs.
pub const AT_CHECKPOINT: usize = 5;

/// Creates `public.items`: [`ROWS`] rows of 1 KB, 100 to a cursor value.
pub async fn create_items(client: &tokio_postgres::Client) {
    client
        .batch_execute(&format!(
            "CREATE TABLE public.items (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, pad VARCHAR(2000));
             INSERT INTO public.items
               SELECT g, TIMESTAMP '2024-01-01' + (g / 100) * INTERVAL '1 second', repeat('x', 1000)
               FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
}

/// `config` with small batches and a small byte budget, so the engine waits for the host after
/// a few batches instead of buffering the whole table.
pub fn small_batches(config: &HashMap<String, String>) -> HashMap<String, String> {
    let mut config = config.clone();
    config.insert("batch_size".into(), "100".into());
    config.insert("max_batch_bytes".into(), "65536".into());
    config
}

/// Runs an Update with `config` on a new in-process server; after checkpoint
/// [`AT_CHECKPOINT`] the host pauses and `interrupt` runs, once. Returns the log and what
/// `interrupt` returned. The stream must survive and end normally.
pub async fn update_interrupted<T, F, Fut>(
    config: &HashMap<String, String>,
    interrupt: F,
) -> (UpdateLog, T)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let server = super::TestServer::start().await;
    let mut client = server.client().await;
    let mut updates = stream::start_update(&mut client, config, None, None)
        .await
        .unwrap();
    let mut log = UpdateLog::default();
    let mut interrupt = Some(interrupt);
    let mut outcome = None;
    while let Some(message) = updates
        .message()
        .await
        .expect("the stream survives the interruption")
    {
        stream::push(&mut log, message.operation);
        if log.checkpoints().len() == AT_CHECKPOINT {
            if let Some(interrupt) = interrupt.take() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                outcome = Some(interrupt().await);
            }
        }
    }
    let outcome = outcome.expect("the Update reached the checkpoint to interrupt at");
    (log, outcome)
}

/// Every row of `public.items` arrived, and none twice.
pub fn assert_each_row_once(log: &UpdateLog) {
    let ids: Vec<i32> = log
        .upserts()
        .iter()
        .map(|row| row["id"].parse().expect("an INT id"))
        .collect();
    let distinct: BTreeSet<i32> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ROWS as usize, "every row arrived");
    assert_eq!(ids.len(), ROWS as usize, "and none twice");
}
