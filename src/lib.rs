//! redshift-sync: a `fivetran_sdk.v2` SourceConnector that reads Amazon Redshift directly.
//!
//! Layers, each in its own module, each with its own error type:
//! - [`grpc`]: the protocol layer (handlers, the one error-to-status mapping);
//! - [`proto`]: the wire contract's messages, and those the connector builds from its own types
//!   (`Records` encoded straight from cells, the schema list, Redshift types as DataTypes), used
//!   by `grpc` and `sync` alike; it depends on `source` for those types, never the reverse;
//! - [`sync`]: the Update engine (plan from selection and state, keyset batches, checkpoints);
//! - [`source`]: Redshift over the PostgreSQL wire protocol (connect, catalog, queries, decoding);
//! - [`state`] and [`config`]: the versioned checkpoint state and the typed configuration;
//! - [`server`] and [`logging`]: the process around them;
//! - [`fingerprint`]: the 128-bit fingerprint every name derived from a user's names carries;
//! - [`debug`]: the local debug runner that plays the host.
//!
//! The throwaway PostgreSQL the demo, the tests and the benchmarks run against
//! (`crates/local-postgres`), the Redshift-shaped proxy and the other test machinery
//! (`crates/test-kit`) and the demo (`crates/demo`) are crates of this workspace that the
//! executable does not link.

pub mod config;
pub mod debug;
pub mod fingerprint;
pub mod grpc;
pub mod logging;
pub mod server;
pub mod source;
pub mod state;
pub mod sync;

pub mod proto;
