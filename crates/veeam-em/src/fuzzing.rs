//! The fuzz entry point of the decoders (`fuzz/` of veeam-restore-exporter calls it): every model
//! decoder on one parse, as the client does it. None may panic, whatever the bytes.

use std::fmt::Debug;

use crate::PointKind;
use crate::model::{self, EntryPoint, FileSystemEntries, LogonInfo, Mount, RestorePoint, RestoreSession, Task};
use crate::wire::Doc;

/// An EM response body through every model decoder. The first byte chooses whether the body
/// also goes through with a UTF-8 BOM (EM 9.5 sent one on JSON), which must change nothing.
pub fn body(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else { return };
    let plain = decode_all(body);
    // One BOM is stripped; a second would be content, as everywhere else.
    if flags & 1 == 1 && !body.starts_with(b"\xef\xbb\xbf") {
        let with_bom = decode_all(&[b"\xef\xbb\xbf".as_slice(), body].concat());
        let print = |all: &[Box<dyn Debug>]| all.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>();
        assert_eq!(print(&plain), print(&with_bom), "a BOM changed what the body decodes to");
    }
}

/// Every decoder's result (models or errors), from one parse as the client does it.
fn decode_all(body: &[u8]) -> Vec<Box<dyn Debug>> {
    let doc = match Doc::parse(body) {
        Ok(doc) => doc,
        Err(e) => return vec![Box::new(e)],
    };
    let root = doc.root();
    let mut out: Vec<Box<dyn Debug>> = vec![
        Box::new(Mount::decode(root)),
        Box::new(RestoreSession::decode(root)),
        Box::new(RestoreSession::decode_query(root)),
        Box::new(LogonInfo::decode(root)),
        Box::new(EntryPoint::decode(root)),
        Box::new(model::error_message(root)),
        Box::new(FileSystemEntries::decode(root)),
    ];
    for kind in [PointKind::Backup, PointKind::Replica] {
        out.push(Box::new(RestorePoint::decode(root, kind)));
        out.push(Box::new(RestorePoint::decode_query(root, kind)));
        out.push(Box::new(Mount::decode_list(root, kind)));
    }
    match Task::decode(root) {
        Ok(task) => {
            // What the probe reads off a task.
            out.push(Box::new((task.related().cloned(), task.download().cloned(), task.delete_href().to_owned())));
            out.push(Box::new(task.into_outcome()));
        }
        Err(e) => out.push(Box::new(e)),
    }
    out
}
