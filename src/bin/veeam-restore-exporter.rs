//! `veeam-restore-exporter`: parses flags and hands over to [`veeam_restore_exporter::app`].

use std::process::ExitCode;

use veeam_restore_exporter::app;

fn main() -> ExitCode {
    match app::parse_flags() {
        Ok(flags) => app::main(flags),
        Err(code) => code,
    }
}
