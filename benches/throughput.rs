//! Throughput, CPU and memory of `Update`, against baselines measured in the same run.
//!
//! Performance is measured here, never asserted in tests: absolute numbers depend on the machine
//! and on whatever else runs on it, so what matters is the *ratio* of the connector to
//! baselines taken moments apart on the same server, the same table and the same
//! `SELECT … ORDER BY` (the connector's own scan query, built by its own query builder).
//!
//! The connector runs as a deployment runs it: its own process (`fivetran_source serve`, a
//! fresh one per run, so its peak RSS is that run's), called over gRPC by a host-like client in
//! this process that decodes every message. Its CPU and RSS are read from /proc, alone.
//!
//! Suites (`BENCH_SUITES`, default all), each at N and 5N rows (`BENCH_SCALES`):
//! - `narrow`: the 9-column table: COPY, the driver floor, the engine alone, the connector;
//! - `bounded`: the connector at several `max_rows_per_query`, against one unbounded query;
//! - `wide`: 1 MB and 16 MB values at default settings: the memory bound;
//! - `parallel`: 4 tables with `max_parallel_tables` 4, against 4 concurrent COPYs;
//! - `unload`: the narrow table's initial sync through UNLOAD (the tests' Redshift-shaped proxy
//!   runs it into moto's S3, four slices writing Parquet), its export phase (here the
//!   emulation's; Redshift's compute nodes on a cluster) and its read phase (manifest to last
//!   record) apart, against the direct path and COPY;
//! - `data_api`: the narrow table through the Redshift Data API (the tests' emulator, which runs
//!   each statement through the Redshift-shaped proxy), with no added latency and with 50 ms
//!   added to every call (`BENCH_DATA_API_LATENCY_MS`), against the direct path through the
//!   same proxy, at `BENCH_DATA_API_ROWS`;
//! - `tables`: 200 and 2,000 small tables in one Update (`BENCH_TABLES`);
//! - `debug`: the debug runner (`fivetran_source debug`, its SQLite warehouse) syncing the
//!   demo's `customers` table, its keys out of order as a cursor delivers them (and in order,
//!   a line of its own), against dlt's `sql_database` source (pyarrow and ConnectorX backends)
//!   loading the same table into DuckDB, and COPY; at N and 10N (`BENCH_DEBUG_SCALES`).
//!
//! ```text
//! cargo bench --bench throughput
//! BENCH_ROWS=200000 BENCH_SCALES=1 BENCH_SUITES=narrow cargo bench --bench throughput
//! ```

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use fivetran_source::config::{keys, Config, DEFAULT_BATCH_SIZE};
use fivetran_source::proto::source_connector_client::SourceConnectorClient;
use fivetran_source::proto::{update_response::Operation, RecordType, UpdateRequest};
use fivetran_source::server::MAX_MESSAGE_BYTES;
use fivetran_source::source::scan::{Resume, ScanSpec};
use fivetran_source::source::{catalog, error_chain};
use fivetran_source::state::SyncState;
use fivetran_source::sync::plan::{self, Mode};
use fivetran_source::sync::{OutgoingMessage, Output};
use futures_util::{pin_mut, StreamExt};
use prost::Message as _;
use test_kit::local_postgres::LocalPostgres;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};
use tonic::transport::Endpoint;

// From the test kit the tests use: the Python virtual environment (the hosts' connector SDK,
// with grpcio) for the benchmark's Python host; the Redshift-shaped proxy (it runs UNLOAD) and
// the AWS emulator (moto's S3) for the unload suite; the server process as a host starts it.
use test_kit::{aws, python, redshift};

const DATABASE: &str = "bench";
const MIB: f64 = 1024.0 * 1024.0;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A comma list from the environment.
fn list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// What the run is asked to do, from the environment.
struct Params {
    rows: u64,
    scales: Vec<u64>,
    wide_rows: u64,
    repeat: usize,
    suites: Vec<String>,
}

impl Params {
    fn from_env() -> Self {
        fn number<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Err(_) => default,
                Ok(text) => text
                    .trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
            }
        }
        Self {
            rows: number("BENCH_ROWS", 1_000_000u64).max(1),
            scales: list("BENCH_SCALES", "1,5")
                .iter()
                .map(|s| s.parse().expect("BENCH_SCALES: numbers"))
                .collect(),
            wide_rows: number("BENCH_WIDE_ROWS", 300u64).max(1),
            repeat: number("BENCH_REPEAT", 3usize).max(1),
            suites: list(
                "BENCH_SUITES",
                "narrow,bounded,wide,parallel,unload,data_api,tables,debug",
            ),
        }
    }

    fn runs(&self, suite: &str) -> bool {
        self.suites.iter().any(|s| s == suite)
    }
}

/// One timed run.
#[derive(Debug, Clone, Default)]
struct Sample {
    wall: Duration,
    first_row: Option<Duration>,
    rows: u64,
    bytes: u64,
    /// CPU of the process that did the work: the connector's server process, or this one.
    work_cpu: Option<Duration>,
    /// For the connector: this process's CPU, the host side (gRPC client, decoding).
    host_cpu: Option<Duration>,
    /// The connector process's peak resident memory.
    peak_rss: Option<u64>,
    checkpoints: u64,
    /// Bytes of the checkpoint messages alone.
    checkpoint_bytes: u64,
    /// A process timed by part of its run (dlt's `pipeline.run`): its whole run, start to exit.
    whole_process: Option<Duration>,
}

/// A result line: a method and its median sample.
struct Line {
    label: String,
    runs: Vec<Sample>,
}

fn main() {
    let params = Params::from_env();
    // With the watchdog: an interrupted benchmark (Ctrl-C) leaves no server behind. Static,
    // for the proxy's threads.
    let postgres: &'static LocalPostgres = Box::leak(Box::new(
        LocalPostgres::start_with_watchdog()
            .unwrap_or_else(|err| panic!("cannot start PostgreSQL: {}", error_chain(&err))),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let result = runtime.block_on(run(postgres, &params));
    drop(runtime);
    if let Err(err) = result {
        eprintln!("benchmark failed: {}", error_chain(err.as_ref()));
        std::process::exit(1);
    }
}

async fn run(postgres: &'static LocalPostgres, params: &Params) -> Result<(), BoxError> {
    postgres.create_database(DATABASE).await?;
    let admin = postgres.connect(DATABASE).await?;
    let base = postgres.connector_configuration(DATABASE);
    print_machine(&admin).await?;

    for &scale in &params.scales {
        let rows = params.rows * scale;
        if params.runs("narrow") || params.runs("bounded") {
            fill_narrow(&admin, "orders", rows).await?;
            let config = with(&base, &[(keys::TABLES, "public.orders")]);
            let sql = scan_sql(&config).await?;
            copy_out(&admin, &sql).await?; // warm the caches before anything is timed
            if params.runs("narrow") {
                narrow(postgres, &admin, &config, &sql, rows, params).await?;
            }
            if params.runs("bounded") {
                bounded(&config, &admin, &sql, rows, params).await?;
            }
            admin.batch_execute("DROP TABLE orders").await?;
        }
        if params.runs("wide") {
            wide(&admin, &base, params.wide_rows * scale, params).await?;
        }
        if params.runs("parallel") {
            parallel(postgres, &admin, &base, rows, params).await?;
        }
        if params.runs("unload") {
            unload(postgres, rows, params).await?;
        }
    }
    // The Data API suite has its own size (BENCH_DATA_API_ROWS).
    if params.runs("data_api") {
        data_api(postgres, params).await?;
    }
    // The debug suite has scales of its own (BENCH_DEBUG_SCALES).
    if params.runs("debug") {
        debug_runner(&admin, &base, params).await?;
    }
    if params.runs("tables") {
        let counts: Vec<usize> = list("BENCH_TABLES", "200,2000")
            .iter()
            .map(|s| s.parse().expect("BENCH_TABLES: numbers"))
            .collect();
        many_tables(&admin, &base, &counts).await?;
    }
    Ok(())
}

/// Many small tables in one Update: what each table costs beyond its rows (queries,
/// transactions, checkpoints), and the bytes of checkpoints, which carry the whole state.
async fn many_tables(
    admin: &Client,
    base: &HashMap<String, String>,
    counts: &[usize],
) -> Result<(), BoxError> {
    const ROWS: usize = 10;
    println!("### many tables of {ROWS} rows, one Update (host only frames)");
    println!();
    println!(
        "| {:>6} | {:>8} | {:>9} | {:>13} | {:>16} | {:>11} | {:>10} | {:>16} |",
        "tables",
        "records",
        "seconds",
        "ms per table",
        "server CPU ms/t",
        "total MB",
        "checkpts",
        "checkpoint MB"
    );
    println!(
        "|{:->8}|{:->10}|{:->11}|{:->15}|{:->18}|{:->13}|{:->12}|{:->18}|",
        "", "", "", "", "", "", "", ""
    );
    for &count in counts {
        let started = Instant::now();
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS many CASCADE; CREATE SCHEMA many;
                 DO $$ BEGIN FOR i IN 1..{count} LOOP
                   EXECUTE format('CREATE TABLE many.t%s (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, v TEXT)', i);
                   EXECUTE format('INSERT INTO many.t%s SELECT g, TIMESTAMP ''2024-01-01'' + g * INTERVAL ''1 second'', ''value '' || g FROM generate_series(1, {ROWS}) g', i);
                 END LOOP; END $$;"
            ))
            .await?;
        eprintln!(
            "created {count} tables in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let config = with(base, &[(keys::SCHEMAS, "many")]);
        let sample = checked(
            connector(&config, Host::Framing).await?,
            (count * ROWS) as u64,
        )?;
        let seconds = sample.wall.as_secs_f64();
        let cpu_ms = sample.work_cpu.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        println!(
            "| {:>6} | {:>8} | {:>9.2} | {:>13.2} | {:>16.2} | {:>11.2} | {:>10} | {:>16.2} |",
            count,
            count * (ROWS + 1),
            seconds,
            seconds * 1e3 / count as f64,
            cpu_ms / count as f64,
            sample.bytes as f64 / 1e6,
            sample.checkpoints,
            sample.checkpoint_bytes as f64 / 1e6,
        );
    }
    admin.batch_execute("DROP SCHEMA many CASCADE").await?;
    println!();
    Ok(())
}

/// How the `customers` table's cursor orders its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyOrder {
    /// `updated_at` independent of `customer_id`, as in users' tables: a table read by its
    /// cursor delivers keys in any order (the default).
    Shuffled,
    /// `updated_at` rising with `customer_id`: keys arrive in order.
    InOrder,
}

/// The demo's `customers` table (`public.<name>`, N rows), its cursor ordered as `order` says.
async fn create_customers(
    admin: &Client,
    name: &str,
    rows: u64,
    order: KeyOrder,
) -> Result<(), BoxError> {
    // Shuffled: a hash of the key (md5's first 32 bits) as microseconds, about 72 minutes of
    // distinct times in no relation to the key; in order: a second per key. The rows are stored
    // in cursor order (CLUSTER), as a Redshift table with the cursor as its sort key stores
    // them: the scan reads them in order without a sort or a random heap access per row, and
    // the keys arrive in whatever order the cursor gives them.
    let updated_at = match order {
        KeyOrder::Shuffled => {
            "TIMESTAMP '2024-01-01' + ('x' || substr(md5(i::TEXT), 1, 8))::BIT(32)::BIGINT * INTERVAL '1 microsecond'"
        }
        KeyOrder::InOrder => "TIMESTAMP '2024-01-01' + i * INTERVAL '1 second'",
    };
    admin
        .batch_execute(&format!(
            "CREATE TABLE public.{name} (
                 customer_id INT PRIMARY KEY,
                 first_name VARCHAR(64) NOT NULL,
                 last_name VARCHAR(64) NOT NULL,
                 email VARCHAR(256) NOT NULL,
                 updated_at TIMESTAMP NOT NULL);
             INSERT INTO public.{name}
               SELECT i,
                      (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken','Margaret','Zoë'])[1 + i % 10],
                      (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth','Allen','Thompson','Hamilton','Wirth'])[1 + (i / 10) % 10],
                      'customer' || i || '@example.com',
                      {updated_at}
               FROM generate_series(1, {rows}) AS i;
             CREATE INDEX {name}_cursor ON public.{name} (updated_at NULLS FIRST, customer_id);
             CLUSTER public.{name} USING {name}_cursor;"
        ))
        .await?;
    // Apart: VACUUM cannot run inside the transaction a batch of statements is.
    admin
        .batch_execute(&format!("VACUUM ANALYZE public.{name}"))
        .await?;
    Ok(())
}

/// The debug runner as users run it (`fivetran_source debug`, a fresh process, a new
/// warehouse, process start to exit), against dlt loading the same table from the same
/// database into DuckDB with each of its fast backends (pyarrow, ConnectorX): each writes a
/// local file a user can query. dlt's time is its `pipeline.run` alone (its process also spends
/// about two seconds importing), so the comparison favours it. The table's keys arrive out of
/// order, as a cursor delivers them; the runner on the same rows with keys in order is a line
/// of its own.
async fn debug_runner(
    admin: &Client,
    base: &HashMap<String, String>,
    params: &Params,
) -> Result<(), BoxError> {
    let python = dlt_python()?;
    let scales: Vec<u64> = list("BENCH_DEBUG_SCALES", "1,10")
        .iter()
        .map(|s| s.parse().expect("BENCH_DEBUG_SCALES: numbers"))
        .collect();
    for scale in scales {
        let rows = params.rows * scale;
        create_customers(admin, "customers", rows, KeyOrder::Shuffled).await?;
        create_customers(admin, "customers_in_order", rows, KeyOrder::InOrder).await?;
        let shuffled = with(base, &[(keys::TABLES, "public.customers")]);
        let in_order = with(base, &[(keys::TABLES, "public.customers_in_order")]);
        let sql = scan_sql(&shuffled).await?;
        copy_out(admin, &sql).await?; // warm the caches before anything is timed
        let work = tempfile::tempdir()?;
        let mut lines: Vec<Line> = [
            "COPY TO STDOUT (baseline)",
            "debug runner, keys out of order",
            "debug runner, keys in order",
            "dlt pyarrow -> DuckDB",
            "dlt ConnectorX -> DuckDB",
        ]
        .iter()
        .map(|label| Line {
            label: label.to_string(),
            runs: Vec::new(),
        })
        .collect();
        for _ in 0..params.repeat {
            lines[0]
                .runs
                .push(checked(copy_out(admin, &sql).await?, rows)?);
            let runner = debug_binary(&shuffled, "customers", work.path())?;
            lines[1].runs.push(checked(runner, rows)?);
            let runner = debug_binary(&in_order, "customers_in_order", work.path())?;
            lines[2].runs.push(checked(runner, rows)?);
            for (line, backend) in [(3, "pyarrow"), (4, "connectorx")] {
                let loaded = dlt_load(&python, base, "customers", backend, work.path())?;
                lines[line].runs.push(checked(loaded, rows)?);
            }
        }
        report(
            &format!("debug runner vs dlt, {rows} `customers` rows into a local file"),
            &lines,
        );
        let rate = |line: &Line| {
            let mut rates: Vec<f64> = line
                .runs
                .iter()
                .map(|s| s.rows as f64 / s.wall.as_secs_f64())
                .collect();
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        };
        println!(
            "  runner (keys out of order) / dlt ConnectorX: {:.2}x; / dlt pyarrow: {:.2}x; keys in order / out of order: {:.2}x",
            rate(&lines[1]) / rate(&lines[4]),
            rate(&lines[1]) / rate(&lines[3]),
            rate(&lines[2]) / rate(&lines[1]),
        );
        // Both as a user times them: a command's start to its exit.
        let whole_rate = |line: &Line| {
            let mut rates: Vec<f64> = line
                .runs
                .iter()
                .map(|s| s.rows as f64 / s.whole_process.unwrap_or(s.wall).as_secs_f64())
                .collect();
            rates.sort_by(f64::total_cmp);
            rates[rates.len() / 2]
        };
        println!(
            "  process start to exit, both: runner {:.0} rows/s, dlt ConnectorX {:.0}, dlt pyarrow {:.0}; runner / dlt ConnectorX: {:.2}x",
            whole_rate(&lines[1]),
            whole_rate(&lines[4]),
            whole_rate(&lines[3]),
            whole_rate(&lines[1]) / whole_rate(&lines[4]),
        );
        println!("  debug runner: wall time from process start to exit; CPU and peak RSS are its");
        println!("  whole process (server, client and SQLite). dlt: CPU of its Python process and");
        println!("  children, peak RSS of the Python process (ConnectorX and DuckDB run in it);");
        println!("  its rows/s is from pipeline.run alone.");
        println!();
        admin
            .batch_execute("DROP TABLE public.customers; DROP TABLE public.customers_in_order")
            .await?;
    }
    Ok(())
}

/// Runs `command` to its end, its output collected; its wall time, CPU and peak RSS (from
/// `wait4`, this child's alone).
fn run_measured(command: &mut Command) -> Result<(std::process::Output, Sample), BoxError> {
    use std::io::Read as _;
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let pid = child.id() as libc::pid_t;
    // Peak RSS from the process's own VmHWM, read until it exits: wait4's ru_maxrss is not it,
    // because Linux records the high-water mark of the address space the child had before its
    // exec, which is this benchmark's (gigabytes once the unload suite has run).
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hwm_poller = {
        let exited = std::sync::Arc::clone(&exited);
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !exited.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(vm_hwm(pid as u32).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on a child of this process, writing into the values given. WNOWAIT is not
    // used: the exit is reaped here, after which /proc no longer has the process.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        return Err("wait4 failed".into());
    }
    exited.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_rss = hwm_poller.join().unwrap_or(0);
    let wall = started.elapsed();
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let output = std::process::Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    let sample = Sample {
        wall,
        work_cpu: Some(Duration::from_secs_f64(
            seconds(usage.ru_utime) + seconds(usage.ru_stime),
        )),
        peak_rss: Some(peak_rss),
        ..Sample::default()
    };
    Ok((output, sample))
}

/// One `fivetran_source debug --reset` run of `table` into a new warehouse; rows are the
/// warehouse's.
fn debug_binary(
    config: &HashMap<String, String>,
    table: &str,
    work: &std::path::Path,
) -> Result<Sample, BoxError> {
    let configuration = work.join("configuration.json");
    std::fs::write(&configuration, serde_json::to_string(config)?)?;
    let (state, warehouse) = (work.join("state.json"), work.join("warehouse.db"));
    let (output, sample) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_fivetran_source"))
            .arg("debug")
            .arg("--configuration")
            .arg(&configuration)
            .arg("--state")
            .arg(&state)
            .arg("--warehouse")
            .arg(&warehouse)
            .arg("--reset"),
    )?;
    if !output.status.success() {
        return Err(format!(
            "the debug runner failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let rows: i64 = rusqlite::Connection::open(&warehouse)?.query_row(
        &format!("SELECT COUNT(*) FROM \"public.{table}\" WHERE _fivetran_deleted = 0"),
        [],
        |row| row.get(0),
    )?;
    Ok(Sample {
        rows: rows as u64,
        ..sample
    })
}

/// One dlt load (`benches/dlt_load.py`) of `table` with `backend` into a new DuckDB file.
fn dlt_load(
    python: &std::path::Path,
    base: &HashMap<String, String>,
    table: &str,
    backend: &str,
    work: &std::path::Path,
) -> Result<Sample, BoxError> {
    let url = format!(
        "postgresql://{}:{}@{}:{}/{}?sslmode=require",
        base[keys::USER],
        base[keys::PASSWORD],
        base[keys::HOST],
        base[keys::PORT],
        base[keys::DATABASE]
    );
    let (output, sample) = run_measured(
        Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/dlt_load.py"))
            .args([url.as_str(), "public", table, backend])
            .arg(work.join("dlt")),
    )?;
    if !output.status.success() {
        return Err(format!("dlt failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| format!("dlt_load.py printed no result: {stdout}"))?;
    Ok(Sample {
        wall: Duration::from_secs_f64(result["seconds"].as_f64().unwrap_or_default()),
        rows: result["rows"].as_u64().unwrap_or_default(),
        whole_process: Some(sample.wall),
        ..sample
    })
}

/// The interpreter of dlt's virtual environment under `target/`, built on first use from
/// `benches/dlt-requirements.txt` (a marker holding the requirements says it is complete).
fn dlt_python() -> Result<std::path::PathBuf, BoxError> {
    const REQUIREMENTS: &str = include_str!("dlt-requirements.txt");
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dlt-venv");
    let marker = venv.join("requirements.installed");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(REQUIREMENTS) {
        println!("installing dlt into {} (once)...", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        let run = |command: &mut Command| -> Result<(), BoxError> {
            let status = command.status()?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("{command:?} failed: {status}").into())
            }
        };
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        let requirements = venv.join("requirements.txt");
        std::fs::write(&requirements, REQUIREMENTS)?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements))?;
        std::fs::write(&marker, REQUIREMENTS)?;
    }
    Ok(venv.join("bin/python"))
}

fn with(config: &HashMap<String, String>, pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut config = config.clone();
    for (key, value) in pairs {
        config.insert(key.to_string(), value.to_string());
    }
    config
}

async fn print_machine(client: &Client) -> Result<(), BoxError> {
    let version: String = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await?
        .get(0);
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!();
    println!("throughput: one Update, the connector in its own process, same-run baselines");
    println!(
        "  machine: {cores} cores ({}), PostgreSQL {version} (local, TLS); connector defaults: batch_size {DEFAULT_BATCH_SIZE}",
        std::env::consts::ARCH
    );
    println!();
    Ok(())
}

/// The narrow table: keys, money, text with non-ASCII, timestamps, and an `updated_at` cursor
/// shared by ~20 rows per value (bulk loads stamp many rows alike). The index on
/// (updated_at NULLS FIRST, id) stands in for Redshift's sort key, so no method pays for a sort.
async fn fill_narrow(client: &Client, table: &str, rows: u64) -> Result<(), BoxError> {
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table};
            CREATE TABLE {table} (
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
            INSERT INTO {table}
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
            CREATE INDEX {table}_cursor ON {table} (updated_at ASC NULLS FIRST, id);"
        ))
        .await?;
    client
        .batch_execute(&format!("VACUUM ANALYZE {table}"))
        .await?;
    eprintln!(
        "filled {table}: {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The query the connector runs for an initial sync of the configured table, from its own
/// catalog, plan and query builder: every baseline reads exactly these rows in this order.
async fn scan_sql(config: &HashMap<String, String>) -> Result<String, BoxError> {
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
        select: &plan.select,
        cursor,
        key: &plan.key,
        upper_bound: None,
        limit: None,
        only_null_cursor: false,
        key_snapshot: None,
    };
    Ok(spec.query(&Resume::FromStart).sql)
}

/// The narrow suite: the methods interleaved over rounds, so that load from elsewhere hits all.
async fn narrow(
    postgres: &LocalPostgres,
    admin: &Client,
    config: &HashMap<String, String>,
    sql: &str,
    rows: u64,
    params: &Params,
) -> Result<(), BoxError> {
    let mut copy = Vec::new();
    let mut floor = Vec::new();
    let mut engine_runs = Vec::new();
    let mut connector_runs = Vec::new();
    let mut framing_runs = Vec::new();
    let mut gzip_runs = Vec::new();
    let mut grpcio_runs = Vec::new();
    let mut grpcio_gzip_runs = Vec::new();
    for round in 1..=params.repeat {
        copy.push(checked(copy_out(admin, sql).await?, rows)?);
        let client = postgres.connect(DATABASE).await?;
        floor.push(checked(query_raw(&client, sql).await?, rows)?);
        engine_runs.push(checked(engine(config).await?, rows)?);
        connector_runs.push(checked(connector(config, Host::Decoding).await?, rows)?);
        framing_runs.push(checked(connector(config, Host::Framing).await?, rows)?);
        gzip_runs.push(checked(
            connector_with(config, Host::Framing, "gzip").await?,
            rows,
        )?);
        grpcio_runs.push(checked(grpcio_host(config, "none").await?, rows)?);
        grpcio_gzip_runs.push(checked(grpcio_host(config, "gzip").await?, rows)?);
        eprintln!("narrow {rows}: round {round}/{} done", params.repeat);
    }
    report(
        &format!("narrow table, {rows} rows"),
        &[
            Line {
                label: "COPY TO STDOUT (baseline)".into(),
                runs: copy,
            },
            Line {
                label: "driver floor (tokio-postgres)".into(),
                runs: floor,
            },
            Line {
                label: "engine alone, no gRPC".into(),
                runs: engine_runs,
            },
            Line {
                label: "connector Update (gRPC)".into(),
                runs: connector_runs,
            },
            Line {
                label: "  same, host only frames".into(),
                runs: framing_runs,
            },
            Line {
                label: "  same, --compression gzip".into(),
                runs: gzip_runs,
            },
            Line {
                label: "Python grpcio host (defaults)".into(),
                runs: grpcio_runs,
            },
            Line {
                label: "  same, --compression gzip".into(),
                runs: grpcio_gzip_runs,
            },
        ],
    );
    Ok(())
}

/// The cost of bounded queries: the connector at several `max_rows_per_query` against one
/// unbounded query, on the same table.
async fn bounded(
    config: &HashMap<String, String>,
    admin: &Client,
    sql: &str,
    rows: u64,
    params: &Params,
) -> Result<(), BoxError> {
    let limits: Vec<u64> = list("BENCH_LIMITS", "100000,1000000,10000000000")
        .iter()
        .map(|s| s.parse().expect("BENCH_LIMITS: numbers"))
        .collect();
    let mut lines: Vec<Line> = vec![
        Line {
            label: "COPY TO STDOUT (baseline)".into(),
            runs: vec![],
        },
        Line {
            label: "max_rows_per_query auto (default)".into(),
            runs: vec![],
        },
    ];
    for &limit in &limits {
        lines.push(Line {
            label: if limit >= 10_000_000_000 {
                "one unbounded query".to_string()
            } else {
                format!("max_rows_per_query {limit}")
            },
            runs: vec![],
        });
    }
    for _ in 0..params.repeat {
        lines[0]
            .runs
            .push(checked(copy_out(admin, sql).await?, rows)?);
        lines[1]
            .runs
            .push(checked(connector(config, Host::Framing).await?, rows)?);
        for (i, limit) in limits.iter().enumerate() {
            let config = with(config, &[(keys::MAX_ROWS_PER_QUERY, &limit.to_string())]);
            lines[i + 2]
                .runs
                .push(checked(connector(&config, Host::Framing).await?, rows)?);
        }
    }
    report(&format!("bounded queries, {rows} rows"), &lines);
    Ok(())
}

/// The unload suite (see the module's doc): an initial sync through UNLOAD against the direct
/// path at its defaults and COPY, on the narrow table, in a database with Redshift's
/// emulation behind the proxy.
async fn unload(
    postgres: &'static LocalPostgres,
    rows: u64,
    params: &Params,
) -> Result<(), BoxError> {
    const UNLOAD_DATABASE: &str = "bench_unload";
    const ROLE: &str = "arn:aws:iam::123456789012:role/redshift-unload";
    let (admin, client) = emulated_database(postgres, UNLOAD_DATABASE, rows).await?;
    let proxy = redshift::RedshiftProxy::start(postgres, redshift::Settings::default());
    let aws = tokio::task::spawn_blocking(move || aws::AwsEmulator::start(postgres, 0)).await?;
    proxy.set(redshift::Settings {
        unload: Some(redshift::unload::UnloadEmulation {
            s3_endpoint: aws.moto_url(),
            role_key: (aws.unloader.id.clone(), aws.unloader.secret.clone()),
            roles: vec![ROLE.to_string()],
            default_role: None,
            cluster_region: "us-east-1".to_string(),
            bucket_regions: Vec::new(),
            // A 2-node ra3.xlplus cluster has 4 slices.
            slices: 4,
            rows_per_file: 2_000_000,
            miscount: false,
        }),
        ..redshift::Settings::default()
    });
    let tables = [(keys::TABLES, "public.orders")];
    let direct = with(&postgres.connector_configuration(UNLOAD_DATABASE), &tables);
    let through_proxy = with(&proxy.connector_configuration(UNLOAD_DATABASE), &tables);
    let exported = with(
        &through_proxy,
        &[
            (keys::UNLOAD_S3_URI, "s3://sync-staging/bench/"),
            (keys::UNLOAD_IAM_ROLE, ROLE),
            (keys::UNLOAD_MIN_ROWS, "1"),
            (keys::UNLOAD_S3_ENDPOINT_URL, &aws.moto_url()),
        ],
    );
    let _credentials = AwsEnvironment::set(&aws);
    let sql = scan_sql(&direct).await?;
    copy_out(&client, &sql).await?;
    let mut copy = Vec::new();
    let mut direct_runs = Vec::new();
    let mut unload_runs = Vec::new();
    let mut read_phase = Vec::new();
    let mut export_phase = Vec::new();
    for round in 1..=params.repeat {
        copy.push(checked(copy_out(&client, &sql).await?, rows)?);
        direct_runs.push(checked(connector(&direct, Host::Framing).await?, rows)?);
        let sample = checked(connector(&exported, Host::Framing).await?, rows)?;
        // Export: from the call to the first record (the UNLOAD and the manifest); read:
        // from the first record to the last.
        let first = sample.first_row.unwrap_or_default();
        export_phase.push(first);
        read_phase.push(Sample {
            wall: sample.wall.saturating_sub(first),
            first_row: None,
            ..sample.clone()
        });
        unload_runs.push(sample);
        eprintln!("unload {rows}: round {round}/{} done", params.repeat);
    }
    report(
        &format!("initial sync through UNLOAD, {rows} rows"),
        &[
            Line {
                label: "COPY TO STDOUT (baseline)".into(),
                runs: copy,
            },
            Line {
                label: "direct path, defaults".into(),
                runs: direct_runs,
            },
            Line {
                label: "UNLOAD path, whole sync".into(),
                runs: unload_runs,
            },
            Line {
                label: "  read phase (1st to last row)".into(),
                runs: read_phase,
            },
        ],
    );
    let export = median(export_phase.into_iter()).unwrap_or_default();
    println!(
        "  export phase (UNLOAD and manifest, the emulation's here): {:.2} s; readers: {}",
        export.as_secs_f64(),
        std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
    );
    println!();
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {UNLOAD_DATABASE} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// The emulator's `syncer` credentials in this process's environment, which the server
/// processes started meanwhile are given (see [`ServerProcess::start`]); removed when dropped.
struct AwsEnvironment;

impl AwsEnvironment {
    const KEYS: [&'static str; 4] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_EC2_METADATA_DISABLED",
    ];

    fn set(aws: &aws::AwsEmulator) -> AwsEnvironment {
        let values = [
            aws.syncer.id.as_str(),
            aws.syncer.secret.as_str(),
            "us-east-1",
            "true",
        ];
        for (key, value) in Self::KEYS.iter().zip(values) {
            std::env::set_var(key, value);
        }
        AwsEnvironment
    }
}

impl Drop for AwsEnvironment {
    fn drop(&mut self) {
        for key in Self::KEYS {
            std::env::remove_var(key);
        }
    }
}

/// A new database `name` with Redshift's emulation (for the proxy) and the narrow table of
/// `rows` rows: an admin client of the main database, and a client of the new one.
async fn emulated_database(
    postgres: &'static LocalPostgres,
    name: &str,
    rows: u64,
) -> Result<(Client, Client), BoxError> {
    let admin = postgres.connect(DATABASE).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    postgres.create_database(name).await?;
    admin
        .batch_execute(&format!("ALTER DATABASE {name} SET search_path = \"$user\", public, catalog_history, pg_catalog"))
        .await?;
    postgres
        .connect(name)
        .await?
        .batch_execute(redshift::EMULATION_SQL)
        .await?;
    let client = postgres.connect(name).await?;
    fill_narrow(&client, "orders", rows).await?;
    Ok((admin, client))
}

/// The narrow table through the Redshift Data API (the tests' emulator on the same PostgreSQL,
/// through the same Redshift-shaped proxy as the direct line), with no latency added and with
/// a per-call latency as a region away would add: what each round trip costs, and how much of
/// it requesting the next page while this one is decoded hides.
async fn data_api(postgres: &'static LocalPostgres, params: &Params) -> Result<(), BoxError> {
    const DATA_API_DATABASE: &str = "bench_data_api";
    let rows: u64 = std::env::var("BENCH_DATA_API_ROWS")
        .ok()
        .and_then(|text| text.replace('_', "").parse().ok())
        .unwrap_or(200_000);
    let latency_ms: u64 = std::env::var("BENCH_DATA_API_LATENCY_MS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(50);
    let (admin, client) = emulated_database(postgres, DATA_API_DATABASE, rows).await?;
    let proxy = redshift::RedshiftProxy::start(postgres, redshift::Settings::default());
    let port = proxy.port();
    let aws = tokio::task::spawn_blocking(move || aws::AwsEmulator::start(postgres, port)).await?;
    let tables = [(keys::TABLES, "public.orders")];
    let direct = with(&proxy.connector_configuration(DATA_API_DATABASE), &tables);
    let through_api = with(
        &test_kit::data_api::connector_configuration(&aws.endpoint_url(), DATA_API_DATABASE),
        &tables,
    );
    let _credentials = AwsEnvironment::set(&aws);
    // Pages of 5,000 records (about 1.5 MB of JSON here).
    let settings = |latency| test_kit::data_api::DataApiSettings {
        latency,
        page_rows: 5000,
        ..Default::default()
    };
    let sql = scan_sql(&direct).await?;
    copy_out(&client, &sql).await?;
    let mut lines: Vec<Line> = [
        "COPY TO STDOUT (baseline)",
        "direct path through the proxy",
        "Data API, no added latency",
    ]
    .into_iter()
    .chain([format!("Data API, {latency_ms} ms a call").as_str()])
    .map(|label| Line {
        label: label.to_string(),
        runs: Vec::new(),
    })
    .collect();
    let mut calls = Vec::new();
    for round in 1..=params.repeat {
        lines[0]
            .runs
            .push(checked(copy_out(&client, &sql).await?, rows)?);
        lines[1]
            .runs
            .push(checked(connector(&direct, Host::Framing).await?, rows)?);
        for (line, latency) in [(2, 0), (3, latency_ms)] {
            aws.data_api().set(settings(Duration::from_millis(latency)));
            let before = (
                aws.calls("ExecuteStatement"),
                aws.calls("DescribeStatement"),
                aws.calls("GetStatementResult"),
            );
            lines[line].runs.push(checked(
                connector(&through_api, Host::Framing).await?,
                rows,
            )?);
            if round == 1 {
                calls.push((
                    lines[line].label.clone(),
                    aws.calls("ExecuteStatement") - before.0,
                    aws.calls("DescribeStatement") - before.1,
                    aws.calls("GetStatementResult") - before.2,
                ));
            }
        }
        eprintln!("data api {rows}: round {round}/{} done", params.repeat);
    }
    report(
        &format!("the Redshift Data API transport, {rows} rows"),
        &lines,
    );
    let rate = |line: &Line| {
        let wall = median(line.runs.iter().map(|s| s.wall)).unwrap_or_default();
        rows as f64 / wall.as_secs_f64().max(1e-9)
    };
    let cpu = |line: &Line| median(line.runs.iter().filter_map(|s| s.work_cpu));
    for line in &lines[2..] {
        println!(
            "  {}: {:.2}x the direct path's rows/s, {:.2}x its server CPU",
            line.label,
            rate(line) / rate(&lines[1]),
            cpu(line).unwrap_or_default().as_secs_f64()
                / cpu(&lines[1]).unwrap_or_default().as_secs_f64().max(1e-9),
        );
    }
    for (label, execute, describe, pages) in calls {
        println!("  {label}: {execute} statements, {describe} descriptions, {pages} result pages");
    }
    println!();
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {DATA_API_DATABASE} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Wide rows at default settings: memory must stay bounded whatever the width.
async fn wide(
    admin: &Client,
    base: &HashMap<String, String>,
    rows: u64,
    params: &Params,
) -> Result<(), BoxError> {
    for (table, value_mib, count) in [
        ("wide_1mb", 1u64, rows),
        ("wide_16mb", 16, (rows / 16).max(4)),
    ] {
        let started = Instant::now();
        admin
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (id BIGINT PRIMARY KEY, updated_at TIMESTAMP, payload TEXT);
                 INSERT INTO {table}
                   SELECT g, TIMESTAMP '2024-01-01' + g * INTERVAL '1 second',
                          repeat(md5(g::text), {value_mib} * 32768)
                   FROM generate_series(1, {count}) g;"
            ))
            .await?;
        eprintln!(
            "filled {table}: {count} rows in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let config = with(base, &[(keys::TABLES, &format!("public.{table}"))]);
        let sql = scan_sql(&config).await?;
        let mut copy = Vec::new();
        let mut connector_runs = Vec::new();
        for _ in 0..params.repeat {
            copy.push(checked(copy_out(admin, &sql).await?, count)?);
            connector_runs.push(checked(connector(&config, Host::Decoding).await?, count)?);
        }
        report(
            &format!("wide table, {count} rows of {value_mib} MiB values, default settings"),
            &[
                Line {
                    label: "COPY TO STDOUT (baseline)".into(),
                    runs: copy,
                },
                Line {
                    label: "connector Update (gRPC)".into(),
                    runs: connector_runs,
                },
            ],
        );
        admin.batch_execute(&format!("DROP TABLE {table}")).await?;
    }
    Ok(())
}

/// Four tables with `max_parallel_tables` 4, against four COPYs at once.
async fn parallel(
    postgres: &LocalPostgres,
    admin: &Client,
    base: &HashMap<String, String>,
    rows: u64,
    params: &Params,
) -> Result<(), BoxError> {
    let tables = ["p1", "p2", "p3", "p4"];
    let each = rows / 4;
    for table in tables {
        fill_narrow(admin, table, each).await?;
    }
    let config = with(
        base,
        &[(keys::SCHEMAS, "public"), (keys::MAX_PARALLEL_TABLES, "4")],
    );
    let mut sqls = Vec::new();
    for table in tables {
        sqls.push(scan_sql(&with(base, &[(keys::TABLES, &format!("public.{table}"))])).await?);
    }
    let mut copy = Vec::new();
    let mut connector_runs = Vec::new();
    let mut framing_runs = Vec::new();
    for _ in 0..params.repeat {
        let started = Instant::now();
        let mut copies = Vec::new();
        for sql in &sqls {
            let client = postgres.connect(DATABASE).await?;
            let sql = sql.clone();
            copies.push(tokio::spawn(async move {
                copy_out(&client, &sql).await.map_err(|e| e.to_string())
            }));
        }
        let mut sample = Sample::default();
        for copy in copies {
            let one = copy.await??;
            sample.rows += one.rows;
            sample.bytes += one.bytes;
        }
        sample.wall = started.elapsed();
        copy.push(checked(sample, each * 4)?);
        connector_runs.push(checked(
            connector(&config, Host::Decoding).await?,
            each * 4,
        )?);
        framing_runs.push(checked(connector(&config, Host::Framing).await?, each * 4)?);
    }
    report(
        &format!("parallel: 4 tables of {each} rows, max_parallel_tables 4"),
        &[
            Line {
                label: "4 concurrent COPYs (baseline)".into(),
                runs: copy,
            },
            Line {
                label: "connector Update (gRPC)".into(),
                runs: connector_runs,
            },
            Line {
                label: "  same, host only frames".into(),
                runs: framing_runs,
            },
        ],
    );
    for table in tables {
        admin.batch_execute(&format!("DROP TABLE {table}")).await?;
    }
    Ok(())
}

fn checked(sample: Sample, rows: u64) -> Result<Sample, BoxError> {
    if sample.rows == rows {
        Ok(sample)
    } else {
        Err(format!("a run read {} rows of {rows}", sample.rows).into())
    }
}

/// The database's own export: `COPY (query) TO STDOUT` in text format, every byte consumed.
/// Text COPY escapes newlines inside values, so rows are the newline count.
async fn copy_out(client: &Client, sql: &str) -> Result<Sample, BoxError> {
    let cpu = this_process_cpu();
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
    sample.work_cpu = since(cpu, this_process_cpu());
    Ok(sample)
}

/// The driver floor: the same query streamed by tokio-postgres, every value decoded to a native
/// type without copying it: what any client of the database must spend per row.
async fn query_raw(client: &Client, sql: &str) -> Result<Sample, BoxError> {
    let cpu = this_process_cpu();
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
    sample.work_cpu = since(cpu, this_process_cpu());
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
            Type::NUMERIC => 16, // binary NUMERIC: tokio-postgres needs a feature to decode it
            Type::BYTEA => row.get::<_, Option<&[u8]>>(i).map_or(0, <[u8]>::len),
            _ => row.get::<_, Option<&str>>(i).map_or(0, str::len),
        });
    }
    n
}

/// The sync engine in this process, into its output channel: rows decoded and records
/// encoded, checkpoints, no gRPC. Its CPU is this process's.
async fn engine(config: &HashMap<String, String>) -> Result<Sample, BoxError> {
    let config = Config::from_request(config).await?;
    let cpu = this_process_cpu();
    let started = Instant::now();
    let (output, mut rx) = Output::channel(fivetran_source::sync::output_budget(&config));
    let engine = tokio::spawn(fivetran_source::sync::run(
        config,
        None,
        SyncState::new(),
        output,
    ));
    let mut sample = Sample::default();
    while let Some(message) = rx.recv().await {
        match message.message {
            OutgoingMessage::Encoded(bytes) => {
                if sample.first_row.is_none() {
                    sample.first_row = Some(started.elapsed());
                }
                sample.bytes += bytes.len() as u64;
                sample.rows += count_upserts(&bytes);
            }
            OutgoingMessage::Message(message) => {
                if matches!(message.operation, Some(Operation::Checkpoint(_))) {
                    sample.checkpoints += 1;
                }
            }
        }
    }
    engine.await??;
    sample.wall = started.elapsed();
    sample.work_cpu = since(cpu, this_process_cpu());
    Ok(sample)
}

/// The UPSERT records of an encoded `Records` message (`0x32 len`, then `0x0A len record`...),
/// counted by walking the length prefixes: decoding would charge the engine for the host's
/// work. A record is `1: schema, 2: table`, then `3: type` unless it is an UPSERT (the default).
fn count_upserts(bytes: &[u8]) -> u64 {
    fn varint(bytes: &[u8], at: &mut usize) -> usize {
        let (mut value, mut shift) = (0usize, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }
    let mut at = 1; // the UpdateResponse.records tag
    let _records_len = varint(bytes, &mut at);
    let mut upserts = 0;
    while at < bytes.len() {
        at += 1; // Records.records tag
        let len = varint(bytes, &mut at);
        let end = at + len;
        let mut field = at;
        for _ in 0..2 {
            field += 1; // schema_name, then table_name
            field += varint(bytes, &mut field);
        }
        let typed = field < end && bytes[field] == 0x18 && bytes[field + 1] != 0;
        if !typed {
            upserts += 1;
        }
        at = end;
    }
    upserts
}

/// What the host-like client in this process does with the stream.
#[derive(Clone, Copy, PartialEq)]
enum Host {
    /// Decodes every message with prost, as a host does. On a 2-core machine this client,
    /// the server and PostgreSQL share the cores, so its decoding caps the rate.
    Decoding,
    /// Counts records by walking each frame's length prefixes, no decoding: the rate the
    /// server delivers when the host has cores of its own, as it has in a deployment.
    Framing,
}

/// One Update of the connector in a process of its own (started for this run), consumed by a
/// host-like client here.
async fn connector(config: &HashMap<String, String>, host: Host) -> Result<Sample, BoxError> {
    connector_with(config, host, "none").await
}

/// [`connector`] with the server started with `--compression <compression>`. The host accepts
/// gzip, as every standard gRPC client does by default.
async fn connector_with(
    config: &HashMap<String, String>,
    host: Host,
    compression: &str,
) -> Result<Sample, BoxError> {
    let server = ServerProcess::start(compression)?;
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", server.port()))?
        .connect()
        .await?;
    let server_cpu = server.cpu();
    let host_cpu = this_process_cpu();
    let started = Instant::now();
    let request = UpdateRequest {
        configuration: config.clone(),
        selection: None,
        state_json: None,
    };
    let mut sample = Sample::default();
    match host {
        Host::Decoding => {
            let mut client = SourceConnectorClient::new(channel)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);
            let mut stream = client.update(request).await?.into_inner();
            while let Some(message) = stream.message().await? {
                sample.bytes += message.encoded_len() as u64;
                match message.operation {
                    Some(Operation::Records(records)) => {
                        let upserts = records
                            .records
                            .iter()
                            .filter(|r| r.r#type == RecordType::Upsert as i32)
                            .count() as u64;
                        if upserts > 0 && sample.first_row.is_none() {
                            sample.first_row = Some(started.elapsed());
                        }
                        sample.rows += upserts;
                    }
                    Some(Operation::Checkpoint(_)) => sample.checkpoints += 1,
                    Some(Operation::Task(task)) => {
                        return Err(format!("the Update ended with a Task: {}", task.message).into())
                    }
                    _ => {}
                }
            }
        }
        Host::Framing => {
            let mut grpc = tonic::client::Grpc::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
            grpc.ready().await?;
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(
                "/fivetran_sdk.v2.SourceConnector/Update",
            );
            let mut stream = grpc
                .server_streaming(tonic::Request::new(request), path, FramesCodec)
                .await?
                .into_inner();
            while let Some(frame) = stream.message().await? {
                sample.bytes += frame.len() as u64;
                match frame.first() {
                    // UpdateResponse.records (field 6, length-delimited)
                    Some(0x32) => {
                        let records = count_upserts(&frame);
                        if records > 0 && sample.first_row.is_none() {
                            sample.first_row = Some(started.elapsed());
                        }
                        sample.rows += records;
                    }
                    // UpdateResponse.checkpoint (field 3)
                    Some(0x1A) => {
                        sample.checkpoints += 1;
                        sample.checkpoint_bytes += frame.len() as u64;
                    }
                    // UpdateResponse.task (field 5)
                    Some(0x2A) => return Err("the Update ended with a Task".into()),
                    _ => {}
                }
            }
        }
    }
    sample.wall = started.elapsed();
    sample.host_cpu = since(host_cpu, this_process_cpu());
    sample.work_cpu = since(server_cpu, server.cpu());
    sample.peak_rss = server.peak_rss();
    Ok(sample)
}

/// One Update called by a host built as hosts are: Python grpcio with the connector SDK's
/// stubs, default channel options (it advertises gzip), in a process of its own
/// (`benches/grpcio_host.py`). Host CPU is that process's.
async fn grpcio_host(
    config: &HashMap<String, String>,
    compression: &str,
) -> Result<Sample, BoxError> {
    let server = ServerProcess::start(compression)?;
    let dir = tempfile::tempdir()?;
    let config_file = dir.path().join("configuration.json");
    std::fs::write(&config_file, serde_json::to_vec(config)?)?;
    let server_cpu = server.cpu();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(python::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/grpcio_host.py"
        ))
        .arg(format!("127.0.0.1:{}", server.port()))
        .arg(&config_file)
        .stdout(Stdio::piped())
        .spawn()?;
    let host_cpu_of = |pid: Option<u32>| pid.and_then(|pid| cpu_time(&format!("/proc/{pid}/stat")));
    let pid = child.id();
    // Sampled until the host exits (its /proc entry goes with it).
    let mut host_cpu = None;
    let output = loop {
        tokio::select! {
            status = child.wait() => { status?; break child; }
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                host_cpu = host_cpu_of(pid).or(host_cpu);
            }
        }
    };
    let wall = started.elapsed();
    let mut stdout = String::new();
    if let Some(mut out) = output.stdout {
        use tokio::io::AsyncReadExt as _;
        out.read_to_string(&mut stdout).await?;
    }
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|err| format!("grpcio_host.py printed {stdout:?}: {err}"))?;
    Ok(Sample {
        wall,
        first_row: report["first_record_s"]
            .as_f64()
            .map(Duration::from_secs_f64),
        rows: report["upserts"].as_u64().unwrap_or(0),
        work_cpu: since(server_cpu, server.cpu()),
        host_cpu,
        peak_rss: server.peak_rss(),
        checkpoints: report["checkpoints"].as_u64().unwrap_or(0),
        ..Sample::default()
    })
}

/// The Update request encoded by prost; each response handed over as its undecoded bytes.
#[derive(Clone, Copy)]
struct FramesCodec;

impl tonic::codec::Codec for FramesCodec {
    type Encode = UpdateRequest;
    type Decode = bytes::Bytes;
    type Encoder = tonic_prost::ProstEncoder<UpdateRequest>;
    type Decoder = FramesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        FramesCodec
    }
}

impl tonic::codec::Decoder for FramesCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `fivetran_source serve --port 0 --compression ..`, as a host starts it, from the test kit;
/// killed when dropped. BENCH_SERVER_LOG sets its log filter (and shows its log), to see where a
/// run spends its time.
struct ServerProcess(test_kit::ServerProcess);

impl ServerProcess {
    fn start(compression: &str) -> Result<ServerProcess, BoxError> {
        let args = ["serve", "--port", "0", "--compression", compression];
        // The kit starts the server with an empty environment; the AWS suites (unload,
        // data_api) set the emulator's credentials in this process's, and pass them on.
        let aws: Vec<(String, String)> = std::env::vars()
            .filter(|(key, _)| key.starts_with("AWS_"))
            .collect();
        let mut env: Vec<(&str, &str)> = aws
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        Ok(ServerProcess(match std::env::var("BENCH_SERVER_LOG") {
            Ok(filter) => {
                env.push(("RUST_LOG", &filter));
                test_kit::ServerProcess::start_with(&args, &env)
            }
            Err(_) => {
                env.push(("RUST_LOG", "warn,fivetran_source::server=info"));
                test_kit::ServerProcess::start_silent(&args, &env)
            }
        }))
    }

    fn port(&self) -> u16 {
        self.0.port()
    }

    fn cpu(&self) -> Option<Duration> {
        cpu_time(&format!("/proc/{}/stat", self.0.pid()))
    }

    /// VmHWM: the most resident memory the process ever had.
    fn peak_rss(&self) -> Option<u64> {
        vm_hwm(self.0.pid())
    }
}

/// A running process's VmHWM (the most resident memory its address space ever had), in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn report(title: &str, lines: &[Line]) {
    println!("### {title}");
    println!();
    println!(
        "| {:<32} | {:>10} | {:>9} | {:>7} | {:>11} | {:>13} | {:>13} | {:>12} |",
        "method (median of runs)",
        "rows/s",
        "MB/s",
        "vs COPY",
        "1st row ms",
        "CPU µs/row",
        "host µs/row",
        "peak RSS MiB"
    );
    println!(
        "|{:-<34}|{:->12}|{:->11}|{:->9}|{:->13}|{:->15}|{:->15}|{:->14}|",
        "", "", "", "", "", "", "", ""
    );
    let rate = |line: &Line| -> f64 {
        let wall = median(line.runs.iter().map(|s| s.wall)).unwrap_or_default();
        line.runs[0].rows as f64 / wall.as_secs_f64().max(1e-9)
    };
    let baseline = lines.first().map(rate).unwrap_or(1.0);
    for line in lines {
        let rows = line.runs[0].rows as f64;
        let wall = median(line.runs.iter().map(|s| s.wall)).unwrap_or_default();
        let per_row = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                format!("{:.2}", d.as_secs_f64() * 1e6 / rows)
            })
        };
        let first = median(line.runs.iter().filter_map(|s| s.first_row))
            .map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
        let rss = line
            .runs
            .iter()
            .filter_map(|s| s.peak_rss)
            .max()
            .map_or("-".to_string(), |b| format!("{:.1}", b as f64 / MIB));
        let bytes = line.runs[0].bytes;
        let mb_per_s = if bytes == 0 {
            "-".to_string() // values decoded in place: no byte stream to count
        } else {
            format!("{:.1}", bytes as f64 / 1e6 / wall.as_secs_f64().max(1e-9))
        };
        println!(
            "| {:<32} | {:>10.0} | {:>9} | {:>6.2}x | {:>11} | {:>13} | {:>13} | {:>12} |",
            line.label,
            rate(line),
            mb_per_s,
            rate(line) / baseline,
            first,
            per_row(median(line.runs.iter().filter_map(|s| s.work_cpu))),
            per_row(median(line.runs.iter().filter_map(|s| s.host_cpu))),
            rss
        );
    }
    println!();
    println!(
        "  CPU µs/row: the process doing the work (for the connector: its server process alone);"
    );
    println!(
        "  host µs/row: the gRPC client in the benchmark's process (decoding, or only framing);"
    );
    println!(
        "  peak RSS: the connector process's VmHWM (a fresh process per run; the largest run)."
    );
    println!();
}

fn median(values: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut values: Vec<Duration> = values.collect();
    values.sort();
    values.get(values.len() / 2).copied()
}

fn this_process_cpu() -> Option<Duration> {
    cpu_time("/proc/self/stat")
}

fn since(start: Option<Duration>, end: Option<Duration>) -> Option<Duration> {
    Some(end?.saturating_sub(start?))
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

/// `sysconf(_SC_CLK_TCK)`.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&n| n > 0).unwrap_or(100)
}
