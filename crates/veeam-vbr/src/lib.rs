//! A typed client for the **Veeam Backup & Replication REST API** (`https://<vbr>:9419/api/v1/`,
//! OAuth2, JSON), written from Veeam's own OpenAPI specs for revisions 1.2-rev1 (VBR 12.3.1),
//! 1.3-rev1 (13.0.1) and 1.3-rev2 (13.1), and liberal about everything those specs leave open.
//!
//! It covers what a restore test needs: logon with API-revision negotiation and token renewal
//! ([`Client::logon`], [`Session`]), the newest restore point of a machine
//! ([`Session::newest_restore_point`]), file-level restore mounts ([`Session::mount`],
//! [`Session::mounts`], [`Session::unmount`]), browsing, downloading a file as a ZIP read in
//! memory ([`archive`]), restoring a file to its original location, and reading tasks and
//! sessions.
//!
//! Secrets (the password and both tokens) are [`veeam_secret::Secret`]s: no `Debug`,
//! `Display` or error message of this crate prints them.

mod client;
mod endpoint;
mod enums;
mod error;
mod flr;
mod model;
mod session;

pub mod archive;
pub mod version;

#[doc(hidden)]
pub mod decode;

pub use archive::{ZipEntry, ZipLimits, find_file};
pub use client::{API_VERSION_HEADER, Client, ClientConfig};
pub use endpoint::{Endpoint, RequestObserver};
pub use error::{ApiError, Error, Result};
pub use flr::{FileRestoreRequest, MountMode, MountRequest, MountServer, RestoreType, mount_body};
pub use model::*;
pub use session::Session;
pub use veeam_secret::Secret;
pub use version::ApiVersion;

/// Compiles the README's example (it is `no_run`: it needs a VBR server).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
