//! Compiles `proto/` into Rust without a system `protoc`: `protox` (a pure-Rust protobuf compiler)
//! parses the files into a descriptor set, which tonic's code generator consumes. The same
//! descriptor set is written to OUT_DIR so the server can offer gRPC reflection (grpcurl needs no
//! .proto files).
//!
//! The messages and the client come from the .proto files. The server is declared here, method
//! by method, because `Update` streams responses whose `Records` are encoded by the engine
//! itself (src/sync/encode.rs) and need a codec of their own (src/grpc/codec.rs); the wire is
//! the same, so reflection still describes it from the .proto files.

use std::path::PathBuf;

use tonic_build::manual::{Method, Service};

const PROTOS: &[&str] = &["proto/common.proto", "proto/connector_sdk.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("fivetran_sdk_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // A record's columns as an ordered map: the debug runner's warehouse wants them by
        // name anyway, and decoding ten entries into a BTreeMap costs less than hashing them
        // (the server writes records itself, see `sync::encode`).
        .btree_map(".fivetran_sdk.v2.Record.data")
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)?;

    let prost = "tonic_prost::ProstCodec";
    let unary = |name: &str, route: &str, input: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("crate::proto::{input}"))
            .output_type(format!("crate::proto::{output}"))
            .codec_path(prost)
            .build()
    };
    let server = Service::builder()
        .name("SourceConnector")
        .package("fivetran_sdk.v2")
        .method(unary(
            "configuration_form",
            "ConfigurationForm",
            "ConfigurationFormRequest",
            "ConfigurationFormResponse",
        ))
        .method(unary("test", "Test", "TestRequest", "TestResponse"))
        .method(unary("schema", "Schema", "SchemaRequest", "SchemaResponse"))
        .method(
            Method::builder()
                .name("update")
                .route_name("Update")
                .input_type("crate::proto::UpdateRequest")
                .output_type("crate::sync::Outgoing")
                .codec_path("crate::grpc::codec::UpdateCodec")
                .server_streaming()
                .build(),
        )
        .build();
    tonic_build::manual::Builder::new()
        .build_client(false)
        .compile(&[server]);
    Ok(())
}
