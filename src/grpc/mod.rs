//! PLACEHOLDER protocol layer (being written).
use crate::proto;
use crate::proto::source_connector_server::SourceConnector;
use tonic::{Request, Response, Status};

#[derive(Debug, Default)]
pub struct ConnectorService;

#[tonic::async_trait]
impl SourceConnector for ConnectorService {
    async fn configuration_form(&self, _r: Request<proto::ConfigurationFormRequest>) -> Result<Response<proto::ConfigurationFormResponse>, Status> { Err(Status::unimplemented("wip")) }
    async fn test(&self, _r: Request<proto::TestRequest>) -> Result<Response<proto::TestResponse>, Status> { Err(Status::unimplemented("wip")) }
    async fn schema(&self, _r: Request<proto::SchemaRequest>) -> Result<Response<proto::SchemaResponse>, Status> { Err(Status::unimplemented("wip")) }
    type UpdateStream = tokio_stream::wrappers::ReceiverStream<Result<proto::UpdateResponse, Status>>;
    async fn update(&self, _r: Request<proto::UpdateRequest>) -> Result<Response<Self::UpdateStream>, Status> { Err(Status::unimplemented("wip")) }
}
