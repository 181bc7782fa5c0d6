//! The wire contract: the code generated from `proto/` (the messages and the client), and the
//! messages this connector builds from its own types, so that the engine and the gRPC layer
//! both depend on this module and never on each other.
//!
//! Imports run one way: `grpc` and `sync` use this module; it uses `source` for what it
//! translates (a column's [`SqlType`](crate::source::types::SqlType), a row's cells), and
//! `source` knows nothing of the protocol.
//! - [`records`]: `Records` messages encoded straight from the rows' cells;
//! - [`schema`]: the schema list built from the catalog;
//! - [`types`]: Redshift's column types as the protocol's DataTypes.
pub mod records;
pub mod schema;
pub mod types;

pub use generated::*;

/// The messages and the client, as tonic-build writes them.
mod generated {
    #![allow(clippy::all, missing_docs, unused_qualifications)]
    tonic::include_proto!("fivetran_sdk.v2");
}

/// The server side of `SourceConnector`, declared in build.rs (its `Update` streams
/// pre-encoded records through `grpc::codec::UpdateCodec`).
pub mod server {
    #![allow(clippy::all, missing_docs, unused_qualifications)]
    include!(concat!(
        env!("OUT_DIR"),
        "/fivetran_sdk.v2.SourceConnector.rs"
    ));
}
/// Encoded descriptor set of the wire contract, served through gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("fivetran_sdk_descriptor");
