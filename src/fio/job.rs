//! fio job files as workloads: a job file's `[global]` and one job section, translated
//! into iostudy's workload options.
//!
//! The translation is explicit both ways: every option is either taken (renamed where
//! fio's name differs), set aside with the reason it does not change what is measured
//! (`group_reporting`, logging, `directory` — the study's target decides where files
//! live), or refused as *unsupported* with a hint. Nothing is dropped silently: callers
//! show the set-aside list as notes and fail on the unsupported one unless the user
//! lists those options in `fio_ignore`.

use std::fmt;
use std::path::Path;

use crate::workload::{IoEngineKind, Pattern, Span, parse_bytes};

/// One `key[=value]` line of a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOption {
    pub key: String,
    /// `None` for a bare flag (`time_based`).
    pub value: Option<String>,
    /// 1-based line in the job file (0 when the option did not come from a file).
    pub line: usize,
}

/// A parsed job file: its sections in order, `[global]` included.
#[derive(Debug, Clone, Default)]
pub struct JobFile {
    pub sections: Vec<(String, Vec<JobOption>)>,
}

/// An option set aside or refused, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub option: JobOption,
    pub why: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.option.line > 0 {
            write!(f, "line {}: ", self.option.line)?;
        }
        match &self.option.value {
            Some(v) => write!(f, "{}={v} ({})", self.option.key, self.why),
            None => write!(f, "{} ({})", self.option.key, self.why),
        }
    }
}

/// What a job section becomes.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// The section translated.
    pub section: String,
    /// Workload options under iostudy's names, values as TOML.
    pub workload: toml::Table,
    /// Options that change nothing iostudy measures, with why.
    pub set_aside: Vec<Dropped>,
    /// Options iostudy does not implement, with a hint.
    pub unsupported: Vec<Dropped>,
}

impl JobFile {
    /// Parses a job file's text (fio's ini dialect: `[section]`, `key=value`, bare flags,
    /// `;` and `#` comments).
    pub fn parse(text: &str) -> Result<JobFile, String> {
        let mut file = JobFile::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with(';') || t.starts_with('#') {
                continue;
            }
            if let Some(rest) = t.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("line {line}: a section header needs a closing `]`"))?;
                file.sections.push((name.trim().to_string(), Vec::new()));
                continue;
            }
            if t.starts_with("include ") {
                return Err(format!("line {line}: `include` is not supported: inline the included file"));
            }
            let Some((_, options)) = file.sections.last_mut() else {
                // Its text is not quoted: a file that is not a job file may be a secret.
                return Err(format!("line {line} is an option before any [section]: this is not a fio job file"));
            };
            let (key, value) = match t.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
                None => (t, None),
            };
            options.push(JobOption { key: key.to_string(), value, line });
        }
        Ok(file)
    }

    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<JobFile, String> {
        use std::io::Read;
        const MAX: u64 = 1 << 20;
        let cannot = |e: &dyn std::fmt::Display| format!("cannot read fio job file {}: {e}", path.display());
        let f = std::fs::File::open(path).map_err(|e| cannot(&e))?;
        if !f.metadata().map_err(|e| cannot(&e))?.is_file() {
            return Err(cannot(&"not a regular file"));
        }
        let mut bytes = Vec::new();
        f.take(MAX + 1).read_to_end(&mut bytes).map_err(|e| cannot(&e))?;
        if bytes.len() as u64 > MAX {
            return Err(cannot(&"larger than 1 MiB: not a fio job file"));
        }
        let text = String::from_utf8(bytes).map_err(|_| cannot(&"not text: not a fio job file"))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The job sections (all but `[global]`).
    pub fn jobs(&self) -> Vec<&str> {
        self.sections.iter().map(|(n, _)| n.as_str()).filter(|n| *n != "global").collect()
    }

    /// `[global]` then section `name` (the only job section when `None`), merged:
    /// later options win, as in fio.
    pub fn options(&self, name: Option<&str>) -> Result<(String, Vec<JobOption>), String> {
        let jobs = self.jobs();
        let name = match name {
            Some(n) if jobs.contains(&n) => n.to_string(),
            Some(n) => return Err(format!("no job section [{n}] (sections: {})", jobs.join(", "))),
            None => match jobs.as_slice() {
                [one] => one.to_string(),
                [] => return Err("the job file has no job section, only [global]".into()),
                many => {
                    return Err(format!(
                        "the job file has {} job sections ({}): choose one (fio_job = \"FILE:SECTION\", or --section)",
                        many.len(),
                        many.join(", ")
                    ));
                }
            },
        };
        let mut merged: Vec<JobOption> = Vec::new();
        for (section, options) in &self.sections {
            if section == "global" || *section == name {
                for o in options {
                    merged.retain(|m| m.key != o.key);
                    merged.push(o.clone());
                }
            }
        }
        Ok((name, merged))
    }
}

/// Options that change nothing iostudy measures, and why.
const SET_ASIDE: &[(&str, &str)] = &[
    ("name", "the job's name"),
    ("description", "a description"),
    ("directory", "files live under the study's target, a directory per client"),
    ("filename_format", "iostudy names each thread's file itself"),
    ("group_reporting", "iostudy keeps every thread and merges them exactly"),
    ("thread", "iostudy's threads are threads"),
    ("randrepeat", "iostudy's random offsets are always reproducible from randseed"),
    ("lat_percentiles", "iostudy keeps whole latency histograms"),
    ("clat_percentiles", "iostudy keeps whole latency histograms"),
    ("percentile_list", "reports choose their percentiles"),
    ("per_job_logs", "logging"),
    ("write_bw_log", "logging: iostudy records bandwidth per log_interval"),
    ("write_iops_log", "logging"),
    ("write_lat_log", "logging"),
    ("log_avg_msec", "logging: see log_interval"),
    ("log_unix_epoch", "logging"),
    ("output-format", "iostudy's results are its own"),
    ("stonewall", "one job section is translated"),
    ("wait_for_previous", "one job section is translated"),
    ("new_group", "one job section is translated"),
    ("unlink", "keep_files decides (study), --unlink (bench)"),
    ("allow_file_create", "iostudy creates its files"),
    ("create_on_open", "iostudy lays out files before the measured phase"),
    ("fallocate", "iostudy writes its files out before the measured phase"),
    ("refill_buffers", "iostudy makes every written sector distinct"),
    ("scramble_buffers", "iostudy makes every written sector distinct"),
];

/// Options iostudy does not implement, with a hint (the rest get a generic one).
const UNSUPPORTED_HINTS: &[(&str, &str)] = &[
    ("filename", "iostudy uses one file per thread under the target; devices are not supported"),
    ("verify", "iostudy does not verify data"),
    ("do_verify", "iostudy does not verify data"),
    ("rate", "iostudy runs unthrottled"),
    ("rate_iops", "iostudy runs unthrottled"),
    ("thinktime", "iostudy issues I/O back to back"),
    ("bssplit", "one block size per workload: make bs a list to compare sizes"),
    ("bsrange", "one block size per workload: make bs a list to compare sizes"),
    ("norandommap", "iostudy visits every block once per pass"),
    ("random_distribution", "iostudy's random offsets are uniform"),
    ("zonemode", "iostudy does not do zoned I/O"),
    ("offset", "iostudy's files start at offset 0"),
    ("nrfiles", "one file per thread"),
    ("openfiles", "one file per thread"),
    ("fsync", "iostudy does not fsync every N writes: end_fsync or fsync_on_close"),
    ("fdatasync", "iostudy does not fdatasync every N writes"),
    ("sync", "O_SYNC writes are not supported"),
    ("iodepth_batch", "iostudy submits each I/O when it is decided"),
    ("iodepth_batch_submit", "iostudy submits each I/O when it is decided"),
    ("iodepth_batch_complete", "iostudy reaps what is there"),
    ("hipri", "needs polled queues; not offered"),
    ("sqthread_poll", "measured to cost more than it saves here; not offered"),
    ("fixedbufs", "measured not to matter; not offered"),
    ("registerfiles", "measured not to matter; not offered"),
    ("cpus_allowed", "iostudy does not pin threads"),
    ("numa_cpu_nodes", "iostudy does not pin threads"),
    ("loops", "use runtime (time-based) or one pass"),
    ("startdelay", "clients start together at the barrier"),
];

fn bool_value(o: &JobOption) -> Result<bool, String> {
    match o.value.as_deref() {
        // A bare flag (`time_based`), or as fio's json lists one: an empty value.
        None | Some("") => Ok(true),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(format!("{} takes 0 or 1, not `{v}`", o.key)),
    }
}

fn value(o: &JobOption) -> Result<&str, String> {
    o.value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| format!("{} needs a value", o.key))
}

/// Translates merged job options (see [`JobFile::options`]).
pub fn translate(section: &str, options: &[JobOption]) -> Translation {
    translate_from(section, options, false)
}

/// Translates the `job options` of a fio output, where fio leaves out flags set without
/// a value (`time_based`): a runtime there is taken as time-based.
pub fn translate_output(section: &str, options: &[JobOption]) -> Translation {
    translate_from(section, options, true)
}

fn translate_from(section: &str, options: &[JobOption], from_output: bool) -> Translation {
    let mut t = Translation { section: section.to_string(), ..Translation::default() };
    let mut runtime: Option<(JobOption, Span)> = None;
    let mut time_based = false;
    let unsupported = |o: &JobOption, why: String| Dropped { option: o.clone(), why };
    for o in options {
        let key = o.key.replace('-', "_");
        let taken: Result<Option<(&str, toml::Value)>, String> = (|| {
            Ok(match key.as_str() {
                "rw" | "readwrite" => {
                    let v = value(o)?;
                    if v.contains(':') {
                        return Err(format!(
                            "`{v}`: the `:N` offset modifier is not supported (iostudy's sequential I/O is contiguous)"
                        ));
                    }
                    let p: Pattern = v.parse()?;
                    Some(("rw", toml::Value::String(p.name().to_string())))
                }
                "bs" | "blocksize" => {
                    let v = value(o)?;
                    if v.contains(',') || v.contains('-') || v.contains(':') {
                        return Err(format!("`{v}`: one block size for reads and writes (make bs a list to compare)"));
                    }
                    parse_bytes(v)?;
                    Some(("bs", toml::Value::String(v.to_string())))
                }
                "size" | "filesize" => {
                    let v = value(o)?;
                    if v.ends_with('%') {
                        return Err(format!("`{v}`: a share of a device is not supported; give a size"));
                    }
                    parse_bytes(v)?;
                    Some(("size", toml::Value::String(v.to_string())))
                }
                "numjobs" => Some(("numjobs", toml::Value::Integer(int(o)?))),
                "iodepth" => Some(("iodepth", toml::Value::Integer(int(o)?))),
                "direct" => Some(("direct", toml::Value::Boolean(bool_value(o)?))),
                "buffered" => Some(("direct", toml::Value::Boolean(!bool_value(o)?))),
                "ioengine" => {
                    let v = value(o)?;
                    let engine = match v {
                        // read/write after lseek: the same one I/O at a time as pread/pwrite.
                        "sync" | "pvsync" => IoEngineKind::Psync,
                        other => other.parse::<IoEngineKind>()?,
                    };
                    Some(("ioengine", toml::Value::String(engine.name().to_string())))
                }
                "runtime" => {
                    runtime = Some((o.clone(), value(o)?.parse::<Span>()?));
                    None
                }
                "time_based" => {
                    time_based = bool_value(o)?;
                    None
                }
                "ramp_time" => Some(("ramp_time", toml::Value::String(span(o)?))),
                "rwmixread" => Some(("rwmixread", toml::Value::Integer(int(o)?))),
                "rwmixwrite" => Some(("rwmixread", toml::Value::Integer(100 - int(o)?.min(100)))),
                "randseed" => Some(("randseed", toml::Value::Integer(int(o)?))),
                "end_fsync" => Some(("end_fsync", toml::Value::Boolean(bool_value(o)?))),
                "fsync_on_close" => Some(("fsync_on_close", toml::Value::Boolean(bool_value(o)?))),
                "invalidate" => Some(("invalidate", toml::Value::Boolean(bool_value(o)?))),
                _ => {
                    if let Some((_, why)) = SET_ASIDE.iter().find(|(k, _)| *k == key || k.replace('-', "_") == key) {
                        t.set_aside.push(Dropped { option: o.clone(), why: why.to_string() });
                        return Ok(None);
                    }
                    let why = UNSUPPORTED_HINTS
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map_or("not implemented by iostudy", |(_, h)| h);
                    return Err(why.to_string());
                }
            })
        })();
        match taken {
            Ok(Some((k, v))) => {
                t.workload.insert(k.to_string(), v);
            }
            Ok(None) => {}
            Err(why) => t.unsupported.push(unsupported(o, why)),
        }
    }
    match (runtime, time_based || from_output) {
        (Some((_, span)), true) => {
            t.workload.insert("runtime".into(), toml::Value::String(humantime::format_duration(span.0).to_string()));
        }
        (Some((o, _)), false) => t.unsupported.push(Dropped {
            option: o,
            why: "without time_based, fio's runtime caps one pass; iostudy's runtime runs pass after pass: add time_based, or remove runtime for one full pass".into(),
        }),
        (None, true) => t.unsupported.push(Dropped {
            option: JobOption { key: "time_based".into(), value: None, line: 0 },
            why: "time_based needs a runtime".into(),
        }),
        (None, false) => {}
    }
    t
}

fn int(o: &JobOption) -> Result<i64, String> {
    let v = value(o)?;
    v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| format!("{} takes a whole number, not `{v}`", o.key))
}

fn span(o: &JobOption) -> Result<String, String> {
    let s: Span = value(o)?.parse()?;
    Ok(humantime::format_duration(s.0).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_HARNESS: &str = "\
; the seed's harness, roughly
[global]
ioengine=libaio
direct=1
iodepth=8
bs=64k
size=32g
numjobs=4
runtime=300
time_based
group_reporting
directory=/mnt/beegfs

[randread]
rw=randread
";

    #[test]
    fn the_seed_harness_job_translates_whole() {
        let f = JobFile::parse(SEED_HARNESS).unwrap();
        let (name, options) = f.options(None).unwrap();
        assert_eq!(name, "randread");
        let t = translate(&name, &options);
        assert!(t.unsupported.is_empty(), "{:?}", t.unsupported);
        let w = &t.workload;
        assert_eq!(w["ioengine"].as_str(), Some("libaio"));
        assert_eq!(w["direct"].as_bool(), Some(true));
        assert_eq!(w["iodepth"].as_integer(), Some(8));
        assert_eq!(w["rw"].as_str(), Some("randread"));
        assert_eq!(w["runtime"].as_str(), Some("5m"));
        let aside: Vec<&str> = t.set_aside.iter().map(|d| d.option.key.as_str()).collect();
        assert_eq!(aside, ["group_reporting", "directory"]);
    }

    #[test]
    fn unsupported_options_are_named_with_their_line_and_a_hint() {
        let text = "[global]\nbs=4k\nsize=1g\n[j]\nrw=randread:8\nverify=md5\nrate=10m\nfoo_bar=1\nruntime=10\n";
        let f = JobFile::parse(text).unwrap();
        let (name, options) = f.options(Some("j")).unwrap();
        let t = translate(&name, &options);
        let shown: Vec<String> = t.unsupported.iter().map(|d| d.to_string()).collect();
        assert_eq!(shown.len(), 5, "{shown:#?}");
        assert!(shown[0].starts_with("line 5: rw=randread:8 (`randread:8`: the `:N` offset modifier"), "{}", shown[0]);
        assert_eq!(shown[1], "line 6: verify=md5 (iostudy does not verify data)");
        assert_eq!(shown[2], "line 7: rate=10m (iostudy runs unthrottled)");
        assert_eq!(shown[3], "line 8: foo_bar=1 (not implemented by iostudy)");
        assert!(shown[4].starts_with("line 9: runtime=10 (without time_based"), "{}", shown[4]);
    }

    #[test]
    fn sections_are_chosen_and_later_options_win() {
        let f = JobFile::parse("[global]\nbs=4k\n[a]\nbs=8k\n[b]\nrw=write\n").unwrap();
        assert!(f.options(None).unwrap_err().contains("2 job sections (a, b)"));
        assert_eq!(
            f.options(Some("a")).unwrap().1.iter().find(|o| o.key == "bs").unwrap().value.as_deref(),
            Some("8k")
        );
        assert!(f.options(Some("c")).unwrap_err().contains("no job section [c]"));
        assert!(JobFile::parse("bs=4k\n").unwrap_err().contains("before any [section]"));
    }
}
