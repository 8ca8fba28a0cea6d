//! What the fault matrices of both APIs share: starting a run by hand and reading its outcome,
//! and printing the matrix.

use std::collections::BTreeMap;
use std::time::Duration;

use super::eventually;
use super::exporter::{Exporter, value};

/// One cell: `(kind/phase, fault, outcome)`.
pub type Cell = (String, String, String);

/// The failure counters of a probe, by reason.
fn failures(text: &str, probe: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("veeam_restore_probe_failures_total{") && l.contains(&format!("probe=\"{probe}\"")))
        .filter_map(|l| {
            let reason = l.split("reason=\"").nth(1)?.split('"').next()?.to_owned();
            Some((reason, l.rsplit_once(' ')?.1.parse().ok()?))
        })
        .collect()
}

/// Starts a run of `target`/`probe` over HTTP (retrying while one is still running), waits
/// until it has ended, and returns `ok` or the failure reason it counted.
pub async fn run(exporter: &Exporter, target: &str, probe: &str) -> String {
    let before = exporter.metrics().await;
    let runs = value(&before, "veeam_restore_probe_runs_total", &[("probe", probe)]).unwrap_or(0.0);
    let url = exporter.url(&format!("/-/probe?target={target}&probe={probe}"));
    eventually(Duration::from_secs(60), "the probe to accept a run", || async {
        let status = reqwest::Client::new().post(&url).send().await.ok()?.status();
        (status == 202).then_some(())
    })
    .await;
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", probe)], |v| v >= runs + 1.0).await;
    let after = exporter.metrics().await;
    if value(&after, "veeam_restore_probe_success", &[("probe", probe)]) == Some(1.0) {
        return "ok".to_owned();
    }
    let (old, new) = (failures(&before, probe), failures(&after, probe));
    new.into_iter().find(|(r, n)| old.get(r).is_none_or(|o| n > o)).map(|(r, _)| r).unwrap_or_else(|| "?".into())
}

/// The matrix as a table: a row per kind/phase, a column per fault, in the order they came.
pub fn table(matrix: &[Cell], row_width: usize, cell_width: usize) -> String {
    let mut faults: Vec<&str> = Vec::new();
    let mut rows: Vec<&str> = Vec::new();
    for (row, fault, _) in matrix {
        if !faults.contains(&fault.as_str()) {
            faults.push(fault);
        }
        if !rows.contains(&row.as_str()) {
            rows.push(row);
        }
    }
    let mut table = format!("{:<row_width$}", "kind/phase");
    for f in &faults {
        table.push_str(&format!(" {f:<cell_width$}"));
    }
    for row in &rows {
        table.push_str(&format!("\n{row:<row_width$}"));
        for f in &faults {
            let cell = matrix.iter().find(|(r, g, _)| r == row && g == f).map_or("-", |(_, _, o)| o.as_str());
            table.push_str(&format!(" {cell:<cell_width$}"));
        }
    }
    table
}
