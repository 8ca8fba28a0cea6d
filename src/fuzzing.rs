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
    ("vbr_body", vbr_body),
    ("vbr_zip", vbr_zip),
];

/// A VBR response body through every decoder of the VBR client (token, error, server, restore
/// points, FLR mounts, browse results, tasks, sessions): none may panic.
pub fn vbr_body(data: &[u8]) {
    use veeam_vbr::decode;
    let _ = decode::token(data);
    let _ = decode::api_error(data);
    let _ = decode::server_info(data);
    let _ = decode::server_time(data);
    let _ = decode::backup_objects(data);
    if let Ok(page) = decode::restore_points(data) {
        for point in &page.data {
            let _ = (point.created_at(), point.allows_file_restore());
        }
    }
    let _ = decode::flr_mount(data);
    let _ = decode::flr_mounts(data);
    let _ = decode::browse(data);
    if let Ok(task) = decode::task(data) {
        let _ = (task.is_finished(), task.succeeded());
    }
    let _ = decode::session(data).map(|s| s.is_stopped());
    let _ = decode::sessions(data);
}

/// The download ZIP reader with small caps: a hostile archive (a bomb, `..` or absolute names,
/// truncation) is an error, never a panic, and never more memory than the caps allow. The
/// first byte picks the guest path looked for.
pub fn vbr_zip(data: &[u8]) {
    let Some((&pick, zip)) = data.split_first() else { return };
    let path = ["C:\\canary\\canary.txt", "/canary/canary.txt", "canary.txt", ""][usize::from(pick % 4)];
    let limits = veeam_vbr::ZipLimits {
        max_archive_bytes: 1 << 16,
        max_entries: 64,
        max_entry_bytes: 1 << 16,
        max_total_bytes: 1 << 17,
    };
    if let Ok(entry) = veeam_vbr::find_file(zip, path, &limits) {
        assert!(entry.data.len() as u64 <= limits.max_entry_bytes, "an entry beyond its cap was returned");
    }
    if let Ok(entries) = veeam_vbr::archive::entries(zip, &limits) {
        assert!(entries.len() <= limits.max_entries, "more entries than the cap");
        let total: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
        assert!(total <= limits.max_total_bytes, "more bytes than the cap");
    }
}

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
