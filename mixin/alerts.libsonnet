// Prometheus alerting rules. Conventions (monitoring-mixins): CamelCase names with the common
// prefix VeeamRestore, a `severity` label, and `summary`, `description` and `runbook_url`
// annotations. The probe alerts follow each probe's own interval: a failing probe warns after
// `consecutiveFailures` failed runs in a row, and pages (VeeamRestoreNoRecentSuccess) only when
// nothing succeeded for `noSuccessIntervals` intervals plus its timeout, so one bad run of an
// hourly probe pages nobody. While Enterprise Manager is unreachable, the inhibit rules
// (`alertmanagerInhibitRules`, shipped as alerts/alertmanager-inhibit.yml) hold the per-probe
// alerts back.
{
  local c = $._config,
  local alert(name, severity, expr, forDuration, summary, description) = {
    alert: name,
    expr: expr,
    'for': forDuration,
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: '%s#%s' % [c.runbookURL, std.asciiLower(name)],
    },
  },
  // At least N runs failed in a row. The exporter re-runs a probe `retry_after_failure` (5m by
  // default) after a first failure, so the second one comes within minutes, not an interval.
  local failedInARow = |||
    and on (job, instance, target, probe)
    veeam_restore_probe_failures_in_a_row >= %d
  ||| % c.consecutiveFailures,

  prometheusAlerts+:: {
    groups+: [{
      name: 'veeam-restore-exporter',
      rules: [
        alert(
          'VeeamRestoreExporterDown', c.pageSeverity,
          'up{%s} == 0\n' % c.exporterSelector, '10m',
          'The Veeam restore exporter cannot be scraped.',
          'Prometheus has not scraped {{ $labels.instance }} for 10 minutes: nobody is checking that Veeam restores work.',
        ),
        alert(
          'VeeamRestoreExporterAbsent', c.pageSeverity,
          'absent(up{%s})\n' % c.exporterSelector, '15m',
          'The Veeam restore exporter is not scraped at all.',
          'No target of the exporter (%s) exists in Prometheus: nobody is checking that Veeam restores work.' % c.exporterSelector,
        ),
        alert(
          'VeeamRestoreServerUnreachable', c.pageSeverity,
          'veeam_restore_server_up == 0\n', c.emUnreachableFor,
          'A Veeam server (Enterprise Manager or Backup & Replication) does not answer the exporter.',
          'Logon or keep-alive to {{ $labels.target }} (api {{ $labels.api }}) has failed for %s; no restore can be tested.' % c.emUnreachableFor,
        ),
        alert(
          'VeeamRestoreLogonFailing', c.pageSeverity,
          'sum by (job, instance, target, reason) (increase(veeam_restore_logon_failures_total{reason=~"logon_failed|forbidden|config"}[%s])) > 0\n' % c.logonFailureWindow,
          '15m',
          'The exporter cannot log on to a Veeam server.',
          'Logons to {{ $labels.target }} keep failing with reason {{ $labels.reason }}: check the account, its password and its role (run the exporter with --preflight).',
        ),
        alert(
          'VeeamRestoreMountFailing', c.ticketSeverity,
          'veeam_restore_probe_success{kind="mount"} == 0\n' + failedInARow, '0m',
          'Canary mounts of Veeam restore points are failing.',
          "Mount probe {{ $labels.probe }} on {{ $labels.target }} failed at least %d times in a row: guest file restores from this VM's backups would fail too." % c.consecutiveFailures,
        ),
        alert(
          'VeeamRestoreFileRestoreFailing', c.ticketSeverity,
          'veeam_restore_probe_success{kind="file_restore"} == 0\n' + failedInARow, '0m',
          'Canary file restores from Veeam backups are failing.',
          'File-restore probe {{ $labels.probe }} on {{ $labels.target }} failed at least %d times in a row (task failure, restore session Failed or wrong file contents).' % c.consecutiveFailures,
        ),
        alert(
          'VeeamRestoreFileRestoreWarning', c.ticketSeverity,
          'sum by (job, instance, target, probe) (increase(veeam_restore_probe_restore_sessions_total{result="warning"}[%s])) > 0\n' % c.fileRestoreWarningWindow,
          '15m',
          'Veeam finished canary file restores with warnings.',
          'Restore sessions of probe {{ $labels.probe }} on {{ $labels.target }} ended with result Warning in the last %s.' % c.fileRestoreWarningWindow,
        ),
        alert(
          'VeeamRestoreProbeStale', c.ticketSeverity,
          'time() - veeam_restore_probe_last_run_timestamp_seconds > %d * veeam_restore_probe_interval_seconds + veeam_restore_probe_timeout_seconds\n' % c.staleIntervals,
          '15m',
          'A Veeam restore probe has stopped running.',
          'Probe {{ $labels.probe }} on {{ $labels.target }} has not finished a run for {{ $value | humanizeDuration }}.',
        ),
        alert(
          'VeeamRestoreProbeNeverRan', c.ticketSeverity,
          'veeam_restore_probe_interval_seconds unless veeam_restore_probe_last_run_timestamp_seconds\n', '1h',
          'A Veeam restore probe has never finished a run.',
          'Probe {{ $labels.probe }} on {{ $labels.target }} is configured but has not finished a single run in an hour.',
        ),
        alert(
          'VeeamRestoreNoRecentSuccess', c.pageSeverity,
          |||
            (time() - veeam_restore_probe_last_success_timestamp_seconds > %d * veeam_restore_probe_interval_seconds + veeam_restore_probe_timeout_seconds)
            or
            (sum without (result) (veeam_restore_probe_runs_total{result!="cancelled"}) > 0 unless veeam_restore_probe_last_success_timestamp_seconds)
          ||| % c.noSuccessIntervals,
          '30m',
          'No Veeam restore probe has succeeded for several intervals.',
          'Probe {{ $labels.probe }} on {{ $labels.target }} has not succeeded for more than %d intervals (or never has): restores from this VM are unproven.' % c.noSuccessIntervals,
        ),
        alert(
          'VeeamRestoreProbeSlow', c.ticketSeverity,
          'veeam_restore_probe_last_duration_seconds > %g * veeam_restore_probe_timeout_seconds\n' % c.slowRatio,
          '1h',
          'A Veeam restore probe is close to its time budget.',
          'Probe {{ $labels.probe }} on {{ $labels.target }} took {{ $value | humanizeDuration }}, more than %d%% of its configured timeout.' % std.floor(c.slowRatio * 100 + 0.5),
        ),
        alert(
          'VeeamRestoreOrphanedMountUnresolved', c.ticketSeverity,
          'veeam_restore_orphaned_mounts{state="unresolved"} > 0\n', '15m',
          'A canary mount was left behind and the API cannot remove it.',
          '{{ $value }} mount(s) on {{ $labels.target }} belong to an expired logon session; an operator must stop them in the Veeam console.',
        ),
        alert(
          'VeeamRestoreOrphanedMountCleanupFailing', c.ticketSeverity,
          'veeam_restore_orphaned_mounts{state="retrying"} > 0\n', '1h',
          'Leftover canary mounts cannot be cleaned up.',
          '{{ $value }} mount(s) left by earlier runs on {{ $labels.target }} could not be deleted for an hour.',
        ),
        alert(
          'VeeamRestorePointTooOld', c.ticketSeverity,
          'time() - veeam_restore_point_creation_timestamp_seconds > %d * 3600\n' % c.restorePointMaxAgeHours, '30m',
          'The newest Veeam restore point of a canary VM is old.',
          'The newest restore point probe {{ $labels.probe }} found on {{ $labels.target }} is {{ $value | humanizeDuration }} old: backups of this VM may have stopped.',
        ),
        alert(
          'VeeamRestorePointMalwareDetected', c.pageSeverity,
          'veeam_restore_point_malware_status{status=~"infected|suspicious"} == 1\n', '0m',
          'Veeam marks the newest restore point of a canary VM as infected or suspicious.',
          'VBR marks the newest restore point probe {{ $labels.probe }} found on {{ $labels.target }} as {{ $labels.status }}: restoring from it may bring malware back, and other VMs of the same backups may be affected.',
        ),
        alert(
          'VeeamRestoreContentStale', c.ticketSeverity,
          'veeam_restore_probe_content_age_seconds > on (job, instance, target, probe) veeam_restore_probe_content_max_age_seconds\n', '10m',
          'A restored canary file holds old data.',
          'The canary file probe {{ $labels.probe }} restored from {{ $labels.target }} was written {{ $value | humanizeDuration }} before it was read: the backup may hold old data (stuck snapshot, stopped backup copy) or the task writing it stopped.',
        ),
        alert(
          'VeeamRestoreSessionFailed', c.ticketSeverity,
          'sum by (job, instance, target, job_type) (increase(veeam_restore_watch_sessions_total{result="failed"}[%s])) >= 1\n' % c.restoreSessionFailedWindow,
          '10m',
          'A restore on Veeam Enterprise Manager failed in the last %s.' % c.restoreSessionFailedWindow,
          "A {{ $labels.job_type }} restore on {{ $labels.target }} ended Failed in the last %s (started by anyone; the canary VMs' own restores are not counted)." % c.restoreSessionFailedWindow,
        ),
        alert(
          'VeeamRestoreSessionRunningLong', c.ticketSeverity,
          'veeam_restore_watch_oldest_running_seconds > on (job, instance, target) veeam_restore_watch_running_max_age_seconds\n', '15m',
          'A restore on Veeam Enterprise Manager has been running for a long time.',
          'The oldest running restore on {{ $labels.target }} has been running for {{ $value | humanizeDuration }}, longer than restore_watch.running_max_age: it may be stuck.',
        ),
        alert(
          'VeeamRestoreExporterConfigReloadFailed', c.ticketSeverity,
          'veeam_restore_exporter_config_last_reload_successful == 0\n', '10m',
          'The Veeam restore exporter could not load its new configuration.',
          'The last configuration reload of {{ $labels.instance }} failed; the previous configuration is still in force.',
        ),
      ],
    }],
  },

  // Alertmanager `inhibit_rules`: page once for the cause, not once per probe.
  alertmanagerInhibitRules+:: [
    {
      // While EM is unreachable (or the exporter cannot log on), every probe of that EM fails
      // for the same reason.
      source_matchers: ['alertname =~ "VeeamRestoreServerUnreachable|VeeamRestoreLogonFailing"'],
      target_matchers: ['alertname =~ "VeeamRestoreMountFailing|VeeamRestoreFileRestoreFailing|VeeamRestoreNoRecentSuccess|VeeamRestoreProbeSlow|VeeamRestoreSessionRunningLong"'],
      equal: ['job', 'instance', 'target'],
    },
    {
      // The exporter down or absent says everything about its probes.
      source_matchers: ['alertname =~ "VeeamRestoreExporterDown|VeeamRestoreExporterAbsent"'],
      target_matchers: ['alertname =~ "VeeamRestore.+"', 'alertname !~ "VeeamRestoreExporterDown|VeeamRestoreExporterAbsent"'],
      equal: ['job'],
    },
  ],
}
