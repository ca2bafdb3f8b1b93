//! Attribution's record in a cell result: each layer's latencies at its own boundary,
//! host syscalls and bytes per client I/O, CPU by role (see [`crate::attribution`],
//! which measures them). Kept here, with the other result documents, so that reading a
//! result needs nothing of the tracers.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::results::histogram::{EncodedHistogram, new_latency_histogram};

/// The cell option that says whether a cell is traced (`on`) or its untraced twin (`off`).
pub const OPTION: &str = "attribute";

/// The layers, from the client inward.
pub const CLIENT: &str = "client";
pub const GUEST: &str = "guest transport";
pub const VMM: &str = "VMM";
pub const HOST: &str = "host syscall";

/// One layer's latency, per request at its own boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// [`CLIENT`], [`GUEST`], [`VMM`] or [`HOST`].
    pub name: String,
    /// What was timed, e.g. `9p Tread → Rread (guest kernel tracepoints)`.
    pub boundary: String,
    /// The latencies, when measured.
    pub histogram: Option<EncodedHistogram>,
    /// Why it was not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
}

impl Layer {
    pub fn measured(name: &str, boundary: impl Into<String>, h: &Histogram<u64>) -> Layer {
        Layer {
            name: name.to_string(),
            boundary: boundary.into(),
            histogram: Some(EncodedHistogram::encode(h)),
            not_measured: None,
        }
    }

    pub fn missing(name: &str, boundary: impl Into<String>, why: impl Into<String>) -> Layer {
        Layer { name: name.to_string(), boundary: boundary.into(), histogram: None, not_measured: Some(why.into()) }
    }
}

/// CPU one role cost the host during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleCpu {
    pub role: String,
    pub cpu_ns: u64,
    /// Its threads, by name.
    pub threads: Vec<String>,
}

/// One cell's attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Attribution {
    /// From the client inward.
    pub layers: Vec<Layer>,
    /// Host syscalls and their bytes over the traced run, and the clients' I/Os they
    /// served (amplification: syscalls per client I/O).
    pub host_syscalls: Option<u64>,
    pub host_bytes: Option<u64>,
    pub client_ios: u64,
    pub client_bytes: u64,
    /// CPU by role over the traced run.
    pub cpu: Vec<RoleCpu>,
    /// Runtime the tracer saw charged to a traced task while another ran (not
    /// attributed to a role; the CPU figures' error).
    pub cpu_unattributed_ns: u64,
    /// The cell cgroup's CPU over the same window, to check the roles' sum against.
    #[serde(default)]
    pub cgroup_cpu_ns: Option<u64>,
    /// What the instruments noted.
    pub notes: Vec<String>,
}

impl Attribution {
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }
}

/// A histogram from `(latency ns, count)` buckets.
pub fn histogram_of(buckets: impl IntoIterator<Item = (u64, u64)>) -> Histogram<u64> {
    let mut h = new_latency_histogram();
    for (v, n) in buckets {
        let _ = h.record_n(v.clamp(1, crate::results::histogram::MAX_LATENCY_NS), n);
    }
    h
}

/// What the guest kernel measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestTrace {
    pub boundary: String,
    pub histogram: Option<EncodedHistogram>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_measured: Option<String>,
    /// Events the ring buffer had no room for.
    #[serde(default)]
    pub dropped: u64,
}
