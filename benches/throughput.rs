//! Throughput of one `Update` of a ~1M-row table, against the database's own export of the same
//! rows measured in the same run.
//!
//! Performance is measured here, never asserted in tests: absolute numbers depend on the machine
//! and on whatever else runs on it, so what this prints that matters is the *ratio* of the
//! connector to baselines taken moments apart on the same server, the same table and the same
//! `SELECT … ORDER BY` (the connector's own scan query, built by its own query builder):
//!
//! - `COPY (scan query) TO STDOUT`: the database's export, the ceiling for reading these rows;
//! - `query_raw`: tokio-postgres streaming the same query, each value decoded to a native type
//!   (the driver floor: no portal round trips, no records);
//! - `portal fetch`: the same through a portal fetched `batch_size` rows at a time, as the
//!   connector's scan does (the cost of the batching alone);
//! - `engine, no gRPC`: the connector's sync engine (`sync::run`) into a channel: rows decoded and
//!   records built, checkpoints, no protobuf encoding, no HTTP/2;
//! - `connector Update`: the gRPC server in-process on 127.0.0.1, one `Update` consumed by a
//!   tonic client as a host does (128 MiB limits, no gzip, every message decoded).
//!
//! ```text
//! cargo bench --bench throughput
//! BENCH_ROWS=200000 BENCH_BATCH_SIZE=20000 BENCH_REPEAT=5 cargo bench --bench throughput
//! BENCH_ONLY=connector cargo bench --bench throughput      # one method, e.g. under a profiler
//! ```
//!
//! CPU is this process's user+system time (/proc/self/stat): the connector *and* the host-side
//! client decoding its stream, but not the PostgreSQL server's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use fivetran_source::config::{keys, Config, DEFAULT_BATCH_SIZE};
use fivetran_source::local_postgres::LocalPostgres;
use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::proto::{
    update_response::Operation, RecordType, UpdateRequest, UpdateResponse,
};
use fivetran_source::server::MAX_MESSAGE_BYTES;
use fivetran_source::source::scan::{Resume, ScanSpec};
use fivetran_source::source::{catalog, error_chain};
use fivetran_source::state::SyncState;
use fivetran_source::sync::plan::{self, Mode};
use futures_util::{pin_mut, StreamExt};
use prost::Message as _;
use tokio::sync::oneshot;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};
use tonic::transport::{Channel, Endpoint};

const DATABASE: &str = "bench";
const TABLE: &str = "orders";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the run is asked to do, from the environment.
struct Params {
    rows: u64,
    batch_size: u32,
    repeat: usize,
    only: Option<String>,
}

impl Params {
    fn from_env() -> Self {
        fn number<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Err(_) => default,
                Ok(text) => text.trim().replace('_', "").parse().unwrap_or_else(|_| {
                    panic!("{name}={text:?} is not a number");
                }),
            }
        }
        Self {
            rows: number("BENCH_ROWS", 1_000_000).max(1),
            batch_size: number("BENCH_BATCH_SIZE", DEFAULT_BATCH_SIZE).max(1),
            repeat: number("BENCH_REPEAT", 3).max(1),
            only: std::env::var("BENCH_ONLY").ok().filter(|s| !s.is_empty()),
        }
    }

    fn runs(&self, method: Method) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|m| m.trim() == method.key()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Method {
    Copy,
    QueryRaw,
    Portal,
    Engine,
    Connector,
}

impl Method {
    const ALL: [Method; 5] = [
        Method::Copy,
        Method::QueryRaw,
        Method::Portal,
        Method::Engine,
        Method::Connector,
    ];

    fn key(self) -> &'static str {
        match self {
            Method::Copy => "copy",
            Method::QueryRaw => "query_raw",
            Method::Portal => "portal",
            Method::Engine => "engine",
            Method::Connector => "connector",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Method::Copy => "COPY TO STDOUT (baseline)",
            Method::QueryRaw => "query_raw (driver floor)",
            Method::Portal => "portal fetch, batch_size",
            Method::Engine => "engine, no gRPC",
            Method::Connector => "connector Update (gRPC)",
        }
    }

    /// What the bytes column counts.
    fn bytes_unit(self) -> &'static str {
        match self {
            Method::Copy => "COPY text",
            Method::Connector => "protobuf",
            _ => "",
        }
    }
}

/// One timed run of one method.
#[derive(Debug, Clone, Default)]
struct Sample {
    wall: Duration,
    first_row: Option<Duration>,
    cpu: Option<Duration>,
    /// The part of `cpu` spent on the thread that consumes the results (the benchmark's own
    /// thread, which runs the client side; servers and connection tasks run on the workers).
    consumer_cpu: Option<Duration>,
    rows: u64,
    bytes: u64,
    messages: u64,
    checkpoints: u64,
}

fn main() {
    let params = Params::from_env();
    // With the watchdog: an interrupted benchmark (Ctrl-C) leaves no server behind.
    let postgres = LocalPostgres::start_with_watchdog()
        .unwrap_or_else(|err| panic!("cannot start PostgreSQL: {}", error_chain(&err)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let result = runtime.block_on(run(&postgres, &params));
    drop(runtime);
    drop(postgres);
    if let Err(err) = result {
        eprintln!("benchmark failed: {}", error_chain(err.as_ref()));
        std::process::exit(1);
    }
}

async fn run(postgres: &LocalPostgres, params: &Params) -> Result<(), BoxError> {
    postgres.create_database(DATABASE).await?;
    let admin = postgres.connect(DATABASE).await?;
    // Portals live in a transaction, which wants a client of its own (`&mut`).
    let mut portal_client = postgres.connect(DATABASE).await?;
    let mut config = postgres.connector_configuration(DATABASE);
    config.insert(keys::BATCH_SIZE.to_string(), params.batch_size.to_string());

    eprintln!("filling {TABLE} with {} rows…", params.rows);
    let started = Instant::now();
    fill(&admin, params.rows).await?;
    eprintln!("filled in {:.1} s", started.elapsed().as_secs_f64());

    let scan_sql = connector_scan_sql(&config).await?;
    let server = GrpcServer::start().await?;
    let channel = server.channel().await?;

    print_parameters(&admin, params, &scan_sql).await?;

    // Warm the caches once (page cache, shared buffers, the catalog) before anything is timed.
    copy_out(&admin, &scan_sql).await?;

    let methods: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|&m| params.runs(m))
        .collect();
    let mut samples: HashMap<Method, Vec<Sample>> = HashMap::new();
    // Rounds interleave the methods, so that a burst of load from elsewhere hits all of them.
    for round in 1..=params.repeat {
        for &method in &methods {
            let sample = match method {
                Method::Copy => copy_out(&admin, &scan_sql).await?,
                Method::QueryRaw => query_raw(&admin, &scan_sql).await?,
                Method::Portal => portal(&mut portal_client, &scan_sql, params.batch_size).await?,
                Method::Engine => engine(&config).await?,
                Method::Connector => connector(&channel, &config).await?,
            };
            if sample.rows != params.rows {
                return Err(format!(
                    "{} read {} rows, the table has {}",
                    method.label(),
                    sample.rows,
                    params.rows
                )
                .into());
            }
            eprintln!(
                "round {round}/{}: {:<28} {:>8.3} s",
                params.repeat,
                method.label(),
                sample.wall.as_secs_f64()
            );
            samples.entry(method).or_default().push(sample);
        }
    }
    drop(server);
    report(&methods, &samples);
    Ok(())
}

/// A wide-ish table of the kind people sync: keys, money, text with non-ASCII, timestamps, and an
/// `updated_at` cursor shared by ~20 rows per value (bulk loads stamp many rows alike).
/// The index on (updated_at NULLS FIRST, id) stands in for Redshift's sort key: without it every
/// method would start with the same external sort, which hides differences between them.
async fn fill(client: &Client, rows: u64) -> Result<(), BoxError> {
    client
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (
                id          BIGINT PRIMARY KEY,
                customer_id INTEGER NOT NULL,
                status      VARCHAR(20) NOT NULL,
                amount      NUMERIC(18,2),
                note        VARCHAR(200),
                created_at  TIMESTAMP NOT NULL,
                updated_at  TIMESTAMP,
                flag        BOOLEAN,
                ratio       DOUBLE PRECISION
            );
            INSERT INTO {TABLE}
            SELECT g,
                   (g * 7919) % 100000,
                   (ARRAY['new','paid','shipped','delivered','cancelled','refunded'])[1 + g % 6],
                   CASE WHEN g % 50 = 0 THEN NULL
                        ELSE ((g * 104729) % 100000000)::NUMERIC / 100 END,
                   CASE WHEN g % 10 = 0 THEN NULL
                        ELSE 'Bestellung ' || g || ' – Grüße aus Zürich, café crème, 東京 '
                             || repeat('é', (g % 40)::INT) END,
                   TIMESTAMP '2023-01-01' + g * INTERVAL '1 second',
                   TIMESTAMP '2024-01-01' + (g / 20) * INTERVAL '1 second',
                   CASE WHEN g % 7 = 0 THEN NULL ELSE g % 3 = 0 END,
                   CASE WHEN g % 13 = 0 THEN NULL ELSE (g % 100000) / 7.0 END
            FROM generate_series(1, {rows}::BIGINT) AS g;
            CREATE INDEX {TABLE}_cursor ON {TABLE} (updated_at ASC NULLS FIRST, id);"
        ))
        .await?;
    // On its own: VACUUM cannot run inside the implicit transaction of a multi-statement batch.
    client
        .batch_execute(&format!("VACUUM ANALYZE {TABLE}"))
        .await?;
    Ok(())
}

/// The query the connector runs for an initial sync of the table, from its own catalog, plan and
/// query builder: every baseline reads exactly these rows in exactly this order.
async fn connector_scan_sql(config: &HashMap<String, String>) -> Result<String, BoxError> {
    let config = Config::from_request(config).await?;
    let mut session = fivetran_source::source::connect(&config.connection).await?;
    let catalog = catalog::discover(&mut session, &config.sync).await?;
    let plans = plan::plan(&catalog, None, &config.sync);
    let [plan] = plans.as_slice() else {
        return Err(format!("expected one table to sync, planned {}", plans.len()).into());
    };
    let cursor = match plan.mode {
        Mode::Incremental { cursor } => Some(cursor),
        Mode::Full { .. } => None,
    };
    let spec = ScanSpec {
        table: &plan.table,
        flavour: session.flavour(),
        limit: None,
        select: &plan.select,
        cursor,
        key: &plan.key,
        upper_bound: None,
    };
    Ok(spec.query(&Resume::FromStart).sql)
}

async fn print_parameters(client: &Client, params: &Params, sql: &str) -> Result<(), BoxError> {
    let row = client
        .query_one(
            &format!(
                "SELECT current_setting('server_version'),
                        pg_size_pretty(pg_table_size('{TABLE}')),
                        pg_size_pretty(pg_total_relation_size('{TABLE}'))"
            ),
            &[],
        )
        .await?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!("throughput: one table, initial sync, same-run baselines");
    println!(
        "  machine:    {cores} cores ({}), PostgreSQL {} (local, TLS), tokio multi-thread",
        std::env::consts::ARCH,
        row.get::<_, String>(0)
    );
    println!(
        "  table:      {TABLE}, {} rows, 9 columns, heap {} (with indexes {})",
        params.rows,
        row.get::<_, String>(1),
        row.get::<_, String>(2)
    );
    println!(
        "  parameters: BENCH_ROWS={} BENCH_BATCH_SIZE={} BENCH_REPEAT={}{}",
        params.rows,
        params.batch_size,
        params.repeat,
        params
            .only
            .as_deref()
            .map(|o| format!(" BENCH_ONLY={o}"))
            .unwrap_or_default()
    );
    println!("  scan query: {sql}");
    println!();
    Ok(())
}

/// The database's own export: `COPY (query) TO STDOUT` in text format, every byte consumed.
/// Text COPY escapes newlines inside values, so rows are the newline count.
async fn copy_out(client: &Client, sql: &str) -> Result<Sample, BoxError> {
    let cpu = CpuClock::start();
    let started = Instant::now();
    let stream = client.copy_out(&format!("COPY ({sql}) TO STDOUT")).await?;
    pin_mut!(stream);
    let mut sample = Sample::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if sample.first_row.is_none() {
            sample.first_row = Some(started.elapsed());
        }
        sample.bytes += chunk.len() as u64;
        sample.rows += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    sample.wall = started.elapsed();
    (sample.cpu, sample.consumer_cpu) = cpu.elapsed();
    Ok(sample)
}

/// The driver floor: the same query streamed by tokio-postgres in one go (binary results), every
/// value decoded to a native type without copying it.
async fn query_raw(client: &Client, sql: &str) -> Result<Sample, BoxError> {
    let cpu = CpuClock::start();
    let started = Instant::now();
    let statement = client.prepare(sql).await?;
    let stream = client
        .query_raw(&statement, std::iter::empty::<i32>())
        .await?;
    pin_mut!(stream);
    let mut sample = Sample::default();
    let mut checksum = 0usize;
    while let Some(row) = stream.next().await {
        let row = row?;
        if sample.first_row.is_none() {
            sample.first_row = Some(started.elapsed());
        }
        checksum = checksum.wrapping_add(touch(&row));
        sample.rows += 1;
    }
    std::hint::black_box(checksum);
    sample.wall = started.elapsed();
    (sample.cpu, sample.consumer_cpu) = cpu.elapsed();
    Ok(sample)
}

/// The same through a portal in a read-only transaction, `batch_size` rows per round trip: the
/// connector's scan (src/source/scan.rs) without records.
async fn portal(client: &mut Client, sql: &str, batch_size: u32) -> Result<Sample, BoxError> {
    let cpu = CpuClock::start();
    let started = Instant::now();
    let transaction = client.build_transaction().read_only(true).start().await?;
    let statement = transaction.prepare(sql).await?;
    let portal = transaction.bind(&statement, &[]).await?;
    let limit = i32::try_from(batch_size).unwrap_or(i32::MAX);
    let mut sample = Sample::default();
    let mut checksum = 0usize;
    loop {
        let rows = transaction.query_portal(&portal, limit).await?;
        if sample.first_row.is_none() && !rows.is_empty() {
            sample.first_row = Some(started.elapsed());
        }
        for row in &rows {
            checksum = checksum.wrapping_add(touch(row));
        }
        sample.rows += rows.len() as u64;
        if rows.len() < batch_size as usize {
            break;
        }
    }
    transaction.commit().await?;
    std::hint::black_box(checksum);
    sample.wall = started.elapsed();
    (sample.cpu, sample.consumer_cpu) = cpu.elapsed();
    Ok(sample)
}

/// Decodes every value of a row to its native type (strings borrowed), as any client must.
fn touch(row: &Row) -> usize {
    let mut n = 0usize;
    for (i, column) in row.columns().iter().enumerate() {
        n = n.wrapping_add(match *column.type_() {
            Type::INT8 => row.get::<_, Option<i64>>(i).map_or(0, |v| v as usize),
            Type::INT4 => row.get::<_, Option<i32>>(i).map_or(0, |v| v as usize),
            Type::INT2 => row.get::<_, Option<i16>>(i).map_or(0, |v| v as usize),
            Type::BOOL => row.get::<_, Option<bool>>(i).map_or(0, usize::from),
            Type::FLOAT8 => row.get::<_, Option<f64>>(i).map_or(0, |v| v as usize),
            Type::FLOAT4 => row.get::<_, Option<f32>>(i).map_or(0, |v| v as usize),
            Type::TIMESTAMP => row
                .get::<_, Option<NaiveDateTime>>(i)
                .map_or(0, |v| v.and_utc().timestamp() as usize),
            Type::TIMESTAMPTZ => row
                .get::<_, Option<DateTime<Utc>>>(i)
                .map_or(0, |v| v.timestamp() as usize),
            Type::BYTEA => row.get::<_, Option<&[u8]>>(i).map_or(0, <[u8]>::len),
            _ => row.get::<_, Option<&str>>(i).map_or(0, str::len),
        });
    }
    n
}

/// The connector's sync engine on its own, into a channel as deep as the gRPC layer's: what the
/// Update costs before protobuf encoding and HTTP/2.
async fn engine(config: &HashMap<String, String>) -> Result<Sample, BoxError> {
    let config = Config::from_request(config).await?;
    let cpu = CpuClock::start();
    let started = Instant::now();
    let (output, mut rx) =
        fivetran_source::sync::Output::channel(fivetran_source::sync::output_budget(&config));
    let engine = tokio::spawn(fivetran_source::sync::run(
        config,
        None,
        SyncState::new(),
        output,
    ));
    let mut sample = Sample::default();
    while let Some(message) = rx.recv().await {
        sample.messages += 1;
        let operation = match message.message {
            fivetran_source::sync::OutgoingMessage::Encoded(bytes) => {
                UpdateResponse::decode(bytes)
                    .expect("records decode")
                    .operation
            }
            fivetran_source::sync::OutgoingMessage::Message(message) => message.operation,
        };
        count(&mut sample, operation, started);
    }
    engine.await??;
    sample.wall = started.elapsed();
    (sample.cpu, sample.consumer_cpu) = cpu.elapsed();
    Ok(sample)
}

/// One Update over gRPC, consumed as a host does: every message decoded, its size counted.
async fn connector(
    channel: &Channel,
    config: &HashMap<String, String>,
) -> Result<Sample, BoxError> {
    // No `accept_compressed`: hosts do not ask for gzip by default, so the server sends none.
    let mut client = SourceConnectorClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let cpu = CpuClock::start();
    let started = Instant::now();
    let mut stream = client
        .update(UpdateRequest {
            configuration: config.clone(),
            selection: None,
            state_json: None,
        })
        .await?
        .into_inner();
    let mut sample = Sample::default();
    while let Some(message) = stream.message().await? {
        sample.messages += 1;
        sample.bytes += message.encoded_len() as u64;
        if let Some(Operation::Task(task)) = &message.operation {
            return Err(format!("the Update ended with a Task: {}", task.message).into());
        }
        count(&mut sample, message.operation, started);
    }
    sample.wall = started.elapsed();
    (sample.cpu, sample.consumer_cpu) = cpu.elapsed();
    Ok(sample)
}

/// Counts the upserted rows and checkpoints of one message.
fn count(sample: &mut Sample, operation: Option<Operation>, started: Instant) {
    let mut upserts = 0;
    match operation {
        Some(Operation::Records(records)) => {
            upserts = records
                .records
                .iter()
                .filter(|r| r.r#type == RecordType::Upsert as i32)
                .count() as u64;
        }
        Some(Operation::Record(record)) if record.r#type == RecordType::Upsert as i32 => {
            upserts = 1;
        }
        Some(Operation::Checkpoint(_)) => sample.checkpoints += 1,
        _ => {}
    }
    if upserts > 0 && sample.first_row.is_none() {
        sample.first_row = Some(started.elapsed());
    }
    sample.rows += upserts;
}

/// The connector's gRPC server on 127.0.0.1 and a free port, as the integration tests run it.
struct GrpcServer {
    addr: std::net::SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl GrpcServer {
    async fn start() -> Result<Self, BoxError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = fivetran_source::server::serve(listener, shutdown).await {
                eprintln!("gRPC server failed: {}", error_chain(&err));
            }
        });
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
        })
    }

    async fn channel(&self) -> Result<Channel, BoxError> {
        Ok(Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn report(methods: &[Method], samples: &HashMap<Method, Vec<Sample>>) {
    println!(
        "{:<28} {:>9} {:>8} {:>10} {:>7} {:>9} {:>9} {:>9} {:>8}",
        "method (median of runs)",
        "rows",
        "wall s",
        "rows/s",
        "MB/s",
        "1st row ms",
        "CPU µs/row",
        "consumer",
        "vs COPY"
    );
    let median_rate = |method: Method| -> Option<f64> {
        let samples = samples.get(&method)?;
        Some(samples[0].rows as f64 / median(samples.iter().map(|s| s.wall))?.as_secs_f64())
    };
    let copy_rate = median_rate(Method::Copy);
    for &method in methods {
        let Some(runs) = samples.get(&method) else {
            continue;
        };
        let rows = runs[0].rows;
        let wall = median(runs.iter().map(|s| s.wall)).expect("at least one run");
        let rate = rows as f64 / wall.as_secs_f64();
        let mb_s = if method.bytes_unit().is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}", runs[0].bytes as f64 / 1e6 / wall.as_secs_f64())
        };
        let first = median(runs.iter().filter_map(|s| s.first_row))
            .map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
        let per_row = |cpu: Option<Duration>| {
            cpu.map_or("-".to_string(), |c| {
                format!("{:.2}", c.as_secs_f64() * 1e6 / rows as f64)
            })
        };
        let cpu = per_row(median(runs.iter().filter_map(|s| s.cpu)));
        let consumer = per_row(median(runs.iter().filter_map(|s| s.consumer_cpu)));
        let vs_copy = copy_rate.map_or("-".to_string(), |c| format!("{:.2}x", rate / c));
        println!(
            "{:<28} {:>9} {:>8.3} {:>10.0} {:>7} {:>10} {:>10} {:>9} {:>8}",
            method.label(),
            rows,
            wall.as_secs_f64(),
            rate,
            mb_s,
            first,
            cpu,
            consumer,
            vs_copy
        );
    }
    println!();
    println!(
        "  MB/s: COPY text for COPY, protobuf (encoded_len of every message) for the connector."
    );
    println!(
        "  CPU µs/row: this process (user+system), all threads; consumer: the part on the thread"
    );
    println!("  reading the results (for the connector: the host side, gRPC client and decoding).");
    println!();
    for &method in methods {
        let Some(runs) = samples.get(&method) else {
            continue;
        };
        let bytes = runs[0].bytes;
        match method {
            Method::Copy => println!(
                "  COPY: {:.1} MB of text, {:.0} bytes/row",
                bytes as f64 / 1e6,
                bytes as f64 / runs[0].rows as f64
            ),
            Method::Connector => println!(
                "  connector: {:.1} MB of protobuf, {:.0} bytes/row, {} messages ({:.1} records each), {} checkpoints",
                bytes as f64 / 1e6,
                bytes as f64 / runs[0].rows as f64,
                runs[0].messages,
                runs[0].rows as f64 / (runs[0].messages - runs[0].checkpoints).max(1) as f64,
                runs[0].checkpoints
            ),
            _ => {}
        }
    }
    println!();
    let ratio = |a: Method, b: Method| -> Option<f64> { Some(median_rate(a)? / median_rate(b)?) };
    let pairs = [
        (Method::Connector, Method::Copy, "connector/COPY"),
        (
            Method::Connector,
            Method::QueryRaw,
            "connector/driver floor",
        ),
        (Method::Connector, Method::Portal, "connector/portal fetch"),
        (
            Method::Connector,
            Method::Engine,
            "connector/engine (gRPC share)",
        ),
        (Method::Engine, Method::Copy, "engine/COPY"),
        (Method::QueryRaw, Method::Copy, "driver floor/COPY"),
    ];
    for (a, b, label) in pairs {
        if let Some(r) = ratio(a, b) {
            println!("  {label:<30} = {r:.2}x");
        }
    }
    println!();
}

fn median(values: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut values: Vec<Duration> = values.collect();
    values.sort();
    values.get(values.len() / 2).copied()
}

/// CPU time of this process and of the calling thread, from /proc (Linux; `None` elsewhere).
struct CpuClock {
    process: Option<Duration>,
    thread: Option<Duration>,
}

impl CpuClock {
    fn start() -> Self {
        Self {
            process: cpu_time("/proc/self/stat"),
            thread: cpu_time("/proc/thread-self/stat"),
        }
    }

    /// (process, calling thread) CPU time since `start`.
    fn elapsed(&self) -> (Option<Duration>, Option<Duration>) {
        let since = |start: Option<Duration>, path| Some(cpu_time(path)?.saturating_sub(start?));
        (
            since(self.process, "/proc/self/stat"),
            since(self.thread, "/proc/thread-self/stat"),
        )
    }
}

/// User+system CPU time from a `stat` file: utime and stime are fields 14 and 15 of the line,
/// the 12th and 13th after the command name (in parentheses, and it may hold spaces).
fn cpu_time(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / clock_ticks() as f64,
    ))
}

/// `sysconf(_SC_CLK_TCK)` without a libc binding: `getconf`, else Linux's usual 100.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(100)
    })
}
