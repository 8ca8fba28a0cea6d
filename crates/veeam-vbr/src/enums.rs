//! The spec's string enums, decoded liberally: any case, unknown values kept as `Other(..)`
//! (a newer server may add values; the specs even respell some between revisions).

use serde::{Deserialize, Deserializer};

/// Declares a string enum that accepts any case and keeps unknown values.
macro_rules! liberal_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this client does not know (a newer server); kept verbatim.
            Other(String),
        }

        impl $name {
            /// The value as VBR spells it (the spec's spelling for known values).
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            /// Case-insensitive; unknown values become `Other`.
            pub fn from_wire(s: &str) -> Self {
                $(if s.eq_ignore_ascii_case($text) $(|| s.eq_ignore_ascii_case($alias))* {
                    return $name::$variant;
                })+
                $name::Other(s.to_owned())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from_wire(&s))
            }
        }
    };
}

liberal_enum!(
    /// `ESuspiciousActivitySeverity`: 1.2-rev1 lists Clean, Suspicious, Infected; 1.3 adds
    /// Informative.
    MalwareStatus { Clean => "Clean", Suspicious => "Suspicious", Infected => "Infected", Informative => "Informative" }
);
liberal_enum!(
    /// `EFlrType`: the guest OS family a file-level restore mounts.
    GuestOs { Windows => "Windows", Linux => "Linux" }
);
liberal_enum!(
    /// `EFlrItemType`.
    ItemType { Drive => "Drive", Folder => "Folder", File => "File", Link => "Link" }
);
liberal_enum!(
    /// `EFlrItemStateType`. 1.2-rev1 and 1.3-rev1 spell it `NotAvaliable`; 1.3-rev2 fixed it to
    /// `NotAvailable`. Both are accepted.
    ItemState {
        NotAvailable => "NotAvailable" | "NotAvaliable",
        Changed => "Changed",
        Unchanged => "Unchanged",
        Comparing => "Comparing",
        Deleted => "Deleted",
        FailedToCompare => "FailedToCompare",
    }
);
liberal_enum!(
    /// `ETaskState`.
    TaskState { Starting => "Starting", Working => "Working", Stopping => "Stopping", Stopped => "Stopped" }
);
liberal_enum!(
    /// `ETaskResult`.
    TaskResult { None => "None", Success => "Success", Warning => "Warning", Failed => "Failed", Cancelled => "Cancelled" | "Canceled" }
);
liberal_enum!(
    /// `ESessionState`; 1.3-rev2 adds `ActionRequired`.
    SessionState {
        Stopped => "Stopped",
        Starting => "Starting",
        Stopping => "Stopping",
        Working => "Working",
        Pausing => "Pausing",
        Resuming => "Resuming",
        WaitingTape => "WaitingTape",
        Idle => "Idle",
        Postprocessing => "Postprocessing",
        WaitingRepository => "WaitingRepository",
        WaitingSlot => "WaitingSlot",
        ActionRequired => "ActionRequired",
    }
);
liberal_enum!(
    /// `ESessionResult`.
    SessionResultKind { None => "None", Success => "Success", Warning => "Warning", Failed => "Failed" }
);
liberal_enum!(
    /// `EFlrBrowseMountErrorType` (1.3 only).
    MountErrorKind { Failed => "Failed", Skipped => "Skipped", Warning => "Warning" }
);
