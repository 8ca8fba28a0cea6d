//! Unix: signals, `0700`/`0600` modes and ownership checks.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Event;

/// SIGHUP reloads; SIGTERM and SIGINT stop.
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hup.recv() => Event::Reload,
            _ = self.term.recv() => Event::Stop,
            _ = self.int.recv() => Event::Stop,
        }
    }
}

/// Relative to the working directory, as the flag has always defaulted.
pub fn default_storage_path() -> PathBuf {
    PathBuf::from("data")
}

/// No default: `--config.file` is required on Unix (packages pass it).
pub fn default_config_file() -> Option<PathBuf> {
    None
}

/// Nothing to do: packages set up their own directories' modes.
pub fn secure_defaults(_flags: &crate::app::Flags) -> Result<(), String> {
    Ok(())
}

/// Creates a directory only this user can enter (`0700`).
pub fn create_private_dir(dir: &Path, recursive: bool) -> io::Result<()> {
    DirBuilder::new().recursive(recursive).mode(0o700).create(dir)
}

/// Creates (or truncates) a file only this user can read (`0600` when created).
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An existing `--storage.path` keeps its mode, but it must be ours and writable by nobody else.
pub fn adopt_state_dir(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    check_owner(path, meta)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "state directory {} is writable by group or others (mode {mode:04o}); records hold session tokens, \
             so use a directory only this user can write to (e.g. chmod go-w)",
            path.display()
        ));
    }
    Ok(())
}

/// Subdirectories are ours: they are made private again whatever happened to them.
pub fn adopt_subdir(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    check_owner(path, meta)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict permissions of {}: {e}", path.display()))
}

/// The effective user id, to check who owns the state directory.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    if meta.uid() != euid() {
        return Err(format!(
            "state directory {} is owned by uid {}, not by this process (uid {}); records hold session tokens",
            path.display(),
            meta.uid(),
            euid()
        ));
    }
    Ok(())
}
