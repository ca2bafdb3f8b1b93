//! The workload: what one client does, under fio's option names.
//!
//! It sits below everything else (the engine runs it, results record it, studies vary
//! it), so it imports nothing of the crate.
//!
//! Users think in fio (`rw`, `bs`, `numjobs`, `iodepth`…), so the fields keep those
//! names in the study file, the job file and on the command line. Sizes accept fio's
//! binary units (`64K` = 65536, `4k`, `1m`, `1MiB`); durations accept humantime
//! (`10s`, `1m30s`). Validation happens here, once, before any file is touched.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// fio's `rw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Read,
    Write,
    Randread,
    Randwrite,
    /// Sequential mixed reads and writes (fio also calls it `rw`).
    #[serde(alias = "rw")]
    Readwrite,
    Randrw,
}

impl Pattern {
    pub const ALL: [Pattern; 6] =
        [Pattern::Read, Pattern::Write, Pattern::Randread, Pattern::Randwrite, Pattern::Readwrite, Pattern::Randrw];

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Read => "read",
            Pattern::Write => "write",
            Pattern::Randread => "randread",
            Pattern::Randwrite => "randwrite",
            Pattern::Readwrite => "readwrite",
            Pattern::Randrw => "randrw",
        }
    }

    pub fn is_random(self) -> bool {
        matches!(self, Pattern::Randread | Pattern::Randwrite | Pattern::Randrw)
    }

    /// Share of I/Os that are reads, in percent, given fio's `rwmixread`.
    pub fn read_percent(self, rwmixread: u32) -> u32 {
        match self {
            Pattern::Read | Pattern::Randread => 100,
            Pattern::Write | Pattern::Randwrite => 0,
            Pattern::Readwrite | Pattern::Randrw => rwmixread,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let p = match s.to_ascii_lowercase().as_str() {
            "read" => Pattern::Read,
            "write" => Pattern::Write,
            "randread" => Pattern::Randread,
            "randwrite" => Pattern::Randwrite,
            "readwrite" | "rw" => Pattern::Readwrite,
            "randrw" => Pattern::Randrw,
            _ => {
                return Err(format!(
                    "unknown pattern `{s}`: expected one of read, write, randread, randwrite, readwrite, randrw"
                ));
            }
        };
        Ok(p)
    }
}

/// fio's `ioengine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoEngineKind {
    /// One `pread`/`pwrite` in flight per thread.
    Psync,
    /// io_uring with `iodepth` I/Os in flight per thread.
    #[serde(alias = "io-uring", alias = "uring")]
    IoUring,
    /// Linux native AIO (`io_submit`) with `iodepth` I/Os in flight per thread: the
    /// engine of the seed's own harness, and the async engine left where a seccomp
    /// profile refuses io_uring. Asynchronous only with `direct`; buffered, the kernel
    /// does each I/O inside `io_submit`, as for fio.
    Libaio,
}

impl IoEngineKind {
    pub fn name(self) -> &'static str {
        match self {
            IoEngineKind::Psync => "psync",
            IoEngineKind::IoUring => "io_uring",
            IoEngineKind::Libaio => "libaio",
        }
    }

    /// Whether the engine keeps `iodepth` I/Os in flight (psync keeps one).
    pub fn is_async(self) -> bool {
        !matches!(self, IoEngineKind::Psync)
    }
}

impl fmt::Display for IoEngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IoEngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "psync" => Ok(IoEngineKind::Psync),
            "io_uring" | "io-uring" | "uring" => Ok(IoEngineKind::IoUring),
            "libaio" => Ok(IoEngineKind::Libaio),
            _ => Err(format!("unknown ioengine `{s}`: expected psync, io_uring or libaio")),
        }
    }
}

/// What drives the I/O inside each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// iostudy's own engine.
    #[default]
    Iostudy,
    /// The real fio, run by the worker at the barrier's start instant, its json+
    /// converted into the result: the fidelity check against fio itself.
    Fio,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Iostudy => "iostudy",
            Engine::Fio => "fio",
        }
    }
}

impl FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iostudy" => Ok(Engine::Iostudy),
            "fio" => Ok(Engine::Fio),
            _ => Err(format!("unknown engine `{s}`: expected iostudy or fio")),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A byte count written in fio's units (`64K` = 65536). Serialized as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for Bytes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_bytes(s).map(Bytes)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_bytes(self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a size the way fio does: bare numbers are bytes, suffixes are binary
/// (`k`, `K`, `KiB`, `KB` all mean 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let config = parse_size::Config::new().with_binary();
    let parse = |t: &str| {
        config.parse_size(t).map_err(|e| format!("cannot parse size `{s}`: {e} (examples: 4k, 64K, 1m, 32GiB)"))
    };
    // parse-size overflows (a panic, or a wrapped value) on numbers beyond u64 before
    // their unit: bound the number times its unit first.
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if let Ok(number) = number.replace('_', "").parse::<f64>() {
        let unit = if unit.trim().is_empty() { 1 } else { parse(&format!("1{unit}"))? };
        if number * unit as f64 >= u64::MAX as f64 {
            return Err(format!("size `{s}` is beyond what a 64-bit count of bytes holds"));
        }
    }
    parse(t)
}

/// Formats bytes with binary units, as fio prints them (`64KiB`, `1.5GiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut v = n as f64;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}{}", v.round() as u64, UNITS[unit])
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// The largest block: each in-flight block is a buffer in memory.
pub const MAX_BS: u64 = 1 << 30;
/// The largest file per thread (an exbibyte): sums of sizes stay far from overflow.
pub const MAX_SIZE: u64 = 1 << 60;
/// The most threads per client.
pub const MAX_NUMJOBS: u32 = 4096;

/// A duration written in humantime (`10s`, `500ms`, `1m`); serialized the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

/// The longest duration iostudy takes (runtime, ramp, timeouts, intervals): a year.
/// Anything longer is a typo, and sums of such durations would overflow the clocks.
pub const MAX_SPAN: Duration = Duration::from_secs(366 * 24 * 3600);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        // fio takes bare numbers as seconds.
        let d = match t.parse::<u64>() {
            Ok(secs) => Duration::from_secs(secs.min(MAX_SPAN.as_secs() + 1)),
            Err(_) => humantime::parse_duration(t)
                .map_err(|e| format!("cannot parse duration `{s}`: {e} (examples: 30s, 500ms, 2m)"))?,
        };
        if d > MAX_SPAN {
            return Err(format!("duration `{s}` is longer than a year: iostudy measures seconds to hours"));
        }
        Ok(Span(d))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string().parse().map_err(serde::de::Error::custom),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_iodepth() -> u32 {
    1
}
fn default_numjobs() -> u32 {
    1
}
fn default_rwmixread() -> u32 {
    50
}
fn default_randseed() -> u64 {
    0x1057_0D1E
}
fn default_interval() -> Span {
    Span(Duration::from_secs(1))
}

/// What one client does. Field names follow fio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Access pattern.
    pub rw: Pattern,
    /// Block size of every I/O.
    pub bs: Bytes,
    /// Size of each thread's file.
    pub size: Bytes,
    /// Threads per client, each on its own file.
    #[serde(default = "default_numjobs")]
    pub numjobs: u32,
    /// Directory holding the files.
    pub directory: PathBuf,
    /// O_DIRECT instead of buffered I/O.
    #[serde(default)]
    pub direct: bool,
    #[serde(default = "psync")]
    pub ioengine: IoEngineKind,
    /// iostudy's engine, or the real fio.
    #[serde(default)]
    pub engine: Engine,
    /// I/Os in flight per thread (io_uring and libaio; psync is always 1).
    #[serde(default = "default_iodepth")]
    pub iodepth: u32,
    /// Time-based run of this length; absent = one full pass over each file.
    #[serde(default)]
    pub runtime: Option<Span>,
    /// Warm-up excluded from every figure.
    #[serde(default)]
    pub ramp_time: Span,
    /// Read share of mixed patterns, in percent.
    #[serde(default = "default_rwmixread")]
    pub rwmixread: u32,
    /// Seed of the random offsets and of the write data.
    #[serde(default = "default_randseed")]
    pub randseed: u64,
    /// fsync each file when the measured phase ends (counted in the figures).
    #[serde(default)]
    pub end_fsync: bool,
    /// fsync each file when it is closed (not counted).
    #[serde(default)]
    pub fsync_on_close: bool,
    /// Drop each file's cached pages before the measured phase.
    #[serde(default = "default_true")]
    pub invalidate: bool,
    /// Fall back to psync when the async engine (io_uring, libaio) is refused, instead of
    /// failing; the result records the engine used and why.
    #[serde(default, alias = "uring_fallback")]
    pub engine_fallback: bool,
    /// Width of the bytes/ops series intervals (aligned to wall-clock multiples).
    #[serde(default = "default_interval")]
    pub log_interval: Span,
    /// Prefix of the file names (distinct per client so clients never share a file).
    #[serde(default = "default_prefix")]
    pub filename_prefix: String,
}

fn psync() -> IoEngineKind {
    IoEngineKind::Psync
}
fn default_prefix() -> String {
    "iostudy".to_string()
}

impl Workload {
    /// A workload with fio's defaults for everything but the essentials.
    pub fn new(rw: Pattern, bs: u64, size: u64, directory: impl Into<PathBuf>) -> Self {
        Self {
            rw,
            bs: Bytes(bs),
            size: Bytes(size),
            numjobs: 1,
            directory: directory.into(),
            direct: false,
            ioengine: IoEngineKind::Psync,
            engine: Engine::Iostudy,
            iodepth: 1,
            runtime: None,
            ramp_time: Span::default(),
            rwmixread: default_rwmixread(),
            randseed: default_randseed(),
            end_fsync: false,
            fsync_on_close: false,
            invalidate: true,
            engine_fallback: false,
            log_interval: default_interval(),
            filename_prefix: default_prefix(),
        }
    }

    /// A workload from a table of its options (values as a study file writes them).
    pub fn from_table(t: toml::Table) -> Result<Workload, String> {
        Workload::deserialize(toml::Value::Table(t)).map_err(|e| e.message().trim().to_string())
    }

    /// Blocks per file (a trailing partial block is not used, as in fio).
    pub fn blocks(&self) -> u64 {
        self.size.0 / self.bs.0
    }

    /// Path of thread `thread`'s file.
    pub fn file_path(&self, thread: u32) -> PathBuf {
        self.directory.join(format!("{}.{thread}.dat", self.filename_prefix))
    }

    /// Checks what can be checked without touching the directory.
    pub fn validate(&self) -> Result<(), String> {
        if self.bs.0 == 0 {
            return Err("bs must be greater than zero (e.g. bs = \"64K\")".into());
        }
        if self.bs.0 > MAX_BS {
            return Err(format!("bs {} is larger than {}: each block is a buffer in memory", self.bs, Bytes(MAX_BS)));
        }
        if self.size.0 > MAX_SIZE {
            return Err(format!("size {} is larger than {} per file", self.size, Bytes(MAX_SIZE)));
        }
        if self.numjobs > MAX_NUMJOBS {
            return Err(format!("numjobs {} is more than {MAX_NUMJOBS} threads per client", self.numjobs));
        }
        if self.size.0 == 0 {
            return Err("size must be greater than zero (e.g. size = \"1G\")".into());
        }
        if self.size.0 < self.bs.0 {
            return Err(format!(
                "size {} is smaller than bs {}: each file needs at least one block",
                self.size, self.bs
            ));
        }
        if self.numjobs == 0 {
            return Err("numjobs must be at least 1".into());
        }
        if self.iodepth == 0 || self.iodepth > 4096 {
            return Err(format!("iodepth {} is out of range 1..=4096", self.iodepth));
        }
        if self.rwmixread > 100 {
            return Err(format!("rwmixread {} is a percentage: 0..=100", self.rwmixread));
        }
        if self.runtime.is_some_and(|r| r.0.is_zero()) {
            return Err("runtime must be greater than zero, or absent for one full pass".into());
        }
        if self.log_interval.0 < Duration::from_millis(10) {
            return Err("log_interval must be at least 10ms".into());
        }
        if self.filename_prefix.is_empty() || self.filename_prefix.contains('/') {
            return Err(format!(
                "filename_prefix `{}` must be a non-empty file name without `/`",
                self.filename_prefix
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_fio_binary_units() {
        assert_eq!(parse_bytes("64K").unwrap(), 65536);
        assert_eq!(parse_bytes("64k").unwrap(), 65536);
        assert_eq!(parse_bytes("4KiB").unwrap(), 4096);
        assert_eq!(parse_bytes("1m").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("32G").unwrap(), 32 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("lots").unwrap_err().contains("cannot parse size `lots`"));
        assert!(parse_bytes("1844674407370955161564k").unwrap_err().contains("beyond what a 64-bit count"));
        assert!(parse_bytes("18446744073709551616").is_err());
    }

    #[test]
    fn durations_accept_bare_seconds() {
        assert_eq!("10".parse::<Span>().unwrap().0, Duration::from_secs(10));
        assert_eq!("500ms".parse::<Span>().unwrap().0, Duration::from_millis(500));
        assert!("soon".parse::<Span>().is_err());
    }

    #[test]
    fn human_bytes_reads_like_fio() {
        assert_eq!(human_bytes(65536), "64KiB");
        assert_eq!(human_bytes(1536 << 20), "1.5GiB");
        assert_eq!(human_bytes(100), "100B");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut w = Workload::new(Pattern::Read, 65536, 4096, "/tmp");
        assert!(w.validate().unwrap_err().contains("smaller than bs"));
        w.size = Bytes(0);
        assert!(w.validate().unwrap_err().contains("size must be greater than zero"));
        w.size = Bytes(1 << 20);
        w.bs = Bytes(0);
        assert!(w.validate().unwrap_err().contains("bs must be greater than zero"));
    }
}
