//! The local debug runner: plays the host on one machine, so a connector change can be tried
//! end to end without a host.
//!
//! `debug` calls the connector over gRPC (in-process on a loopback port, or `--server`), runs the
//! configuration tests, Schema and Update, applies every operation to a local SQLite warehouse
//! and keeps the state file between runs; the demo (`crates/demo`) does the same against a
//! throwaway local PostgreSQL. Modules, one job each:
//! - [`runner`]: the sync itself ([`runner::run_sync`]), and the commit-then-save invariant;
//! - [`client`]: the gRPC client and the in-process server;
//! - [`catalog`]: Schema's tables and the Selection sent back;
//! - [`warehouse`]: the SQLite warehouse and how each operation lands in it;
//! - [`state_file`], [`configuration`]: the two files the user hands over;
//! - [`progress`], [`summary`]: what the user sees during and after a run.

pub mod catalog;
pub mod client;
pub mod configuration;
pub mod error;
pub mod progress;
pub mod records;
pub mod runner;
pub mod state_file;
pub mod summary;
pub mod warehouse;
pub mod writer;

use std::path::PathBuf;
use std::process::ExitCode;

pub use error::DebugError;
pub use runner::{reset, run_sync, RunOptions, StopPoint};
pub use summary::Summary;

use crate::logging::{self, LogTarget};
use client::ServerTarget;
use progress::ProgressMode;

/// `debug`: one sync into the local warehouse. Run it again for an incremental sync.
#[derive(Debug, clap::Args)]
pub struct DebugArgs {
    /// The connector configuration: a JSON object of the configuration form's keys
    /// (host, port, database, user, password, sslmode, ...).
    #[arg(long, value_name = "FILE", default_value = "configuration.json")]
    pub configuration: PathBuf,
    /// The state file: the last checkpoint's state, sent back on the next run.
    #[arg(long, value_name = "FILE", default_value = "files/state.json")]
    pub state: PathBuf,
    /// The SQLite warehouse; each source table is a table named "schema.table".
    #[arg(long, value_name = "FILE", default_value = "files/warehouse.db")]
    pub warehouse: PathBuf,
    /// Call a running connector server instead of starting one in this process.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Sync only these tables (comma-separated schema.table names); default: all of them.
    #[arg(long, value_name = "SCHEMA.TABLE,...", value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
    /// Delete the state and the warehouse first: a full re-sync.
    #[arg(long)]
    pub reset: bool,
}

/// `reset`: what `debug --reset` does first, without syncing.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The state file to delete.
    #[arg(long, value_name = "FILE", default_value = "files/state.json")]
    pub state: PathBuf,
    /// The SQLite warehouse to delete, with its side files.
    #[arg(long, value_name = "FILE", default_value = "files/warehouse.db")]
    pub warehouse: PathBuf,
}

/// The `reset` subcommand: the next `debug` run is a full re-sync into a new warehouse.
pub fn run_reset(args: ResetArgs) -> ExitCode {
    match reset(&args.state, &args.warehouse) {
        Ok(()) => {
            println!(
                "deleted {} and {}; the next `debug` run syncs everything again",
                args.state.display(),
                args.warehouse.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// The `debug` subcommand: prints the summary, or the error and its causes, and says so in
/// the exit status. Ctrl-C stops at once; the next run resumes from the last saved state.
pub async fn run(args: DebugArgs) -> ExitCode {
    logging::init(LogTarget::Stderr, "warn");
    let configuration = match configuration::read(&args.configuration) {
        Ok(configuration) => configuration,
        Err(err) => return fail(&err),
    };
    let options = RunOptions {
        server: args
            .server
            .map_or(ServerTarget::InProcess, ServerTarget::Remote),
        // `--tables a.b,` leaves an empty name; an empty list means no filter.
        tables: args
            .tables
            .map(|names| {
                names
                    .into_iter()
                    .map(|name| name.trim().to_string())
                    .filter(|name| !name.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|names| !names.is_empty()),
        reset: args.reset,
        progress: ProgressMode::Auto,
        ..RunOptions::new(configuration, args.state, args.warehouse)
    };
    tokio::select! {
        result = run_sync(&options) => match result {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err),
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!(
                "interrupted; the next run resumes from the state saved in {}",
                options.state.display()
            );
            ExitCode::from(130)
        }
    }
}

/// Prints `error: ...` and each cause on its own line, then fails.
pub(crate) fn fail(err: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("error: {}", error_chain(err));
    ExitCode::FAILURE
}

/// An error and its causes, one per line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut previous = text.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        // Some libraries wrap an error in one that repeats its message: say it once.
        let message = cause.to_string();
        if message != previous {
            text.push_str("\n  caused by: ");
            text.push_str(&message);
        }
        previous = message;
        source = cause.source();
    }
    text
}
