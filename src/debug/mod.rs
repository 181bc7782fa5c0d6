//! The local debug runner (host side). PLACEHOLDER: being written (issue 3).
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DebugArgs {}

pub async fn run(_args: DebugArgs) -> ExitCode {
    eprintln!("debug runner not built yet");
    ExitCode::FAILURE
}

pub mod demo {
    use std::process::ExitCode;
    #[derive(Debug, clap::Args)]
    pub struct DemoArgs {}
    pub async fn run(_args: DemoArgs) -> ExitCode {
        eprintln!("demo not built yet");
        ExitCode::FAILURE
    }
}
