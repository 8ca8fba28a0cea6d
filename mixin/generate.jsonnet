// Renders the shipped files from the mixin (`jsonnet -S -m . mixin/generate.jsonnet`, or
// scripts/mixin). Each is committed; scripts/mixin --check fails while one differs.
local mixin = import 'mixin.libsonnet';
local generated = '# Generated from mixin/ by scripts/mixin: edit mixin/*.libsonnet, then run scripts/mixin.\n';
local yaml(value) = std.manifestYamlDoc(value, indent_array_in_object=true, quote_keys=false) + '\n';

{
  'alerts/veeam-restore-exporter.rules.yml':
    generated + '# Tested by alerts/tests/*.yml (promtool test rules).\n' + yaml(mixin.prometheusAlerts),
  'alerts/alertmanager-inhibit.yml':
    generated + '# Merge into the `inhibit_rules` of your alertmanager.yml.\n'
    + yaml({ inhibit_rules: mixin.alertmanagerInhibitRules }),
  'deploy/kubernetes/prometheusrule.yaml':
    generated + '# With a ServiceMonitor the job is the Service name: veeam-restore-exporter.\n'
    + yaml({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: {
        name: 'veeam-restore-exporter',
        labels: { 'app.kubernetes.io/name': 'veeam-restore-exporter' },
      },
      spec: mixin.prometheusAlerts,
    }),
  'dashboards/veeam-restore-health.json':
    std.manifestJsonEx(mixin.grafanaDashboards['veeam-restore-health.json'], '  ') + '\n',
}
