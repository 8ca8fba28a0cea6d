// The veeam-restore-exporter monitoring mixin: alerts, inhibit rules and a dashboard, from one
// `_config`. `prometheusAlerts` and `grafanaDashboards` follow the monitoring-mixins convention,
// so kube-prometheus and other mixin tooling import it as is; mixin/generate.jsonnet renders the
// files this repository ships.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet')
