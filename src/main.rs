//! The one executable: `serve` (what hosts run), `debug` (play the host locally), `demo`.
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
    /// Port to serve on when no subcommand is given (hosts start the binary as `--port N`).
    #[arg(long, global = false)]
    port: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server (what a connector SDK host starts).
    Serve {
        /// TCP port to listen on, on every interface (IPv6 and IPv4).
        #[arg(long, default_value_t = 50051)]
        port: u16,
    },
    /// Play the host locally: call the server, keep the state file, fill a local warehouse.
    Debug(debug::DebugArgs),
    /// A first run with no Redshift: a throwaway local PostgreSQL, two syncs and a sample query.
    Demo(debug::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Some(Command::Serve { port }) => runtime.block_on(serve(port)),
        None => runtime.block_on(serve(cli.port.unwrap_or(50051))),
    }
}

async fn serve(port: u16) -> ExitCode {
    logging::init(logging::LogTarget::Stdout, "info");
    let listener = match server::bind_all_interfaces(port) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(port, error = %err, "cannot listen on the port");
            return ExitCode::FAILURE;
        }
    };
    match server::serve(listener, server::shutdown_signal()).await {
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
