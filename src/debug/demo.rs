//! PLACEHOLDER: the demo (written next).
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

pub async fn run(_args: DemoArgs) -> ExitCode {
    eprintln!("demo not built yet");
    ExitCode::FAILURE
}
