//! A run for the dashboards teams already run: bencher's Bencher Metric Format (JSON)
//! and OpenMetrics text (a Prometheus textfile collector or a Pushgateway).
//!
//! Names: a BMF benchmark is `study/scenario/mode/c=N` and its measures are the
//! metrics (`bw`, `p50`…) with the 95 % interval as lower and upper values. An
//! OpenMetrics family is `iostudy_<metric>` with its unit, one gauge per cell labelled
//! by study, scenario, pattern, clients and option values.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::history::{METRICS, RunRecord};

/// Bencher Metric Format: `{benchmark: {measure: {value, lower_value, upper_value}}}`.
pub fn bmf(run: &RunRecord) -> String {
    let mut out = Map::new();
    for c in &run.cells {
        let mut name = format!("{}/{}/{}/c={}", run.study_name, c.key.scenario, c.key.pattern, c.key.clients);
        for (k, v) in &c.key.options {
            let _ = write!(name, "/{k}={v}");
        }
        let mut measures = Map::new();
        for f in &c.figures {
            let mut m = json!({ "value": f.value });
            if f.n >= 2 && f.lo.is_finite() && f.hi.is_finite() {
                m["lower_value"] = json!(f.lo);
                m["upper_value"] = json!(f.hi);
            }
            measures.insert(f.metric.replace('_', "-"), m);
        }
        out.insert(name, Value::Object(measures));
    }
    serde_json::to_string_pretty(&Value::Object(out)).expect("JSON values serialize")
}

/// An OpenMetrics unit and the factor from iostudy's unit to it (base units: seconds,
/// bytes).
fn unit(u: &str) -> (&'static str, f64) {
    match u {
        "bytes/s" => ("bytes_per_second", 1.0),
        "ops/s" => ("operations_per_second", 1.0),
        "ns" => ("seconds", 1e-9),
        "s/GiB" => ("seconds_per_gibibyte", 1.0),
        _ => ("ratio", 1.0),
    }
}

/// A label value as OpenMetrics quotes it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// OpenMetrics text, ending in `# EOF`.
pub fn openmetrics(run: &RunRecord) -> String {
    let mut s = String::new();
    for m in METRICS {
        let cells: Vec<_> = run.cells.iter().filter_map(|c| Some((c, c.figure(m.name)?))).collect();
        if cells.is_empty() {
            continue;
        }
        let (u, factor) = unit(m.unit);
        let family = format!("iostudy_{}_{u}", m.name);
        let _ = writeln!(s, "# TYPE {family} gauge");
        let _ = writeln!(s, "# UNIT {family} {u}");
        let _ = writeln!(s, "# HELP {family} {}", m.what);
        for (c, f) in cells {
            let mut labels = format!(
                "study=\"{}\",scenario=\"{}\",pattern=\"{}\",clients=\"{}\"",
                label(&run.study_name),
                label(&c.key.scenario),
                c.key.pattern,
                c.key.clients
            );
            for (k, v) in &c.key.options {
                let k: String = k.chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' }).collect();
                let _ = write!(labels, ",opt_{k}=\"{}\"", label(v));
            }
            let _ = writeln!(s, "{family}{{{labels}}} {}", f.value * factor);
        }
    }
    s.push_str("# EOF\n");
    s
}
