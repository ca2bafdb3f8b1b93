//! Host CPU spent serving a cell's clients, from samples of the cell's cgroup counter
//! and of the host's busy time taken during the run: interpolated at the edges of the
//! common window, so the figure covers exactly the span the bandwidth does.

use serde::{Deserialize, Serialize};

/// One reading of a cell's CPU counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuSample {
    /// Wall-clock ns (in the controller's clock once collected).
    pub t_ns: u64,
    /// CPU time of the cell's cgroup, ns (user + system).
    pub cgroup_ns: u64,
    /// CPU time the whole host was busy, ns (all CPUs, /proc/stat).
    pub host_busy_ns: u64,
}

/// The samples of one host's part of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuSeries {
    /// The node (ssh destination); `None`: the controller's host.
    pub node: Option<String>,
    /// CPUs of that host.
    pub cpus: u32,
    /// The machine's boot id: hosts that share one are one machine (network
    /// namespaces, containers), whose busy time and CPUs are counted once.
    #[serde(default)]
    pub machine: Option<String>,
    /// Whether containers' own cgroups are inside the counted one (cgroup v1).
    pub covers_containers: bool,
    pub samples: Vec<CpuSample>,
}

/// CPU over a window, s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct CpuFigures {
    /// The cells' cgroups, over every host.
    pub cgroup_s: f64,
    /// The hosts' whole busy time.
    pub host_busy_s: f64,
    /// CPUs of the hosts.
    pub cpus: u32,
}

/// CPU spent in `[from, to)` by every series, or `None` without samples covering it.
pub fn cpu_between(series: &[CpuSeries], from: u64, to: u64) -> Option<CpuFigures> {
    if series.is_empty() || to <= from {
        return None;
    }
    let mut f = CpuFigures::default();
    let mut machines: Vec<&str> = Vec::new();
    for s in series {
        let at = |t: u64, field: fn(&CpuSample) -> u64| interpolate(&s.samples, t, field);
        f.cgroup_s += (at(to, |x| x.cgroup_ns)? - at(from, |x| x.cgroup_ns)?) / 1e9;
        let busy = (at(to, |x| x.host_busy_ns)? - at(from, |x| x.host_busy_ns)?) / 1e9;
        // One machine seen through several hosts: its whole busy time and CPUs once.
        if let Some(m) = s.machine.as_deref() {
            if machines.contains(&m) {
                continue;
            }
            machines.push(m);
        }
        f.host_busy_s += busy;
        f.cpus += s.cpus;
    }
    Some(f)
}

/// A counter's value at `t`, linear between the samples around it; `None` outside them.
fn interpolate(samples: &[CpuSample], t: u64, field: fn(&CpuSample) -> u64) -> Option<f64> {
    let i = samples.iter().position(|s| s.t_ns >= t)?;
    let b = &samples[i];
    if b.t_ns == t || i == 0 {
        return (b.t_ns == t).then(|| field(b) as f64);
    }
    let a = &samples[i - 1];
    let frac = (t - a.t_ns) as f64 / (b.t_ns - a.t_ns) as f64;
    Some(field(a) as f64 + frac * (field(b) as f64 - field(a) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_edges_are_interpolated() {
        let s = CpuSeries {
            node: None,
            cpus: 2,
            machine: None,
            covers_containers: true,
            samples: vec![
                CpuSample { t_ns: 0, cgroup_ns: 0, host_busy_ns: 0 },
                CpuSample { t_ns: 1_000_000_000, cgroup_ns: 1_000_000_000, host_busy_ns: 1_500_000_000 },
                CpuSample { t_ns: 2_000_000_000, cgroup_ns: 1_500_000_000, host_busy_ns: 2_000_000_000 },
            ],
        };
        let f = cpu_between(std::slice::from_ref(&s), 500_000_000, 1_500_000_000).unwrap();
        assert!((f.cgroup_s - 0.75).abs() < 1e-9, "{f:?}");
        assert!((f.host_busy_s - 1.0).abs() < 1e-9, "{f:?}");
        assert!(cpu_between(std::slice::from_ref(&s), 500_000_000, 3_000_000_000).is_none(), "not covered");
        // Two nodes that are one machine: their cgroups add up, the machine counts once.
        let node = |name: &str| CpuSeries { node: Some(name.into()), machine: Some("boot-1".into()), ..s.clone() };
        let f = cpu_between(&[node("n1"), node("n2")], 500_000_000, 1_500_000_000).unwrap();
        assert!((f.cgroup_s - 1.5).abs() < 1e-9, "{f:?}");
        assert!((f.host_busy_s - 1.0).abs() < 1e-9 && f.cpus == 2, "{f:?}");
    }
}
