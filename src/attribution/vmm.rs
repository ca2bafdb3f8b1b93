//! The VMM layer: QEMU's own handling of each 9p read and write, from its trace events.
//!
//! Debian's QEMU has the `log` trace backend: with `-trace v9fs_read …` and
//! `-msg timestamp=on` each event is a line `tid@sec.usec:v9fs_read tag 1 id 116 …` in
//! the `-D` file. A request's time in QEMU is from its `v9fs_read` (or `v9fs_write`) to
//! the `…_return` of the same tag: the PDU decoded, the worker thread's host syscall,
//! the reply marshalled. Stamps are microseconds of the wall clock, so each latency is
//! good to ±1 µs; events outside the traced window (the layout's writes) are left out.

use std::path::Path;

use hdrhistogram::Histogram;

use super::histogram_of;

/// The events QEMU is asked to log.
pub const EVENTS: [&str; 4] = ["v9fs_read", "v9fs_read_return", "v9fs_write", "v9fs_write_return"];

/// QEMU's arguments that name its threads (vCPUs `CPU n/TCG`, I/O `worker`…), so
/// their CPU can be given a role ([`super::roles`]).
pub const THREAD_NAMES: [&str; 2] = ["-name", "iostudy,debug-threads=on"];

/// QEMU's arguments that log [`EVENTS`] to `file`, its threads named.
pub fn qemu_args(file: &Path) -> Vec<String> {
    let mut a: Vec<String> = THREAD_NAMES.map(String::from).to_vec();
    for e in EVENTS {
        a.extend(["-trace".to_string(), e.to_string()]);
    }
    a.extend(["-msg".to_string(), "timestamp=on".to_string(), "-D".to_string(), file.display().to_string()]);
    a
}

/// The log's 9p request latencies inside `[from_ns, to_ns]` (wall clock), and how many
/// requests were still open at its end.
pub fn latencies(log: &str, from_ns: u64, to_ns: u64) -> (Histogram<u64>, u64) {
    let mut open: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
    let mut done = Vec::new();
    for line in log.lines() {
        let Some((at, event, tag)) = parse(line) else { continue };
        if at < from_ns || at > to_ns {
            continue;
        }
        match event {
            "v9fs_read" | "v9fs_write" => {
                open.insert(tag, at);
            }
            "v9fs_read_return" | "v9fs_write_return" => {
                if let Some(t0) = open.remove(&tag) {
                    // Two µs stamps: the difference, at the middle of its microsecond.
                    done.push(((at - t0) + 500, 1));
                }
            }
            _ => {}
        }
    }
    (histogram_of(done), open.len() as u64)
}

/// `tid@sec.usec:event tag N …` → (wall ns, event, tag).
fn parse(line: &str) -> Option<(u64, &str, u32)> {
    let (_, rest) = line.split_once('@')?;
    let (stamp, rest) = rest.split_once(':')?;
    let (sec, usec) = stamp.split_once('.')?;
    let at = sec.parse::<u64>().ok()? * 1_000_000_000 + usec.parse::<u64>().ok()? * 1_000;
    let mut words = rest.split_whitespace();
    let event = words.next()?;
    (words.next()? == "tag").then_some(())?;
    let tag = words.next()?.parse().ok()?;
    Some((at, event, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_matched_by_tag_within_the_window() {
        let log = "\
12@100.000010:v9fs_write tag 1 id 118 fid 3 off 0 count 65536 cnt 1
12@200.000010:v9fs_read tag 1 id 116 fid 3 off 0 max_count 65536
12@200.000012:v9fs_read tag 2 id 116 fid 3 off 65536 max_count 65536
13@200.000040:v9fs_read_return tag 1 id 116 count 65536 err 65547
13@200.000052:v9fs_read_return tag 2 id 116 count 65536 err 65547
12@200.000060:v9fs_read tag 1 id 116 fid 3 off 0 max_count 65536
garbage line
";
        let (h, open) = latencies(log, 150_000_000_000, 300_000_000_000);
        assert_eq!(h.len(), 2);
        assert_eq!(open, 1);
        assert!(h.equivalent(h.min(), 30_500));
        assert!(h.equivalent(h.max(), 40_500));
    }
}
