//! The host side of the protocol: a gRPC client of the connector, and, when no `--server` is
//! given, the connector itself started in this process on a free loopback port.
//!
//! The in-process server is called over real gRPC, not through its Rust API, so a debug run
//! exercises exactly what a host exercises: encoding, message limits, compression, streaming.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, Streaming};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;
use tonic_prost::ProstEncoder;

use super::error::DebugError;
use crate::proto::source_connector_client::SourceConnectorClient;
use crate::proto::{
    ConfigurationFormRequest, ConfigurationFormResponse, SchemaRequest, SchemaResponse,
    TestRequest, TestResponse, UpdateRequest,
};
use crate::server::MAX_MESSAGE_BYTES;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping in-process server may take to finish its calls before it is abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which server to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTarget {
    /// Start the connector in this process, on 127.0.0.1 and a free port.
    InProcess,
    /// A running server, `HOST:PORT` (or an `http://` URI).
    Remote(String),
}

/// A connection to the connector; owns the in-process server when there is one.
pub struct Connection {
    client: SourceConnectorClient<Channel>,
    /// The same channel, for `Update`, whose responses are read as bytes (see
    /// [`Connection::update`]).
    channel: Channel,
    server: Option<InProcessServer>,
    address: String,
}

struct InProcessServer {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Connection {
    pub async fn open(target: &ServerTarget) -> Result<Self, DebugError> {
        match target {
            ServerTarget::InProcess => {
                let listener = TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(DebugError::ServerStart)?;
                let addr = listener.local_addr().map_err(DebugError::ServerStart)?;
                let (shutdown, stopped) = oneshot::channel::<()>();
                let task = tokio::spawn(crate::server::serve(listener, async {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                }));
                let server = InProcessServer { shutdown, task };
                let address = addr.to_string();
                match connect(&address).await {
                    Ok((client, channel)) => Ok(Self {
                        client,
                        channel,
                        server: Some(server),
                        address: format!("{address} (in-process)"),
                    }),
                    Err(err) => {
                        server.stop().await;
                        Err(err)
                    }
                }
            }
            ServerTarget::Remote(address) => {
                let (client, channel) = connect(address).await?;
                Ok(Self {
                    client,
                    channel,
                    server: None,
                    address: address.clone(),
                })
            }
        }
    }

    /// Where the server is, for the summary.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn configuration_form(&mut self) -> Result<ConfigurationFormResponse, DebugError> {
        self.client
            .configuration_form(ConfigurationFormRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(DebugError::rpc("ConfigurationForm"))
    }

    pub async fn test(
        &mut self,
        name: &str,
        configuration: &HashMap<String, String>,
    ) -> Result<TestResponse, DebugError> {
        let request = TestRequest {
            name: name.to_string(),
            configuration: configuration.clone(),
        };
        self.client
            .test(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(DebugError::rpc("Test"))
    }

    pub async fn schema(
        &mut self,
        configuration: &HashMap<String, String>,
    ) -> Result<SchemaResponse, DebugError> {
        let request = SchemaRequest {
            configuration: configuration.clone(),
        };
        self.client
            .schema(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(DebugError::rpc("Schema"))
    }

    /// `Update`, its responses as each message's bytes: the runner reads records from them
    /// without prost's maps (see `records`), and decodes the other operations with prost.
    pub async fn update(&mut self, request: UpdateRequest) -> Result<Streaming<Bytes>, DebugError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(CompressionEncoding::Gzip);
        grpc.ready()
            .await
            .map_err(|err| Status::unavailable(format!("the connection is not ready: {err}")))
            .map_err(DebugError::rpc("Update"))?;
        let path = PathAndQuery::from_static("/fivetran_sdk.v2.SourceConnector/Update");
        grpc.server_streaming(tonic::Request::new(request), path, RawResponses)
            .await
            .map(tonic::Response::into_inner)
            .map_err(DebugError::rpc("Update"))
    }

    /// Stops the in-process server, if any. Call it after dropping any open stream, so the
    /// server's graceful shutdown has no call left to wait for.
    pub async fn close(self) {
        drop(self.client);
        if let Some(server) = self.server {
            server.stop().await;
        }
    }
}

impl InProcessServer {
    async fn stop(self) {
        let _ = self.shutdown.send(());
        let mut task = self.task;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "in-process server failed"),
            Ok(Err(err)) => tracing::warn!(error = %err, "in-process server task ended abnormally"),
            Err(_) => {
                tracing::warn!("in-process server did not stop in time; abandoning it");
                task.abort();
            }
        }
    }
}

/// `Update`'s codec on the host side: the request encoded by prost, each response handed over
/// as its bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawResponses;

impl Codec for RawResponses {
    type Encode = UpdateRequest;
    type Decode = Bytes;
    type Encoder = ProstEncoder<UpdateRequest>;
    type Decoder = RawResponses;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawResponses
    }
}

impl Decoder for RawResponses {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A client with the hosts' settings: 128 MiB messages both ways, gzip accepted; and its
/// channel.
async fn connect(address: &str) -> Result<(SourceConnectorClient<Channel>, Channel), DebugError> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|_| DebugError::BadServerAddress {
            address: address.to_string(),
        })?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| DebugError::Connect {
            address: address.to_string(),
            source,
        })?;
    let client = SourceConnectorClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
        .accept_compressed(CompressionEncoding::Gzip);
    Ok((client, channel))
}
