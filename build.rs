//! Compiles `proto/` into Rust without a system `protoc`: `protox` (a pure-Rust protobuf compiler)
//! parses the files into a descriptor set, which tonic's code generator consumes. The same
//! descriptor set is written to OUT_DIR so the server can offer gRPC reflection (grpcurl needs no
//! .proto files).

use std::path::PathBuf;

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
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
