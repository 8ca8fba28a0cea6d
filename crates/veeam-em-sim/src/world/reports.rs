//! The monitoring family other EM tools read: `/reports/summary/*`, `/backupServers`, `/jobs`,
//! `/backupSessions`, `/repositories`. Computed from the inventory's jobs, job sessions,
//! repositories, VMs and restore points. Field names as EM v12 sends them (Linuxfabrik's
//! captures in `reference/em-captures-linuxfabrik/`, the reference pages' element names).

use sha2::Digest;

use super::*;
use crate::render::Link;

/// The one backup server the simulated EM knows.
const SERVER: &str = "vbr01";

/// A stable GUID-shaped id for a named thing (the same across restarts of the simulator).
fn guid(kind: &str, name: &str) -> String {
    let h = hex::encode(sha2::Sha256::digest(format!("{kind}/{name}")));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// One job session with what EM shows of it.
struct JobRun<'a> {
    job: &'a crate::inventory::JobSpec,
    index: usize,
    created: SystemTime,
    ended: Option<SystemTime>,
    result: &'a str,
}

impl World {
    fn server_ref(&self) -> Link {
        let mut l = link(
            "Up",
            Some("BackupServerReference"),
            format!("{}/backupServers/{}", self.base, guid("server", SERVER)),
        );
        l.name = Some(SERVER.into());
        l
    }

    fn job_runs(&self) -> Vec<JobRun<'_>> {
        let now = SystemTime::now();
        let mut runs = Vec::new();
        for job in &self.inventory.jobs {
            for (index, s) in job.sessions.iter().enumerate() {
                let created = now - s.age;
                let ended = s.duration.map(|d| created + d).filter(|end| *end <= now);
                runs.push(JobRun { job, index, created, ended, result: &s.result });
            }
        }
        runs
    }

    fn job_session_entity(&self, run: &JobRun<'_>) -> El {
        let id = guid("session", &format!("{}#{}", run.job.name, run.index));
        let running = run.ended.is_none();
        El::new("BackupJobSession")
            .attr("Type", "BackupJobSession")
            .attr("Href", format!("{}/backupSessions/{id}?format=Entity", self.base))
            .attr("Name", format!("{}@{}", run.job.name, name_time(run.created)))
            .attr("UID", format!("urn:veeam:BackupJobSession:{id}"))
            .links(vec![self.server_ref()])
            .field("JobUid", format!("urn:veeam:Job:{}", guid("job", &run.job.name)))
            .field("JobName", run.job.name.clone())
            .field("JobType", run.job.job_type.clone())
            .field("CreationTimeUTC", rfc3339(run.created))
            .opt_field("EndTimeUTC", run.ended.map(rfc3339))
            .field("State", if running { "Working" } else { "Stopped" })
            .field("Result", if running { "None" } else { run.result })
            .field("Progress", if running { 50 } else { 100 })
            .field("IsRetry", false)
    }

    /// `GET /backupSessions`: references, or entities with `format=Entity`.
    pub(crate) fn backup_sessions(&self, entities: bool) -> Reply {
        let runs = self.job_runs();
        if entities {
            let items = runs.iter().map(|r| self.job_session_entity(r)).collect();
            return Ok(Body::Collection { plural: "BackupJobSessions".into(), items });
        }
        let refs = runs.iter().map(|r| {
            let id = guid("session", &format!("{}#{}", r.job.name, r.index));
            El::new("Ref")
                .attr("Type", "BackupJobSessionReference")
                .attr("Href", format!("{}/backupSessions/{id}", self.base))
                .attr("Name", format!("{}@{}", r.job.name, name_time(r.created)))
                .attr("UID", format!("urn:veeam:BackupJobSession:{id}"))
        });
        Ok(Body::References(refs.collect()))
    }

    /// Rows of `query?type=BackupJobSession`: `(creation time, end time, entity, reference)`.
    pub(super) fn backup_session_rows(&self, keep: super::query::Keep<'_>) -> Result<Vec<super::query::Row>, SimError> {
        let mut rows = Vec::new();
        for r in self.job_runs() {
            let entity = self.job_session_entity(&r);
            let fields = [
                ("jobname", r.job.name.clone()),
                ("jobtype", r.job.job_type.clone()),
                ("result", if r.ended.is_some() { r.result.to_owned() } else { "None".to_owned() }),
                ("state", if r.ended.is_some() { "Stopped".to_owned() } else { "Working".to_owned() }),
                ("creationtime", rfc3339(r.created)),
                ("endtime", r.ended.map(rfc3339).unwrap_or_default()),
            ];
            if keep(&fields)? {
                let id = guid("session", &format!("{}#{}", r.job.name, r.index));
                let reference = El::new("Ref")
                    .attr("Type", "BackupJobSessionReference")
                    .attr("Href", format!("{}/backupSessions/{id}", self.base))
                    .attr("Name", format!("{}@{}", r.job.name, name_time(r.created)));
                rows.push((r.created, r.ended, entity, reference));
            }
        }
        Ok(rows)
    }

    /// `GET /jobs`: references, or entities with `format=Entity`.
    pub(crate) fn jobs(&self, entities: bool) -> Reply {
        let items = self.inventory.jobs.iter().map(|j| {
            let id = guid("job", &j.name);
            let el =
                if entities { El::new("Job").attr("Type", "Job") } else { El::new("Ref").attr("Type", "JobReference") };
            let el = el
                .attr("Href", format!("{}/jobs/{id}", self.base))
                .attr("Name", j.name.clone())
                .attr("UID", format!("urn:veeam:Job:{id}"));
            if entities {
                el.links(vec![self.server_ref()])
                    .field("JobType", j.job_type.clone())
                    .field("Platform", "VMware")
                    .field("Description", format!("Created by veeam-em-sim for {} VM(s).", j.vms.len()))
                    .field("ScheduleConfigured", true)
                    .field("ScheduleEnabled", true)
            } else {
                el
            }
        });
        let items: Vec<El> = items.collect();
        Ok(if entities { Body::Collection { plural: "Jobs".into(), items } } else { Body::References(items) })
    }

    /// `GET /backupServers`: the one backup server.
    pub(crate) fn backup_servers(&self, entities: bool) -> Reply {
        let id = guid("server", SERVER);
        let href = format!("{}/backupServers/{id}", self.base);
        if !entities {
            let r = El::new("Ref").attr("Type", "BackupServerReference").attr("Href", href).attr("Name", SERVER);
            return Ok(Body::References(vec![r.attr("UID", format!("urn:veeam:BackupServer:{id}"))]));
        }
        let server = El::new("BackupServer")
            .attr("Type", "BackupServer")
            .attr("Href", format!("{href}?format=Entity"))
            .attr("Name", SERVER)
            .attr("UID", format!("urn:veeam:BackupServer:{id}"))
            .field("Description", "Simulated Veeam Backup & Replication server")
            .field("Port", 9392)
            .field("Version", "12.3.1.1139");
        Ok(Body::Collection { plural: "BackupServers".into(), items: vec![server] })
    }

    /// `GET /repositories`: references, or entities with `format=Entity`.
    pub(crate) fn repositories(&self, entities: bool) -> Reply {
        let items = self.inventory.repositories.iter().map(|r| {
            let id = guid("repository", &r.name);
            let href = format!("{}/repositories/{id}", self.base);
            if entities {
                El::new("Repository")
                    .attr("Type", "Repository")
                    .attr("Href", format!("{href}?format=Entity"))
                    .attr("Name", r.name.clone())
                    .attr("UID", format!("urn:veeam:Repository:{id}"))
                    .links(vec![self.server_ref()])
                    .field("Capacity", r.capacity_bytes as i64)
                    .field("FreeSpace", r.free_bytes as i64)
                    .field("Kind", r.kind.clone())
            } else {
                El::new("Ref").attr("Type", "RepositoryReference").attr("Href", href).attr("Name", r.name.clone())
            }
        });
        let items: Vec<El> = items.collect();
        Ok(if entities { Body::Collection { plural: "Repositories".into(), items } } else { Body::References(items) })
    }

    /// `GET /reports/summary/{overview,job_statistics,vms_overview,repository}`.
    pub(crate) fn summary(&self, report: &str) -> Reply {
        let stats = Stats { world: self, runs: self.job_runs() };
        let frame = |name: &str| {
            El::new(name).attr("Href", format!("{}/reports/summary/{report}", self.base)).attr("Type", name)
        };
        let el = match report {
            "overview" => stats.overview(frame("OverviewReportFrame")),
            "job_statistics" => stats.job_statistics(frame("JobStatisticsReportFrame")),
            "vms_overview" => stats.vms_overview(frame("VmsOverviewReportFrame")),
            "repository" => {
                let periods = self.inventory.repositories.iter().map(|r| {
                    El::new("Period")
                        .field("Name", r.name.clone())
                        .field("Capacity", r.capacity_bytes as i64)
                        .field("FreeSpace", r.free_bytes as i64)
                        .field("BackupSize", r.capacity_bytes.saturating_sub(r.free_bytes) as i64)
                });
                frame("RepositoryReportFrame").list("Periods", periods.collect())
            }
            other => return Err(err(404, format!("Report {other} not found"))),
        };
        Ok(Body::Entity(el))
    }
}

/// What the summary reports count, from the simulated job runs.
struct Stats<'a> {
    world: &'a World,
    runs: Vec<JobRun<'a>>,
}

impl Stats<'_> {
    fn finished(&self) -> impl Iterator<Item = &JobRun<'_>> {
        self.runs.iter().filter(|r| r.ended.is_some())
    }

    fn count(&self, result: &str) -> i64 {
        self.finished().filter(|r| r.result.eq_ignore_ascii_case(result)).count() as i64
    }

    fn running(&self) -> i64 {
        self.runs.iter().filter(|r| r.ended.is_none()).count() as i64
    }

    fn scheduled(&self, kind: &str) -> i64 {
        self.world.inventory.jobs.iter().filter(|j| j.job_type.eq_ignore_ascii_case(kind)).count() as i64
    }

    /// The latest state of a VM: the result of the newest finished session of a job with it.
    fn latest(&self, vm: &str) -> Option<&str> {
        self.finished()
            .filter(|r| r.job.vms.iter().any(|v| v.eq_ignore_ascii_case(vm)))
            .max_by_key(|r| r.ended)
            .map(|r| r.result)
    }

    fn vm_states(&self, result: &str) -> i64 {
        let vms = &self.world.inventory.vms;
        vms.iter().filter(|v| self.latest(&v.name).is_some_and(|r| r.eq_ignore_ascii_case(result))).count() as i64
    }

    /// The longest finished run (of a job type), in seconds, with its job's name.
    fn longest(&self, kind: Option<&str>) -> (i64, String) {
        self.finished()
            .filter(|r| kind.is_none_or(|k| r.job.job_type.eq_ignore_ascii_case(k)))
            .map(|r| {
                let took = r.ended.and_then(|e| e.duration_since(r.created).ok()).unwrap_or_default();
                (took.as_secs() as i64, r.job.name.clone())
            })
            .max()
            .unwrap_or((0, String::new()))
    }

    fn vms_of(&self, only: Option<&str>) -> HashSet<String> {
        let jobs = self.world.inventory.jobs.iter().filter(|j| only.is_none_or(|k| j.job_type.eq_ignore_ascii_case(k)));
        jobs.flat_map(|j| j.vms.iter().map(|v| v.to_lowercase())).collect()
    }

    fn overview(&self, frame: El) -> El {
        frame
            .field("BackupServers", 1)
            .field("ProxyServers", 1)
            .field("RepositoryServers", self.world.inventory.repositories.len() as i64)
            .field("RunningJobs", self.running())
            .field("ScheduledJobs", self.world.inventory.jobs.len() as i64)
            .field("SuccessfulVmLastestStates", self.vm_states("Success"))
            .field("WarningVmLastestStates", self.vm_states("Warning"))
            .field("FailedVmLastestStates", self.vm_states("Failed"))
    }

    fn job_statistics(&self, frame: El) -> El {
        let (max, _) = self.longest(None);
        let (max_backup, backup_name) = self.longest(Some("Backup"));
        let (max_replica, replica_name) = self.longest(Some("Replica"));
        frame
            .field("RunningJobs", self.running())
            .field("ScheduledJobs", self.world.inventory.jobs.len() as i64)
            .field("ScheduledBackupJobs", self.scheduled("Backup"))
            .field("ScheduledReplicaJobs", self.scheduled("Replica"))
            .field("TotalJobRuns", self.finished().count() as i64)
            .field("SuccessfulJobRuns", self.count("Success"))
            .field("WarningsJobRuns", self.count("Warning"))
            .field("FailedJobRuns", self.count("Failed"))
            .field("MaxJobDuration", max)
            .field("MaxBackupJobDuration", max_backup)
            .field("MaxReplicaJobDuration", max_replica)
            .field("MaxDurationBackupJobName", backup_name)
            .field("MaxDurationReplicaJobName", replica_name)
    }

    /// Sizes are invented: 40 GiB per point, 60 GiB per source VM.
    fn vms_overview(&self, frame: El) -> El {
        let inventory = &self.world.inventory;
        let points = |kind: PointKind| inventory.points.iter().filter(|p| p.kind == kind).count() as i64;
        let backed_up: HashSet<String> =
            inventory.points.iter().filter(|p| p.kind == PointKind::Backup).map(|p| p.vm.to_lowercase()).collect();
        let protected = self.vms_of(None);
        let ok = self.vm_states("Success") + self.vm_states("Warning");
        let percent = if protected.is_empty() { 0 } else { ok * 100 / protected.len() as i64 };
        frame
            .field("ProtectedVms", protected.len() as i64)
            .field("BackedUpVms", backed_up.len() as i64)
            .field("ReplicatedVms", self.vms_of(Some("Replica")).len() as i64)
            .field("RestorePoints", points(PointKind::Backup) + points(PointKind::Replica))
            .field("FullBackupPointsSize", (points(PointKind::Backup) * 40) << 30)
            .field("IncrementalBackupPointsSize", 0)
            .field("ReplicaRestorePointsSize", (points(PointKind::Replica) * 40) << 30)
            .field("SourceVmsSize", (inventory.vms.len() as i64 * 60) << 30)
            .field("SuccessBackupPercents", percent)
    }
}
