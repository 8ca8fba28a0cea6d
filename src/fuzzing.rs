//! Entry points for the fuzzers in `fuzz/` and for their regression tests
//! (`tests/fuzz_regressions.rs`): everything that parses input from EM or from the user, each
//! reachable from bytes. None may panic, whatever the bytes; where two readings must agree, the
//! entry point asserts it, so a disagreement is a crash the fuzzer reports.

use std::path::Path;

use crate::cleanup::{MountRecord, SessionRecord};
use crate::em;
use crate::ledger;
use crate::schedule;
use crate::watch::Counted;

/// A fuzz target: bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (`fuzz/fuzz_targets/<name>.rs` calls the function of that name).
pub const TARGETS: &[(&str, Target)] = &[
    ("em_body", em_body),
    ("config", config),
    ("duration", duration),
    ("ledger_records", ledger_records),
    ("web_config", web_config),
    ("filter", filter),
];

/// An EM response body through every model decoder (see [`em::fuzzing::body`]).
pub fn em_body(data: &[u8]) {
    em::fuzzing::body(data);
}

/// The configuration file: YAML, then every check of the validator.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::parse(text, Path::new("/nonexistent-base"));
    }
}

/// A duration in Prometheus' syntax; what parses must print back to itself.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = crate::duration::parse(text) {
        let printed = crate::duration::format(d);
        assert_eq!(crate::duration::parse(&printed), Ok(d), "{text:?} printed as {printed:?}");
    }
}

/// The files in `--storage.path` (mount and session records, the schedule, the restore watch):
/// what decodes must encode and decode again to the same thing.
pub fn ledger_records(data: &[u8]) {
    round_trip::<MountRecord>(data);
    round_trip::<SessionRecord>(data);
    round_trip::<Counted>(data);
    round_trip::<std::collections::HashMap<String, schedule::Entry>>(data);
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    let Ok(value) = ledger::decode_record::<T>(data) else { return };
    let once = serde_json::to_vec(&value).expect("a decoded record encodes");
    let again: T = ledger::decode_record(&once).expect("an encoded record decodes");
    assert_eq!(once, serde_json::to_vec(&again).expect("encodes"), "a record changed on its way round");
}

/// `--web.config.file` (exporter-toolkit format).
pub fn web_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::web_config::WebConfig::parse(text, Path::new("/nonexistent-base/web-config.yml"));
    }
}

/// The filter language, from both sides: the simulator parses arbitrary filters without
/// panicking, and a filter the client builds for any VM name selects exactly that VM there.
pub fn filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let row = |vm: &str| {
        [
            ("vmdisplayname", vm.to_owned()),
            ("type", "FileLevelRestore".to_owned()),
            ("endtime", "2026-11-25T10:00:00Z".to_owned()),
        ]
    };
    let _ = crate::sim::filter_holds(text, &row("vm-01"));
    let built = format!("VmDisplayName=={};Type==FileLevelRestore", em::quote_filter_value(text));
    let holds = |vm: &str| crate::sim::filter_holds(&built, &row(vm));
    assert!(matches!(holds(text), Ok(true)), "{built:?} does not select {text:?}: {:?}", holds(text).err());
    let other = format!("{text}x");
    assert!(matches!(holds(&other), Ok(false)), "{built:?} also selects {other:?}");
}
