//! The overview at the top of the landing page, in the style of Prometheus' targets page: one
//! row per probe (a coloured state, ages, next run, top failure reason) and one per target
//! (reachable, logon, backoff, orphaned mounts). Read from the cached exposition, so it shows
//! exactly what Prometheus scrapes and never talks to a server. No JavaScript.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::history::History;

/// One sample: its labels and value.
type Sample = (Vec<(String, String)>, f64);

/// Sample values of the exposition, by metric name.
struct Samples(HashMap<String, Vec<Sample>>);

impl Samples {
    fn parse(text: &str) -> Samples {
        let mut map: HashMap<String, Vec<Sample>> = HashMap::new();
        for line in text.lines().filter(|l| l.starts_with("veeam_restore_")) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            map.entry(name.to_owned()).or_default().push((labels, value));
        }
        Samples(map)
    }

    /// The samples of `name` whose labels include all of `want`.
    fn matching<'a>(
        &'a self,
        name: &str,
        want: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a [(String, String)], f64)> {
        self.0
            .get(name)
            .into_iter()
            .flatten()
            .filter(move |(labels, _)| want.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v)))
            .map(|(l, v)| (l.as_slice(), *v))
    }

    fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, want).map(|(_, v)| v).reduce(|a, b| a + b)
    }
}

/// `a="x",b="y"` as the text format writes it (values escaped with `\`).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| if c == 'n' { '\n' } else { c })),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A duration as people read it on a status page: the two largest units.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn age_of(unix: Option<f64>) -> String {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    match unix {
        Some(t) if t > 0.0 => format!("{} ago", short(Duration::from_secs_f64((now - t).max(0.0)))),
        _ => "–".to_owned(),
    }
}

/// The overview tables.
pub fn render(config: &Config, exposition: &str, history: &History) -> String {
    let s = Samples::parse(exposition);
    let mut page = String::from(
        "<h2>Overview</h2><table class=\"overview\"><tr><th>Target</th><th>Probe</th><th>State</th>\
         <th>Last success</th><th>Restore point age</th><th>Content age</th><th>Next run</th><th>Top failure reason</th></tr>",
    );
    probe_rows(&mut page, config, &s, history);
    page.push_str(
        "</table><table class=\"overview\"><tr><th>Target</th><th>API</th><th>Reachable</th><th>Logon backoff</th>\
         <th>Orphaned mounts</th></tr>",
    );
    target_rows(&mut page, config, &s);
    page.push_str("</table>");
    page
}

/// One row per probe.
fn probe_rows(page: &mut String, config: &Config, s: &Samples, history: &History) {
    for target in &config.targets {
        for probe in &target.probes {
            let want = [("target", target.name.as_str()), ("probe", probe.name.as_str())];
            let (class, state) = match (
                s.value("veeam_restore_probe_success", &want),
                s.value("veeam_restore_probe_failures_in_a_row", &want),
            ) {
                (Some(v), _) if v >= 1.0 => ("up", "UP".to_owned()),
                (Some(_), Some(n)) => ("down", format!("FAILING ({n} in a row)")),
                (Some(_), None) => ("down", "FAILING".to_owned()),
                (None, _) => ("unknown", "NOT RUN YET".to_owned()),
            };
            let malware = s
                .matching("veeam_restore_point_malware_status", &want)
                .find(|(labels, v)| {
                    *v >= 1.0 && labels.iter().any(|(k, st)| k == "status" && (st == "infected" || st == "suspicious"))
                })
                .map_or(String::new(), |(labels, _)| {
                    let status = labels.iter().find(|(k, _)| k == "status").map_or("", |(_, v)| v.as_str());
                    format!(" <span class=\"state down\">point {status}</span>")
                });
            let content = s
                .value("veeam_restore_probe_content_age_seconds", &want)
                .map_or("–".to_owned(), |a| short(Duration::from_secs_f64(a.max(0.0))));
            let top = s
                .matching("veeam_restore_probe_failures_total", &want)
                .filter(|(_, v)| *v > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .and_then(|(labels, v)| labels.iter().find(|(k, _)| k == "reason").map(|(_, r)| format!("{r} ({v})")))
                .unwrap_or_else(|| "–".to_owned());
            let next = history.get(&target.name, &probe.name).next_run.map_or("–".to_owned(), |t| {
                match t.duration_since(SystemTime::now()) {
                    Ok(d) => format!("in {}", short(d)),
                    Err(_) => "due now".to_owned(),
                }
            });
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{} <small>{}</small>{malware}</td><td class=\"state {class}\">{state}</td><td>{}</td><td>{}</td><td>{content}</td><td>{next}</td><td>{}</td></tr>",
                escape(&target.name),
                escape(&probe.name),
                probe.kind.mode().unwrap_or(probe.kind.label()),
                age_of(s.value("veeam_restore_probe_last_success_timestamp_seconds", &want)),
                age_of(s.value("veeam_restore_point_creation_timestamp_seconds", &want)),
                escape(&top),
            );
        }
    }
}

/// One row per target.
fn target_rows(page: &mut String, config: &Config, s: &Samples) {
    for target in &config.targets {
        let want = [("target", target.name.as_str())];
        let (class, up) = match s.value("veeam_restore_server_up", &want) {
            Some(v) if v >= 1.0 => ("up", "UP"),
            Some(_) => ("down", "DOWN"),
            None => ("unknown", "UNKNOWN"),
        };
        let backoff = s.value("veeam_restore_logon_backoff_seconds", &want).unwrap_or(0.0);
        let backoff = if backoff > 0.0 {
            format!("refused; next try after {}", short(Duration::from_secs_f64(backoff)))
        } else {
            "–".into()
        };
        let orphans = |state: &str| {
            s.value("veeam_restore_orphaned_mounts", &[("target", &target.name), ("state", state)]).unwrap_or(0.0)
        };
        let (retrying, unresolved) = (orphans("retrying"), orphans("unresolved"));
        let orphan_class = if unresolved > 0.0 {
            "down"
        } else if retrying > 0.0 {
            "unknown"
        } else {
            "up"
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"state {class}\">{up}</td><td>{backoff}</td><td class=\"state {orphan_class}\">{retrying} retrying, {unresolved} unresolved</td></tr>",
            escape(&target.name),
            target.api.as_str(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_values_are_read_as_the_text_format_writes_them() {
        let text = "# HELP x\nveeam_restore_probe_success{kind=\"mount\",probe=\"p\",target=\"t \\\"q\\\"\"} 1\n\
                    veeam_restore_probe_failures_total{probe=\"p\",reason=\"timeout\",target=\"t\"} 3\n";
        let s = Samples::parse(text);
        assert_eq!(s.value("veeam_restore_probe_success", &[("target", "t \"q\""), ("probe", "p")]), Some(1.0));
        assert_eq!(s.value("veeam_restore_probe_failures_total", &[("reason", "timeout")]), Some(3.0));
        assert_eq!(s.value("veeam_restore_probe_success", &[("target", "other")]), None);
    }
}
