//! The guest transport layer, measured inside a micro-VM by its own kernel.
//!
//! iostudy is the guest's init, so at go it turns the guest kernel's tracing on itself:
//! 9p's `9p_client_req`/`9p_client_res` tracepoints (reads and writes only, by a filter
//! on the request type), or for virtio-fs two kprobes, on `virtio_fs_enqueue_req` and
//! `virtio_fs_request_complete` (every FUSE request; the run's are reads and writes). The
//! events go into the kernel's ring buffer, the cheapest path a tracepoint has (no hist
//! trigger, no synthetic event: under TCG every guest instruction is emulated, and a
//! hist trigger per request cost the client 8 % of its bandwidth); after the run they
//! are read back, paired by tag (or request pointer), and handed back with the
//! client's result. The buffer is sized for the run and does not overwrite: requests
//! past its end are counted as dropped, never silently lost.

use std::fs;
use std::path::Path;

use super::host::TRACEFS;
use crate::results::attribution::GuestTrace;
use crate::results::histogram::EncodedHistogram;

/// The ring buffer per CPU, KiB: about 500,000 events.
const BUFFER_KB: u32 = 32 << 10;

/// The guest's tracing, on.
pub struct Armed {
    boundary: &'static str,
    /// `group/event` of the request and of its completion.
    events: [&'static str; 2],
    kprobes: bool,
}

/// Turns the guest kernel's tracing on for share type `fstype` (`9p` or `virtiofs`).
pub fn arm(fstype: &str) -> Result<Armed, GuestTrace> {
    let boundary = match fstype {
        "9p" => "9p Tread/Twrite → reply (guest kernel tracepoints)",
        _ => "FUSE request → completion (guest kprobes on virtio_fs_enqueue_req/virtio_fs_request_complete)",
    };
    let fail =
        |why: String| GuestTrace { boundary: boundary.into(), histogram: None, not_measured: Some(why), dropped: 0 };
    let t = Path::new(TRACEFS);
    super::host::tracefs().map_err(|e| fail(format!("in the guest: {e}")))?;
    let (armed, filter) = match fstype {
        "9p" => (
            Armed { boundary, events: ["9p/9p_client_req", "9p/9p_client_res"], kprobes: false },
            // Tread and Twrite (a response carries its request's type).
            Some("type == 116 || type == 118"),
        ),
        "virtiofs" => {
            let defs = "p:iostudy/fs_req virtio_fs_enqueue_req req=%si:x64\n\
                        p:iostudy/fs_end virtio_fs_request_complete req=%di:x64\n";
            write(&t.join("kprobe_events"), defs).map_err(|e| fail(format!("the guest kernel has no kprobe: {e}")))?;
            (Armed { boundary, events: ["iostudy/fs_req", "iostudy/fs_end"], kprobes: true }, None)
        }
        other => return Err(fail(format!("no guest transport tracing for share type {other}"))),
    };
    let mut steps = vec![
        ("tracing_on".to_string(), "0".to_string()),
        ("buffer_size_kb".to_string(), BUFFER_KB.to_string()),
        ("options/overwrite".to_string(), "0".to_string()),
        ("trace".to_string(), String::new()),
    ];
    for e in armed.events {
        if let Some(f) = filter {
            steps.push((format!("events/{e}/filter"), f.to_string()));
        }
        steps.push((format!("events/{e}/enable"), "1".to_string()));
    }
    steps.push(("tracing_on".to_string(), "1".to_string()));
    for (file, value) in steps {
        if let Err(e) = write(&t.join(&file), &value) {
            let why = format!("the guest kernel refused `{value}` in {file}: {e}");
            armed.disarm();
            return Err(fail(why));
        }
    }
    Ok(armed)
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    fs::OpenOptions::new().write(true).truncate(true).open(path)?.write_all(value.as_bytes())
}

impl Armed {
    /// Stops tracing, pairs the requests and turns tracing off.
    pub fn collect(self) -> GuestTrace {
        let t = Path::new(TRACEFS);
        let _ = write(&t.join("tracing_on"), "0");
        let text = fs::read_to_string(t.join("trace"));
        // Each CPU's buffer counts what it had no room for.
        let dropped: u64 = fs::read_dir(t.join("per_cpu"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|cpu| fs::read_to_string(cpu.path().join("stats")).ok())
            .filter_map(|s| {
                s.lines().find_map(|l| l.strip_prefix("dropped events:").and_then(|n| n.trim().parse::<u64>().ok()))
            })
            .sum();
        self.disarm();
        let boundary = self.boundary.to_string();
        match text {
            Ok(text) => {
                let h = super::histogram_of(pair(&text, self.events));
                GuestTrace {
                    boundary,
                    not_measured: h.is_empty().then(|| "the guest kernel saw no request".to_string()),
                    histogram: (!h.is_empty()).then(|| EncodedHistogram::encode(&h)),
                    dropped,
                }
            }
            Err(e) => GuestTrace {
                boundary,
                histogram: None,
                not_measured: Some(format!("cannot read the trace: {e}")),
                dropped,
            },
        }
    }

    fn disarm(&self) {
        let t = Path::new(TRACEFS);
        for e in self.events {
            let _ = write(&t.join(format!("events/{e}/enable")), "0");
        }
        if self.kprobes {
            let _ = write(&t.join("kprobe_events"), "");
        }
        let _ = write(&t.join("trace"), "");
        let _ = write(&t.join("buffer_size_kb"), "1408");
    }
}

/// Request → completion latencies of a `trace` file's `events` lines, paired by the
/// request's key (a 9p tag, a FUSE request's address): (ns at the middle of the
/// microsecond, 1) each.
fn pair(text: &str, events: [&str; 2]) -> Vec<(u64, u64)> {
    let [req, res] = events.map(|e| format!(" {}: ", e.rsplit('/').next().unwrap_or(e)));
    let mut open: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let (is_req, at) = match (line.find(&req), line.find(&res)) {
            (Some(i), _) => (true, i),
            (_, Some(i)) => (false, i),
            _ => continue,
        };
        // `… 123.456789: 9p_client_req: client … tag  5`: the stamp ends the part before.
        let Some(us) = line[..at].rsplit(' ').next().and_then(|s| s.strip_suffix(':')).and_then(stamp_us) else {
            continue;
        };
        let rest = &line[at..];
        let key = match rest.find("tag") {
            Some(i) => rest[i + 3..].split_whitespace().next(),
            None => rest.find("req=").map(|i| rest[i + 4..].split_whitespace().next().unwrap_or("")),
        };
        let Some(key) = key else { continue };
        if is_req {
            open.insert(key, us);
        } else if let Some(t0) = open.remove(key) {
            out.push((us.saturating_sub(t0) * 1000 + 500, 1));
        }
    }
    out
}

/// `123.456789` → µs.
fn stamp_us(s: &str) -> Option<u64> {
    let (sec, frac) = s.split_once('.')?;
    Some(sec.parse::<u64>().ok()? * 1_000_000 + frac.get(..6)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_paired_by_tag_and_by_address() {
        let nine_p = "\
# tracer: nop
        iostudy-1       [000] .....    12.000100: 9p_client_req: client 1844 request P9_TREAD tag  3
        iostudy-1       [000] .....    12.000140: 9p_client_req: client 1844 request P9_TREAD tag  4
          <idle>-0      [000] ..s..    12.000245: 9p_client_res: client 1844 response P9_TREAD tag  3 err 0
          <idle>-0      [000] ..s..    12.000300: 9p_client_res: client 1844 response P9_TREAD tag  4 err 0
";
        assert_eq!(pair(nine_p, ["9p/9p_client_req", "9p/9p_client_res"]), vec![(145_500, 1), (160_500, 1)]);
        let fuse = "\
 iostudy-1 [000] d.... 5.000010: fs_req: (virtio_fs_enqueue_req+0x0/0x4b0 [virtiofs]) req=0xffff8880012
 kworker-9 [000] d.... 5.000090: fs_end: (virtio_fs_request_complete+0x0/0x2a0 [virtiofs]) req=0xffff8880012
";
        assert_eq!(pair(fuse, ["iostudy/fs_req", "iostudy/fs_end"]), vec![(80_500, 1)]);
    }
}
