//! API revisions (`x-api-version`) and what differs between them for the operations simulated.
//!
//! Veeam's versioning page lists 1.1-rev0 (12.0) … 1.3-rev2 (13.1). 1.1-rev0 has no file-level
//! restore at all, so the simulator does not know it: a request asking for it is refused like any
//! unknown revision. Bodies follow the spec of the revision the *request* asked for, because a VBR
//! server answers older clients with older shapes.

use serde::{Deserialize, Serialize};

/// One `x-api-version` value this simulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ApiRevision {
    #[serde(rename = "1.1-rev1")]
    V1_1Rev1,
    #[serde(rename = "1.1-rev2")]
    V1_1Rev2,
    #[serde(rename = "1.2-rev0")]
    V1_2Rev0,
    #[serde(rename = "1.2-rev1")]
    V1_2Rev1,
    #[serde(rename = "1.3-rev0")]
    V1_3Rev0,
    #[serde(rename = "1.3-rev1")]
    V1_3Rev1,
    #[serde(rename = "1.3-rev2")]
    V1_3Rev2,
}

impl ApiRevision {
    /// Every revision known, oldest first.
    pub const ALL: [ApiRevision; 7] = [
        ApiRevision::V1_1Rev1,
        ApiRevision::V1_1Rev2,
        ApiRevision::V1_2Rev0,
        ApiRevision::V1_2Rev1,
        ApiRevision::V1_3Rev0,
        ApiRevision::V1_3Rev1,
        ApiRevision::V1_3Rev2,
    ];

    /// The header value, e.g. `1.3-rev1`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRevision::V1_1Rev1 => "1.1-rev1",
            ApiRevision::V1_1Rev2 => "1.1-rev2",
            ApiRevision::V1_2Rev0 => "1.2-rev0",
            ApiRevision::V1_2Rev1 => "1.2-rev1",
            ApiRevision::V1_3Rev0 => "1.3-rev0",
            ApiRevision::V1_3Rev1 => "1.3-rev1",
            ApiRevision::V1_3Rev2 => "1.3-rev2",
        }
    }

    /// Exact match only: the spec gives the format `<version>-<revision>`; whitespace or case
    /// variants are not the format.
    pub fn parse(s: &str) -> Option<ApiRevision> {
        ApiRevision::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Revisions of VBR 13 (spec 1.3-rev1/rev2): capitalised grant types, `initiatedBy`,
    /// `mountErrors`, `Informative` malware status, `mountMode` required, and so on.
    pub fn is_v13(self) -> bool {
        self >= ApiRevision::V1_3Rev0
    }

    /// The build a server whose newest revision is `self` reports in `serverInfo`.
    pub fn build_version(self) -> &'static str {
        match self {
            ApiRevision::V1_1Rev1 => "12.1.0.2131",
            ApiRevision::V1_1Rev2 => "12.2.0.334",
            ApiRevision::V1_2Rev0 => "12.3.0.310",
            ApiRevision::V1_2Rev1 => "12.3.1.1139",
            ApiRevision::V1_3Rev0 => "13.0.0.4967",
            ApiRevision::V1_3Rev1 => "13.0.1.180",
            ApiRevision::V1_3Rev2 => "13.1.0.240",
        }
    }
}

impl std::fmt::Display for ApiRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApiRevision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ApiRevision::parse(s).ok_or_else(|| {
            let known: Vec<_> = ApiRevision::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown API revision {s:?} (known: {})", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_orders() {
        for r in ApiRevision::ALL {
            assert_eq!(ApiRevision::parse(r.as_str()), Some(r));
        }
        assert!(ApiRevision::V1_2Rev1 < ApiRevision::V1_3Rev0);
        assert_eq!(ApiRevision::parse("1.1-rev0"), None);
        assert_eq!(ApiRevision::parse(" 1.3-rev1"), None);
    }
}
