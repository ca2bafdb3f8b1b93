//! Attribution: where a client I/O's time and the host's CPU go, layer by layer.
//!
//! iostudy starts every layer of the path it measures — the client, the runtime, the
//! sandbox, the VMM, the file server — so it can time each at its own boundary instead of
//! guessing from the totals. Each layer is measured independently, never derived to close
//! a sum, and a layer that cannot be measured here is said to be so, with the reason:
//!
//! - *client*: what the engine measures (its merged histogram);
//! - *host syscall*: the positional read/write syscalls (`pread64`, `preadv`, `preadv2`
//!   and their writes) of the processes serving the cell — the client itself for bare
//!   and runc, the sandbox for gVisor, QEMU's 9p workers, virtiofsd — timed in the
//!   kernel by Debian's `bpftrace` on syscall tracepoints, scoped to those processes
//!   ([`host`]), with how many syscalls and bytes each client I/O became;
//! - *VMM / file server*: QEMU's own 9p request handling, from its `v9fs_read`/
//!   `v9fs_write` trace events and their returns, matched by tag ([`vmm`]); for
//!   virtio-fs, virtiofsd's `Server::read`/`Server::write`, timed by uprobes in the same
//!   bpftrace program ([`host`]);
//! - *guest transport*: the guest kernel's request → response round trip — its 9p
//!   tracepoints, or kprobes on virtio-fs's enqueue and completion — recorded in the
//!   guest's ring buffer from go, which iostudy (the guest's init) turns on itself
//!   ([`guest`]);
//! - *CPU by role*: each serving thread's CPU time (`sched_stat_runtime`), its process
//!   and thread name mapped to a role (client, guest vCPU, VMM, file server, sandbox,
//!   runtime).
//!
//! Tracing begins once every client is ready (after layout) and ends when the last
//! exits, so it covers the measured run. It is opt-in (`[study] attribute = true` or
//! `run --attribute`): each cell then runs twice in the same run, once traced and once
//! not (the `attribute` option), so attribution's own cost is measured, not assumed,
//! and the untraced cell is a normal one.

pub mod guest;
pub mod host;
pub mod roles;
pub mod vmm;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use crate::results::attribution::{
    Attribution, CLIENT, GUEST, GuestTrace, HOST, Layer, OPTION, RoleCpu, VMM, histogram_of,
};
use crate::results::histogram::{EncodedHistogram, LatencySummary, new_latency_histogram};

/// A layer's figure over a group's repetitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub boundary: String,
    pub figure: LayerFigure,
}

/// Layers merged over cells (repetitions): histograms added, the first reason a layer
/// was not measured kept.
pub fn merge_layers<'a>(cells: impl IntoIterator<Item = &'a Attribution>) -> Vec<LayerRow> {
    struct Merged<'l> {
        layer: &'l Layer,
        histogram: Option<Histogram<u64>>,
        why: Option<String>,
    }
    let mut out: Vec<Merged<'_>> = Vec::new();
    for a in cells {
        for l in &a.layers {
            let i = match out.iter().position(|o| o.layer.name == l.name) {
                Some(i) => i,
                None => {
                    out.push(Merged { layer: l, histogram: None, why: None });
                    out.len() - 1
                }
            };
            let m = &mut out[i];
            match l.histogram.as_ref().map(EncodedHistogram::decode) {
                Some(Ok(h)) => match &mut m.histogram {
                    Some(sum) => {
                        let _ = sum.add(&h);
                    }
                    slot => *slot = Some(h),
                },
                Some(Err(e)) => m.why = m.why.take().or(Some(e)),
                None => m.why = m.why.take().or(l.not_measured.clone()),
            }
        }
    }
    out.into_iter()
        .map(|m| LayerRow {
            name: m.layer.name.clone(),
            boundary: m.layer.boundary.clone(),
            figure: match m.histogram {
                Some(h) if !h.is_empty() => LayerFigure::Measured(LatencySummary::of(&h)),
                _ => LayerFigure::NotMeasured(m.why.unwrap_or_else(|| "no request was seen".into())),
            },
        })
        .collect()
}

/// A layer's figure in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerFigure {
    Measured(LatencySummary),
    NotMeasured(String),
}

impl LayerFigure {
    pub fn summary(&self) -> Option<&LatencySummary> {
        match self {
            LayerFigure::Measured(s) => Some(s),
            LayerFigure::NotMeasured(_) => None,
        }
    }
}

/// Whether the layers nest as they must (each inner layer no slower than the one
/// outside it, at p50 and mean, within `tolerance` of the outer figure); the pairs that
/// do not.
pub fn nesting_violations(layers: &[LayerRow], tolerance: f64) -> Vec<String> {
    let order = [CLIENT, GUEST, VMM, HOST];
    let measured: Vec<(&str, &LatencySummary)> = order
        .iter()
        .filter_map(|n| layers.iter().find(|l| l.name == *n).and_then(|l| l.figure.summary().map(|s| (*n, s))))
        .collect();
    let mut bad = Vec::new();
    for w in measured.windows(2) {
        let ((outer, o), (inner, i)) = (w[0], w[1]);
        for (what, ov, iv) in [("p50", o.p50 as f64, i.p50 as f64), ("mean", o.mean, i.mean)] {
            if iv > ov * (1.0 + tolerance) {
                bad.push(format!("{inner} {what} {:.1} µs > {outer} {what} {:.1} µs", iv / 1e3, ov / 1e3));
            }
        }
    }
    bad
}

/// What keeps attribution from running on this host, if anything: checked at `plan`
/// and before the first cell.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("attribution traces the kernel: run iostudy as root".into());
    }
    if let Err(e) = host::tracefs() {
        return Some(e);
    }
    if let Ok(l) = std::fs::read_to_string("/sys/kernel/security/lockdown")
        && l.contains("[confidentiality]")
    {
        return Some("the kernel is locked down (confidentiality): it refuses tracing".into());
    }
    host::check_bpftrace().err()
}

/// A cell's tracing, from all-ready to the last exit.
pub struct Tracing {
    tracer: Option<Result<host::Tracer, String>>,
    seen: Result<host::HostTrace, String>,
    roles: std::collections::BTreeMap<u32, &'static str>,
    from_ns: u64,
    to_ns: u64,
}

impl Tracing {
    /// Starts tracing the processes of the cell whose cgroup directory is `cgroup`.
    pub fn start(cgroup: Option<&std::path::Path>) -> Tracing {
        let roles = cgroup.map(roles::cell_processes).unwrap_or_default();
        // virtiofsd's request handlers are timed where its symbols allow.
        let mut servers: Vec<std::path::PathBuf> = Vec::new();
        for (pid, _) in roles.iter().filter(|(_, r)| **r == roles::FILE_SERVER) {
            if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
                && exe.file_name().is_some_and(|n| n == "virtiofsd")
                && !servers.contains(&exe)
                && host::probeable_server(&exe)
            {
                servers.push(exe);
            }
        }
        let tracer = match cgroup {
            None => Err("the cell has no cgroup on this host to find its processes by".to_string()),
            Some(_) => host::Tracer::start(&roles.keys().copied().collect::<Vec<_>>(), &servers),
        };
        // From when every probe is attached.
        let from_ns = crate::sys::wall_ns();
        Tracing { tracer: Some(tracer), seen: Err("not stopped".into()), roles, from_ns, to_ns: 0 }
    }

    /// Stops tracing (the last client exited).
    pub fn stop(&mut self) {
        if let Some(t) = self.tracer.take() {
            self.to_ns = crate::sys::wall_ns();
            self.seen = t.and_then(host::Tracer::stop);
        }
    }

    /// Stops tracing; what it saw, with the clients' own figures, as the cell's
    /// attribution. `vmm_logs` are the QEMU trace logs of a 9p micro-VM's clients.
    pub fn finish(
        mut self,
        cell: &crate::results::cell::CellResult,
        vmm_logs: Option<Vec<std::path::PathBuf>>,
    ) -> Attribution {
        self.stop();
        let (to_ns, host) = (self.to_ns, self.seen);
        let mut a = Attribution::default();
        // The client, as the engine measured it.
        let mut client = new_latency_histogram();
        for c in &cell.clients {
            if let Ok(h) = c.histograms.all.decode() {
                let _ = client.add(&h);
            }
            a.client_ios += c.read.ops + c.write.ops;
            a.client_bytes += c.read.bytes + c.write.bytes;
        }
        a.layers.push(Layer::measured(CLIENT, "the engine's submission → completion", &client));
        // The guest's kernel, where the client is in a micro-VM (a runtime with an
        // accelerator).
        let is_vm = cell.runtime.accelerator.is_some();
        let guests: Vec<&GuestTrace> = cell.clients.iter().filter_map(|c| c.guest_trace.as_ref()).collect();
        if let Some(first) = guests.first() {
            let mut h = new_latency_histogram();
            let mut missing = None;
            for g in &guests {
                match g.histogram.as_ref().map(EncodedHistogram::decode) {
                    Some(Ok(x)) => {
                        let _ = h.add(&x);
                    }
                    Some(Err(e)) => missing = Some(e),
                    None => missing = missing.or(g.not_measured.clone()),
                }
                if g.dropped > 0 {
                    a.notes.push(format!(
                        "the guest kernel's trace buffer had no room for {} event(s): its figures are of the run's first requests",
                        g.dropped
                    ));
                }
            }
            a.layers.push(match missing {
                Some(why) => Layer::missing(GUEST, &first.boundary, why),
                None => Layer::measured(GUEST, &first.boundary, &h),
            });
        } else if is_vm {
            a.layers.push(Layer::missing(GUEST, "the guest kernel's share requests", "the guest returned no trace"));
        }
        // The VMM.
        if is_vm {
            const BOUNDARY: &str = "QEMU v9fs_read/v9fs_write → _return (QEMU trace events)";
            match vmm_logs {
                Some(logs) => {
                    let mut h = new_latency_histogram();
                    let mut open = 0;
                    let mut unread = None;
                    for log in &logs {
                        match std::fs::read_to_string(log) {
                            Ok(text) => {
                                let (x, o) = vmm::latencies(&text, self.from_ns, to_ns);
                                let _ = h.add(&x);
                                open += o;
                                // Two lines per request: read, it is only bulk.
                                let _ = std::fs::remove_file(log);
                            }
                            Err(e) => unread = Some(format!("cannot read {}: {e}", log.display())),
                        }
                    }
                    if open > 0 {
                        a.notes.push(format!("{open} 9p request(s) had no reply in QEMU's trace"));
                    }
                    a.layers.push(match unread {
                        Some(why) => Layer::missing(VMM, BOUNDARY, why),
                        None if h.is_empty() => Layer::missing(VMM, BOUNDARY, "QEMU logged no 9p read or write"),
                        None => Layer::measured(VMM, BOUNDARY, &h),
                    });
                }
                None => {
                    const BOUNDARY: &str = "virtiofsd Server::read/write (uprobes)";
                    a.layers.push(match host.as_ref().ok().and_then(|t| t.server.as_ref()) {
                        Some(h) => Layer::measured(VMM, BOUNDARY, h),
                        None => Layer::missing(
                            VMM,
                            BOUNDARY,
                            "virtiofsd's request handlers could not be probed (a stripped binary, or no uprobes)",
                        ),
                    });
                }
            }
        }
        // The host's syscalls, and CPU by role.
        const HOST_BOUNDARY: &str =
            "pread64/preadv/preadv2/pwrite64/pwritev/pwritev2 of the cell's processes (bpftrace)";
        match host {
            Ok(t) => {
                match t.all() {
                    Some(h) => {
                        a.host_syscalls = Some(h.len());
                        a.host_bytes = Some(t.bytes);
                        a.layers.push(Layer::measured(HOST, HOST_BOUNDARY, &h));
                    }
                    None => {
                        a.host_syscalls = Some(0);
                        a.layers.push(Layer::missing(
                            HOST,
                            HOST_BOUNDARY,
                            "the cell's processes made no positional read or write (another ioengine's syscalls?)",
                        ))
                    }
                }
                let mut by_role: Vec<RoleCpu> = Vec::new();
                for (pid, _tid, comm, ns) in &t.cpu {
                    let role = roles::thread_role(self.roles.get(pid).copied().unwrap_or(roles::OTHER), comm);
                    let i = match by_role.iter().position(|r| r.role == role) {
                        Some(i) => i,
                        None => {
                            by_role.push(RoleCpu { role: role.to_string(), cpu_ns: 0, threads: Vec::new() });
                            by_role.len() - 1
                        }
                    };
                    by_role[i].cpu_ns += ns;
                    if !by_role[i].threads.contains(comm) && by_role[i].threads.len() < 8 {
                        by_role[i].threads.push(comm.clone());
                    }
                }
                by_role.sort_by_key(|r| roles::ALL.iter().position(|x| *x == r.role));
                a.cpu = by_role;
                a.cpu_unattributed_ns = t.cpu_other_ns;
                // The cgroup's counter over the traced window (to its last reading).
                let last = cell.cpu.iter().filter_map(|s| s.samples.last()).map(|s| s.t_ns).min().unwrap_or(0);
                a.cgroup_cpu_ns = crate::results::cpu::cpu_between(&cell.cpu, self.from_ns, to_ns.min(last))
                    .map(|f| (f.cgroup_s * 1e9) as u64);
            }
            Err(why) => a.layers.push(Layer::missing(HOST, HOST_BOUNDARY, why)),
        }
        if cell.cell.workload.ramp_time.0 > std::time::Duration::ZERO {
            a.notes.push(
                "the host's counts include the ramp, the client's do not: amplification is high by the ramp's share"
                    .into(),
            );
        }
        a
    }
}

/// A group's attribution over its repetitions, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupAttribution {
    /// From the client inward.
    pub layers: Vec<LayerRow>,
    /// Host syscalls and bytes per client I/O.
    pub syscalls_per_io: Option<f64>,
    pub bytes_per_io: Option<f64>,
    /// Host CPU-seconds per GiB the clients moved, by role.
    pub cpu_s_per_gib: Vec<(String, f64)>,
    /// CPU charged to traced tasks while another ran, as a share of the roles' sum.
    pub cpu_unattributed: f64,
    /// The roles' CPU over the cell cgroup's, in the same window.
    pub cpu_roles_vs_cgroup: Option<f64>,
    /// Where the layers do not nest (an inner layer slower than its outer one).
    pub nesting: Vec<String>,
    /// Traced bandwidth / the untraced twin's (filled in by the report).
    pub overhead: Option<crate::results::stats::Estimate>,
    pub notes: Vec<String>,
}

/// How far an inner layer may exceed its outer one before it is flagged: the
/// instruments' resolution (1 µs stamps, 1.6 % buckets) and clock reads.
pub const NESTING_TOLERANCE: f64 = 0.05;

/// Tracing that costs a cell more of its bandwidth than this is flagged.
pub const OVERHEAD_TOLERANCE: f64 = 0.05;

impl GroupAttribution {
    /// Over the traced repetitions `cells`; `None` when none was traced.
    pub fn of(cells: &[&crate::results::cell::CellResult]) -> Option<GroupAttribution> {
        let traced: Vec<&Attribution> = cells.iter().filter_map(|c| c.attribution.as_ref()).collect();
        if traced.is_empty() {
            return None;
        }
        let layers = merge_layers(traced.iter().copied());
        let ios: u64 = traced.iter().map(|a| a.client_ios).sum();
        let bytes: u64 = traced.iter().map(|a| a.client_bytes).sum();
        let all_host = traced.iter().all(|a| a.host_syscalls.is_some());
        let per_io = |x: u64| (all_host && ios > 0).then(|| x as f64 / ios as f64);
        let gib = bytes as f64 / (1u64 << 30) as f64;
        let mut cpu: Vec<(String, f64)> = Vec::new();
        for r in traced.iter().flat_map(|a| &a.cpu) {
            match cpu.iter_mut().find(|(role, _)| *role == r.role) {
                Some((_, ns)) => *ns += r.cpu_ns as f64,
                None => cpu.push((r.role.clone(), r.cpu_ns as f64)),
            }
        }
        let total: f64 = cpu.iter().map(|(_, ns)| ns).sum();
        let cgroup: Option<u64> = traced.iter().map(|a| a.cgroup_cpu_ns).sum();
        let other: u64 = traced.iter().map(|a| a.cpu_unattributed_ns).sum();
        cpu.sort_by_key(|(r, _)| roles::ALL.iter().position(|x| x == r));
        let mut notes: Vec<String> = Vec::new();
        for n in traced.iter().flat_map(|a| &a.notes) {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        Some(GroupAttribution {
            nesting: nesting_violations(&layers, NESTING_TOLERANCE),
            layers,
            syscalls_per_io: per_io(traced.iter().filter_map(|a| a.host_syscalls).sum()),
            bytes_per_io: per_io(traced.iter().filter_map(|a| a.host_bytes).sum()),
            cpu_s_per_gib: if gib > 0.0 {
                cpu.into_iter().map(|(r, ns)| (r, ns / 1e9 / gib)).collect()
            } else {
                Vec::new()
            },
            cpu_unattributed: if total > 0.0 { other as f64 / total } else { 0.0 },
            cpu_roles_vs_cgroup: cgroup.filter(|c| *c > 0).map(|c| total / c as f64),
            overhead: None,
            notes,
        })
    }

    /// Each measured layer's own part of the client's p50: its p50 less the next
    /// measured layer's inside it (clamped at 0), named; the innermost whole.
    pub fn p50_parts(&self) -> Vec<(&'static str, f64)> {
        let measured: Vec<(&str, f64)> = [CLIENT, GUEST, VMM, HOST]
            .iter()
            .filter_map(|n| {
                self.layers.iter().find(|l| l.name == *n).and_then(|l| l.figure.summary()).map(|s| (*n, s.p50 as f64))
            })
            .collect();
        let mut parts = Vec::new();
        for (i, (name, v)) in measured.iter().enumerate() {
            let inner = measured.get(i + 1).map_or(0.0, |x| x.1);
            parts.push((self.part_name(name), (v - inner).max(0.0)));
        }
        parts
    }

    /// What a layer's own part of a request's time (its figure less the next measured
    /// layer's inside it) is: told by which layers and roles the group has.
    fn part_name(&self, layer: &str) -> &'static str {
        let has = |l: &str| self.layers.iter().any(|x| x.name == l);
        match layer {
            CLIENT if has(GUEST) => "client & guest kernel",
            CLIENT if self.cpu_s_per_gib.iter().any(|(r, _)| r == roles::SANDBOX) => "sandbox kernel (gVisor's sentry)",
            CLIENT => "client (engine, syscall entry and exit)",
            GUEST => "transport (virtio, vCPU)",
            VMM if self.layers.iter().any(|x| x.name == VMM && x.boundary.starts_with("virtiofsd")) => "virtiofsd",
            VMM => "QEMU 9p server",
            _ => "host syscall",
        }
    }

    /// The part of the p50 that dominates, and its share of the client's p50.
    pub fn biggest(&self) -> Option<(&'static str, f64)> {
        let parts = self.p50_parts();
        let total: f64 = parts.iter().map(|p| p.1).sum();
        parts.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).filter(|_| total > 0.0).map(|(n, v)| (n, v / total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, values: &[u64]) -> Layer {
        Layer::measured(name, "test", &histogram_of(values.iter().map(|v| (*v, 1))))
    }

    fn traced(layers: Vec<Layer>) -> Attribution {
        Attribution { layers, client_ios: 10, client_bytes: 10 << 16, host_syscalls: Some(10), ..Default::default() }
    }

    #[test]
    fn layers_merge_over_repetitions_and_nest() {
        let a = traced(vec![layer(CLIENT, &[100_000]), layer(GUEST, &[80_000]), layer(HOST, &[10_000])]);
        let b = traced(vec![
            layer(CLIENT, &[300_000]),
            layer(GUEST, &[60_000]),
            Layer::missing(HOST, "test", "bpftrace did not attach"),
        ]);
        let merged = merge_layers([&a, &b]);
        let client = merged[0].figure.summary().unwrap();
        assert_eq!(client.count, 2, "counts add up over repetitions");
        assert!(nesting_violations(&merged, NESTING_TOLERANCE).is_empty());
        // A host layer slower than the guest's round trip is flagged, not hidden.
        let bad = traced(vec![layer(CLIENT, &[100_000]), layer(GUEST, &[50_000]), layer(HOST, &[70_000])]);
        let v = nesting_violations(&merge_layers([&bad]), NESTING_TOLERANCE);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].starts_with("host syscall p50 70.0 µs > guest transport p50 50.0 µs"), "{v:?}");
    }

    #[test]
    fn the_p50_is_split_into_self_times() {
        let a = traced(vec![
            layer(CLIENT, &[200_000]),
            layer(GUEST, &[150_000]),
            layer(VMM, &[60_000]),
            layer(HOST, &[20_000]),
        ]);
        let c = crate::results::synthetic::cell(
            crate::results::cell::Cell {
                id: "x".into(),
                scenario: "x".into(),
                pattern: crate::workload::Pattern::Read,
                clients: 1,
                options: Vec::new(),
                repetition: 1,
                workload: crate::workload::Workload::new(crate::workload::Pattern::Read, 65536, 1 << 20, "/x"),
            },
            Vec::new(),
        );
        let c = crate::results::cell::CellResult { attribution: Some(a), ..c };
        let g = GroupAttribution::of(&[&c]).unwrap();
        let parts: Vec<(&str, u64)> = g.p50_parts().into_iter().map(|(n, v)| (n, (v / 1e3).round() as u64)).collect();
        assert_eq!(
            parts,
            vec![
                ("client & guest kernel", 50),
                ("transport (virtio, vCPU)", 90),
                ("QEMU 9p server", 40),
                ("host syscall", 20)
            ]
        );
        assert_eq!(g.biggest().unwrap().0, "transport (virtio, vCPU)");
        assert_eq!(g.syscalls_per_io, Some(1.0));
        // A group without a traced cell has no attribution.
        let plain = crate::results::cell::CellResult { attribution: None, ..c };
        assert!(GroupAttribution::of(&[&plain]).is_none());
    }
}
