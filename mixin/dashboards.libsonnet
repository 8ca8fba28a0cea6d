// The Grafana dashboard "Veeam restore health", as code: `rows` below lists its rows and their
// panels (builders in lib/panels.libsonnet); g.grid computes every gridPos and id. Settings
// and the job selector come from `_config`. scripts/check-dashboards checks the generated JSON
// against Grafana's schema types; tests/monitoring.rs checks every query.
//
// A new metric or probe kind is one line in its row, e.g.
//   g.timeseries('Mount duration', g.query('veeam_restore_probe_last_duration_seconds{%s, kind="mount"}' % probeSel), 's', 'Last run of each mount probe.'),
// Each builder takes: title, query or list of queries, unit, description, then by name its
// thresholds/mappings/overrides and its size (w out of 24 columns, h); a row wraps at 24.
local g = import 'lib/panels.libsonnet';

// The panel queries' selectors: on the exporter, on a Veeam target, on a probe.
local jobSel = 'job=~"$job"';
local targetSel = 'job=~"$job", target=~"$target"';
local probeSel = 'job=~"$job", target=~"$target", probe=~"$probe"';

local redBelowOne = g.steps('red', [[1, 'green']]);
local okFailed = g.boolMap('FAILED', 'OK');
local upDown = g.boolMap('DOWN', 'UP');

local rows = [
  g.row('Restore health', [
    g.stat('Probe result', g.query('veeam_restore_probe_success{%s}' % probeSel), 'none',
           "Outcome of each probe's last completed run (1 = the restore path worked).",
           thresholds=redBelowOne, mappings=okFailed, w=8),
    g.stat('Server reachable', g.query('veeam_restore_server_up{%s}' % targetSel, '{{target}} ({{api}})'), 'none',
           'Whether the last logon or keep-alive to each target succeeded: Enterprise Manager (em) or Backup & Replication (vbr).',
           thresholds=redBelowOne, mappings=upDown, w=4),
    g.stat('Time since last success',
           g.query('time() - veeam_restore_probe_last_success_timestamp_seconds{%s}' % probeSel), 's',
           'Seconds since each probe last succeeded. Compare with the probe interval.',
           thresholds=g.steps('green', [[3600, 'orange'], [14400, 'red']])),
    g.stat('Orphaned mounts',
           g.query('sum by (target, state) (veeam_restore_orphaned_mounts{%s})' % targetSel, '{{target}} {{state}}'),
           'none', 'Mounts left behind by earlier runs. Unresolved ones need an operator (see the runbook).',
           thresholds=g.steps('green', [[1, 'red']])),
    g.stateTimeline('Probe result history', g.query('veeam_restore_probe_success{%s}' % probeSel), 'none',
                    'Success (green) and failure (red) of each probe over time.',
                    thresholds=redBelowOne, mappings=okFailed),
    g.timeseries('Failures by reason',
                 g.query('sum by (target, probe, reason) (increase(veeam_restore_probe_failures_total{%s}[1h]))' % probeSel,
                         '{{probe}}: {{reason}}'),
                 'short', 'Failed runs per hour, by the reason of the first failure.'),
    g.timeseries('Restore point age',
                 g.query('time() - veeam_restore_point_creation_timestamp_seconds{%s}' % probeSel), 's',
                 'Age of the newest restore point each probe found (EM data may lag VBR by its collection interval).'),
    g.timeseries('Restored content age', [
      g.query('veeam_restore_probe_content_age_seconds{%s}' % probeSel),
      g.query('veeam_restore_probe_content_max_age_seconds{%s}' % probeSel, '{{target}} / {{probe}} max_age'),
    ], 's',
      "Age of the timestamp in each restored canary file (download probes with content_timestamp), against the probe's max_age: proves the backup holds fresh data, not only that it restores."),
    g.timeseries('Failed runs in a row', g.query('veeam_restore_probe_failures_in_a_row{%s}' % probeSel), 'short', 'Failed runs of each probe in a row; the alerts warn at 2. A first failure is re-run after retry_after_failure.'),
    g.timeseries('Malware status of the newest point (VBR)', g.query('veeam_restore_point_malware_status{%s} == 1' % probeSel, '{{target}} / {{probe}}: {{status}}'), 'none', "VBR's malware status of the newest restore point each VBR probe found (infected or suspicious pages)."),
  ]),

  g.row('Latency', [
    g.timeseries('Phase duration, last run',
                 g.query('veeam_restore_probe_phase_last_duration_seconds{%s}' % probeSel, '{{probe}} {{phase}}'),
                 's', 'Duration of each phase in the latest run of each probe.', w=12),
    g.timeseries('Run duration quantiles (6h)', [
      g.query('histogram_quantile(0.5, sum by (le, target, probe) (increase(veeam_restore_probe_duration_seconds_bucket{%s}[6h])))' % probeSel,
              'p50 {{target}} / {{probe}}'),
      g.query('histogram_quantile(0.9, sum by (le, target, probe) (increase(veeam_restore_probe_duration_seconds_bucket{%s}[6h])))' % probeSel,
              'p90 {{target}} / {{probe}}'),
    ], 's',
      'p50 and p90 of whole runs per probe over the last 6 hours, from veeam_restore_probe_duration_seconds (buckets 5 s, 30 s, 2 min, 10 min, 1 h: coarse on purpose, one series per bucket and probe).', w=12),
    g.timeseries('Phase duration by probe kind',
                 g.query('avg by (kind, phase) (veeam_restore_probe_phase_last_duration_seconds{%s})' % probeSel, '{{kind}} {{phase}}'),
                 's', "Mean over the selected probes of each phase's duration in their last run, per probe kind: sub-second lookups and minute-long mounts stay apart.",
                 sort='desc', w=12),
    g.timeseries('Probe duration', g.query('veeam_restore_probe_last_duration_seconds{%s}' % probeSel), 's',
                 "Duration of each probe's last run, cleanup included.", w=12),
  ]),

  g.row('Tasks and restores', [
    g.timeseries('Task outcomes',
                 g.query('sum by (operation, result) (increase(veeam_restore_server_tasks_total{%s}[1h]))' % targetSel, '{{operation}} {{result}}'),
                 'short', 'EM tasks started by probes per hour, by operation and result.'),
    g.timeseries('Restore session progress',
                 g.query('veeam_restore_probe_restore_session_progress_ratio{%s}' % probeSel), 'percentunit',
                 'Live progress of the catalog restore session each probe follows.', min=0, max=1),
    g.timeseries('Restore session results',
                 g.query('sum by (probe, result) (increase(veeam_restore_probe_restore_sessions_total{%s}[6h]))' % probeSel, '{{probe}} {{result}}'),
                 'short', "Catalog restore sessions per 6 hours, by EM's result."),
  ]),

  g.row('Veeam REST APIs', [
    g.timeseries('Request rate',
                 g.query('sum by (endpoint) (rate(veeam_restore_server_requests_total{%s}[$__rate_interval]))' % targetSel, '{{endpoint}}'),
                 'reqps', 'Requests to the EM and VBR REST APIs by endpoint.'),
    g.timeseries('Non-2xx responses',
                 g.query('sum by (endpoint, code) (rate(veeam_restore_server_requests_total{%s, code!~"2.."}[$__rate_interval]))' % targetSel,
                         '{{endpoint}} {{code}}'),
                 'reqps', 'API answers that were not 2xx (code "error" = no answer), by endpoint and code.'),
    g.timeseries('Request latency p90 by endpoint family',
                 g.query('histogram_quantile(0.9, sum by (le, family) (rate(veeam_restore_server_request_duration_seconds_bucket{%s}[$__rate_interval])))' % targetSel,
                         '{{family}}'),
                 's', '90th percentile of API request durations by endpoint family.'),
    g.timeseries('Logons', [
      g.query('sum by (target) (increase(veeam_restore_logons_total{%s}[1h]))' % targetSel, '{{target}} attempts'),
      g.query('sum by (target, reason) (increase(veeam_restore_logon_failures_total{%s}[1h]))' % targetSel, '{{target}} failed: {{reason}}'),
    ], 'short', 'Logon attempts and failures per hour.', w=12),
    g.timeseries('Task and restore-session polls',
                 g.query('sum by (endpoint) (increase(veeam_restore_server_requests_total{%s, endpoint=~"task|restore_session"}[1h]))' % targetSel,
                         '{{endpoint}}'),
                 'short', 'Status polls per hour while waiting for tasks and restore sessions; a rising line with no finished runs points at a task the server never finishes.',
                 w=12),
  ]),

  g.row('Exporter', [
    g.stat('Exporter scraped', g.query('up{%s}' % jobSel, '{{instance}}'), 'none',
           "Prometheus' own up metric for the exporter.", thresholds=redBelowOne, mappings=upDown, w=4),
    g.stat('Config reload', g.query('veeam_restore_exporter_config_last_reload_successful{%s}' % jobSel, '{{instance}}'), 'none',
           'Whether the last configuration load succeeded.', thresholds=redBelowOne, mappings=okFailed, w=4),
    g.table('Build', g.tableQuery('veeam_restore_exporter_build_info{%s}' % jobSel), 'none',
            'Version, revision and Rust version of each exporter instance.',
            transformations=[{ id: 'organize', options: { excludeByName: { Time: true, Value: true, __name__: true } } }],
            w=6, h=6),
    g.timeseries('Memory', g.query('process_resident_memory_bytes{%s}' % jobSel, '{{instance}}'), 'bytes',
                 'Resident memory of the exporter.', w=5, h=6),
    g.timeseries('CPU', g.query('rate(process_cpu_seconds_total{%s}[$__rate_interval])' % jobSel, '{{instance}}'), 'short',
                 'CPU used by the exporter, in cores.', w=5, h=6),
  ]),

  g.row('Restores on Enterprise Manager (restore watch)', [
    g.timeseries('Finished restores by type and result',
                 g.query('sum by (job_type, result) (increase(veeam_restore_watch_sessions_total{%s}[1h]))' % targetSel, '{{job_type}} {{result}}'),
                 'short', "Restore sessions anyone ran on EM that finished, per hour, by job type and result (restore_watch on the target; the canary VMs' own sessions are not counted).",
                 sort='desc', w=12),
    g.stat('Failed restores (24h)',
           g.query('sum by (target) (increase(veeam_restore_watch_sessions_total{%s, result="failed"}[24h]))' % targetSel, '{{target}}'),
           'short', 'Restore sessions on EM that ended Failed in the last 24 hours, started by anyone.',
           thresholds=g.steps('green', [[1, 'red']]), textMode='value_and_name', w=4, h=8),
    g.stat('Running restores', g.query('veeam_restore_watch_running_sessions{%s}' % targetSel, '{{target}}'), 'short',
           "Restore sessions running on EM now (the canary VMs' own not counted).",
           colorMode='none', graphMode='area', textMode='value_and_name', w=4, h=8),
    g.stat('Oldest running restore', g.query('veeam_restore_watch_oldest_running_seconds{%s}' % targetSel, '{{target}}'), 's',
           'How long the oldest running restore session has been running; red past restore_watch.running_max_age.',
           colorMode='value', textMode='value_and_name', w=4, h=8),
  ]),

  g.row('Probes', [
    // One instant query per column, merged on (target, probe, kind); `Value #X` is query X's column.
    g.table('Probes: last result, age, next run, top failure reason (24h)', [
      g.tableQuery('max by (target, probe, kind) (veeam_restore_probe_success{%s})' % probeSel),
      g.tableQuery('max by (target, probe, kind) (time() - veeam_restore_probe_last_run_timestamp_seconds{%s})' % probeSel),
      g.tableQuery('max by (target, probe, kind) (veeam_restore_probe_next_run_timestamp_seconds{%s}) * 1000' % probeSel),
      g.tableQuery('topk by (target, probe) (1, sum by (target, probe, reason) (increase(veeam_restore_probe_failures_total{%s}[1d])))' % probeSel),
    ], 'none',
      'One row per probe: its last result (1 success, 0 failure), how long ago its last run ended, when it runs next, and its most frequent failure reason in the last 24 hours.',
      overrides=[
        g.byName('Value #B', unit='s', displayName='Last run age'),
        g.byName('Value #C', unit='dateTimeAsIso', displayName='Next run'),
        g.byName('Value #A', displayName='Last result'),
        g.byName('Value #D', displayName='Failures (24h)'),
      ],
      transformations=[
        { id: 'merge', options: {} },
        { id: 'organize', options: { excludeByName: { Time: true }, renameByName: { reason: 'Top failure reason' } } },
      ],
      h=9),
  ]),
];

{
  local c = $._config,
  local queryVariable(name, label, query) = {
    name: name,
    label: label,
    type: 'query',
    datasource: { type: 'prometheus', uid: '${datasource}' },
    query: { query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    refresh: 2,  // on time range change
    includeAll: true,
    multi: true,
    allValue: '.+',
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
    regex: '',
    sort: 1,
    hide: 0,
    skipUrlSync: false,
  },
  local defaultLabels = 'kind=~".+"',

  grafanaDashboards+:: {
    'veeam-restore-health.json': {
      id: null,
      uid: c.dashboardUID,
      title: c.dashboardTitle,
      description: 'Do Veeam restores work? Canary mounts and file restores run by veeam-restore-exporter.',
      tags: c.dashboardTags,
      timezone: c.dashboardTimezone,
      editable: true,
      graphTooltip: 1,  // shared crosshair
      refresh: c.dashboardRefresh,
      schemaVersion: 39,
      version: 1,
      fiscalYearStartMonth: 0,
      liveNow: false,
      weekStart: '',
      time: { from: 'now-24h', to: 'now' },
      timepicker: {},
      links: [{
        title: 'Runbook',
        type: 'link',
        url: c.runbookURL,
        icon: 'doc',
        tooltip: 'What each alert means and how to fix it',
        targetBlank: true,
        asDropdown: false,
        includeVars: false,
        keepTime: false,
        tags: [],
      }],
      annotations: { list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
        {
          datasource: { type: 'prometheus', uid: '${datasource}' },
          enable: true,
          hide: false,
          iconColor: 'red',
          name: 'Firing Veeam restore alerts',
          target: g.query('ALERTS{alertname=~"VeeamRestore.*", alertstate="firing"}', '{{alertname}}')
                  { refId: 'Anno', interval: '1m' },
        },
      ] },
      templating: { list: [
        {
          name: 'datasource',
          label: 'Data Source',
          type: 'datasource',
          query: 'prometheus',
          hide: 0,
          includeAll: false,
          multi: false,
          options: [],
          refresh: 1,
          regex: '',
          skipUrlSync: false,
        },
        queryVariable('job', 'Job', 'label_values(veeam_restore_exporter_build_info{%s}, job)' % c.exporterSelector),
        queryVariable('api', 'API', 'label_values(veeam_restore_server_up{%s}, api)' % jobSel),
        queryVariable('target', 'Target', 'label_values(veeam_restore_server_up{%s, api=~"$api"}, target)' % jobSel),
        {
          name: 'labels',
          label: 'Probe labels',
          type: 'textbox',
          query: defaultLabels,
          current: { text: defaultLabels, value: defaultLabels },
          description: 'A label matcher on veeam_restore_probe_info, e.g. site="ams" or tier=~"gold|silver": only probes with those configured labels are shown.',
          hide: 0,
          options: [{ selected: true, text: defaultLabels, value: defaultLabels }],
        },
        queryVariable('probe', 'Probe', 'label_values(veeam_restore_probe_info{%s, $labels}, probe)' % targetSel),
      ] },
      panels: g.grid(rows),
    },
  },
}
