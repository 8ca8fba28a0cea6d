//! The guest file system inside a restore point, derived from a flat map "path → content".
//!
//! Windows paths use `\` (the mount's `pathSeparator`) and compare case-insensitively, like NTFS;
//! a drive root is `C:\`, and the empty path lists the drives. Linux paths start with `/` and
//! compare exactly. A Windows path written with `/` is not accepted: the mount model tells the
//! client which separator to use.

use std::collections::{BTreeMap, BTreeSet};

use crate::inventory::GuestOs;

/// One entry of a browsed folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Full path of the item, in the guest's syntax.
    pub path: String,
    pub name: String,
    /// `Drive`, `Folder` or `File`.
    pub kind: &'static str,
    pub size: u64,
}

pub fn separator(os: GuestOs) -> char {
    match os {
        GuestOs::Windows => '\\',
        GuestOs::Linux => '/',
    }
}

/// Canonical key of a path for comparison, or `None` if it is not a path of this OS. A
/// trailing separator is dropped except at a root.
pub fn key(os: GuestOs, path: &str) -> Option<String> {
    match os {
        GuestOs::Windows => {
            if path.contains('/') {
                return None;
            }
            let b = path.as_bytes();
            if b.len() < 2 || !b[0].is_ascii_alphabetic() || b[1] != b':' {
                return None;
            }
            let mut k = path.to_ascii_lowercase();
            if k.len() == 2 {
                k.push('\\');
            }
            while k.len() > 3 && k.ends_with('\\') {
                k.pop();
            }
            if k.contains("\\\\") || k.split('\\').any(|c| c == ".." || c == ".") {
                return None;
            }
            Some(k)
        }
        GuestOs::Linux => {
            if !path.starts_with('/') {
                return None;
            }
            let mut k = path.to_string();
            while k.len() > 1 && k.ends_with('/') {
                k.pop();
            }
            if k.contains("//") || k.split('/').any(|c| c == ".." || c == ".") {
                return None;
            }
            Some(k)
        }
    }
}

fn child_prefix(os: GuestOs, dir_key: &str) -> String {
    let sep = separator(os);
    if dir_key.ends_with(sep) { dir_key.to_string() } else { format!("{dir_key}{sep}") }
}

/// Lists a folder: `None` if `dir` is not an existing folder, drive or root.
pub fn list(files: &BTreeMap<String, String>, os: GuestOs, dir: &str) -> Option<Vec<Entry>> {
    if os == GuestOs::Windows && dir.is_empty() {
        let drives: BTreeSet<String> = files.keys().filter_map(|p| p.get(..3).map(str::to_string)).collect();
        let v = drives.into_iter().map(|d| Entry { path: d.clone(), name: d, kind: "Drive", size: 0 }).collect();
        return Some(v);
    }
    let dk = key(os, dir)?;
    let prefix = child_prefix(os, &dk);
    let sep = separator(os);
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    for (path, content) in files {
        let Some(pk) = key(os, path) else { continue };
        let Some(rest) = pk.strip_prefix(&prefix) else { continue };
        // Recover the original spelling of the child's name from the stored path: lowercasing
        // keeps byte lengths, so the prefix has the same length in both.
        let orig_rest = path.get(prefix.len()..).unwrap_or(rest);
        let (name, is_dir) = match orig_rest.split_once(sep) {
            Some((n, _)) => (n, true),
            None => (orig_rest, false),
        };
        let full = format!("{}{}", path.get(..prefix.len()).unwrap_or(&prefix), name);
        let kind = if is_dir { "Folder" } else { "File" };
        let size = if is_dir { 0 } else { content.len() as u64 };
        out.entry(name.to_ascii_lowercase()).or_insert(Entry { path: full, name: name.to_string(), kind, size });
    }
    if out.is_empty() && !is_root(os, &dk) {
        return None;
    }
    Some(out.into_values().collect())
}

fn is_root(os: GuestOs, k: &str) -> bool {
    match os {
        GuestOs::Windows => k.len() == 3,
        GuestOs::Linux => k == "/",
    }
}

/// Whether `path` names an existing file or folder.
pub fn exists(files: &BTreeMap<String, String>, os: GuestOs, path: &str) -> bool {
    !expand(files, os, &[path.to_string()]).is_empty()
}

/// The files named by `paths`: a file itself, or every file below a folder. Paths that name
/// nothing contribute nothing.
pub fn expand(files: &BTreeMap<String, String>, os: GuestOs, paths: &[String]) -> Vec<(String, String)> {
    let mut out = BTreeMap::new();
    for want in paths {
        let Some(wk) = key(os, want) else { continue };
        let prefix = child_prefix(os, &wk);
        for (path, content) in files {
            let Some(pk) = key(os, path) else { continue };
            if pk == wk || pk.starts_with(&prefix) {
                out.insert(path.clone(), content.clone());
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win() -> BTreeMap<String, String> {
        [("C:\\canary\\canary.txt", "x"), ("C:\\canary\\sub\\n.txt", "yy"), ("D:\\d.txt", "z")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn windows_listing() {
        let f = win();
        let drives = list(&f, GuestOs::Windows, "").unwrap();
        assert_eq!(drives.len(), 2);
        let c = list(&f, GuestOs::Windows, "c:\\CANARY").unwrap();
        assert_eq!(c.iter().map(|e| e.kind).collect::<Vec<_>>(), vec!["File", "Folder"]);
        assert_eq!(c[0].path, "C:\\canary\\canary.txt");
        assert!(list(&f, GuestOs::Windows, "C:/canary").is_none());
        assert!(list(&f, GuestOs::Windows, "C:\\nope").is_none());
        assert_eq!(expand(&f, GuestOs::Windows, &["C:\\canary".into()]).len(), 2);
        assert!(!exists(&f, GuestOs::Windows, "C:\\canary\\..\\x"));
    }

    #[test]
    fn linux_listing() {
        let f: BTreeMap<String, String> = [("/canary/canary.txt".to_string(), "a".to_string())].into();
        assert_eq!(list(&f, GuestOs::Linux, "/").unwrap()[0].kind, "Folder");
        assert_eq!(list(&f, GuestOs::Linux, "/canary/").unwrap()[0].size, 1);
        assert!(exists(&f, GuestOs::Linux, "/canary/canary.txt"));
        assert!(!exists(&f, GuestOs::Linux, "canary"));
    }
}
