//! The demo, the first thing a newcomer runs (`cargo run --release -p demo`). No Redshift
//! needed: a throwaway local PostgreSQL stands in for it (same wire protocol), holding an
//! example `customers` table.
//!
//! An executable of its own rather than a subcommand: the throwaway PostgreSQL (its CA, its
//! admin client) is not linked into the one hosts run.
//!
//! Steps: start the server, create and fill `customers`, sync it with the debug runner (an
//! initial sync), change some rows, sync again (incremental: only the changes travel), then
//! show both summaries, the five most recently synced customers and a source/warehouse row
//! count. The PostgreSQL server is stopped and deleted at the end, on failure and on Ctrl-C;
//! the warehouse and state stay in `--dir` to be explored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rusqlite::types::Value;
use rusqlite::OpenFlags;

use clap::Parser;
use fivetran_source::config::keys;
use fivetran_source::debug::progress::ProgressMode;
use fivetran_source::debug::{error_chain, run_sync, DebugError, RunOptions};
use fivetran_source::logging::{self, LogTarget};
use local_postgres::{LocalPostgres, LocalPostgresError};

const DATABASE: &str = "demo";
const TABLE: &str = "public.customers";
/// Rows per fetch in the demo: small enough that the first sync shows several checkpoints.
const BATCH_SIZE: &str = "1000";

/// Two syncs of an example table from a throwaway local PostgreSQL into a local warehouse.
#[derive(Debug, Parser)]
#[command(name = "demo")]
struct DemoArgs {
    /// Where the demo's warehouse and state go (replaced on every demo run).
    #[arg(long, value_name = "DIR", default_value = "files/demo")]
    dir: PathBuf,
    /// Rows in the example `customers` table.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    rows: u32,
}

/// What can stop the demo.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("cannot start the local PostgreSQL server the demo reads from")]
    Postgres(#[from] LocalPostgresError),
    #[error("cannot {step} in the demo database")]
    Sql {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the sync failed")]
    Sync(#[from] DebugError),
    #[error("cannot read the demo warehouse {}", path.display())]
    Warehouse {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the local PostgreSQL server start was interrupted")]
    StartAborted(#[source] tokio::task::JoinError),
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = DemoArgs::parse();
    logging::init(LogTarget::Stderr, "warn");
    println!(
        "Starting a throwaway PostgreSQL server (it stands in for Redshift: same protocol)..."
    );
    // With the watchdog, the server also goes away if this process dies without running Drop
    // (SIGTERM, SIGHUP of a closed terminal, SIGKILL), not only on Ctrl-C.
    let postgres = match tokio::task::spawn_blocking(LocalPostgres::start_with_watchdog).await {
        Ok(Ok(postgres)) => postgres,
        Ok(Err(err)) => return demo_failed(&DemoError::Postgres(err)),
        Err(err) => return demo_failed(&DemoError::StartAborted(err)),
    };
    let outcome = tokio::select! {
        result = demo(&postgres, &args) => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted; stopping the local PostgreSQL server");
            Ok(())
        }
    };
    // Its Drop stops the server with pg_ctl and deletes its directory: blocking work.
    let _ = tokio::task::spawn_blocking(move || drop(postgres)).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => demo_failed(&err),
    }
}

fn demo_failed(err: &DemoError) -> ExitCode {
    eprintln!("demo failed: {}", error_chain(err));
    ExitCode::FAILURE
}

async fn demo(postgres: &LocalPostgres, args: &DemoArgs) -> Result<(), DemoError> {
    postgres.create_database(DATABASE).await?;
    let client = postgres.connect(DATABASE).await?;
    println!(
        "Creating {TABLE} with {} rows on localhost:{}...",
        args.rows,
        postgres.port()
    );
    create_customers(&client, args.rows).await?;

    let mut configuration = postgres.connector_configuration(DATABASE);
    configuration.insert(keys::BATCH_SIZE.to_string(), BATCH_SIZE.to_string());
    let state = args.dir.join("state.json");
    let warehouse = args.dir.join("warehouse.db");
    let options = RunOptions {
        reset: true,
        progress: ProgressMode::Auto,
        ..RunOptions::new(configuration, state.clone(), warehouse.clone())
    };

    println!("\n== Sync 1: the initial sync (a TRUNCATE, then every row) ==");
    let first = run_sync(&options).await?;
    println!("{first}");

    let (updated, inserted) = change_customers(&client, args.rows).await?;
    println!(
        "\n== Sync 2: incremental, after updating {updated} rows and inserting {inserted} in the source =="
    );
    let second = run_sync(&RunOptions {
        reset: false,
        ..options
    })
    .await?;
    println!("{second}");

    println!("\n== The 5 most recently synced customers in the warehouse ==");
    print_recent_customers(&warehouse)?;
    let source_rows: i64 = client
        .query_one("SELECT COUNT(*) FROM public.customers", &[])
        .await
        .map_err(|source| DemoError::Sql {
            step: "count the customers",
            source,
        })?
        .get(0);
    let warehouse_rows = live_rows(&warehouse)?;
    println!("\nSource rows: {source_rows}; live warehouse rows: {warehouse_rows}.");
    println!(
        "Explore it: sqlite3 {} 'SELECT * FROM \"{TABLE}\" LIMIT 5'\nState:      {}",
        warehouse.display(),
        state.display()
    );
    println!(
        "Next: put your cluster's settings in configuration.json and run `cargo run --release -- debug`."
    );
    Ok(())
}

/// The example table: a few distinct `updated_at` values, each shared by many rows, as bulk
/// loads produce (the case the cursor's key tie-break exists for). Also the debug runner's
/// benchmark table.
async fn create_customers(client: &tokio_postgres::Client, rows: u32) -> Result<(), DemoError> {
    let create = "CREATE TABLE public.customers (
            customer_id INT PRIMARY KEY,
            first_name VARCHAR(64) NOT NULL,
            last_name VARCHAR(64) NOT NULL,
            email VARCHAR(256) NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )";
    client
        .batch_execute(create)
        .await
        .map_err(|source| DemoError::Sql {
            step: "create the customers table",
            source,
        })?;
    let fill = "INSERT INTO public.customers
        SELECT i,
               (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken','Margaret','Zoë'])[1 + i % 10],
               (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth','Allen','Thompson','Hamilton','Wirth'])[1 + (i / 10) % 10],
               'customer' || i || '@example.com',
               TIMESTAMP '2024-01-01 09:00:00' + (i % 4) * INTERVAL '1 day'
        FROM generate_series(1, $1::INT) AS i";
    client
        .execute(fill, &[&i32::try_from(rows).unwrap_or(i32::MAX)])
        .await
        .map_err(|source| DemoError::Sql {
            step: "fill the customers table",
            source,
        })?;
    Ok(())
}

/// Updates every 500th customer and adds five new ones, all with a newer `updated_at`.
async fn change_customers(
    client: &tokio_postgres::Client,
    rows: u32,
) -> Result<(u64, u64), DemoError> {
    let updated = client
        .execute(
            "UPDATE public.customers
             SET email = 'new.' || email, updated_at = TIMESTAMP '2024-02-01 12:00:00.123456'
             WHERE customer_id % 500 = 0 OR customer_id = 1",
            &[],
        )
        .await
        .map_err(|source| DemoError::Sql {
            step: "update customers",
            source,
        })?;
    let first_new = i32::try_from(rows).unwrap_or(i32::MAX - 10) + 1;
    let inserted = client
        .execute(
            "INSERT INTO public.customers
             SELECT i, 'New', 'Customer', 'new' || i || '@example.com',
                    TIMESTAMP '2024-02-01 12:00:00.123456'
             FROM generate_series($1::INT, $1::INT + 4) AS i",
            &[&first_new],
        )
        .await
        .map_err(|source| DemoError::Sql {
            step: "insert customers",
            source,
        })?;
    Ok((updated, inserted))
}

/// Read-write without create: the last connection to close removes SQLite's WAL side files,
/// which a read-only one cannot.
fn open_existing(path: &Path) -> Result<rusqlite::Connection, DemoError> {
    rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(
        |source| DemoError::Warehouse {
            path: path.to_path_buf(),
            source,
        },
    )
}

fn print_recent_customers(path: &Path) -> Result<(), DemoError> {
    let error = |source| DemoError::Warehouse {
        path: path.to_path_buf(),
        source,
    };
    let connection = open_existing(path)?;
    let sql = format!(
        "SELECT customer_id, first_name, last_name, email, updated_at, _fivetran_synced, _fivetran_deleted
         FROM \"{TABLE}\" ORDER BY _fivetran_synced DESC LIMIT 5"
    );
    let mut statement = connection.prepare(&sql).map_err(error)?;
    let headers: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let rows: Vec<Vec<String>> = statement
        .query_map([], |row| {
            (0..headers.len())
                .map(|i| row.get::<_, Value>(i).map(|v| show(&v)))
                .collect()
        })
        .and_then(|rows| rows.collect())
        .map_err(error)?;
    print_table(&headers, &rows);
    Ok(())
}

fn live_rows(path: &Path) -> Result<i64, DemoError> {
    open_existing(path)?
        .query_row(
            &format!("SELECT COUNT(*) FROM \"{TABLE}\" WHERE _fivetran_deleted = 0"),
            [],
            |row| row.get(0),
        )
        .map_err(|source| DemoError::Warehouse {
            path: path.to_path_buf(),
            source,
        })
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Integer(n) => n.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

/// Columns padded to their widest cell, as `sqlite3 -column` prints them.
fn print_table(headers: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([headers[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for row in rows {
        println!("{}", line(row));
    }
}
