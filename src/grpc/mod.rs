//! The protocol layer: the `fivetran_sdk.v2.SourceConnector` service.
//!
//! Each handler validates its request once at the top (configuration, then state), so bad input
//! is answered with `INVALID_ARGUMENT` before any work, any database round trip or any
//! streamed message; then it hands over to the source layer or the sync engine and maps their
//! errors through [`status`]. Every failure is logged the same way, whichever RPC it ends.

pub mod codec;
mod connection_test;
pub mod form;
pub mod status;

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::proto::server::source_connector_server::SourceConnector;
use crate::proto::{
    schema_response, test_response, update_response, ConfigurationFormRequest,
    ConfigurationFormResponse, SchemaRequest, SchemaResponse, Task, TestRequest, TestResponse,
    UpdateRequest, UpdateResponse,
};
use crate::source::catalog;
use crate::state::SyncState;
use crate::sync::policy::{self, Ending};
use crate::sync::{self, Outgoing, OutgoingMessage, Output, SyncError};
use status::RpcError;

/// The SourceConnector service. `stop` is raised when the server is asked to stop: running
/// Updates then stop at their next checkpoint, and new ones are refused.
#[derive(Debug)]
pub struct ConnectorService {
    stop: sync::StopRequest,
}

impl ConnectorService {
    pub fn new(stop: sync::StopRequest) -> Self {
        Self { stop }
    }
}

impl Default for ConnectorService {
    fn default() -> Self {
        Self::new(sync::StopRequest::never())
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<Outgoing, Status>> + Send>>;

#[tonic::async_trait]
impl SourceConnector for ConnectorService {
    async fn configuration_form(
        &self,
        _request: Request<ConfigurationFormRequest>,
    ) -> Result<Response<ConfigurationFormResponse>, Status> {
        Ok(Response::new(form::configuration_form()))
    }

    /// Answers `failure` with the reason for anything the user can fix (the hosts' contract);
    /// only an unknown test name is a status error.
    async fn test(&self, request: Request<TestRequest>) -> Result<Response<TestResponse>, Status> {
        let request = request.into_inner();
        let outcome = match Config::from_request(&request.configuration).await {
            Err(err) => Err(err.to_string()),
            Ok(config) => match request.name.as_str() {
                form::TEST_CONNECT => connection_test::connect(&config)
                    .await
                    .map(|_| ())
                    .map_err(|err| err.to_string()),
                form::TEST_SELECT => match connection_test::select(&config).await {
                    Ok(Ok(_tables)) => Ok(()),
                    Ok(Err(reason)) => Err(reason),
                    Err(err) => Err(err.to_string()),
                },
                other => return Err(failed("Test", RpcError::UnknownTest(other.to_string()))),
            },
        };
        let response = match outcome {
            Ok(()) => test_response::Response::Success(true),
            Err(reason) => {
                tracing::warn!(rpc = "Test", test = %request.name, reason = %reason, "configuration test failed");
                test_response::Response::Failure(reason)
            }
        };
        Ok(Response::new(TestResponse {
            response: Some(response),
        }))
    }

    async fn schema(
        &self,
        request: Request<SchemaRequest>,
    ) -> Result<Response<SchemaResponse>, Status> {
        let configuration = request.into_inner().configuration;
        let catalog = async {
            let config = Config::from_request(&configuration).await?;
            let mut session = crate::source::connect(&config.connection).await?;
            Ok::<_, RpcError>(catalog::discover(&mut session, &config.sync).await?)
        }
        .await
        .map_err(|err| failed("Schema", err))?;
        tracing::info!(tables = catalog.tables.len(), "schema discovered");
        Ok(Response::new(SchemaResponse {
            response: Some(schema_response::Response::WithSchema(
                crate::proto::schema::schema_list(catalog.tables.iter().map(|table| &**table)),
            )),
            selection_not_supported: Some(false),
        }))
    }

    type UpdateStream = UpdateStream;

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<Self::UpdateStream>, Status> {
        let request = request.into_inner();
        if self.stop.is_raised() {
            return Err(failed("Update", RpcError::Sync(SyncError::ShuttingDown)));
        }
        let (config, state) = async {
            let config = Config::from_request(&request.configuration).await?;
            let state = SyncState::parse(request.state_json.as_deref())?;
            Ok::<_, RpcError>((config, state))
        }
        .await
        .map_err(|err| failed("Update", err))?;

        let (output, rx) = Output::stoppable(sync::output_budget(&config), self.stop.clone());
        let engine = tokio::spawn(sync::run(config, request.selection, state, output));
        let ending = futures_util::stream::once(async move {
            match engine.await {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(end_of_failed_update(err)),
                Err(join_error) => {
                    tracing::error!(rpc = "Update", error = %join_error, "update task failed");
                    Some(Err(Status::internal(
                        "the update stopped unexpectedly; see the connector's log",
                    )))
                }
            }
        })
        .filter_map(std::future::ready);
        let stream = ReceiverStream::new(rx).map(Ok).chain(ending);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Logs a failed RPC the way every RPC logs its failures, and turns it into its status.
fn failed(rpc: &'static str, err: RpcError) -> Status {
    let status = Status::from(err);
    tracing::warn!(rpc, code = ?status.code(), reason = %status.message(), "request failed");
    status
}

/// What the host sees last when an Update fails: a `Task` for problems only the user can fix
/// (credentials, grants, certificates, the host name), which ends the sync without retries;
/// otherwise an error status, which the host may retry from the last checkpoint.
fn end_of_failed_update(err: SyncError) -> Result<Outgoing, Status> {
    match policy::ending(err.source_error()) {
        Ending::Task => {
            tracing::error!(rpc = "Update", error = %err, "update needs the user's action");
            Ok(Outgoing::unbudgeted(OutgoingMessage::Message(
                UpdateResponse {
                    operation: Some(update_response::Operation::Task(Task {
                        message: err.to_string(),
                    })),
                },
            )))
        }
        Ending::Status => {
            match err {
                SyncError::HostGone => tracing::warn!("the host went away; update stopped"),
                SyncError::ShuttingDown => {
                    tracing::info!("update stopped at its last checkpoint: the server is stopping");
                }
                ref other => tracing::error!(rpc = "Update", error = %other, "update failed"),
            }
            Err(RpcError::from(err).into())
        }
    }
}
