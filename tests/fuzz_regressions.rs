//! The fuzz targets (`fuzz/`, run by `scripts/fuzz` with cargo-fuzz) replayed on stable over
//! their seeds and over every input a fuzzer ever crashed them with (`fuzz/regressions/`).

use std::fs;
use std::path::{Path, PathBuf};

use veeam_restore_exporter::fuzzing::TARGETS;

fn files(dir: impl AsRef<Path>) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn replay(target: &str, inputs: impl IntoIterator<Item = (String, Vec<u8>)>) -> usize {
    let (_, run) = TARGETS.iter().find(|(name, _)| *name == target).expect("a target of that name");
    let mut count = 0;
    for (name, input) in inputs {
        let outcome = std::panic::catch_unwind(|| run(&input));
        assert!(outcome.is_ok(), "{target} panics on {name}");
        count += 1;
    }
    count
}

fn stored(target: &str, kind: &str) -> Vec<(String, Vec<u8>)> {
    files(Path::new("fuzz").join(kind).join(target))
        .into_iter()
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn every_target_has_a_fuzzer_binary_and_a_place_in_the_script() {
    let script = fs::read_to_string("scripts/fuzz").unwrap();
    let cargo = fs::read_to_string("fuzz/Cargo.toml").unwrap();
    for (name, _) in TARGETS {
        let source = fs::read_to_string(format!("fuzz/fuzz_targets/{name}.rs")).unwrap();
        assert!(source.contains(&format!("fuzzing::{name}(data)")), "fuzz/fuzz_targets/{name}.rs calls {name}");
        assert!(cargo.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml builds {name}");
        let listed = script.lines().find(|l| l.starts_with("all=(")).unwrap();
        assert!(listed.split([' ', '(', ')']).any(|w| w == *name), "scripts/fuzz runs {name}");
    }
    assert_eq!(files("fuzz/fuzz_targets").len(), TARGETS.len(), "a fuzz target without an entry in TARGETS");
}

#[test]
fn seeds_and_past_crashes_replay_cleanly() {
    let mut replayed = 0;
    for (name, _) in TARGETS {
        replayed += replay(name, stored(name, "seeds"));
        replayed += replay(name, stored(name, "regressions"));
    }
    // The documented EM examples, with and without a BOM, as scripts/fuzz seeds them.
    let fixtures = files("tests/fixtures/em").into_iter().filter(|p| p.extension().is_some_and(|e| e != "md"));
    replayed +=
        replay("em_body", fixtures.map(|p| (p.display().to_string(), [&[1u8][..], &fs::read(&p).unwrap()].concat())));
    let configs =
        ["examples/config.yml", "src/demo-config.yml", "deploy/systemd/config.yml", "deploy/compose/config.yml"];
    replayed += replay("config", configs.map(|p| (p.to_owned(), fs::read(p).unwrap())));
    // Veeam's own VBR examples, as scripts/fuzz seeds them.
    let vbr =
        files("crates/veeam-vbr/tests/fixtures").into_iter().filter(|p| p.extension().is_some_and(|e| e == "json"));
    replayed += replay("vbr_body", vbr.map(|p| (p.display().to_string(), fs::read(&p).unwrap())));
    assert!(replayed >= 30, "only {replayed} inputs replayed");
}

/// The crash the filter fuzzer found first: the simulator split a term at an operator inside
/// the quoted value (`VmDisplayName=="a>=b"`), answering 400 to a filter the client builds.
#[test]
fn a_quoted_filter_value_may_hold_an_operator() {
    veeam_restore_exporter::fuzzing::filter(b"EndTime>=2026-11-25T00:00:00Z;State!=Working");
    veeam_restore_exporter::fuzzing::filter(b"a==b");
}
