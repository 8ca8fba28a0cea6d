//! A minimal ZIP writer (stored and deflated entries) for the download operation, and the
//! broken archives of the `zip_*` faults. The spec fixes no layout, so entries carry the guest
//! path unless `lenient.zip_flat`.

use std::io::Write;

use crate::faults::FaultKind;
use crate::inventory::GuestOs;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Builds a ZIP archive in memory.
#[derive(Default)]
pub struct ZipWriter {
    buf: Vec<u8>,
    central: Vec<u8>,
    count: u16,
}

impl ZipWriter {
    /// Adds an entry; `method` 0 = stored (`data` is the content), 8 = deflated (`data` is the
    /// deflate stream of `size` bytes with checksum `crc`).
    fn add_raw(&mut self, name: &str, method: u16, data: &[u8], crc: u32, size: u32) {
        let offset = self.buf.len() as u32;
        let n = name.as_bytes();
        let mut local = Vec::with_capacity(30 + n.len());
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&20u16.to_le_bytes()); // version needed
        local.extend_from_slice(&0x0800u16.to_le_bytes()); // UTF-8 names
        local.extend_from_slice(&method.to_le_bytes());
        local.extend_from_slice(&0u32.to_le_bytes()); // time, date
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&(data.len() as u32).to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&(n.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(n);
        self.buf.extend_from_slice(&local);
        self.buf.extend_from_slice(data);
        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&20u16.to_le_bytes()); // made by
        c.extend_from_slice(&local[4..30]); // same fields as the local header
        c.extend_from_slice(&[0u8; 10]); // comment len, disk, internal attr, external attr
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(n);
        self.count += 1;
    }

    pub fn add_stored(&mut self, name: &str, data: &[u8]) {
        self.add_raw(name, 0, data, crc32(data), data.len() as u32);
    }

    pub fn finish(mut self) -> Vec<u8> {
        let cd_offset = self.buf.len() as u32;
        let cd_len = self.central.len() as u32;
        self.buf.extend_from_slice(&self.central);
        self.buf.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        self.buf.extend_from_slice(&[0u8; 4]);
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        self.buf.extend_from_slice(&cd_len.to_le_bytes());
        self.buf.extend_from_slice(&cd_offset.to_le_bytes());
        self.buf.extend_from_slice(&0u16.to_le_bytes());
        self.buf
    }
}

/// ZIP entry name of a guest path: `C:\a\b.txt` → `C/a/b.txt`, `/a/b.txt` → `a/b.txt`; with
/// `flat`, the base name only.
pub fn entry_name(path: &str, os: GuestOs, flat: bool) -> String {
    let sep = crate::guestfs::separator(os);
    if flat {
        return path.rsplit(sep).next().unwrap_or(path).to_string();
    }
    match os {
        GuestOs::Windows => path.replacen(':', "", 1).replace('\\', "/"),
        GuestOs::Linux => path.trim_start_matches('/').to_string(),
    }
}

/// The archive for a download task, or a broken one under a `zip_*` fault.
pub fn for_download(files: &[(String, String)], os: GuestOs, flat: bool, fault: Option<FaultKind>) -> Vec<u8> {
    let mut z = ZipWriter::default();
    if fault == Some(FaultKind::ZipBomb) {
        add_bomb(&mut z);
        return z.finish();
    }
    if fault == Some(FaultKind::ZipTraversal) {
        z.add_stored("../../../../tmp/veeam-vbr-sim-traversal.txt", b"escaped the extraction directory\n");
    }
    for (path, content) in files {
        z.add_stored(&entry_name(path, os, flat), content.as_bytes());
    }
    let mut out = z.finish();
    if fault == Some(FaultKind::ZipTruncated) {
        out.truncate(out.len() * 3 / 5);
    }
    out
}

/// 1024 entries of 1 MiB of zeros each, deflated: about 1 MiB that inflates to 1 GiB.
fn add_bomb(z: &mut ZipWriter) {
    let zeros = vec![0u8; 1 << 20];
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let compressed = match enc.write_all(&zeros).and_then(|_| enc.finish()) {
        Ok(c) => c,
        Err(_) => return,
    };
    let crc = crc32(&zeros);
    for i in 0..1024 {
        z.add_raw(&format!("bomb/zeros-{i:04}.bin"), 8, &compressed, crc, zeros.len() as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn names() {
        assert_eq!(entry_name("C:\\canary\\canary.txt", GuestOs::Windows, false), "C/canary/canary.txt");
        assert_eq!(entry_name("/canary/canary.txt", GuestOs::Linux, false), "canary/canary.txt");
        assert_eq!(entry_name("/canary/canary.txt", GuestOs::Linux, true), "canary.txt");
    }

    #[test]
    fn archive_has_eocd() {
        let z = for_download(&[("/a.txt".into(), "hi".into())], GuestOs::Linux, false, None);
        assert_eq!(&z[z.len() - 22..z.len() - 18], &0x0605_4b50u32.to_le_bytes());
    }
}
