//! `--preflight`: everything about each target that can be checked without mounting or
//! restoring anything, one line per check, for the first hour with a server we have never seen.
//!
//! Checks run in order, and one that fails skips those that need it (no logon without TLS). The
//! logon is tried once per target: a wrong password tried again and again locks an Active
//! Directory account. Nothing here writes to the state directory, so a running service is no
//! obstacle.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::config::{Config, Target};
use crate::duration;
use crate::em::PointKind;
use crate::probe::{Api, Kind, Spec};
use crate::target::{em_client, vbr_client};

mod tls;

/// Prints check lines as they complete and counts the failed ones.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn pass(&mut self, what: impl std::fmt::Display) {
        println!("  ✔ {what}");
    }

    /// A failed check, and what to do about it.
    fn fail(&mut self, what: impl std::fmt::Display, todo: impl std::fmt::Display) {
        self.failed += 1;
        println!("  ✘ {what}\n      → {todo}");
    }

    /// Something worth knowing that is neither a pass nor a failure (e.g. not checkable).
    fn note(&mut self, what: impl std::fmt::Display) {
        println!("  – {what}");
    }
}

/// Checks every target; exit code 0 when every check passed, 1 otherwise.
pub async fn run(config: &Config) -> ExitCode {
    let mut report = Report::default();
    for target in &config.targets {
        println!("target {} ({} at {})", target.name, api_name(target.api), target.url);
        if reach(target, &mut report).await {
            match target.api {
                Api::Em => em(target, &mut report).await,
                Api::Vbr => vbr(target, &mut report).await,
            }
        }
    }
    match report.failed {
        0 => {
            println!("preflight: every check passed");
            ExitCode::SUCCESS
        }
        n => {
            println!("preflight: {n} check(s) failed");
            ExitCode::FAILURE
        }
    }
}

fn api_name(api: Api) -> &'static str {
    match api {
        Api::Em => "Enterprise Manager",
        Api::Vbr => "Veeam Backup & Replication",
    }
}

/// DNS, TCP and TLS. False when the server cannot be talked to.
async fn reach(target: &Target, r: &mut Report) -> bool {
    let url = &target.url;
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        r.fail(format!("url: {url} names no host"), "set url: to the server's https address");
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let limit = target.request_timeout;
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            r.fail(format!("DNS: cannot resolve {host}: {e}"), "check the host name in url: and this machine's DNS");
            return false;
        }
        Err(_) => {
            r.fail(format!("DNS: no answer for {host} within {}", duration::format(limit)), "check this machine's DNS");
            return false;
        }
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        r.note("DNS: not needed (url: holds an IP address)");
    } else {
        let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
        r.pass(format!("DNS: {host} is {}", shown.join(", ")));
    }

    let mut refusals = Vec::new();
    let mut reached = None;
    for addr in &addrs {
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                reached = Some(*addr);
                break;
            }
            Ok(Err(e)) => refusals.push(format!("{addr}: {e}")),
            Err(_) => refusals.push(format!("{addr}: no answer within {}", duration::format(limit))),
        }
    }
    let Some(addr) = reached else {
        r.fail(
            format!("TCP: cannot connect ({})", refusals.join("; ")),
            format!(
                "is the {} REST API service running, and is port {port} open in the firewalls on the way?",
                api_name(target.api)
            ),
        );
        return false;
    };
    r.pass(format!("TCP: {addr} accepts connections"));

    if url.scheme() != "https" {
        r.note("TLS: not used (http:): the password crosses the network readable; use https: outside tests");
        return true;
    }
    if target.insecure_skip_verify {
        r.note("TLS: certificate not verified (insecure_skip_verify): set ca_file: instead outside tests");
        return true;
    }
    match tls::check(target, host, addr).await {
        tls::Verdict::Trusted => {
            let how = if target.ca_file.is_some() { "with ca_file:" } else { "by this machine's trust store" };
            r.pass(format!("TLS: the certificate is trusted {how}"));
            true
        }
        tls::Verdict::Failed(why) => {
            r.fail(format!("TLS: {why}"), "is url: the server's HTTPS address and port?");
            false
        }
        tls::Verdict::Untrusted { why, certificate } => {
            match certificate {
                Ok(c) => {
                    let until = c.not_after.map(|t| humantime::format_rfc3339_seconds(t).to_string());
                    r.fail(
                        format!(
                            "TLS: the certificate is not trusted ({why})\n      \
                             subject {}; issuer {}{}; names {}; valid until {}\n      SHA-256 {}",
                            c.subject,
                            c.issuer,
                            if c.self_signed { " (self-signed)" } else { "" },
                            if c.names.is_empty() { "none".to_owned() } else { c.names.join(", ") },
                            until.unwrap_or_else(|| "unknown".into()),
                            c.sha256
                        ),
                        c.advice(host, api_short(target.api)),
                    );
                }
                Err(e) => r.fail(
                    format!("TLS: the certificate is not trusted ({why}); it cannot be shown: {e}"),
                    "set ca_file: to a PEM file holding the certificate of the CA that issued the server's certificate",
                ),
            }
            false
        }
    }
}

fn api_short(api: Api) -> &'static str {
    match api {
        Api::Em => "EM",
        Api::Vbr => "VBR",
    }
}

/// How old a point created at `at` is, for humans.
fn age(at: Option<SystemTime>) -> String {
    match at {
        Some(at) => {
            let age = SystemTime::now().duration_since(at).unwrap_or_default();
            let age = Duration::from_secs(age.as_secs() / 60 * 60);
            format!("{} ({} old)", humantime::format_rfc3339_seconds(at), duration::format(age))
        }
        None => "of unknown time".into(),
    }
}

const LOGON_ADVICE: &str = "check username: (DOMAIN\\user or user@domain) and the password file or variable; \
     preflight tried once, but a service retrying a wrong password can lock an Active Directory account";

/// The target's API client with its password; `None`, after a ✘, when either cannot be had.
fn client_of<C, E: std::fmt::Display>(
    target: &Target,
    r: &mut Report,
    build: impl FnOnce(&Target, crate::secret::Secret) -> Result<C, E>,
) -> Option<C> {
    let password = match target.password.read() {
        Ok(p) => p,
        Err(e) => {
            r.fail(format!("password: {e}"), "fix password_file: or password_env:");
            return None;
        }
    };
    build(target, password).map_err(|e| r.fail(format!("client: {e}"), "fix the target's settings")).ok()
}

async fn em(target: &Target, r: &mut Report) {
    let Some(client) = client_of(target, r, |t, p| em_client(t, p, None)) else { return };
    match client.api_root().await {
        Ok(root) if root.versions.is_empty() => r.note("API: EM lists no versions (the client asks for the latest)"),
        Ok(root) => r.pass(format!("API: EM offers versions {}", root.versions.join(", "))),
        Err(e) => {
            return r.fail(
                format!("API: GET {}: {e}", target.url),
                "url: must be EM's REST API root, e.g. https://em.example.com:9398/api/",
            );
        }
    }
    let session = match client.logon().await {
        Ok(s) => s,
        Err(e) => {
            let todo = match e {
                crate::em::Error::LogonFailed { .. } => format!(
                    "{LOGON_ADVICE}; the account needs an EM role (Portal Administrator, Portal User or Restore Operator)"
                ),
                _ => "see EM's answer above".to_owned(),
            };
            return r.fail(format!("logon as {}: {e}", target.username), todo);
        }
    };
    r.pass(format!("logon: as {}", target.username));
    r.note("roles: EM tells an account its roles only if it is a Portal Administrator; the checks below use the rights the probes need");
    for probe in &target.probes {
        em_probe(target, &session, probe, r).await;
    }
    match session.logoff().await {
        Ok(()) => r.pass("logoff"),
        Err(e) => r.fail(format!("logoff: {e}"), "nothing to do: EM ends an idle logon session after 15 minutes"),
    }
}

async fn em_probe(target: &Target, session: &crate::em::Session, probe: &Spec, r: &mut Report) {
    let (name, vm) = (&probe.name, &probe.vm);
    let kind = probe.kind.point();
    let what = match kind {
        PointKind::Backup => "restore point",
        PointKind::Replica => "replica point",
    };
    let point = match session.newest_point(kind, vm).await {
        Ok(Some(point)) => {
            r.pass(format!("probe {name}: VM {vm}: newest {what} {}", age(point.creation_time)));
            point
        }
        Ok(None) => {
            return r.fail(
                format!("probe {name}: EM knows no {what} of a VM named {vm:?}"),
                "check vm: against the VM's name in Veeam; a new job has no point until it ran once",
            );
        }
        Err(e) => return r.fail(format!("probe {name}: looking up VM {vm}: {e}"), access_advice(&e)),
    };
    match &probe.kind {
        Kind::Catalog(_) => match session.catalog_point_ids(vm).await {
            Ok(Some(ids)) if ids.contains(&point.id) => {
                r.pass(format!("probe {name}: VM {vm} is in the catalog, its newest restore point indexed"))
            }
            Ok(Some(_)) => r.fail(
                format!("probe {name}: VM {vm} is in the catalog, but its newest restore point is not indexed"),
                "check guest file system indexing in the backup job, and the Veeam Guest Catalog service",
            ),
            Ok(None) => r.fail(
                format!("probe {name}: VM {vm} is not in the catalog"),
                "enable guest file system indexing in the VM's backup job, and run it",
            ),
            Err(e) => r.fail(format!("probe {name}: reading the catalog of {vm}: {e}"), access_advice(&e)),
        },
        Kind::Download(d) => r.note(format!(
            "probe {name}: {} not checked: EM lists guest files only of a mounted point (--probe.once {}/{name} mounts)",
            d.path, target.name
        )),
        Kind::Mount(_) => {}
    }
}

fn access_advice(e: &crate::em::Error) -> &'static str {
    match e {
        crate::em::Error::Forbidden { .. } => {
            "the account lacks a right: give it the Restore Operator role (or File Restore Operator) in EM"
        }
        _ => "see EM's answer above",
    }
}

async fn vbr(target: &Target, r: &mut Report) {
    let Some(client) = client_of(target, r, |t, p| vbr_client(t, p, None)) else { return };
    let session = match client.logon().await {
        Ok(s) => s,
        Err(e) => {
            let todo = match e {
                veeam_vbr::Error::LogonFailed { .. } => format!(
                    "{LOGON_ADVICE}; the account needs a VBR role that may restore files (e.g. Veeam Restore Operator)"
                ),
                veeam_vbr::Error::UnsupportedVersion { .. } => {
                    "file-level restore through the REST API needs VBR 12.1 or later".to_owned()
                }
                _ => "see VBR's answer above; url: is the server, e.g. https://vbr.example.com:9419".to_owned(),
            };
            return r.fail(format!("logon as {}: {e}", target.username), todo);
        }
    };
    r.pass(format!("logon: as {}", target.username));
    match session.server_info().await {
        Ok(info) => r.pass(format!(
            "API: revision {} agreed with VBR {}{}",
            session.api_version(),
            info.build_version.as_deref().unwrap_or("of unknown build"),
            info.platform.map(|p| format!(" on {p}")).unwrap_or_default()
        )),
        // A restore operator may not read it: the agreed revision is what matters here.
        Err(veeam_vbr::Error::Forbidden { .. }) => r.pass(format!(
            "API: revision {} agreed (VBR shows its build only to administrators: this account is none)",
            session.api_version()
        )),
        Err(e) => r.fail(format!("API: serverInfo: {e}"), "see VBR's answer above"),
    }
    r.note("roles: VBR tells an account its roles only if it may manage security; the checks below use the rights the probes need");
    for probe in &target.probes {
        let (name, vm) = (&probe.name, &probe.vm);
        match session.newest_restore_point(vm).await {
            Ok(point) => {
                let malware = point.malware_status.as_ref().map(|s| format!(", malware status {}", s.as_str()));
                r.pass(format!(
                    "probe {name}: VM {vm}: newest restore point {}{}",
                    age(point.created_at()),
                    malware.unwrap_or_default()
                ));
                match point.malware_status.as_ref().map(|s| s.as_str()) {
                    Some("Infected") => r.fail(
                        format!("probe {name}: VBR marks the newest restore point of {vm} infected"),
                        "investigate with the security team before anyone restores from it; restores of it may be refused",
                    ),
                    Some("Suspicious") => r.note(format!("probe {name}: VBR marks the newest restore point suspicious")),
                    _ => {}
                }
                if point.allows_file_restore() == Some(false) {
                    r.fail(
                        format!("probe {name}: VBR offers no file-level restore of that point"),
                        "check the point's backup (a point of an unsupported platform or an agent backup?)",
                    );
                }
            }
            Err(veeam_vbr::Error::NotFound { .. }) => r.fail(
                format!("probe {name}: VBR knows no restore point of a machine named {vm:?}"),
                "check vm: against the machine's name in VBR; a new job has no point until it ran once",
            ),
            Err(e) => r.fail(format!("probe {name}: looking up {vm}: {e}"), "see VBR's answer above"),
        }
        if let Kind::Download(d) = &probe.kind {
            r.note(format!(
                "probe {name}: {} not checked: VBR lists guest files only of a mounted point (--probe.once {}/{name} mounts)",
                d.path, target.name
            ));
        }
    }
    match session.logout().await {
        Ok(()) => r.pass("logout"),
        Err(e) => r.fail(format!("logout: {e}"), "nothing to do: the token expires by itself"),
    }
}
