//! Dashboards and alert rules are code: their structure is checked, every PromQL expression
//! must parse, and every metric they use must be one the exporter really exposes (as recorded
//! in the golden scrape, which the exporter tests keep in step with the binary).

use std::collections::{BTreeSet, HashSet};

use promql_parser::parser::{self, Expr};
use serde_json::Value;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Metric names a query may use: the exporter's families (with histogram series suffixes) and
/// the series Prometheus itself adds.
fn exposed() -> HashSet<String> {
    let mut names: HashSet<String> = ["up", "ALERTS", "ALERTS_FOR_STATE"].iter().map(|s| s.to_string()).collect();
    for line in read("tests/golden/metrics.txt").lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').unwrap();
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// Grafana's interval variables become plain durations; `$job` and friends sit inside string
/// literals and parse as they are.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
}

fn metric_names(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::Aggregate(a) => {
            metric_names(&a.expr, out);
            if let Some(p) = &a.param {
                metric_names(p, out);
            }
        }
        Expr::Unary(u) => metric_names(&u.expr, out),
        Expr::Binary(b) => {
            metric_names(&b.lhs, out);
            metric_names(&b.rhs, out);
        }
        Expr::Paren(p) => metric_names(&p.expr, out),
        Expr::Subquery(s) => metric_names(&s.expr, out),
        Expr::VectorSelector(v) => {
            out.insert(v.name.clone().expect("every selector names its metric"));
        }
        Expr::MatrixSelector(m) => {
            out.insert(m.vs.name.clone().expect("every selector names its metric"));
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| metric_names(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Parses `expr` and checks its metrics; returns them.
fn check_expr(what: &str, expr: &str, exposed: &HashSet<String>) -> BTreeSet<String> {
    let parsed = parser::parse(&substitute(expr)).unwrap_or_else(|e| panic!("{what}: {expr:?} does not parse: {e}"));
    let mut names = BTreeSet::new();
    metric_names(&parsed, &mut names);
    assert!(!names.is_empty(), "{what}: {expr:?} uses no metric");
    for name in &names {
        assert!(exposed.contains(name), "{what}: {name} is not a metric the exporter exposes");
    }
    names
}

fn is_datasource_variable(v: &Value) -> bool {
    v.get("uid").and_then(Value::as_str) == Some("${datasource}")
}

#[test]
fn dashboard_structure_queries_and_metrics() {
    let exposed = exposed();
    let dashboard: Value = serde_json::from_str(&read("dashboards/veeam-restore-health.json")).unwrap();
    assert_eq!(dashboard["uid"], "veeam-restore-health", "a stable uid keeps URLs stable");
    assert!(dashboard["schemaVersion"].is_u64());
    assert!(dashboard["id"].is_null(), "Grafana assigns the id");
    assert!(dashboard.get("__inputs").is_none(), "provisioning does not resolve __inputs");

    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = variables.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "job", "api", "target", "labels", "probe"]);
    assert_eq!(variables[0]["type"], "datasource");
    assert_eq!(variables[0]["query"], "prometheus");
    // The user-label filter: a matcher on veeam_restore_probe_info that narrows the probes.
    let labels = &variables[4];
    assert_eq!(labels["type"], "textbox");
    let default = labels["query"].as_str().unwrap();
    for v in variables[1..].iter().filter(|v| v["type"] == "query") {
        assert!(is_datasource_variable(&v["datasource"]), "variable {} uses $datasource", v["name"]);
        let query = v["query"]["query"].as_str().unwrap().replace("$labels", default);
        let inner = query.strip_prefix("label_values(").and_then(|q| q.rsplit_once(',')).map(|(sel, _)| sel).unwrap();
        check_expr(&format!("variable {}", v["name"]), inner, &exposed);
    }
    let probe = variables[5]["query"]["query"].as_str().unwrap();
    assert!(probe.starts_with("label_values(veeam_restore_probe_info{") && probe.contains("$labels}"), "{probe}");

    let mut used = BTreeSet::new();
    let mut boxes: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_owned();
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_u64().unwrap(),
            grid["y"].as_u64().unwrap(),
            grid["w"].as_u64().unwrap(),
            grid["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{title}: wider than the grid");
        for (other, ox, oy, ow, oh) in &boxes {
            let overlap = x < ox + ow && ox < &(x + w) && y < oy + oh && oy < &(y + h);
            assert!(!overlap, "{title} overlaps {other}");
        }
        boxes.push((title.clone(), x, y, w, h));
        if panel["type"] == "row" {
            continue;
        }
        assert!(panel["description"].as_str().is_some_and(|d| d.ends_with('.')), "{title}: needs a description");
        assert!(is_datasource_variable(&panel["datasource"]), "{title}: panel datasource must be ${{datasource}}");
        let unit = panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
        assert!(!unit.is_empty(), "{title}: every panel has a unit");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert!(is_datasource_variable(&t["datasource"]), "{title}: target datasource must be ${{datasource}}");
            let expr = t["expr"].as_str().unwrap();
            if expr.replace("veeam_restore_exporter_", "").contains("veeam_restore_") {
                assert!(expr.contains("target=~\"$target\""), "{title}: {expr} ignores $target");
            }
            used.extend(check_expr(&title, expr, &exposed));
        }
    }
    for a in dashboard["annotations"]["list"].as_array().unwrap().iter().filter(|a| a.get("expr").is_some()) {
        check_expr("annotation", a["expr"].as_str().unwrap(), &exposed);
    }
    // The list of what the dashboard must show.
    for metric in [
        "veeam_restore_probe_success",
        "veeam_restore_probe_last_success_timestamp_seconds",
        "veeam_restore_probe_duration_seconds_bucket",
        "veeam_restore_probe_phase_last_duration_seconds",
        "veeam_restore_server_tasks_total",
        "veeam_restore_probe_restore_session_progress_ratio",
        "veeam_restore_point_creation_timestamp_seconds",
        "veeam_restore_orphaned_mounts",
        "veeam_restore_server_up",
        "veeam_restore_server_requests_total",
        "veeam_restore_server_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(metric), "the dashboard does not show {metric}");
    }
}

#[test]
fn alert_rules_follow_the_conventions_and_use_real_metrics() {
    let exposed = exposed();
    let rules: serde_norway::Value = serde_norway::from_str(&read("alerts/veeam-restore-exporter.rules.yml")).unwrap();
    let runbook = read("docs/runbook.md");
    let readme = read("README.md");
    let mut count = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().expect("alerting rules only");
            count += 1;
            assert!(name.starts_with("VeeamRestore") && !name.contains(char::is_whitespace), "{name}");
            let severity = rule["labels"]["severity"].as_str().unwrap();
            assert!(["critical", "warning", "info"].contains(&severity), "{name}: severity {severity}");
            let annotations = &rule["annotations"];
            let summary = annotations["summary"].as_str().unwrap();
            assert!(summary.ends_with('.') && summary.starts_with(char::is_uppercase), "{name}: summary is a sentence");
            assert!(annotations["description"].as_str().is_some(), "{name}: description");
            let runbook_url = annotations["runbook_url"].as_str().unwrap();
            assert!(runbook_url.ends_with(&format!("#{}", name.to_lowercase())), "{name}: runbook_url anchor");
            assert!(runbook.contains(&format!("## {name}\n")), "{name}: docs/runbook.md has no section");
            assert!(readme.contains(&format!("`{name}`")), "{name}: README does not list it");
            let for_ = rule["for"].as_str().unwrap_or("0m");
            let for_ = humantime::parse_duration(for_).unwrap();
            // Failed runs in a row are confirmed by the runs themselves, and a malware status
            // is a state VBR set, not a blip: those need no waiting.
            let expr = rule["expr"].as_str().unwrap();
            let confirmed = expr.contains("veeam_restore_probe_failures_in_a_row")
                || expr.contains("veeam_restore_point_malware_status");
            assert!(
                confirmed || for_ >= std::time::Duration::from_secs(600),
                "{name}: for: {for_:?} is too short to ride out one bad run"
            );
            check_expr(name, rule["expr"].as_str().unwrap(), &exposed);
        }
    }
    assert!(count >= 12, "{count} alerts");
}

/// The Alertmanager inhibit snippet names only alerts that exist, and the alerts it silences
/// carry the labels it matches on.
#[test]
fn inhibit_rules_name_real_alerts() {
    let rules: serde_norway::Value = serde_norway::from_str(&read("alerts/veeam-restore-exporter.rules.yml")).unwrap();
    let names: Vec<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    let inhibit: serde_norway::Value = serde_norway::from_str(&read("alerts/alertmanager-inhibit.yml")).unwrap();
    let rules = inhibit["inhibit_rules"].as_sequence().unwrap();
    assert!(rules.len() >= 2);
    for rule in rules {
        for side in ["source_matchers", "target_matchers"] {
            for matcher in rule[side].as_sequence().unwrap() {
                let matcher = matcher.as_str().unwrap();
                let (_, pattern) = matcher.split_once('~').unwrap();
                let pattern = pattern.trim().trim_matches('"');
                for alternative in pattern.split('|').filter(|a| !a.contains(".+")) {
                    assert!(names.iter().any(|n| n == alternative), "{side}: no alert {alternative}");
                }
            }
        }
        assert!(!rule["equal"].as_sequence().unwrap().is_empty(), "inhibition is scoped");
    }
    let em = &rules[0];
    assert!(em["source_matchers"][0].as_str().unwrap().contains("VeeamRestoreServerUnreachable"));
    assert!(em["target_matchers"][0].as_str().unwrap().contains("VeeamRestoreMountFailing"));
}

/// Every metric the dashboard and the alert rules use (Prometheus' own `up` and `ALERTS` aside).
pub fn used_metrics() -> BTreeSet<String> {
    let exposed = exposed();
    let mut used = BTreeSet::new();
    let dashboard: Value = serde_json::from_str(&read("dashboards/veeam-restore-health.json")).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            used.extend(check_expr("dashboard", t["expr"].as_str().unwrap(), &exposed));
        }
    }
    let rules: serde_norway::Value = serde_norway::from_str(&read("alerts/veeam-restore-exporter.rules.yml")).unwrap();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            used.extend(check_expr("alert", rule["expr"].as_str().unwrap(), &exposed));
        }
    }
    used.retain(|m| !["up", "ALERTS", "ALERTS_FOR_STATE"].contains(&m.as_str()));
    used
}
