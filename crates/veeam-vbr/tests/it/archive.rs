//! The in-memory ZIP reader: good archives, the layouts the spec leaves open, and hostile or
//! broken ones (all typed errors, never a panic).

use std::io::{Cursor, Write};

use veeam_vbr::archive::{entries, find_file};
use veeam_vbr::{Error, ZipLimits};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

fn build(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, data) in files {
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

fn limits() -> ZipLimits {
    ZipLimits { max_archive_bytes: 1 << 20, max_entries: 16, max_entry_bytes: 64 * 1024, max_total_bytes: 128 * 1024 }
}

#[test]
fn finds_the_file_whatever_the_layout() {
    for name in [
        "canary.txt",
        "canary/canary.txt",
        "C/canary/canary.txt",
        "winsp01\\C\\canary\\canary.txt",
        "CANARY\\Canary.TXT",
    ] {
        let zip = build(&[("other/readme.txt", b"x"), (name, b"alive\n")]);
        let entry = find_file(&zip, r"C:\canary\canary.txt", &limits()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(entry.data, b"alive\n", "{name}");
        assert_eq!(entry.size, 6);
        assert_eq!(entry.name, name);
        assert!(entry.modified.is_some());
    }
}

#[test]
fn linux_paths_match_case_sensitively() {
    let zip = build(&[("canary/canary.txt", b"alive")]);
    assert_eq!(find_file(&zip, "/canary/canary.txt", &limits()).unwrap().data, b"alive");
    let err = find_file(&zip, "/canary/CANARY.txt", &limits()).unwrap_err();
    assert_eq!(err.reason(), "bad_archive", "{err}");
}

#[test]
fn the_longest_match_wins_and_ties_are_refused() {
    let zip = build(&[("canary.txt", b"short"), ("canary/canary.txt", b"long")]);
    assert_eq!(find_file(&zip, "/canary/canary.txt", &limits()).unwrap().data, b"long");
    let zip = build(&[("a/canary.txt", b"1"), ("b/canary.txt", b"2")]);
    let err = find_file(&zip, "/canary.txt", &limits()).unwrap_err();
    assert!(matches!(err, Error::BadArchive(ref m) if m.contains("more than one")), "{err}");
}

#[test]
fn directories_are_skipped_and_missing_files_named() {
    let zip = build(&[("canary/", b""), ("canary/other.txt", b"x")]);
    assert_eq!(entries(&zip, &limits()).unwrap().len(), 1);
    let err = find_file(&zip, "/canary/canary.txt", &limits()).unwrap_err();
    assert!(err.to_string().contains("canary/other.txt"), "{err}");
}

#[test]
fn zip_bomb_is_stopped_while_decompressing() {
    let bomb = vec![0u8; 10 << 20]; // 10 MiB of zeros deflate to about 10 KiB
    let zip = build(&[("canary.txt", &bomb)]);
    assert!(zip.len() < 64 * 1024, "ratio high enough: {}", zip.len());
    let err = find_file(&zip, "/canary.txt", &limits()).unwrap_err();
    assert!(matches!(err, Error::TooLarge { what: "decompressed ZIP entry", limit: 65536 }), "{err}");
}

#[test]
fn a_lying_size_header_does_not_help_a_bomb() {
    let zip = build(&[("canary.txt", &vec![b'a'; 200 * 1024])]);
    // Shrink the declared uncompressed size in the central directory (and local header) to 1.
    let patched = patch_uncompressed_sizes(zip, 1);
    match find_file(&patched, "/canary.txt", &limits()) {
        Err(Error::TooLarge { .. }) | Err(Error::BadArchive(_)) => {}
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn total_size_is_capped_across_entries() {
    let chunk = vec![1u8; 60 * 1024];
    let zip = build(&[("a.bin", &chunk), ("b.bin", &chunk), ("c.bin", &chunk)]);
    let err = entries(&zip, &limits()).unwrap_err();
    assert!(matches!(err, Error::TooLarge { what: "decompressed ZIP contents", .. }), "{err}");
}

#[test]
fn unsafe_names_are_refused() {
    for name in
        ["../canary.txt", "a/../../canary.txt", "/canary.txt", "C:/canary.txt", "C:\\canary.txt", "\\canary.txt"]
    {
        let zip = build(&[(name, b"x")]);
        let err = find_file(&zip, "/canary.txt", &limits()).unwrap_err();
        assert!(matches!(err, Error::BadArchive(ref m) if m.contains("unsafe")), "{name}: {err}");
    }
}

#[test]
fn too_many_entries() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let err = entries(&build(&files), &limits()).unwrap_err();
    assert!(matches!(err, Error::BadArchive(ref m) if m.contains("20 entries")), "{err}");
}

#[test]
fn truncated_and_corrupt_archives() {
    let zip = build(&[("canary.txt", &b"alive and well ".repeat(100))]);
    for cut in [0, 1, 10, zip.len() / 2, zip.len() - 1] {
        let err = find_file(&zip[..cut], "/canary.txt", &limits()).unwrap_err();
        assert_eq!(err.reason(), "bad_archive", "cut at {cut}: {err}");
    }
    // Flip a byte inside the compressed data: decompression or the CRC check must fail.
    let mut corrupt = zip.clone();
    corrupt[45] ^= 0xff;
    let err = find_file(&corrupt, "/canary.txt", &limits()).unwrap_err();
    assert_eq!(err.reason(), "bad_archive", "{err}");
    let err = find_file(b"not a zip at all", "/canary.txt", &limits()).unwrap_err();
    assert_eq!(err.reason(), "bad_archive");
}

#[test]
fn archive_over_the_compressed_cap() {
    let zip = build(&[("canary.txt", b"x")]);
    let small = ZipLimits { max_archive_bytes: 10, ..limits() };
    assert_eq!(find_file(&zip, "/canary.txt", &small).unwrap_err().reason(), "too_large");
}

#[test]
fn guest_path_without_a_file_is_a_config_error() {
    let zip = build(&[("canary.txt", b"x")]);
    assert_eq!(find_file(&zip, "C:\\", &limits()).unwrap_err().reason(), "config");
}

/// Rewrites the uncompressed-size fields of every local header and central directory entry.
fn patch_uncompressed_sizes(mut zip: Vec<u8>, size: u32) -> Vec<u8> {
    let mut i = 0;
    while i + 4 <= zip.len() {
        match &zip[i..i + 4] {
            [0x50, 0x4b, 0x03, 0x04] => zip[i + 22..i + 26].copy_from_slice(&size.to_le_bytes()),
            [0x50, 0x4b, 0x01, 0x02] => zip[i + 24..i + 28].copy_from_slice(&size.to_le_bytes()),
            _ => {}
        }
        i += 1;
    }
    zip
}
