//! `veeam-restore-exporter`: parses flags and hands over to [`veeam_restore_exporter::app`].

use std::process::ExitCode;

use veeam_restore_exporter::app;

#[tokio::main]
async fn main() -> ExitCode {
    match app::parse_flags() {
        Ok(flags) => app::run(flags).await,
        Err(code) => code,
    }
}
