//! `veeam_restore_probe_info`, whose label names the configuration chooses.

use std::sync::{Arc, Mutex};

use crate::config::Config;

/// `veeam_restore_probe_info`: 1 per probe, labelled with what it probes and the labels the user
/// chose (`site`, `tier`, …) for joins in queries and dashboards. Users choose the label names,
/// so they differ between probes: the series are built from the configuration at each scrape
/// rather than held in a vector with fixed label names.
#[derive(Clone)]
pub(super) struct ProbeInfo {
    desc: prometheus::core::Desc,
    series: Arc<Mutex<Vec<LabelSet>>>,
}

/// One series' label pairs, sorted by name.
type LabelSet = Vec<(String, String)>;

const PROBE_INFO: &str = "veeam_restore_probe_info";

impl ProbeInfo {
    pub(super) fn new() -> ProbeInfo {
        let help =
            "Constant 1 per probe, labelled with its kind, mode, VM, point and the labels from the configuration.";
        let desc = prometheus::core::Desc::new(PROBE_INFO.into(), help.into(), Vec::new(), Default::default())
            .expect("the info metric's description is valid");
        ProbeInfo { desc, series: Arc::default() }
    }

    /// One label set per probe of `config`.
    pub(super) fn set(&self, config: &Config) {
        let mut series = Vec::new();
        for t in &config.targets {
            for p in &t.probes {
                let point = p.kind.point().as_str();
                let mut labels = vec![
                    ("target".to_owned(), t.name.clone()),
                    ("api".to_owned(), t.api.as_str().to_owned()),
                    ("probe".to_owned(), p.name.clone()),
                    ("kind".to_owned(), p.kind.label().to_owned()),
                    ("mode".to_owned(), p.kind.mode().unwrap_or("").to_owned()),
                    ("vm".to_owned(), p.vm.clone()),
                    ("point".to_owned(), point.to_owned()),
                ];
                labels.extend(p.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                labels.sort();
                series.push(labels);
            }
        }
        *self.series.lock().unwrap_or_else(|p| p.into_inner()) = series;
    }
}

impl prometheus::core::Collector for ProbeInfo {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::proto;
        let mut family = proto::MetricFamily::default();
        family.set_name(PROBE_INFO.into());
        family.set_help(self.desc.help.clone());
        family.set_field_type(proto::MetricType::GAUGE);
        for labels in self.series.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let pairs = labels
                .iter()
                .map(|(k, v)| {
                    let mut pair = proto::LabelPair::default();
                    pair.set_name(k.clone());
                    pair.set_value(v.clone());
                    pair
                })
                .collect();
            let mut gauge = proto::Gauge::default();
            gauge.set_value(1.0);
            let mut metric = proto::Metric::from_gauge(gauge);
            metric.set_label(pairs);
            family.mut_metric().push(metric);
        }
        vec![family]
    }
}
