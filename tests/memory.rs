//! The server's memory is bounded in bytes, not by row width: a table of 4 MiB values, synced
//! with the default configuration by the executable as hosts run it, stays far below what the
//! rows add up to. (Before `max_batch_bytes`, 3,000 rows of 1 MB took 8.5 GB.) The ceiling is
//! generous on purpose: this guards the bound, `cargo bench` measures it (benches/README.md).

use crate::support;

use support::{stream, ServerProcess};

const ROWS: i64 = 64;
const VALUE_MIB: i64 = 4;
/// The whole table is 256 MiB of values; the bound at the defaults is a few batches of 8 MiB.
const CEILING_MIB: u64 = 192;

#[tokio::test(flavor = "multi_thread")]
async fn wide_rows_sync_in_bounded_memory() {
    let db = support::fresh_database().await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.wide (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, payload TEXT);
             INSERT INTO public.wide
               SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second',
                      repeat(md5(g::text), {VALUE_MIB} * 32768)
               FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    let server = ServerProcess::start(&[]);
    let mut client = server.client().await;
    let log = stream::update_ok(&mut client, &db.config, None, None).await;
    let rows = log.upserts_of("wide");
    assert_eq!(rows.len() as i64, ROWS);
    let peak = server.peak_rss_mib();
    println!("peak RSS {peak} MiB for {} MiB of values", ROWS * VALUE_MIB);
    assert!(
        peak < CEILING_MIB,
        "peak RSS {peak} MiB, ceiling {CEILING_MIB} MiB"
    );
}
