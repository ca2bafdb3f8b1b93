//! Completion-latency histograms: one range, one precision, one wire format.
//!
//! Every client records into an HDR histogram with the same bounds, so histograms from
//! any client, host or repetition merge *exactly* (bucket counts add up) — which is how
//! iostudy's percentiles differ from averaging fio's per-client percentiles. The range
//! reaches one hour: the seed study saw a 15 s p99 under Kata. On the wire a histogram
//! is HdrHistogram's V2+DEFLATE encoding in base64, readable by any HdrHistogram port.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Highest trackable latency: one hour, in ns.
pub const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;
/// Significant decimal digits kept (0.1 % relative precision).
pub const SIGFIG: u8 = 3;

/// A new, empty latency histogram with iostudy's bounds.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGFIG).expect("constant histogram bounds are valid")
}

/// A histogram serialized for JSON: base64 of HdrHistogram V2 + DEFLATE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EncodedHistogram(pub String);

impl EncodedHistogram {
    pub fn encode(h: &Histogram<u64>) -> Self {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(h, &mut bytes).expect("serializing into a Vec cannot fail");
        Self(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn decode(&self) -> Result<Histogram<u64>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.0)
            .map_err(|e| format!("latency histogram is not valid base64: {e}"))?;
        check_header(&bytes)?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("latency histogram cannot be decoded: {e}"))?;
        // Re-home into the standard bounds so merges never fail on range.
        let mut out = new_latency_histogram();
        out.add(&h).map_err(|e| format!("latency histogram out of range: {e}"))?;
        Ok(out)
    }
}

/// Reads the header of a V2+DEFLATE histogram before HdrHistogram's deserializer does,
/// which sizes its buffers from it: a damaged or crafted result could ask for gigabytes.
/// iostudy writes histograms of one shape only ([`new_latency_histogram`]), so anything
/// else is refused; the payload must be there in full (inflated at most 64 MiB).
fn check_header(bytes: &[u8]) -> Result<(), String> {
    use std::io::Read;
    // HdrHistogram's cookies: V2 base | 0x10 (the word size bit).
    const V2_DEFLATE: u32 = 0x1c84_9304 | 0x10;
    const V2: u32 = 0x1c84_9303 | 0x10;
    const MAX_INFLATED: u64 = 64 << 20;
    let be32 = |b: &[u8], at: usize| b.get(at..at + 4).map(|x| u32::from_be_bytes(x.try_into().expect("4 bytes")));
    let be64 = |b: &[u8], at: usize| b.get(at..at + 8).map(|x| u64::from_be_bytes(x.try_into().expect("8 bytes")));
    let bad = |why: &str| format!("latency histogram cannot be decoded: {why}");
    if be32(bytes, 0) != Some(V2_DEFLATE) {
        return Err(bad("not HdrHistogram's V2+DEFLATE encoding"));
    }
    let compressed = be32(bytes, 4).ok_or_else(|| bad("truncated"))? as usize;
    let body = bytes.get(8..8 + compressed).ok_or_else(|| bad("truncated"))?;
    let mut inflated = Vec::new();
    flate2::read::ZlibDecoder::new(body)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| bad(&e.to_string()))?;
    if inflated.len() as u64 > MAX_INFLATED {
        return Err(bad("larger than 64 MiB inflated"));
    }
    let payload = be32(&inflated, 4).ok_or_else(|| bad("truncated header"))? as usize;
    let shape = (be32(&inflated, 0), be32(&inflated, 12), be64(&inflated, 16), be64(&inflated, 24));
    if shape != (Some(V2), Some(u32::from(SIGFIG)), Some(1), Some(MAX_LATENCY_NS)) {
        return Err(bad("not the shape iostudy records (1 ns to 1 h, 3 digits)"));
    }
    if payload > inflated.len().saturating_sub(40) {
        return Err(bad("its counts are cut short"));
    }
    Ok(())
}

/// The latency figures every report shows, in ns.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merging_keeps_every_count(
            parts in proptest::collection::vec(
                proptest::collection::vec(1u64..MAX_LATENCY_NS, 0..200), 1..6)
        ) {
            let mut merged = new_latency_histogram();
            let mut pooled = new_latency_histogram();
            for part in &parts {
                let mut h = new_latency_histogram();
                for &v in part {
                    h.record(v).unwrap();
                    pooled.record(v).unwrap();
                }
                // Through the wire format, as results travel.
                let h = EncodedHistogram::encode(&h).decode().unwrap();
                merged.add(&h).unwrap();
            }
            let total: usize = parts.iter().map(Vec::len).sum();
            prop_assert_eq!(merged.len(), total as u64);
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                prop_assert_eq!(merged.value_at_quantile(q), pooled.value_at_quantile(q));
            }
        }
    }

    proptest! {
        #[test]
        fn merged_percentiles_match_pooled_samples_within_precision(
            parts in proptest::collection::vec(
                proptest::collection::vec(1_000u64..20_000_000_000, 1..300), 1..8),
            q in 0.01f64..0.999,
        ) {
            let mut merged = new_latency_histogram();
            let mut pooled: Vec<u64> = Vec::new();
            for part in &parts {
                let mut h = new_latency_histogram();
                for &v in part {
                    h.record(v).unwrap();
                }
                merged.add(EncodedHistogram::encode(&h).decode().unwrap()).unwrap();
                pooled.extend(part);
            }
            pooled.sort_unstable();
            // The sample of rank ceil(q·n), as HdrHistogram defines the quantile.
            let rank = ((q * pooled.len() as f64).ceil() as usize).clamp(1, pooled.len());
            let exact = pooled[rank - 1] as f64;
            let got = merged.value_at_quantile(q) as f64;
            // 3 significant digits: within 0.1 % of the exact sample.
            prop_assert!((got - exact).abs() <= exact * 1e-3 + 1.0, "q={q} exact={exact} got={got}");
        }
    }

    #[test]
    fn summary_of_known_values() {
        let mut h = new_latency_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert!(s.p50.abs_diff(500_000) <= 500, "{}", s.p50);
        assert!(s.p99.abs_diff(990_000) <= 1000, "{}", s.p99);
        assert_eq!(s.min, 1000);
        assert!(s.max.abs_diff(1_000_000) <= 1000);
        assert_eq!(LatencySummary::of(&new_latency_histogram()).count, 0);
    }

    #[test]
    fn an_hour_fits() {
        let mut h = new_latency_histogram();
        h.record(15_000_000_000).unwrap();
        h.record(MAX_LATENCY_NS).unwrap();
        assert_eq!(h.len(), 2);
    }
}
