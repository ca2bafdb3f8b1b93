//! `report.html`: one self-contained page — inline SVG charts, tables, warnings, host
//! facts, runtime versions, the study file, and the model as embedded JSON — with no
//! network request, so it can be mailed, archived or opened offline.

use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::report::charts::Svgs;
use crate::report::model::Report;
use crate::report::table;
use crate::report::units::bandwidth;

const TEMPLATE: &str = include_str!("../../templates/report.html");

#[derive(Serialize)]
struct Row {
    mode: String,
    label: String,
    cells: Vec<String>,
    fio_sum: String,
}

#[derive(Serialize)]
struct NodeRow {
    mode: String,
    label: String,
    clients: u32,
    nodes: Vec<String>,
}

#[derive(Serialize)]
struct RuntimeRow {
    scenario: String,
    runtime: String,
    version: String,
    boot: String,
    measured_by: String,
    notes: String,
}

/// JSON made safe inside `<script type="application/json">`: `<`, `>` and `&` as JSON
/// escapes, so no text in it (a label of `<!--<script>`, `</script>`) can end the
/// element or change how the HTML parser reads it; the JSON means the same.
pub fn json_for_html(json: &str) -> String {
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// Renders the page.
pub fn render(r: &Report, svgs: &Svgs) -> Result<String, String> {
    let base = r.label(&r.baseline);
    let mut lat_rows = Vec::new();
    let mut bw_rows = Vec::new();
    for (mode, label, groups) in table::rows(r) {
        let lat = groups.iter().flat_map(|g| [table::lat(*g, false), table::lat(*g, true)]).collect();
        let bw = groups.iter().map(|g| table::bw_cell(*g, &base)).collect();
        let fio_sum =
            groups.last().copied().flatten().and_then(|g| g.fio_sum_bw).map_or("-".into(), |e| bandwidth(e.mean));
        lat_rows.push(Row { mode: mode.clone(), label: label.clone(), cells: lat, fio_sum: String::new() });
        bw_rows.push(Row { mode, label, cells: bw, fio_sum });
    }
    let runtimes: Vec<RuntimeRow> = r
        .scenarios
        .iter()
        .map(|(name, _)| {
            let recorded =
                r.run.as_ref().and_then(|run| run.scenarios.iter().find(|s| &s.name == name)).map(|s| &s.runtime);
            let version = r.groups.iter().find(|g| &g.key.scenario == name).and_then(|g| g.runtime_version.clone());
            RuntimeRow {
                scenario: name.clone(),
                runtime: recorded.map_or_else(String::new, |p| p.name.clone()),
                version: version.or_else(|| recorded.and_then(|p| p.version.clone())).unwrap_or_default(),
                boot: {
                    let boots: Vec<f64> =
                        r.groups.iter().filter(|g| &g.key.scenario == name).filter_map(|g| g.boot_s).collect();
                    if boots.is_empty() {
                        "-".into()
                    } else {
                        format!("{:.2}", boots.iter().sum::<f64>() / boots.len() as f64)
                    }
                },
                measured_by: {
                    let mut by: Vec<String> = r
                        .groups
                        .iter()
                        .filter(|g| &g.key.scenario == name)
                        .flat_map(|g| g.measured_by.clone())
                        .collect();
                    by.sort();
                    by.dedup();
                    by.join("; ")
                },
                notes: r.runtime_notes.get(name).map(|n| n.join("; ")).unwrap_or_default(),
            }
        })
        .collect();
    let node_rows: Vec<NodeRow> = r
        .groups
        .iter()
        .filter(|g| !g.per_node.is_empty())
        .map(|g| NodeRow {
            mode: g.key.mode(),
            label: g.label.clone(),
            clients: g.key.clients,
            nodes: g
                .per_node
                .iter()
                .map(|n| {
                    format!(
                        "{}: {} ({} client(s), {:.0} % of bytes)",
                        n.node,
                        bandwidth(n.bw_bytes_per_s),
                        n.clients,
                        n.bytes_share * 100.0
                    )
                })
                .collect(),
        })
        .collect();
    let cpu_rows: Vec<Row> = table::rows(r)
        .into_iter()
        .map(|(mode, label, groups)| Row {
            mode,
            label,
            cells: groups.iter().map(|g| table::cpu_cell(*g)).collect(),
            fio_sum: String::new(),
        })
        .collect();
    let findings = r.findings();
    let finding_rows: Vec<Row> = findings
        .rows
        .iter()
        .map(|row| Row {
            mode: String::new(),
            label: row.label.clone(),
            cells: row.cells.iter().map(|c| c.text()).collect(),
            fio_sum: String::new(),
        })
        .collect();
    let data_json = json_for_html(&serde_json::to_string(r).map_err(|e| e.to_string())?);
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE).map_err(|e| format!("report template: {e}"))?;
    let tmpl = env.get_template("report.html").map_err(|e| e.to_string())?;
    tmpl.render(context! {
        version => env!("CARGO_PKG_VERSION"),
        title => &r.study_name,
        description => Value::from(minijinja::value::Serde(&r.description)),
        cells => r.groups.iter().map(|g| g.reps.len() + g.failed_reps).sum::<usize>(),
        baseline => base,
        has_reps => r.groups.iter().any(|g| g.reps.len() > 1),
        warning_groups => Value::from(minijinja::value::Serde(&r.warning_groups())),
        findings => Value::from(minijinja::value::Serde(&findings)),
        finding_rows => Value::from(minijinja::value::Serde(&finding_rows)),
        costliest => findings.costliest.as_ref().map(|c| c.text(&findings.baseline)),
        patterns => Value::from(minijinja::value::Serde(&r.patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>())),
        clients => Value::from(minijinja::value::Serde(&r.clients)),
        bandwidth_svg => svgs.get("bandwidth"),
        cpu_svg => svgs.get("host-cpu"),
        clients_svg => svgs.get("client-bandwidth"),
        timeline_svg => svgs.get("bandwidth-timeline"),
        cdf_svg => svgs.get("latency-cdf"),
        attribution_latency_svg => svgs.get("attribution-latency"),
        attribution_cpu_svg => svgs.get("attribution-cpu"),
        attribution_rows => Value::from(minijinja::value::Serde(&crate::report::attribution::rows(r))),
        cpu_rows => Value::from(minijinja::value::Serde(&cpu_rows)),
        bw_rows => Value::from(minijinja::value::Serde(&bw_rows)),
        lat_rows => Value::from(minijinja::value::Serde(&lat_rows)),
        runtimes => Value::from(minijinja::value::Serde(&runtimes)),
        node_rows => Value::from(minijinja::value::Serde(&node_rows)),
        host => Value::from(minijinja::value::Serde(r.run.as_ref().map(|run| &run.host))),
        study_source => &r.study_source,
        data_json => data_json,
    })
    .map_err(|e| format!("rendering report.html: {e}"))
}
