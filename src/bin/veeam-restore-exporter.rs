//! `veeam-restore-exporter`: parses flags and hands over to [`veeam_restore_exporter::app`].

use std::process::ExitCode;

use clap::Parser;
use veeam_restore_exporter::app::{self, Flags};

#[tokio::main]
async fn main() -> ExitCode {
    app::run(Flags::parse()).await
}
