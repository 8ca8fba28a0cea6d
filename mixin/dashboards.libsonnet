// The Grafana dashboard "Veeam restore health". Panels as Grafana stores them (the file was
// exported from Grafana, then its settings were taken from `_config`). scripts/check-dashboards
// checks the generated JSON against Grafana's schema types; tests/monitoring.rs checks every query.
{
  local c = $._config,
  local jobQuery = 'label_values(veeam_restore_exporter_build_info{%s}, job)' % c.exporterSelector,

  grafanaDashboards+:: {
    'veeam-restore-health.json': {
      "id": null,
      "uid": c.dashboardUID,
      "title": c.dashboardTitle,
      "description": "Do Veeam restores work? Canary mounts and file restores run by veeam-restore-exporter.",
      "tags": c.dashboardTags,
      "timezone": c.dashboardTimezone,
      "editable": true,
      "graphTooltip": 1,
      "refresh": c.dashboardRefresh,
      "schemaVersion": 39,
      "version": 1,
      "fiscalYearStartMonth": 0,
      "liveNow": false,
      "weekStart": "",
      "time": {
        "from": "now-24h",
        "to": "now"
      },
      "timepicker": {},
      "links": [
        {
          "title": "Runbook",
          "type": "link",
          "url": c.runbookURL,
          "icon": "doc",
          "tooltip": "What each alert means and how to fix it",
          "targetBlank": true,
          "asDropdown": false,
          "includeVars": false,
          "keepTime": false,
          "tags": []
        }
      ],
      "annotations": {
        "list": [
          {
            "builtIn": 1,
            "datasource": {
              "type": "grafana",
              "uid": "-- Grafana --"
            },
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard"
          },
          {
            "datasource": {
              "type": "prometheus",
              "uid": "${datasource}"
            },
            "enable": true,
            "hide": false,
            "iconColor": "red",
            "name": "Firing Veeam restore alerts",
            "target": {
              "refId": "Anno",
              "expr": "ALERTS{alertname=~\"VeeamRestore.*\", alertstate=\"firing\"}",
              "interval": "1m",
              "legendFormat": "{{alertname}}",
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              }
            }
          }
        ]
      },
      "templating": {
        "list": [
          {
            "name": "datasource",
            "label": "Data Source",
            "type": "datasource",
            "query": "prometheus",
            "hide": 0,
            "includeAll": false,
            "multi": false,
            "options": [],
            "refresh": 1,
            "regex": "",
            "skipUrlSync": false
          },
          {
            "name": "job",
            "label": "Job",
            "type": "query",
            "datasource": {
              "type": "prometheus",
              "uid": "${datasource}"
            },
            "query": {
              "query": jobQuery,
              "refId": "PrometheusVariableQueryEditor-VariableQuery"
            },
            "refresh": 2,
            "includeAll": true,
            "multi": true,
            "allValue": ".+",
            "current": {
              "selected": true,
              "text": [
                "All"
              ],
              "value": [
                "$__all"
              ]
            },
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
            "skipUrlSync": false
          },
          {
            "name": "target",
            "label": "Target",
            "type": "query",
            "datasource": {
              "type": "prometheus",
              "uid": "${datasource}"
            },
            "query": {
              "query": "label_values(veeam_restore_em_up{job=~\"$job\"}, target)",
              "refId": "PrometheusVariableQueryEditor-VariableQuery"
            },
            "refresh": 2,
            "includeAll": true,
            "multi": true,
            "allValue": ".+",
            "current": {
              "selected": true,
              "text": [
                "All"
              ],
              "value": [
                "$__all"
              ]
            },
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
            "skipUrlSync": false
          },
          {
            "name": "labels",
            "label": "Probe labels",
            "type": "textbox",
            "query": "kind=~\".+\"",
            "current": {
              "text": "kind=~\".+\"",
              "value": "kind=~\".+\""
            },
            "description": "A label matcher on veeam_restore_probe_info, e.g. site=\"ams\" or tier=~\"gold|silver\": only probes with those configured labels are shown.",
            "hide": 0,
            "options": [
              {
                "selected": true,
                "text": "kind=~\".+\"",
                "value": "kind=~\".+\""
              }
            ]
          },
          {
            "name": "probe",
            "label": "Probe",
            "type": "query",
            "datasource": {
              "type": "prometheus",
              "uid": "${datasource}"
            },
            "query": {
              "query": "label_values(veeam_restore_probe_info{job=~\"$job\", target=~\"$target\", $labels}, probe)",
              "refId": "PrometheusVariableQueryEditor-VariableQuery"
            },
            "refresh": 2,
            "includeAll": true,
            "multi": true,
            "allValue": ".+",
            "current": {
              "selected": true,
              "text": [
                "All"
              ],
              "value": [
                "$__all"
              ]
            },
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
            "skipUrlSync": false
          }
        ]
      },
      "panels": [
        {
          "type": "row",
          "title": "Restore health",
          "id": 1,
          "collapsed": false,
          "gridPos": {
            "h": 1,
            "w": 24,
            "x": 0,
            "y": 0
          },
          "panels": []
        },
        {
          "type": "stat",
          "title": "Probe result",
          "description": "Outcome of each probe's last completed run (1 = the restore path worked).",
          "id": 2,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 8,
            "x": 0,
            "y": 1
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none",
              "mappings": [
                {
                  "type": "value",
                  "options": {
                    "0": {
                      "text": "FAILED",
                      "color": "red",
                      "index": 0
                    },
                    "1": {
                      "text": "OK",
                      "color": "green",
                      "index": 1
                    }
                  }
                }
              ],
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "red",
                    "value": null
                  },
                  {
                    "color": "green",
                    "value": 1
                  }
                ]
              }
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
            "wideLayout": true,
            "showPercentChange": false
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_probe_success{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}}"
            }
          ]
        },
        {
          "type": "stat",
          "title": "Enterprise Manager reachable",
          "description": "Whether the last logon or keep-alive to EM succeeded.",
          "id": 3,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 4,
            "x": 8,
            "y": 1
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none",
              "mappings": [
                {
                  "type": "value",
                  "options": {
                    "0": {
                      "text": "DOWN",
                      "color": "red",
                      "index": 0
                    },
                    "1": {
                      "text": "UP",
                      "color": "green",
                      "index": 1
                    }
                  }
                }
              ],
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "red",
                    "value": null
                  },
                  {
                    "color": "green",
                    "value": 1
                  }
                ]
              }
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
            "wideLayout": true,
            "showPercentChange": false
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_em_up{job=~\"$job\", target=~\"$target\"}",
              "legendFormat": "{{target}}"
            }
          ]
        },
        {
          "type": "stat",
          "title": "Time since last success",
          "description": "Seconds since each probe last succeeded. Compare with the probe interval.",
          "id": 4,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 6,
            "x": 12,
            "y": 1
          },
          "fieldConfig": {
            "defaults": {
              "unit": "s",
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "green",
                    "value": null
                  },
                  {
                    "color": "orange",
                    "value": 3600
                  },
                  {
                    "color": "red",
                    "value": 14400
                  }
                ]
              }
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
            "wideLayout": true,
            "showPercentChange": false
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "time() - veeam_restore_probe_last_success_timestamp_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}}"
            }
          ]
        },
        {
          "type": "stat",
          "title": "Orphaned mounts",
          "description": "Mounts left behind by earlier runs. Unresolved ones need an operator (see the runbook).",
          "id": 5,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 6,
            "x": 18,
            "y": 1
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none",
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "green",
                    "value": null
                  },
                  {
                    "color": "red",
                    "value": 1
                  }
                ]
              }
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
            "wideLayout": true,
            "showPercentChange": false
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (target, state) (veeam_restore_orphaned_mounts{job=~\"$job\", target=~\"$target\"})",
              "legendFormat": "{{target}} {{state}}"
            }
          ]
        },
        {
          "type": "state-timeline",
          "title": "Probe result history",
          "description": "Success (green) and failure (red) of each probe over time.",
          "id": 6,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 24,
            "x": 0,
            "y": 7
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none",
              "mappings": [
                {
                  "type": "value",
                  "options": {
                    "0": {
                      "text": "FAILED",
                      "color": "red",
                      "index": 0
                    },
                    "1": {
                      "text": "OK",
                      "color": "green",
                      "index": 1
                    }
                  }
                }
              ],
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "red",
                    "value": null
                  },
                  {
                    "color": "green",
                    "value": 1
                  }
                ]
              },
              "color": {
                "mode": "thresholds"
              }
            },
            "overrides": []
          },
          "options": {
            "showValue": "never",
            "mergeValues": true,
            "rowHeight": 0.9,
            "alignValue": "left",
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": false
            },
            "tooltip": {
              "mode": "single",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_probe_success{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Failures by reason",
          "description": "Failed runs per hour, by the reason of the first failure.",
          "id": 7,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 0,
            "y": 13
          },
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (target, probe, reason) (increase(veeam_restore_probe_failures_total{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}[1h]))",
              "legendFormat": "{{probe}}: {{reason}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Restore point age",
          "description": "Age of the newest restore point each probe found (EM data may lag VBR by its collection interval).",
          "id": 8,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 8,
            "y": 13
          },
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "time() - veeam_restore_point_creation_timestamp_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Restored content age",
          "description": "Age of the timestamp in each restored canary file (download probes with content_timestamp), against the probe's max_age: proves the backup holds fresh data, not only that it restores.",
          "id": 30,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 16,
            "y": 13
          },
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_probe_content_age_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}}"
            },
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "B",
              "expr": "veeam_restore_probe_content_max_age_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}} max_age"
            }
          ]
        },
        {
          "type": "row",
          "title": "Latency",
          "id": 9,
          "collapsed": false,
          "gridPos": {
            "h": 1,
            "w": 24,
            "x": 0,
            "y": 21
          },
          "panels": []
        },
        {
          "type": "timeseries",
          "title": "Phase duration, last run",
          "description": "Duration of each phase in the latest run of each probe.",
          "id": 10,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 12,
            "x": 0,
            "y": 22
          },
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_probe_phase_last_duration_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{probe}} {{phase}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Run duration quantiles (6h)",
          "description": "p50 and p90 of whole runs per probe over the last 6 hours, from veeam_restore_probe_duration_seconds (buckets 5 s, 30 s, 2 min, 10 min, 1 h: coarse on purpose, one series per bucket and probe).",
          "id": 11,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 12,
            "x": 12,
            "y": 22
          },
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "histogram_quantile(0.5, sum by (le, target, probe) (increase(veeam_restore_probe_duration_seconds_bucket{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}[6h])))",
              "legendFormat": "p50 {{target}} / {{probe}}"
            },
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "B",
              "expr": "histogram_quantile(0.9, sum by (le, target, probe) (increase(veeam_restore_probe_duration_seconds_bucket{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}[6h])))",
              "legendFormat": "p90 {{target}} / {{probe}}"
            }
          ]
        },
        {
          "id": 12,
          "type": "timeseries",
          "title": "Phase duration by probe kind",
          "gridPos": {
            "h": 8,
            "w": 12,
            "x": 0,
            "y": 30
          },
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "description": "Mean over the selected probes of each phase's duration in their last run, per probe kind: sub-second lookups and minute-long mounts stay apart.",
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "desc"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "avg by (kind, phase) (veeam_restore_probe_phase_last_duration_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"})",
              "legendFormat": "{{kind}} {{phase}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Probe duration",
          "description": "Duration of each probe's last run, cleanup included.",
          "id": 13,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 12,
            "x": 12,
            "y": 30
          },
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_probe_last_duration_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}}"
            }
          ]
        },
        {
          "type": "row",
          "title": "Tasks and restores",
          "id": 14,
          "collapsed": false,
          "gridPos": {
            "h": 1,
            "w": 24,
            "x": 0,
            "y": 38
          },
          "panels": []
        },
        {
          "type": "timeseries",
          "title": "Task outcomes",
          "description": "EM tasks started by probes per hour, by operation and result.",
          "id": 15,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 0,
            "y": 39
          },
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (operation, result) (increase(veeam_restore_em_tasks_total{job=~\"$job\", target=~\"$target\"}[1h]))",
              "legendFormat": "{{operation}} {{result}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Restore session progress",
          "description": "Live progress of the catalog restore session each probe follows.",
          "id": 16,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 8,
            "y": 39
          },
          "fieldConfig": {
            "defaults": {
              "unit": "percentunit",
              "min": 0,
              "max": 1
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_probe_restore_session_progress_ratio{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}",
              "legendFormat": "{{target}} / {{probe}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Restore session results",
          "description": "Catalog restore sessions per 6 hours, by EM's result.",
          "id": 17,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 16,
            "y": 39
          },
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (probe, result) (increase(veeam_restore_probe_restore_sessions_total{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}[6h]))",
              "legendFormat": "{{probe}} {{result}}"
            }
          ]
        },
        {
          "type": "row",
          "title": "Enterprise Manager API",
          "id": 18,
          "collapsed": false,
          "gridPos": {
            "h": 1,
            "w": 24,
            "x": 0,
            "y": 47
          },
          "panels": []
        },
        {
          "type": "timeseries",
          "title": "Request rate",
          "description": "Requests to the EM REST API by endpoint.",
          "id": 19,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 0,
            "y": 48
          },
          "fieldConfig": {
            "defaults": {
              "unit": "reqps"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (endpoint) (rate(veeam_restore_em_requests_total{job=~\"$job\", target=~\"$target\"}[$__rate_interval]))",
              "legendFormat": "{{endpoint}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Non-2xx responses",
          "description": "EM API answers that were not 2xx (code \"error\" = no answer), by endpoint and code.",
          "id": 20,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 8,
            "y": 48
          },
          "fieldConfig": {
            "defaults": {
              "unit": "reqps"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (endpoint, code) (rate(veeam_restore_em_requests_total{job=~\"$job\", target=~\"$target\", code!~\"2..\"}[$__rate_interval]))",
              "legendFormat": "{{endpoint}} {{code}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Request latency p90 by endpoint family",
          "description": "90th percentile of EM API request durations by endpoint.",
          "id": 21,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 8,
            "x": 16,
            "y": 48
          },
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "histogram_quantile(0.9, sum by (le, family) (rate(veeam_restore_em_request_duration_seconds_bucket{job=~\"$job\", target=~\"$target\"}[$__rate_interval])))",
              "legendFormat": "{{family}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Logons",
          "description": "Logon attempts and failures per hour.",
          "id": 22,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 12,
            "x": 0,
            "y": 56
          },
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (target) (increase(veeam_restore_em_logons_total{job=~\"$job\", target=~\"$target\"}[1h]))",
              "legendFormat": "{{target}} attempts"
            },
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "B",
              "expr": "sum by (target, reason) (increase(veeam_restore_em_logon_failures_total{job=~\"$job\", target=~\"$target\"}[1h]))",
              "legendFormat": "{{target}} failed: {{reason}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Task and restore-session polls",
          "description": "Status polls per hour while waiting for EM tasks and catalog restore sessions; a rising line with no finished runs points at a task EM never finishes.",
          "id": 23,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 8,
            "w": 12,
            "x": 12,
            "y": 56
          },
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (endpoint) (increase(veeam_restore_em_requests_total{job=~\"$job\", target=~\"$target\", endpoint=~\"task|restore_session\"}[1h]))",
              "legendFormat": "{{endpoint}}"
            }
          ]
        },
        {
          "type": "row",
          "title": "Exporter",
          "id": 24,
          "collapsed": false,
          "gridPos": {
            "h": 1,
            "w": 24,
            "x": 0,
            "y": 64
          },
          "panels": []
        },
        {
          "type": "stat",
          "title": "Exporter scraped",
          "description": "Prometheus' own up metric for the exporter.",
          "id": 25,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 4,
            "x": 0,
            "y": 65
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none",
              "mappings": [
                {
                  "type": "value",
                  "options": {
                    "0": {
                      "text": "DOWN",
                      "color": "red",
                      "index": 0
                    },
                    "1": {
                      "text": "UP",
                      "color": "green",
                      "index": 1
                    }
                  }
                }
              ],
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "red",
                    "value": null
                  },
                  {
                    "color": "green",
                    "value": 1
                  }
                ]
              }
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
            "wideLayout": true,
            "showPercentChange": false
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "up{job=~\"$job\"}",
              "legendFormat": "{{instance}}"
            }
          ]
        },
        {
          "type": "stat",
          "title": "Config reload",
          "description": "Whether the last configuration load succeeded.",
          "id": 26,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 4,
            "x": 4,
            "y": 65
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none",
              "mappings": [
                {
                  "type": "value",
                  "options": {
                    "0": {
                      "text": "FAILED",
                      "color": "red",
                      "index": 0
                    },
                    "1": {
                      "text": "OK",
                      "color": "green",
                      "index": 1
                    }
                  }
                }
              ],
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "red",
                    "value": null
                  },
                  {
                    "color": "green",
                    "value": 1
                  }
                ]
              }
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
            "wideLayout": true,
            "showPercentChange": false
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_exporter_config_last_reload_successful{job=~\"$job\"}",
              "legendFormat": "{{instance}}"
            }
          ]
        },
        {
          "type": "table",
          "title": "Build",
          "description": "Version, revision and Rust version of each exporter instance.",
          "id": 27,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 6,
            "x": 8,
            "y": 65
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none"
            },
            "overrides": []
          },
          "options": {
            "showHeader": true,
            "cellHeight": "sm",
            "footer": {
              "show": false,
              "reducer": [
                "sum"
              ],
              "countRows": false,
              "fields": ""
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_exporter_build_info{job=~\"$job\"}",
              "legendFormat": "",
              "instant": true,
              "format": "table"
            }
          ],
          "transformations": [
            {
              "id": "organize",
              "options": {
                "excludeByName": {
                  "Time": true,
                  "Value": true,
                  "__name__": true
                }
              }
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "Memory",
          "description": "Resident memory of the exporter.",
          "id": 28,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 5,
            "x": 14,
            "y": 65
          },
          "fieldConfig": {
            "defaults": {
              "unit": "bytes"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "process_resident_memory_bytes{job=~\"$job\"}",
              "legendFormat": "{{instance}}"
            }
          ]
        },
        {
          "type": "timeseries",
          "title": "CPU",
          "description": "CPU used by the exporter, in cores.",
          "id": 29,
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 6,
            "w": 5,
            "x": 19,
            "y": 65
          },
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "none"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "rate(process_cpu_seconds_total{job=~\"$job\"}[$__rate_interval])",
              "legendFormat": "{{instance}}"
            }
          ]
        },
        {
          "id": 31,
          "type": "row",
          "title": "Restores on Enterprise Manager (restore watch)",
          "collapsed": false,
          "gridPos": {
            "h": 1,
            "w": 24,
            "x": 0,
            "y": 71
          },
          "panels": []
        },
        {
          "id": 32,
          "type": "timeseries",
          "title": "Finished restores by type and result",
          "gridPos": {
            "h": 8,
            "w": 12,
            "x": 0,
            "y": 72
          },
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "description": "Restore sessions anyone ran on EM that finished, per hour, by job type and result (restore_watch on the target; the canary VMs' own sessions are not counted).",
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "legend": {
              "displayMode": "list",
              "placement": "bottom",
              "showLegend": true
            },
            "tooltip": {
              "mode": "multi",
              "sort": "desc"
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (job_type, result) (increase(veeam_restore_watch_sessions_total{job=~\"$job\", target=~\"$target\"}[1h]))",
              "legendFormat": "{{job_type}} {{result}}"
            }
          ]
        },
        {
          "id": 33,
          "type": "stat",
          "title": "Failed restores (24h)",
          "gridPos": {
            "h": 8,
            "w": 4,
            "x": 12,
            "y": 72
          },
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "description": "Restore sessions on EM that ended Failed in the last 24 hours, started by anyone.",
          "fieldConfig": {
            "defaults": {
              "unit": "short",
              "thresholds": {
                "mode": "absolute",
                "steps": [
                  {
                    "color": "green",
                    "value": null
                  },
                  {
                    "color": "red",
                    "value": 1
                  }
                ]
              }
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name"
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "sum by (target) (increase(veeam_restore_watch_sessions_total{job=~\"$job\", target=~\"$target\", result=\"failed\"}[24h]))",
              "legendFormat": "{{target}}"
            }
          ]
        },
        {
          "id": 34,
          "type": "stat",
          "title": "Running restores",
          "gridPos": {
            "h": 8,
            "w": 4,
            "x": 16,
            "y": 72
          },
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "description": "Restore sessions running on EM now (the canary VMs' own not counted).",
          "fieldConfig": {
            "defaults": {
              "unit": "short"
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "none",
            "graphMode": "area",
            "textMode": "value_and_name"
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_watch_running_sessions{job=~\"$job\", target=~\"$target\"}",
              "legendFormat": "{{target}}"
            }
          ]
        },
        {
          "id": 35,
          "type": "stat",
          "title": "Oldest running restore",
          "gridPos": {
            "h": 8,
            "w": 4,
            "x": 20,
            "y": 72
          },
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "description": "How long the oldest running restore session has been running; red past restore_watch.running_max_age.",
          "fieldConfig": {
            "defaults": {
              "unit": "s"
            },
            "overrides": []
          },
          "options": {
            "reduceOptions": {
              "calcs": [
                "lastNotNull"
              ],
              "fields": "",
              "values": false
            },
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name"
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "veeam_restore_watch_oldest_running_seconds{job=~\"$job\", target=~\"$target\"}",
              "legendFormat": "{{target}}"
            }
          ]
        },
        {
          "id": 36,
          "type": "row",
          "title": "Probes",
          "collapsed": false,
          "gridPos": {
            "h": 1,
            "w": 24,
            "x": 0,
            "y": 80
          },
          "panels": []
        },
        {
          "id": 37,
          "type": "table",
          "title": "Probes: last result, age, next run, top failure reason (24h)",
          "description": "One row per probe: its last result (1 success, 0 failure), how long ago its last run ended, when it runs next, and its most frequent failure reason in the last 24 hours.",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          },
          "gridPos": {
            "h": 9,
            "w": 24,
            "x": 0,
            "y": 81
          },
          "fieldConfig": {
            "defaults": {
              "unit": "none"
            },
            "overrides": [
              {
                "matcher": {
                  "id": "byName",
                  "options": "Value #B"
                },
                "properties": [
                  {
                    "id": "unit",
                    "value": "s"
                  },
                  {
                    "id": "displayName",
                    "value": "Last run age"
                  }
                ]
              },
              {
                "matcher": {
                  "id": "byName",
                  "options": "Value #C"
                },
                "properties": [
                  {
                    "id": "unit",
                    "value": "dateTimeAsIso"
                  },
                  {
                    "id": "displayName",
                    "value": "Next run"
                  }
                ]
              },
              {
                "matcher": {
                  "id": "byName",
                  "options": "Value #A"
                },
                "properties": [
                  {
                    "id": "displayName",
                    "value": "Last result"
                  }
                ]
              },
              {
                "matcher": {
                  "id": "byName",
                  "options": "Value #D"
                },
                "properties": [
                  {
                    "id": "displayName",
                    "value": "Failures (24h)"
                  }
                ]
              }
            ]
          },
          "options": {
            "showHeader": true,
            "cellHeight": "sm",
            "footer": {
              "show": false,
              "reducer": [
                "sum"
              ],
              "countRows": false,
              "fields": ""
            }
          },
          "targets": [
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "A",
              "expr": "max by (target, probe, kind) (veeam_restore_probe_success{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"})",
              "legendFormat": "",
              "instant": true,
              "format": "table"
            },
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "B",
              "expr": "max by (target, probe, kind) (time() - veeam_restore_probe_last_run_timestamp_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"})",
              "legendFormat": "",
              "instant": true,
              "format": "table"
            },
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "C",
              "expr": "max by (target, probe, kind) (veeam_restore_probe_next_run_timestamp_seconds{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}) * 1000",
              "legendFormat": "",
              "instant": true,
              "format": "table"
            },
            {
              "datasource": {
                "type": "prometheus",
                "uid": "${datasource}"
              },
              "refId": "D",
              "expr": "topk by (target, probe) (1, sum by (target, probe, reason) (increase(veeam_restore_probe_failures_total{job=~\"$job\", target=~\"$target\", probe=~\"$probe\"}[1d])))",
              "legendFormat": "",
              "instant": true,
              "format": "table"
            }
          ],
          "transformations": [
            {
              "id": "merge",
              "options": {}
            },
            {
              "id": "organize",
              "options": {
                "excludeByName": {
                  "Time": true
                },
                "renameByName": {
                  "reason": "Top failure reason"
                }
              }
            }
          ]
        }
      ]
    },
  },
}
