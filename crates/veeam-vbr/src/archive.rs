//! Reading the FLR download archive in memory.
//!
//! `POST …/prepareDownload` "prepares files and folders for download and packs them into a ZIP
//! file" and `…/download` returns it as `application/octet-stream`. That is all the spec says:
//! it is **silent on the layout** (whether an entry is named `canary.txt`, `canary\canary.txt`,
//! `C\canary\canary.txt` or carries a machine-name folder). So [`find_file`] matches liberally:
//!
//! - the guest path and each entry name are split on both `/` and `\`, empty and `.`
//!   components are dropped, and a leading drive (`C:`) or root is dropped from the guest path;
//! - an entry matches when one component list is a suffix of the other (at least the file
//!   name), compared case-insensitively when the guest path looks like Windows (a `\` or a
//!   drive letter) and exactly otherwise;
//! - the entry with the longest common suffix wins; two equally good entries are an
//!   ambiguous archive ([`Error::BadArchive`]).
//!
//! Nothing is ever written to disk, so hostile names could do no harm here; they are still
//! refused (`..`, absolute paths, drive letters, NUL), because a server that sends them is not
//! sending what we asked for. Sizes in the headers are not trusted: every cap is enforced on
//! the bytes actually decompressed, and the CRC of every entry is checked.

use std::io::{Cursor, Read};

use crate::error::{Error, Result};

/// Caps for [`entries`] and [`find_file`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZipLimits {
    /// The archive itself (compressed).
    pub max_archive_bytes: u64,
    /// Entries in the central directory, directories included.
    pub max_entries: usize,
    /// Decompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Decompressed size of all entries together.
    pub max_total_bytes: u64,
}

impl Default for ZipLimits {
    fn default() -> ZipLimits {
        ZipLimits {
            max_archive_bytes: 16 << 20,
            max_entries: 1000,
            max_entry_bytes: 8 << 20,
            max_total_bytes: 32 << 20,
        }
    }
}

/// One file of the archive.
#[derive(Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The name as stored in the archive.
    pub name: String,
    /// Decompressed size (the length of `data`).
    pub size: u64,
    /// The entry's DOS timestamp as `YYYY-MM-DDTHH:MM:SS`, without a zone (ZIP stores local
    /// time of whoever wrote it).
    pub modified: Option<String>,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for ZipEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipEntry")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("modified", &self.modified)
            .finish_non_exhaustive()
    }
}

/// Every file entry of `zip`, decompressed, within `limits`. Directory entries are skipped.
pub fn entries(zip: &[u8], limits: &ZipLimits) -> Result<Vec<ZipEntry>> {
    if zip.len() as u64 > limits.max_archive_bytes {
        return Err(Error::TooLarge { what: "ZIP archive", limit: limits.max_archive_bytes });
    }
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| Error::BadArchive(format!("cannot read ZIP: {e}")))?;
    if archive.len() > limits.max_entries {
        return Err(Error::BadArchive(format!(
            "{} entries, more than the limit of {}",
            archive.len(),
            limits.max_entries
        )));
    }
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(|e| Error::BadArchive(format!("entry {index}: {e}")))?;
        let name = file.name().map_err(|e| Error::BadArchive(format!("entry {index}: bad name: {e}")))?.into_owned();
        check_name(&name)?;
        if file.is_dir() {
            continue;
        }
        let cap = limits.max_entry_bytes.min(limits.max_total_bytes - total);
        let what = if cap < limits.max_entry_bytes { "decompressed ZIP contents" } else { "decompressed ZIP entry" };
        let limit = if cap < limits.max_entry_bytes { limits.max_total_bytes } else { limits.max_entry_bytes };
        // The header's size is a hint only: cheap early refusal, never a guarantee.
        if file.size() > cap {
            return Err(Error::TooLarge { what, limit });
        }
        let mut data = Vec::new();
        (&mut file)
            .take(cap + 1)
            .read_to_end(&mut data)
            .map_err(|e| Error::BadArchive(format!("entry {name:?}: cannot decompress: {e}")))?;
        if data.len() as u64 > cap {
            return Err(Error::TooLarge { what, limit });
        }
        total += data.len() as u64;
        let modified = file.last_modified().map(|t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        });
        out.push(ZipEntry { name, size: data.len() as u64, modified, data });
    }
    Ok(out)
}

/// The entry of `zip` that holds `guest_path` (see the module docs for the matching rule).
pub fn find_file(zip: &[u8], guest_path: &str, limits: &ZipLimits) -> Result<ZipEntry> {
    let want = guest_components(guest_path);
    if want.is_empty() {
        return Err(Error::Config(format!("guest path {guest_path:?} names no file")));
    }
    let windows = looks_like_windows(guest_path);
    let all = entries(zip, limits)?;
    let mut best: Option<(usize, usize)> = None;
    let mut tie = false;
    for (index, entry) in all.iter().enumerate() {
        let have = split(&entry.name);
        let common = common_suffix(&want, &have, windows);
        if common == 0 || (common < want.len() && common < have.len()) {
            continue;
        }
        match best {
            Some((_, score)) if score > common => {}
            Some((_, score)) if score == common => tie = true,
            _ => {
                best = Some((index, common));
                tie = false;
            }
        }
    }
    match best {
        Some(_) if tie => Err(Error::BadArchive(format!("more than one entry matches {guest_path:?}"))),
        Some((index, _)) => Ok(all.into_iter().nth(index).expect("index from enumerate")),
        None => {
            let names: Vec<&str> = all.iter().take(10).map(|e| e.name.as_str()).collect();
            Err(Error::BadArchive(format!("no entry matches {guest_path:?} (entries: {names:?})")))
        }
    }
}

/// Refuses names that would mean something outside the archive if ever extracted.
fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::BadArchive(format!("unsafe entry name {name:?}: {why}")));
    if name.contains('\0') {
        return bad("NUL byte");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return bad("absolute path");
    }
    // A drive only at the start: `:` is a legal file-name character on Linux guests.
    if name.split(['/', '\\']).next().is_some_and(|first| first.get(..2).is_some_and(is_drive)) {
        return bad("drive letter");
    }
    if name.split(['/', '\\']).any(|c| c == "..") {
        return bad("parent directory component");
    }
    Ok(())
}

fn is_drive(component: &str) -> bool {
    let b = component.as_bytes();
    b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

fn looks_like_windows(path: &str) -> bool {
    path.contains('\\') || path.split(['/', '\\']).find(|c| !c.is_empty()).is_some_and(is_drive)
}

fn split(path: &str) -> Vec<&str> {
    path.split(['/', '\\']).filter(|c| !c.is_empty() && *c != ".").collect()
}

/// The guest path's components without a leading drive (`C:`) or root.
fn guest_components(path: &str) -> Vec<&str> {
    let mut parts = split(path);
    if parts.first().is_some_and(|c| is_drive(c)) {
        parts.remove(0);
    }
    parts
}

fn common_suffix(a: &[&str], b: &[&str], ignore_case: bool) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| if ignore_case { x.eq_ignore_ascii_case(y) } else { x == y })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_split_liberally() {
        assert_eq!(guest_components(r"C:\canary\canary.txt"), ["canary", "canary.txt"]);
        assert_eq!(guest_components("/canary/canary.txt"), ["canary", "canary.txt"]);
        assert_eq!(guest_components(r"c:/canary\.\canary.txt"), ["canary", "canary.txt"]);
        assert!(looks_like_windows(r"C:\x") && looks_like_windows("C:/x") && !looks_like_windows("/x/y"));
    }

    #[test]
    fn unsafe_names() {
        for name in ["../x", "a/../../x", "/etc/passwd", r"\x", "C:/x", r"C:\x", "a\0b", "C:x"] {
            assert!(check_name(name).is_err(), "{name}");
        }
        for name in ["canary.txt", "C/canary/canary.txt", "a/b..c/d", "./x", "logs/2024:01.txt"] {
            assert!(check_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn suffix_rule() {
        let want = ["canary", "canary.txt"];
        assert_eq!(common_suffix(&want, &["canary.txt"], false), 1);
        assert_eq!(common_suffix(&want, &["C", "Canary", "CANARY.TXT"], true), 2);
        assert_eq!(common_suffix(&want, &["C", "Canary", "CANARY.TXT"], false), 0);
    }
}
