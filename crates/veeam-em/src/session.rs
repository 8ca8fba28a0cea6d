//! The calls of a logged-on session: restore points, mounts, restores, tasks, restore sessions.
//!
//! Written against the EM REST documentation (`docs/em-api-notes.md`), not against the
//! simulator. Where the documentation is silent the client is liberal and says so inline.

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, Url};

use super::client::{Call, Client, Endpoint, Format, OsKind, parse};
use super::error::{Error, Result};
use super::model::*;
use super::wire::Doc;
use veeam_secret::Secret;

/// A logged-on session: the token, the logon-session id, and a client to use them with.
///
/// Mounts and tasks belong to the logon session that created them; keep this value for as long
/// as they exist. `Debug` prints neither the token nor the id (the token is the id's base64).
#[derive(Clone)]
pub struct Session {
    client: Client,
    id: String,
    token: Secret,
    logoff_href: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("client", &self.client).finish_non_exhaustive()
    }
}

/// Characters escaped in a query value we build (filters). `=`, `;` and `,` are filter
/// operators and stay literal, as in Veeam's examples; `&`, `+` and `%` would change meaning.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'&')
    .add(b'+')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Appends `extra` (already encoded) to a URL's query.
fn with_query(mut url: Url, extra: &str) -> Url {
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{extra}"),
        _ => extra.to_owned(),
    };
    url.set_query(Some(&query));
    url
}

/// Appends a guest path (`C:\dir\a b.txt` or `C:/dir/a b.txt`) as URL path segments, each
/// percent-encoded, as in EM's `…/E:/Documentation%202014` example.
fn push_guest_path(url: &mut Url, guest_path: &str) -> Result<()> {
    let mut segments = url.path_segments_mut().map_err(|_| Error::Config("base URL cannot have a path".into()))?;
    segments.pop_if_empty();
    for segment in guest_path.split(['/', '\\']).filter(|s| !s.is_empty()) {
        segments.push(segment);
    }
    Ok(())
}

/// A filter string value: always double-quoted, embedded quotes doubled (docs/em-api-notes.md §3.1).
pub fn quote_filter_value(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

impl Session {
    pub(super) fn new(client: Client, id: String, token: Secret, logoff_href: Option<String>) -> Session {
        Session { client, id, token, logoff_href }
    }

    /// The logon session id (for log-off and for orphan records).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The session token, for the durable orphan record only.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    async fn get(&self, url: Url, endpoint: Endpoint) -> Result<Doc> {
        let (_, body) = self.client.send(Method::GET, url, endpoint, Some(&self.token), None).await?;
        parse(&body)
    }

    async fn post(&self, url: Url, endpoint: Endpoint, body: Option<Vec<u8>>) -> Result<Doc> {
        let content_type = self.client.format().media_type();
        let body = body.map(|b| (b, content_type));
        let (_, body) = self.client.send(Method::POST, url, endpoint, Some(&self.token), body).await?;
        parse(&body)
    }

    async fn delete(&self, url: Url, endpoint: Endpoint) -> Result<()> {
        self.client.send(Method::DELETE, url, endpoint, Some(&self.token), None).await.map(drop)
    }

    fn format(&self) -> Format {
        self.client.format()
    }

    /// A cheap authenticated call that resets EM's 15-minute idle timer.
    pub async fn keep_alive(&self) -> Result<()> {
        let url = self.client.url(&format!("logonSessions/{}", self.id))?;
        self.get(url, Endpoint::LogonSession).await.map(drop)
    }

    /// Logs off (`DELETE /logonSessions/{id}`). Delete mounts first: afterwards they are unreachable.
    pub async fn logoff(&self) -> Result<()> {
        let url = match &self.logoff_href {
            Some(href) => self.client.resolve(href)?,
            None => self.client.url(&format!("logonSessions/{}", self.id))?,
        };
        self.delete(url, Endpoint::Logoff).await
    }

    /// The newest restore point (or replica point) of the VM with this display name.
    pub async fn newest_point(&self, kind: PointKind, vm: &str) -> Result<Option<RestorePoint>> {
        let filter = format!("VmDisplayName=={}", quote_filter_value(vm));
        let query = format!(
            "query?type={}&format=Entities&sortDesc=CreationTime&pageSize=1&page=1&filter={}",
            kind.query_type(),
            utf8_percent_encode(&filter, QUERY_VALUE)
        );
        let doc = self.get(self.client.url(&query)?, Endpoint::Query).await?;
        let points = RestorePoint::decode_query(doc.root(), kind)?;
        // Liberal: should EM ignore sorting, paging or the filter, pick the answer ourselves.
        Ok(points
            .into_iter()
            .filter(|p| p.vm_display_name.as_deref().is_none_or(|n| n.eq_ignore_ascii_case(vm)))
            .max_by_key(|p| p.creation_time))
    }

    /// Starts mounting a restore point for guest file restore. Returns the `MountRestorePoint` task.
    pub async fn start_mount(&self, point: &RestorePoint, os: Option<OsKind>) -> Result<Task> {
        let url = self.client.resolve(&point.mounts_href())?;
        let body = os.map(|os| match self.format() {
            Format::Xml => format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><StartMountSpec xmlns=\"http://www.veeam.com/ent/v1.0\" \
                 xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
                 <OsKind>{}</OsKind></StartMountSpec>",
                os.as_str()
            ),
            Format::Json => format!("{{\"OsKind\":\"{}\"}}", os.as_str()),
        });
        let doc = self.post(url, Endpoint::MountCreate, body.map(String::into_bytes)).await?;
        Task::decode(doc.root())
    }

    /// Reads a task (`GET /tasks/{id}`). Polling is the caller's business.
    pub async fn task(&self, href: &str) -> Result<Task> {
        let doc = self.get(self.client.resolve(href)?, Endpoint::Task).await?;
        Task::decode(doc.root())
    }

    /// The tasks of this logon session (`GET /tasks`: "tasks … created within the currently
    /// existing logon session"). Cleanup reads it when the answer to a mount request was lost.
    pub async fn tasks(&self) -> Result<Vec<Task>> {
        let doc = self.get(self.client.url("tasks")?, Endpoint::TaskList).await?;
        doc.root().items("Tasks", "Task").into_iter().map(Task::decode).collect()
    }

    /// Removes a finished task (housekeeping) or stops a running one.
    pub async fn delete_task(&self, task: &Task) -> Result<()> {
        self.delete(self.client.resolve(task.delete_href())?, Endpoint::TaskDelete).await
    }

    /// Reads a mount.
    pub async fn mount(&self, href: &str) -> Result<Mount> {
        let doc = self.get(self.client.resolve(href)?, Endpoint::MountGet).await?;
        Mount::decode(doc.root())
    }

    /// Follows a finished mount task's `Related` link to the mount.
    ///
    /// The docs show a replica-mount task linking to `/vmRestorePoints/{id}/mounts/1` with
    /// `Type="VmRestorePointMount"` (docs/em-api-notes.md §4.2); whether that is a doc error is unknown.
    /// So if the link as given is not found, the same mount is tried under the point's own
    /// collection.
    pub async fn mount_from_task(&self, task: &Task, kind: PointKind) -> Result<Mount> {
        let related = task
            .related()
            .ok_or_else(|| Error::Decode(format!("finished {} task has no Related link", task.operation)))?;
        match self.mount(&related.href).await {
            Err(Error::NotFound { message }) => {
                let other = if kind == PointKind::Backup { PointKind::Replica } else { PointKind::Backup };
                let needle = format!("/{}/", other.collection());
                if !related.href.contains(&needle) {
                    return Err(Error::NotFound { message });
                }
                let swapped = related.href.replacen(&needle, &format!("/{}/", kind.collection()), 1);
                self.mount(&swapped).await
            }
            other => other,
        }
    }

    /// Lists this session's mounts of a restore point (other sessions' mounts are invisible).
    pub async fn mounts(&self, point: &RestorePoint) -> Result<Vec<Mount>> {
        self.mounts_at(&point.mounts_href(), point.kind).await
    }

    /// Lists this session's mounts given the point's mounts href (as kept in orphan records).
    pub async fn mounts_at(&self, mounts_href: &str, kind: PointKind) -> Result<Vec<Mount>> {
        let doc = self.get(self.client.resolve(mounts_href)?, Endpoint::MountList).await?;
        Mount::decode_list(doc.root(), kind)
    }

    /// Lists the subdirectories of a mounted directory, one page of at most `page_size`.
    pub async fn list_dirs(&self, directory_href: &str, page_size: u32) -> Result<FileSystemEntries> {
        let url = self.client.resolve(directory_href.split('?').next().unwrap_or(directory_href))?;
        let url = with_query(url, &format!("action=listDirs&pageSize={page_size}&page=1"));
        let doc = self.get(url, Endpoint::MountBrowse).await?;
        Ok(FileSystemEntries::decode(doc.root()))
    }

    /// Deletes (unmounts) a mount. EM documents 204; any 2xx is accepted.
    pub async fn delete_mount(&self, href: &str) -> Result<()> {
        self.delete(self.client.resolve(href)?, Endpoint::MountDelete).await
    }

    /// Starts a restore of one guest file from a mount for direct download (nothing is written
    /// to the production VM). Returns the `FileRestoreFromMountPoint` task.
    pub async fn start_download_restore(&self, mount: &Mount, guest_path: &str) -> Result<Task> {
        let mut url = self.client.resolve(&mount.href)?;
        push_guest_path(&mut url, guest_path)?;
        let url = with_query(url, "action=restore");
        let body = match self.format() {
            Format::Xml => "<?xml version=\"1.0\" encoding=\"utf-8\"?><FileRestoreSpec xmlns=\"http://www.veeam.com/ent/v1.0\" \
                 xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
                 <ForDirectDownload/></FileRestoreSpec>"
                .to_owned(),
            Format::Json => "{\"ForDirectDownload\":{}}".to_owned(),
        };
        let doc = self.post(url, Endpoint::FileRestore, Some(body.into_bytes())).await?;
        Task::decode(doc.root())
    }

    /// Downloads a restored file from a task's `Download` link, failing past `max_bytes`.
    pub async fn download(&self, href: &str, max_bytes: usize) -> Result<Bytes> {
        let url = self.client.resolve(href)?;
        let call = Call {
            method: Method::GET,
            url,
            endpoint: Endpoint::Download,
            token: Some(&self.token),
            body: None,
            // The file, not an EM representation: any media type.
            accept: "*/*",
            cap: max_bytes,
        };
        let (_, body) = self.client.call(call).await?;
        Ok(body)
    }

    /// Opens a restore point's guest file system in the catalog
    /// (`POST /catalog/vms/{vm}/vmRestorePoints/{id}?action=browse`). Returns the `BrowseVM` task.
    ///
    /// EM's `guestfs` resources "become available after" this call, so a catalog restore must
    /// browse first, in the same logon session. The reference page says `200 OK`, the scenario
    /// page shows `202` with a task already `Finished`: any 2xx is accepted, and the task is
    /// returned as sent (it may need no polling). No DELETE is documented for a browse.
    pub async fn browse_catalog_point(&self, vm: &str, point_id: &str) -> Result<Task> {
        let url = with_query(self.catalog_point_url(vm, point_id)?, "action=browse");
        let doc = self.post(url, Endpoint::CatalogBrowse, None).await?;
        Task::decode(doc.root())
    }

    /// The ids of a VM's indexed restore points in the catalog
    /// (`GET /catalog/vms/{vm}/vmRestorePoints`); `None` when the catalog does not know the VM
    /// (`404`: its guest files were never indexed). Reads only: nothing is mounted.
    pub async fn catalog_point_ids(&self, vm: &str) -> Result<Option<Vec<String>>> {
        let mut url = self.client.url("catalog/vms")?;
        url.path_segments_mut()
            .map_err(|_| Error::Config("base URL cannot have a path".into()))?
            .pop_if_empty()
            .push(vm)
            .push("vmRestorePoints");
        let doc = match self.get(url, Endpoint::CatalogPoints).await {
            Ok(doc) => doc,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let root = doc.root();
        // XML: `<EntityReferences><Ref …/>`; JSON names the list `Refs`.
        let mut refs = root.items("EntityReferences", "Ref");
        if refs.is_empty() {
            refs = root.items("Refs", "Ref");
        }
        Ok(Some(
            refs.into_iter()
                .filter_map(|r| {
                    let uid = r.str("UID");
                    let from_uid = uid.as_deref().and_then(|u| u.rsplit(':').next()).map(str::to_owned);
                    from_uid.or_else(|| r.str("Href").as_deref().and_then(id_from_href).map(str::to_owned))
                })
                .collect(),
        ))
    }

    /// `…/catalog/vms/{vm}/vmRestorePoints/{id}`, each part one encoded path segment.
    fn catalog_point_url(&self, vm: &str, point_id: &str) -> Result<Url> {
        let mut url = self.client.url("catalog/vms")?;
        url.path_segments_mut()
            .map_err(|_| Error::Config("base URL cannot have a path".into()))?
            .pop_if_empty()
            .push(vm)
            .push("vmRestorePoints")
            .push(point_id);
        Ok(url)
    }

    /// Starts the catalog restore of one guest file **to its original location in the
    /// production VM** (`POST /catalog/vms/{vm}/vmRestorePoints/{id}/guestfs/{path}?action=restore`).
    /// Returns the `RestoreFile` task; its success only means "started".
    pub async fn start_catalog_restore(&self, vm: &str, point_id: &str, guest_path: &str) -> Result<Task> {
        let mut url = self.catalog_point_url(vm, point_id)?;
        push_guest_path(&mut url, &format!("guestfs/{guest_path}"))?;
        let url = with_query(url, "action=restore");
        let doc = self.post(url, Endpoint::CatalogRestore, None).await?;
        Task::decode(doc.root())
    }

    /// Reads a restore session entity (adds `format=Entity` when the href lacks it).
    pub async fn restore_session(&self, href: &str) -> Result<RestoreSession> {
        let mut url = self.client.resolve(href)?;
        if !url.query_pairs().any(|(k, v)| k.eq_ignore_ascii_case("format") && v.eq_ignore_ascii_case("Entity")) {
            url = with_query(url, "format=Entity");
        }
        let doc = self.get(url, Endpoint::RestoreSession).await?;
        RestoreSession::decode(doc.root())
    }

    /// One page of `query?type=RestoreSession&format=Entities` with `filter`, sorted ascending
    /// by `sort_asc`, and the number of pages EM reports (`PagingInfo/@PagesCount`; 1 when
    /// absent). The filter is the caller's to re-apply: EM may ignore parts of it.
    pub async fn restore_sessions_page(
        &self,
        filter: &str,
        sort_asc: &str,
        page: u32,
        page_size: u32,
    ) -> Result<(Vec<RestoreSession>, u32)> {
        let query = format!(
            "query?type=RestoreSession&format=Entities&sortAsc={sort_asc}&pageSize={page_size}&page={page}&filter={}",
            utf8_percent_encode(filter, QUERY_VALUE)
        );
        let doc = self.get(self.client.url(&query)?, Endpoint::Query).await?;
        let root = doc.root();
        let pages = root.child("PagingInfo").and_then(|p| p.str("PagesCount")).and_then(|n| n.parse().ok());
        Ok((RestoreSession::decode_query(root)?, pages.unwrap_or(1)))
    }

    /// File-level restore sessions still `Working` for a VM: how a mount that can no longer be
    /// reached through the API (its logon session expired) still shows up.
    pub async fn working_flr_sessions(&self, vm: &str) -> Result<Vec<RestoreSession>> {
        let filter = format!("Type==FileLevelRestore;State==Working;VmDisplayName=={}", quote_filter_value(vm));
        let query =
            format!("query?type=RestoreSession&format=Entities&filter={}", utf8_percent_encode(&filter, QUERY_VALUE));
        let doc = self.get(self.client.url(&query)?, Endpoint::Query).await?;
        let sessions = RestoreSession::decode_query(doc.root())?;
        // Liberal: re-apply the filter in case EM ignored part of it.
        Ok(sessions
            .into_iter()
            .filter(|s| s.state == RestoreSessionState::Working)
            .filter(|s| s.job_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("FileLevelRestore")))
            .filter(|s| s.vm_display_name.as_deref().is_none_or(|n| n.eq_ignore_ascii_case(vm)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_become_encoded_segments() {
        let mut url = Url::parse("https://em/api/vmRestorePoints/a/mounts/1").unwrap();
        push_guest_path(&mut url, r"C:\canary dir\a#b?.txt").unwrap();
        assert_eq!(url.as_str(), "https://em/api/vmRestorePoints/a/mounts/1/C:/canary%20dir/a%23b%3F.txt");
    }

    #[test]
    fn filter_values_are_quoted_and_escaped() {
        let filter = format!("VmDisplayName=={}", quote_filter_value("my \"vm\" & co"));
        assert_eq!(
            utf8_percent_encode(&filter, QUERY_VALUE).to_string(),
            "VmDisplayName==%22my%20%22%22vm%22%22%20%26%20co%22"
        );
    }
}
