//! What differs between Unix and Windows, so that the rest of the exporter has no `cfg`s: how a
//! stop or a reload is asked for (signals; console events and the service control manager), how
//! the state directory is kept private (modes; an ACL), and the default paths.
//!
//! Both sides offer the same items: [`Signals`], `create_private_dir`, `adopt_state_dir`,
//! `adopt_subdir`, `create_private_file`, `sync_dir`, `default_storage_path` and
//! `default_config_file`. Process metrics on Windows are here too (Linux reads `/proc` in
//! [`crate::exposition`]).

#[cfg(windows)]
pub mod service;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub use self::unix::*;
#[cfg(windows)]
pub use self::windows::*;

/// What the platform asks the exporter to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Load the configuration again (SIGHUP).
    Reload,
    /// Shut down gracefully: stop scheduling, unmount, log off.
    Stop,
}
