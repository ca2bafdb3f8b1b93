//! `engine = "fio"`: the real fio as the client, inside whatever boundary the scenario
//! gives it, on the same barrier as iostudy's engine.
//!
//! The worker does everything around the measurement as for its own engine — checks
//! the clock and the I/O engine, lays out the files (so fio finds them complete and
//! reuses them: layout is never measured), reports ready, waits for go — then starts
//! fio at the go instant with the workload as fio options and reads its json+ from
//! stdout. fio takes the same file names (`filename_format`), `--thread` (no SysV shared
//! memory needed), and `--lat_percentiles=1` so its `lat` bins, iostudy's own latency
//! definition, are there to merge.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::engine::measure::{WallClock, mono_ns};
use crate::engine::{Checked, EngineError, Gate, layout};
use crate::fio::deps::{fio_binary, version};
use crate::fio::output::{self, Context, LatencyKind};
use crate::results::ClientResult;
use crate::workload::{IoEngineKind, Pattern, Workload};

/// fio's options for `w` (ioengine as checked), output as json+ on stdout.
pub fn args(w: &Workload, ioengine: IoEngineKind) -> Vec<String> {
    let rw = match w.rw {
        Pattern::Readwrite => "rw",
        other => other.name(),
    };
    let flag = |b: bool| if b { "1" } else { "0" };
    let mut v = vec![
        "--name=iostudy".to_string(),
        format!("--directory={}", w.directory.display()),
        format!("--filename_format={}.$jobnum.dat", w.filename_prefix),
        format!("--rw={rw}"),
        format!("--bs={}", w.bs.get()),
        format!("--size={}", w.size.get()),
        format!("--numjobs={}", w.numjobs),
        format!("--ioengine={}", ioengine.name()),
        format!("--iodepth={}", if ioengine.is_async() { w.iodepth } else { 1 }),
        format!("--direct={}", flag(w.direct)),
        format!("--invalidate={}", flag(w.invalidate)),
        format!("--rwmixread={}", w.rwmixread),
        format!("--randseed={}", w.randseed),
        format!("--end_fsync={}", flag(w.end_fsync)),
        format!("--fsync_on_close={}", flag(w.fsync_on_close)),
        "--thread".to_string(),
        "--lat_percentiles=1".to_string(),
        "--output-format=json+".to_string(),
    ];
    if !w.ramp_time.0.is_zero() {
        v.push(format!("--ramp_time={}ms", w.ramp_time.0.as_millis()));
    }
    if let Some(r) = w.runtime {
        v.push(format!("--runtime={}ms", r.0.as_millis().max(1)));
        v.push("--time_based".to_string());
    }
    v
}

/// Runs the workload with fio as client `client_id` (see the module doc).
pub fn run(w: &Workload, client_id: u32, gate: Box<Gate<'_>>, checked: Checked) -> Result<ClientResult, EngineError> {
    let Checked { mut host, ioengine, note } = checked;
    let fio = fio_binary().ok_or_else(|| {
        EngineError::Fio(
            "no fio here: install it on the host (apt-get install fio); containers and guests get the host's".into(),
        )
    })?;
    let fio_version = version(&fio).map_err(EngineError::Fio)?;
    let layout_stats = layout::prepare(w)?;

    let clock = WallClock::now();
    let go_instant = gate()?;
    let go_seen = clock.wall_ns(mono_ns());
    let start = match go_instant {
        Some(wall) => clock.mono_at(wall),
        None => mono_ns(),
    };
    let now = mono_ns();
    if start > now {
        std::thread::sleep(Duration::from_nanos(start - now));
    }
    let out = spawn(&fio, &args(w, ioengine))?;
    let end_ns = clock.wall_ns(mono_ns());

    let parsed = output::parse(&out).map_err(|e| EngineError::Fio(format!("cannot read fio's output: {e}")))?;
    let client = parsed.clients.first().ok_or_else(|| EngineError::Fio("fio's output has no jobs".into()))?;
    if let Some(j) = client.jobs.iter().find(|j| j.error != 0) {
        return Err(EngineError::Fio(format!("fio's job {} ended with error {}", j.name, j.error)));
    }
    host.clock_source_end = crate::results::host::clock_source();
    let mut notes: Vec<String> = note.into_iter().collect();
    if client.latency_kind() != LatencyKind::Total {
        notes.push("fio recorded no lat bins: completion latency (clat) instead".into());
    }
    let mut result = output::client_result(
        client,
        Context {
            client_id,
            host,
            workload: w.clone(),
            latency: client.latency_kind(),
            end_ns,
            version: &fio_version,
            origin: "run by iostudy in the client",
            notes,
        },
    );
    result.ioengine_used = ioengine;
    result.layout = layout_stats;
    result.go_instant_ns = go_instant;
    result.go_seen_ns = go_instant.and(Some(go_seen));
    Ok(result)
}

/// Runs fio to completion; its stdout (the json+ document), or its own words on failure.
fn spawn(fio: &Path, args: &[String]) -> Result<String, EngineError> {
    let mut child = Command::new(fio)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EngineError::Fio(format!("cannot start {}: {e}", fio.display())))?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut err_pipe = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let _ = err_pipe.read_to_string(&mut stderr);
        stderr
    });
    child.stdout.take().expect("piped").read_to_string(&mut stdout).map_err(|e| EngineError::Fio(e.to_string()))?;
    let status = child.wait().map_err(|e| EngineError::Fio(e.to_string()))?;
    let stderr = reader.join().unwrap_or_default();
    // fio's warnings go to the client's log either way.
    eprint!("{stderr}");
    if !status.success() {
        let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(EngineError::Fio(format!("fio {status}: {}", said[said.len().saturating_sub(3)..].join(" | "))));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_becomes_fio_options() {
        let mut w = Workload::new(Pattern::Readwrite, 65536, 1 << 20, "/data/iostudy-data/client-0");
        w.numjobs = 4;
        w.runtime = Some(crate::workload::Span(Duration::from_secs(2)));
        let a = args(&w, IoEngineKind::Psync);
        for want in [
            "--rw=rw",
            "--bs=65536",
            "--size=1048576",
            "--numjobs=4",
            "--directory=/data/iostudy-data/client-0",
            "--filename_format=iostudy.$jobnum.dat",
            "--ioengine=psync",
            "--iodepth=1",
            "--runtime=2000ms",
            "--time_based",
            "--lat_percentiles=1",
            "--output-format=json+",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        assert_eq!(
            w.file_path(3).file_name().unwrap(),
            "iostudy.3.dat",
            "fio's filename_format names the files iostudy laid out"
        );
    }
}
