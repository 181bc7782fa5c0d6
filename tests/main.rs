//! The integration tests, built as one binary: the dependencies are linked once (not once per
//! test file), and the throwaway PostgreSQL, its Redshift-shaped proxy and the AWS emulator
//! (`support`) are started once for the whole run, each test in a database of its own.
//!
//! A file here is a module: `cargo test --test integration <module>::` runs one of them, and
//! `cargo test --test integration <name>` one test.

use test_kit as support;

mod bad_input;
mod conformance;
mod data_api;
mod debug_runner;
mod delete_capture;
mod harness;
mod iam;
mod kit;
mod late_commit;
mod many_tables;
mod memory;
mod redshift;
mod redshift_proxy;
mod retry;
mod rpc_test_and_schema;
mod scan_shapes;
mod schema_changes;
mod secret_sign_in;
mod ssh_tunnel;
mod type_roundtrip;
mod unload;
mod update;
mod update_host;
mod update_parallel;
mod update_positions;
mod update_resume;
mod update_user_action;
mod wire_fuzz;
