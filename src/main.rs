//! The one executable: `serve` (what hosts run), `debug` (play the host locally), `reset`
//! (forget the debug runner's state and warehouse), `demo`.
//! It only parses the command line and hands over to the library.

use std::process::ExitCode;

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
    #[arg(long, global = false)]
    port: Option<u16>,
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
        #[arg(long)]
        port: Option<u16>,
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
    /// A first run with no Redshift: a throwaway local PostgreSQL, two syncs and a sample query.
    Demo(debug::demo::DemoArgs),
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
    if let (Some(port), Some(command)) = (cli.port, &cli.command) {
        let ignored = match command {
            Command::Serve { .. } => None,
            Command::Debug(_) => Some("debug runs its server in-process on a free port; use `debug --server HOST:PORT` to call one"),
            Command::Reset(_) => Some("reset starts no server"),
            Command::Demo(_) => Some("demo runs its server in-process on a free port"),
        };
        if let Some(why) = ignored {
            eprintln!("warning: `--port {port}` is ignored: {why}");
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
        Some(Command::Demo(args)) => runtime.block_on(debug::demo::run(args)),
        Some(Command::Reset(args)) => debug::run_reset(args),
        Some(Command::Serve { port, compression }) => runtime.block_on(serve(
            port.or(cli.port).unwrap_or(DEFAULT_PORT),
            compression.unwrap_or(cli.compression),
        )),
        None => runtime.block_on(serve(cli.port.unwrap_or(DEFAULT_PORT), cli.compression)),
    }
}

async fn serve(port: u16, compression: server::Compression) -> ExitCode {
    logging::init(logging::LogTarget::Stdout, "info");
    let listener = match server::bind_all_interfaces(port) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(port, error = %err, "cannot listen on the port");
            return ExitCode::FAILURE;
        }
    };
    let options = server::ServeOptions { compression };
    match server::serve_with(listener, options, server::shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("server stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
    }
}
