//! Human units for figures: bandwidth, rates and latencies, chosen the way fio does.

/// Bandwidth in binary units per second with 3–4 significant digits
/// (`1.50GiB/s`, `12.7GiB/s`, `720MiB/s`).
pub fn bandwidth(bytes_per_s: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes_per_s.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let digits = if v >= 100.0 || unit == 0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{}/s", UNITS[unit])
}

/// A count with SI suffix (`401k`, `2.5M`), as fio prints IOPS.
pub fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if n >= 1e3 {
        format!("{:.2}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// A latency given in ns, in the unit that keeps 3–4 significant digits.
pub fn latency(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.2}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(bandwidth(1024.0 * 1024.0 * 1536.0), "1.50GiB/s");
        assert_eq!(bandwidth(720.0 * 1048576.0 + 0.3), "720MiB/s");
        assert_eq!(bandwidth(12.66 * 1073741824.0), "12.7GiB/s");
        assert_eq!(count(401_234.0), "401k");
        assert_eq!(count(2_500_000.0), "2.50M");
        assert_eq!(count(999.0), "999");
        assert_eq!(latency(850.0), "850ns");
        assert_eq!(latency(2_430.0), "2.43µs");
        assert_eq!(latency(15_000_000_000.0), "15.00s");
    }
}
