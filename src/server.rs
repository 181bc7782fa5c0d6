//! The gRPC server process: listener, services, limits and graceful shutdown.
//!
//! The shutdown signal is an argument so tests and the debug runner can run a server on port 0
//! in-process and stop it when they are done (the habit of mini-redis's `server::run`).

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;

use crate::grpc::ConnectorService;
use crate::proto::server::source_connector_server::SourceConnectorServer;

/// Hosts send and receive messages up to 128 MiB (tonic's default decode limit is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// How responses are compressed, for a host that accepts it. Standard gRPC clients (grpcio,
/// grpc-java, grpc-go) advertise gzip, and compressing every response cost a Python host's
/// sync 6.2 µs of server CPU a row instead of 0.92 (80% of it in deflate), while a host
/// usually runs on the connector's machine or network: so none unless the operator asks.
/// Requests are accepted compressed either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

/// How the server runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    pub compression: Compression,
}

/// Binds `address` alone (`--listen`): a loopback or private interface, for an operator who
/// will not expose the port on every interface.
pub fn bind_address(address: SocketAddr) -> std::io::Result<TcpListener> {
    bind(address, address.is_ipv6().then_some(true))
}

/// Binds `port` on every interface, IPv6 and IPv4: one dual-stack socket on `[::]` where the
/// machine allows it, else IPv4 `0.0.0.0` alone (what hosts expect when IPv6 is unavailable).
pub fn bind_all_interfaces(port: u16) -> std::io::Result<TcpListener> {
    match bind_dual_stack(port) {
        Ok(listener) => Ok(listener),
        Err(err) => {
            tracing::warn!(error = %err, "ipv6 unavailable, listening on ipv4 only");
            bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), None)
        }
    }
}

fn bind_dual_stack(port: u16) -> std::io::Result<TcpListener> {
    bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), Some(false))
}

fn bind(addr: SocketAddr, only_v6: Option<bool>) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if let Some(only_v6) = only_v6 {
        socket.set_only_v6(only_v6)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves with the default options (see [`serve_with`]).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, ServeOptions::default(), shutdown).await
}

/// Serves the SourceConnector, health and reflection services on `listener` until `shutdown`
/// completes. Then no call is accepted, running Updates stop at their next checkpoint (within
/// `sync::STOP_GRACE`) and end their streams with UNAVAILABLE, and the server returns once
/// every call has ended.
pub async fn serve_with(
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (stop, stop_request) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let service = ConnectorService::new(crate::sync::StopRequest::new(stop_request));
    let mut connector = SourceConnectorServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd);
    connector = match options.compression {
        Compression::None => connector,
        Compression::Gzip => connector.send_compressed(CompressionEncoding::Gzip),
        Compression::Zstd => connector.send_compressed(CompressionEncoding::Zstd),
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SourceConnectorServer<ConnectorService>>()
        .await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled-in descriptor sets are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the compiled-in descriptor sets are valid");

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, compression = ?options.compression, "server listening");
    }
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(connector)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received ctrl-c, shutting down"),
        () = terminate => tracing::info!("received sigterm, shutting down"),
    }
}
