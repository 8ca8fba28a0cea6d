//! Configuration of one simulated server: where it listens, what it knows, how slow it is, what
//! breaks, and which of the spec's silences it reads leniently.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::FaultSpec;
use crate::inventory::Inventory;
use crate::revision::ApiRevision;

/// Everything [`crate::start`] needs. `Default` is a 13.1 server (accepting up to 1.3-rev2) on
/// `127.0.0.1:0` with the built-in inventory, default timings, no faults and every strict reading.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub listen: SocketAddr,
    pub tls: bool,
    /// Where to write the self-signed certificate (PEM) when `tls`; a temporary file if `None`.
    pub tls_cert_file: Option<PathBuf>,
    pub inventory: Inventory,
    pub timings: Timings,
    pub faults: Vec<FaultSpec>,
    pub lenient: Lenient,
    /// Newest revision accepted; newer ones get 400, like a server of an older build.
    pub max_api_revision: ApiRevision,
    /// Oldest revision accepted.
    pub min_api_revision: ApiRevision,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            tls_cert_file: None,
            inventory: Inventory::builtin(),
            timings: Timings::default(),
            faults: Vec::new(),
            lenient: Lenient::default(),
            max_api_revision: ApiRevision::V1_3Rev2,
            min_api_revision: ApiRevision::V1_1Rev1,
        }
    }
}

/// Durations, in milliseconds on the wire (`GET|PUT /sim/timings`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Timings {
    /// Access-token lifetime; the spec says 15 minutes.
    #[serde(with = "ms")]
    pub token_lifetime: Duration,
    /// Refresh-token lifetime; the spec says 14 days by default.
    #[serde(with = "ms")]
    pub refresh_token_lifetime: Duration,
    /// How long `POST /restore/flr` takes before it answers 201 (the mount is usable when the
    /// answer arrives: the 201's description is "File system has been mounted").
    #[serde(with = "ms")]
    pub mount_duration: Duration,
    /// How long a download or restore task takes from creation to `Stopped`.
    #[serde(with = "ms")]
    pub task_duration: Duration,
    /// Length of one "minute" of `autoUnmount.noActivityPeriodInMinutes`, scalable for tests.
    #[serde(with = "ms")]
    pub auto_unmount_minute: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            token_lifetime: Duration::from_secs(15 * 60),
            refresh_token_lifetime: Duration::from_secs(14 * 24 * 3600),
            mount_duration: Duration::from_millis(500),
            task_duration: Duration::from_secs(2),
            auto_unmount_minute: Duration::from_secs(60),
        }
    }
}

/// Lenient readings of points where the spec is silent or contradicts itself. All `false` (strict)
/// by default; each is a CLI flag `--lenient.<kebab-name>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Lenient {
    /// Accept `grant_type` in either case. Strict: the case of the requested revision's
    /// `ELoginGrantType` (lower case up to 1.2, capitalised from 1.3), although Veeam's own
    /// examples send lower case everywhere (README: "where the specs disagree").
    pub grant_type_any_case: bool,
    /// Treat a missing `x-api-version` as the newest accepted revision. Strict: 400, because every
    /// operation declares the header `required: true`.
    pub missing_api_version: bool,
    /// Accept an FLR mount spec without `mountMode` (and, on 1.3-rev2, a Linux spec without
    /// `mountServer`). Strict: the 1.3 schemas require them; Veeam's own examples omit them.
    pub mount_mode_optional: bool,
    /// Count any request naming an FLR session (GET included) and its task polls as activity
    /// for `autoUnmount`. Strict: only browse, prepareDownload, download and restore count.
    pub any_request_is_activity: bool,
    /// Put downloaded files at the ZIP root under their base name. Strict: the ZIP layout is not
    /// specified, so entries carry the guest path (`C/canary/canary.txt`, `canary/canary.txt`).
    pub zip_flat: bool,
}

/// Serialises a `Duration` as integer milliseconds.
pub(crate) mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}
