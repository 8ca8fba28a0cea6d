// What a user of the mixin changes: selectors, thresholds, runbook links, dashboard settings.
// Override any field: (import 'mixin.libsonnet') + { _config+:: { exporterSelector: 'job="veeam"' } }
{
  _config+:: {
    // The exporter's own scrape job(s): the `up`/`absent` rules and the dashboard's job list.
    exporterSelector: 'job="veeam-restore-exporter"',
    // The runbook (docs/runbook.md, one heading per alert): each alert links to `<url>#<alertname
    // in lower case>`, the dashboard to the page.
    runbookURL: 'https://github.com/veeam-restore-exporter/veeam-restore-exporter/blob/main/docs/runbook.md',
    // Severity labels: `critical` pages, `warning` opens a ticket.
    pageSeverity: 'critical',
    ticketSeverity: 'warning',

    // The probe alerts follow each probe's own interval (veeam_restore_probe_interval_seconds).
    // Warn after this many failed runs in a row, whatever the interval (jitter is at most 10%).
    consecutiveFailures: 2,
    // Page when nothing succeeded for this many intervals plus the probe's timeout.
    noSuccessIntervals: 3,
    // "Stale" when no run finished for this many intervals plus the timeout.
    staleIntervals: 2,
    // "Slow" when a run takes more than this share of its timeout.
    slowRatio: 0.8,
    // The newest restore point of a canary VM older than this: backups may have stopped.
    restorePointMaxAgeHours: 36,
    // Windows of the counter-based alerts.
    logonFailureWindow: '30m',
    fileRestoreWarningWindow: '6h',
    restoreSessionFailedWindow: '24h',
    // How long Enterprise Manager may be unreachable before it pages.
    emUnreachableFor: '15m',

    dashboardUID: 'veeam-restore-health',
    dashboardTitle: 'Veeam restore health',
    dashboardTags: ['veeam', 'veeam-restore-exporter'],
    dashboardRefresh: '1m',
    dashboardTimezone: 'browser',
  },
}
