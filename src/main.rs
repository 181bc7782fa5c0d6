//! The one executable: `serve` (what hosts run), `debug` (play the host locally), `reset`
//! (forget the debug runner's state and warehouse). The demo is an example of its own
//! (`crates/demo`): its throwaway PostgreSQL is test machinery this executable does not link.
//! It only parses the command line and hands over to the library.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fivetran_source::{debug, logging, server};

#[derive(Parser)]
#[command(
    name = "fivetran_source",
    version,
    about = "redshift-sync: sync Amazon Redshift tables incrementally over the connector SDK protocol"
)]
struct Cli {
    /// Port to serve on when no subcommand is given (hosts start the binary as `--port N`),
    /// or before `serve`.
    #[arg(long, global = false, conflicts_with = "listen")]
    port: Option<u16>,
    /// The one address to listen on, e.g. 127.0.0.1:50051 (when no subcommand is given),
    /// instead of `--port` on every interface.
    #[arg(long, global = false)]
    listen: Option<SocketAddr>,
    /// How to compress responses for hosts that accept it (when no subcommand is given).
    #[arg(long, value_enum, env = COMPRESSION_ENV, default_value_t)]
    compression: server::Compression,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server (what a connector SDK host starts).
    Serve {
        /// TCP port to listen on, on every interface (IPv6 and IPv4) [default: 50051].
        #[arg(long, conflicts_with = "listen")]
        port: Option<u16>,
        /// The one address to listen on instead, e.g. 127.0.0.1:50051 or [::1]:50051 (port 0:
        /// a free one, which the log names).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// How to compress responses for hosts that accept them: none (the default: the
        /// connector's CPU goes to the rows; a host is usually on the same machine or
        /// network), gzip or zstd. Compressed requests are accepted either way.
        #[arg(long, value_enum, env = COMPRESSION_ENV)]
        compression: Option<server::Compression>,
    },
    /// Play the host locally: call the server, keep the state file, fill a local warehouse.
    Debug(debug::DebugArgs),
    /// Delete the debug runner's state file and warehouse, without syncing.
    Reset(debug::ResetArgs),
}

const DEFAULT_PORT: u16 = 50051;
/// The compression setting from the environment, for hosts that start the binary with
/// `--port` alone.
const COMPRESSION_ENV: &str = "REDSHIFT_SYNC_COMPRESSION";

/// mimalloc instead of the C library's allocator: a record is decoded into many small
/// allocations on one thread and freed on another (the debug runner's warehouse writer),
/// which glibc's arenas serialise on a lock; in a static binary the default is no faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let given = cli
        .port
        .map(|port| format!("--port {port}"))
        .or(cli.listen.map(|address| format!("--listen {address}")));
    if let (Some(given), Some(command)) = (given, &cli.command) {
        let ignored = match command {
            Command::Serve { .. } => None,
            Command::Debug(_) => Some("debug runs its server in-process on a free port; use `debug --server HOST:PORT` to call one"),
            Command::Reset(_) => Some("reset starts no server"),
        };
        if let Some(why) = ignored {
            eprintln!("warning: `{given}` is ignored: {why}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Debug(args)) => runtime.block_on(debug::run(args)),
        Some(Command::Reset(args)) => debug::run_reset(args),
        Some(Command::Serve {
            port,
            listen,
            compression,
        }) => {
            let at = match (listen.or(cli.listen), port.or(cli.port)) {
                (Some(address), None) => Listen::Address(address),
                (None, port) => Listen::AllInterfaces(port.unwrap_or(DEFAULT_PORT)),
                (Some(_), Some(_)) => {
                    eprintln!("error: give `--port` or `--listen`, not both");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(at, compression.unwrap_or(cli.compression)))
        }
        None => {
            let at = match cli.listen {
                Some(address) => Listen::Address(address),
                None => Listen::AllInterfaces(cli.port.unwrap_or(DEFAULT_PORT)),
            };
            runtime.block_on(serve(at, cli.compression))
        }
    }
}

/// Where the server listens.
enum Listen {
    /// `--port`: every interface, IPv6 and IPv4 (what hosts expect).
    AllInterfaces(u16),
    /// `--listen`: one address.
    Address(SocketAddr),
}

/// How long after SIGTERM the process exits whatever is still running: Updates stop at their
/// next checkpoint within `STOP_GRACE`, and their streams end soon after.
const EXIT_DEADLINE: Duration = Duration::from_secs(25);

async fn serve(at: Listen, compression: server::Compression) -> ExitCode {
    logging::init(logging::LogTarget::Stdout, "info");
    let listener = match &at {
        Listen::AllInterfaces(port) => server::bind_all_interfaces(*port),
        Listen::Address(address) => server::bind_address(*address),
    };
    let listener = match listener {
        Ok(listener) => listener,
        Err(err) => {
            match at {
                Listen::AllInterfaces(port) => {
                    tracing::error!(port, error = %err, "cannot listen on the port");
                }
                Listen::Address(address) => {
                    tracing::error!(%address, error = %err, "cannot listen on the address");
                }
            }
            return ExitCode::FAILURE;
        }
    };
    let options = server::ServeOptions { compression };
    let (signalled, mut signal) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        server::shutdown_signal().await;
        let _ = signalled.send(true);
    };
    let deadline = async move {
        let _ = signal.wait_for(|signalled| *signalled).await;
        tokio::time::sleep(EXIT_DEADLINE).await;
    };
    tokio::select! {
        served = server::serve_with(listener, options, shutdown) => match served {
            Ok(()) => {
                tracing::info!("server stopped");
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!(error = %err, "server failed");
                ExitCode::FAILURE
            }
        },
        () = deadline => {
            tracing::warn!(seconds = EXIT_DEADLINE.as_secs(), "calls still open after the stop: exiting");
            ExitCode::SUCCESS
        }
    }
}
