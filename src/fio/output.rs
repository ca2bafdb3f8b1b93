//! fio's `--output-format=json+` as client results.
//!
//! json+ is the only fio output that carries whole latency distributions: each job's
//! `clat_ns.bins` (and `lat_ns.bins` with `--lat_percentiles=1`) map a bucket's value in
//! ns to its count. Merging the bins of every job and client and reading percentiles
//! from the merge is exact to fio's own bucket precision; averaging fio's per-job
//! percentiles, as summing tools do, is not a percentile of anything. The bins go into
//! iostudy's HDR histograms (3 significant digits, finer than fio's buckets), so an
//! imported result is reported and compared like a measured one.
//!
//! fio prints no start time per job (3.33): a job's window is taken to end at the
//! output's timestamp (or, when iostudy ran fio, when fio exited) and to last its
//! runtime; the result's note says so. Bytes per second are spread evenly over that
//! window, since fio's json has no time series.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::fio::job::{JobOption, translate_output};
use crate::results::histogram::{MAX_LATENCY_NS, new_latency_histogram};
use crate::results::{ClientResult, DirectionStats, HostFacts, IntervalSeries, LayoutStats, ResultParts, ThreadStats};
use crate::workload::{IoEngineKind, Workload};

/// A parsed fio output: one or more clients (several with `--client`), each with jobs.
#[derive(Debug, Clone)]
pub struct FioOutput {
    /// `fio-3.33`.
    pub version: String,
    /// When fio wrote the output, ms since the epoch.
    pub timestamp_ms: Option<u64>,
    pub clients: Vec<FioClient>,
}

/// One fio client's jobs (a whole file, or one `client_stats` host).
#[derive(Debug, Clone)]
pub struct FioClient {
    /// The host a client/server run names; `None` for a local run.
    pub hostname: Option<String>,
    pub jobs: Vec<FioJob>,
}

/// One job (thread) of a fio run.
#[derive(Debug, Clone)]
pub struct FioJob {
    pub name: String,
    /// `global options` then `job options`.
    pub options: Vec<JobOption>,
    pub read: FioDirection,
    pub write: FioDirection,
    pub runtime_ms: u64,
    pub error: i64,
}

/// One direction of a job.
#[derive(Debug, Clone, Default)]
pub struct FioDirection {
    pub io_bytes: u64,
    pub total_ios: u64,
    /// `lat_ns.bins` (submission + completion; with `--lat_percentiles=1`).
    pub lat_bins: Option<BTreeMap<u64, u64>>,
    /// `clat_ns.bins` (completion only).
    pub clat_bins: Option<BTreeMap<u64, u64>>,
}

/// Which fio latency the histograms hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyKind {
    /// `lat`: submission and completion, iostudy's own definition.
    Total,
    /// `clat`: completion only (what fio records without `--lat_percentiles=1`).
    Completion,
}

/// The largest count or byte total an output may claim (2^56, 64 PiB): beyond it the
/// file is damaged, and sums of such values would overflow.
const MAX_COUNT: u64 = 1 << 56;
/// The longest job an output may claim (a year, in ms).
const MAX_RUNTIME_MS: u64 = 366 * 24 * 3600 * 1000;

/// A whole number at JSON path `path` (absent: 0), or why it cannot be one: negative,
/// fractional, not a number, or beyond [`MAX_COUNT`].
fn count(v: &Value, path: &str) -> Result<u64, String> {
    let n = match v {
        Value::Null => return Ok(0),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Some(u),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < MAX_COUNT as f64 => Some(f as u64),
            _ => None,
        },
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n <= MAX_COUNT => Ok(n),
        _ => {
            Err(format!("{path}: {v} is not a count fio writes (a whole number from 0 to 2^56): the output is damaged"))
        }
    }
}

fn bins(v: &Value, path: &str) -> Result<Option<BTreeMap<u64, u64>>, String> {
    let Some(map) = v.get("bins").and_then(Value::as_object) else { return Ok(None) };
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    for (k, c) in map {
        let ns = k.parse::<u64>().map_err(|_| format!("{path}.bins: `{k}` is not a latency in ns"))?;
        let n = count(c, &format!("{path}.bins.{k}"))?;
        total = total.saturating_add(n);
        if total > MAX_COUNT {
            return Err(format!("{path}.bins: more than 2^56 I/Os in all: the output is damaged"));
        }
        *out.entry(ns).or_insert(0) += n;
    }
    Ok(Some(out))
}

fn direction(v: Option<&Value>, path: &str) -> Result<FioDirection, String> {
    let Some(v) = v else { return Ok(FioDirection::default()) };
    Ok(FioDirection {
        io_bytes: count(&v["io_bytes"], &format!("{path}.io_bytes"))?,
        total_ios: count(&v["total_ios"], &format!("{path}.total_ios"))?,
        lat_bins: match v.get("lat_ns") {
            Some(l) => bins(l, &format!("{path}.lat_ns"))?,
            None => None,
        },
        clat_bins: match v.get("clat_ns") {
            Some(l) => bins(l, &format!("{path}.clat_ns"))?,
            None => None,
        },
    })
}

fn options(v: Option<&Value>) -> Vec<JobOption> {
    let Some(map) = v.and_then(Value::as_object) else { return Vec::new() };
    map.iter()
        .map(|(k, v)| JobOption {
            key: k.clone(),
            value: match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            },
            line: 0,
        })
        .collect()
}

/// Parses fio's json+ output; other fio outputs get an error naming the flag to use.
pub fn parse(text: &str) -> Result<FioOutput, String> {
    const WANT: &str = "rerun fio with --output-format=json+";
    let trimmed = text.trim_start();
    if trimmed.starts_with("3;fio-") || trimmed.starts_with("2;fio-") {
        return Err(format!("this is fio's terse output, which has no latency distribution: {WANT}"));
    }
    // fio may print notes before the document.
    let Some(start) = text.find('{') else {
        return Err(if text.contains("IOPS=") || text.contains("clat") {
            format!("this is fio's normal (text) output: {WANT}")
        } else {
            format!("this is not fio output: {WANT}")
        });
    };
    let doc: Value = serde_json::from_str(&text[start..]).map_err(|e| {
        if text[..start].contains("IOPS=") || text.contains("clat percentiles") {
            format!("this is fio's normal (text) output: {WANT}")
        } else {
            format!("not a fio JSON document ({e}): {WANT}")
        }
    })?;
    let version = doc["fio version"].as_str().ok_or(format!("no `fio version`: not fio's JSON output; {WANT}"))?;
    let global = doc.get("global options");
    let job = |j: &Value, path: String| -> Result<FioJob, String> {
        let mut opts = options(global);
        for o in options(j.get("job options")) {
            opts.retain(|m: &JobOption| m.key != o.key);
            opts.push(o);
        }
        let runtime_ms = count(&j["job_runtime"], &format!("{path}.job_runtime"))?;
        if runtime_ms > MAX_RUNTIME_MS {
            return Err(format!("{path}.job_runtime: {runtime_ms} ms is longer than a year: the output is damaged"));
        }
        Ok(FioJob {
            name: j["jobname"].as_str().unwrap_or("").to_string(),
            options: opts,
            read: direction(j.get("read"), &format!("{path}.read"))?,
            write: direction(j.get("write"), &format!("{path}.write"))?,
            runtime_ms,
            error: j["error"].as_i64().unwrap_or(0),
        })
    };
    let mut clients = Vec::new();
    if let Some(stats) = doc.get("client_stats").and_then(Value::as_array) {
        let mut by_host: BTreeMap<String, Vec<FioJob>> = BTreeMap::new();
        for (i, j) in stats.iter().enumerate().filter(|(_, j)| j["jobname"].as_str() != Some("All clients")) {
            let host = j["hostname"].as_str().unwrap_or("unknown").to_string();
            by_host.entry(host).or_default().push(job(j, format!("client_stats[{i}]"))?);
        }
        clients.extend(by_host.into_iter().map(|(h, jobs)| FioClient { hostname: Some(h), jobs }));
    } else if let Some(jobs) = doc.get("jobs").and_then(Value::as_array) {
        let jobs = jobs.iter().enumerate().map(|(i, j)| job(j, format!("jobs[{i}]"))).collect::<Result<_, _>>()?;
        clients.push(FioClient { hostname: None, jobs });
    }
    if clients.iter().all(|c| c.jobs.is_empty()) {
        return Err("the fio output has no jobs".into());
    }
    let used = |d: &FioDirection| d.total_ios > 0;
    let without_bins = clients
        .iter()
        .flat_map(|c| &c.jobs)
        .flat_map(|j| [&j.read, &j.write])
        .any(|d| used(d) && d.clat_bins.is_none() && d.lat_bins.is_none());
    if without_bins {
        return Err(format!("this is fio's plain json output, whose latencies are percentiles without bins: {WANT}"));
    }
    // Client/server outputs carry whole seconds only. Anything past the year 2500 is
    // not a time fio wrote.
    const MAX_MS: u64 = 16_725_225_600_000;
    let timestamp_ms = doc["timestamp_ms"]
        .as_u64()
        .or_else(|| doc["timestamp"].as_u64().map(|s| s.saturating_mul(1000)))
        .filter(|&ms| ms <= MAX_MS);
    Ok(FioOutput { version: version.to_string(), timestamp_ms, clients })
}

impl FioClient {
    /// The latency kind every job of this client has bins for.
    pub fn latency_kind(&self) -> LatencyKind {
        let all_total = self
            .jobs
            .iter()
            .flat_map(|j| [&j.read, &j.write])
            .filter(|d| d.total_ios > 0)
            .all(|d| d.lat_bins.is_some());
        if all_total { LatencyKind::Total } else { LatencyKind::Completion }
    }

    /// The workload these jobs ran, from their options, and the notes the translation
    /// made (options set aside or not modelled). Errors when the jobs differ in what
    /// they did.
    pub fn workload(&self) -> Result<(Workload, Vec<String>), String> {
        let first = self.jobs.first().ok_or("no jobs")?;
        let t = translate_output(&first.name, &first.options);
        for j in &self.jobs[1..] {
            let other = translate_output(&j.name, &j.options);
            for key in ["rw", "bs", "ioengine", "iodepth", "direct"] {
                if other.workload.get(key) != t.workload.get(key) {
                    return Err(format!(
                        "jobs `{}` and `{}` differ in {key}: import one kind of job per cell (split the output, or run them apart)",
                        first.name, j.name
                    ));
                }
            }
        }
        let mut table = t.workload.clone();
        table.entry("rw").or_insert_with(|| "read".into());
        table.entry("bs").or_insert_with(|| "4k".into());
        let largest = self.jobs.iter().map(|j| j.read.io_bytes + j.write.io_bytes).max().unwrap_or(0);
        let mut notes: Vec<String> = Vec::new();
        if !table.contains_key("size") {
            notes.push("no size in the job options: the largest job's bytes moved stand in for it".into());
            table.insert("size".into(), toml::Value::Integer(largest.max(1) as i64));
        }
        table.insert("directory".into(), "/".into());
        let mut w =
            Workload::from_table(table).map_err(|e| format!("the jobs' options do not make a workload: {e}"))?;
        w.numjobs = self.jobs.len() as u32;
        notes.extend(t.unsupported.iter().map(|d| format!("fio option not modelled by iostudy: {d}")));
        Ok((w, notes))
    }
}

/// Everything a conversion needs besides the fio client.
pub struct Context<'a> {
    pub client_id: u32,
    pub host: HostFacts,
    pub workload: Workload,
    /// The latency to take (see [`FioClient::latency_kind`]; a cell must use one kind).
    pub latency: LatencyKind,
    /// When the jobs' measured phase ended, wall-clock ns.
    pub end_ns: u64,
    /// fio's version and where its numbers come from, e.g. `imported from out.json`.
    pub version: &'a str,
    pub origin: &'a str,
    pub notes: Vec<String>,
}

/// One fio client as a client result.
pub fn client_result(client: &FioClient, ctx: Context<'_>) -> ClientResult {
    let mut read_hist = new_latency_histogram();
    let mut write_hist = new_latency_histogram();
    let record = |h: &mut hdrhistogram::Histogram<u64>, d: &FioDirection| {
        let bins = match ctx.latency {
            LatencyKind::Total => d.lat_bins.as_ref(),
            LatencyKind::Completion => d.clat_bins.as_ref(),
        };
        for (&ns, &count) in bins.into_iter().flatten() {
            h.record_n(ns.clamp(1, MAX_LATENCY_NS), count).expect("clamped into the histogram's range");
        }
    };
    let mut threads = Vec::new();
    for (i, j) in client.jobs.iter().enumerate() {
        record(&mut read_hist, &j.read);
        record(&mut write_hist, &j.write);
        threads.push(ThreadStats {
            thread: i as u32,
            file: j.name.clone(),
            read: DirectionStats { bytes: j.read.io_bytes, ops: j.read.total_ios },
            write: DirectionStats { bytes: j.write.io_bytes, ops: j.write.total_ios },
            errors: u64::from(j.error != 0),
            start_ns: ctx.end_ns.saturating_sub(j.runtime_ms.saturating_mul(1_000_000)),
            end_ns: ctx.end_ns,
        });
    }
    let start_ns = threads.iter().map(|t| t.start_ns).min().unwrap_or(ctx.end_ns);
    let total =
        threads.iter().map(|t| (t.read.bytes.saturating_add(t.write.bytes), t.read.ops.saturating_add(t.write.ops)));
    let (bytes, ops) = total.fold((0u64, 0u64), |(b, o), (tb, to)| (b.saturating_add(tb), o.saturating_add(to)));
    let mut notes = ctx.notes;
    notes.push(format!(
        "measured by {} ({}); latency is fio's {}; fio reports no start times: the window ends {} and lasts each job's runtime, bytes spread evenly over it",
        ctx.version,
        ctx.origin,
        match ctx.latency {
            LatencyKind::Total => "lat (submission + completion)",
            LatencyKind::Completion => "clat (completion only, without submission)",
        },
        if ctx.origin.starts_with("imported") { "at the output's timestamp" } else { "when fio exited" },
    ));
    let engine = ctx.workload.ioengine;
    ClientResult::from_parts(ResultParts {
        client_id: ctx.client_id,
        host: ctx.host,
        ioengine_used: engine,
        ioengine_note: Some(notes.join("; ")),
        measured_by: format!("{} ({})", ctx.version, ctx.origin),
        start_ns,
        end_ns: ctx.end_ns,
        threads,
        read_hist,
        write_hist,
        intervals: spread(bytes, ops, start_ns, ctx.end_ns),
        layout: LayoutStats::default(),
        workload: ctx.workload,
    })
}

/// `bytes` and `ops` spread evenly over `[start, end)` in wall-clock-aligned seconds —
/// or in coarser whole-second intervals when that would make more than
/// `MAX_INTERVALS`: what is allocated follows the data, not a claimed runtime.
fn spread(bytes: u64, ops: u64, start: u64, end: u64) -> IntervalSeries {
    const MAX_INTERVALS: u64 = 10_000;
    const SEC: u64 = 1_000_000_000;
    let end = end.max(start + 1);
    let width = SEC * (end - start).div_ceil(SEC).div_ceil(MAX_INTERVALS).max(1);
    let first = start / width;
    let last = (end - 1) / width;
    let span = (end - start) as f64;
    let share = |i: u64| {
        let lo = (i * width).max(start);
        let hi = ((i + 1) * width).min(end);
        hi.saturating_sub(lo) as f64 / span
    };
    let mut b: Vec<u64> = (first..=last).map(|i| (bytes as f64 * share(i)) as u64).collect();
    let mut o: Vec<u64> = (first..=last).map(|i| (ops as f64 * share(i)) as u64).collect();
    // Rounding leftovers go to the first interval, so totals stay exact.
    b[0] += bytes - b.iter().sum::<u64>();
    o[0] += ops - o.iter().sum::<u64>();
    IntervalSeries { interval_ns: width, first_index: first, bytes: b, ops: o, shift_ns: 0 }
}

/// The engine fio ran with, as iostudy names it (fio's `sync`/`pvsync` are psync).
pub fn engine_of(options: &[JobOption]) -> Option<IoEngineKind> {
    let v = options.iter().rev().find(|o| o.key == "ioengine")?.value.as_deref()?;
    match v {
        "sync" | "pvsync" => Some(IoEngineKind::Psync),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_fio_outputs_are_refused_with_the_flag_to_use() {
        let terse = "3;fio-3.33;t;0;0;0;0;0;0;0;0;0.000000;0.000000;0;0;0.000000";
        assert!(parse(terse).unwrap_err().contains("terse output") && parse(terse).unwrap_err().contains("json+"));
        let text =
            "t: (g=0): rw=read, bs=(R) 4096B-4096B\n  read: IOPS=1000, BW=4000KiB/s\n    clat percentiles (nsec):\n";
        assert!(parse(text).unwrap_err().contains("normal (text) output"), "{}", parse(text).unwrap_err());
        let plain = r#"{"fio version":"fio-3.33","jobs":[{"jobname":"t","job options":{"rw":"read"},
            "read":{"io_bytes":4096,"total_ios":1,"clat_ns":{"min":1,"percentile":{"50.000000":10}}},
            "write":{"io_bytes":0,"total_ios":0},"job_runtime":1}]}"#;
        assert!(parse(plain).unwrap_err().contains("plain json output"), "{}", parse(plain).unwrap_err());
    }

    #[test]
    fn spreading_keeps_totals_and_alignment() {
        let s = spread(1000, 10, 1_500_000_000, 3_500_000_000);
        assert_eq!(s.first_index, 1);
        assert_eq!(s.bytes.iter().sum::<u64>(), 1000);
        assert_eq!(s.ops.iter().sum::<u64>(), 10);
        assert_eq!(s.bytes, vec![250, 500, 250]);
    }
}
