//! Repetitions → a mean and a bootstrap 95 % confidence interval.
//!
//! Studies run few repetitions (3–5), and bandwidths are not normal; the percentile
//! bootstrap makes no distributional assumption and handles ratios of two scenarios
//! (resampling each side independently) the same way. Resampling is seeded, so a
//! report rendered twice shows the same intervals.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

const RESAMPLES: usize = 2000;

/// A mean with its 95 % interval (equal to the mean with fewer than two samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

impl Estimate {
    /// Whether the interval is a real one (two or more samples).
    pub fn has_interval(&self) -> bool {
        self.n >= 2
    }

    /// Relative half-width of the interval.
    pub fn relative_spread(&self) -> f64 {
        if self.mean == 0.0 { 0.0 } else { (self.hi - self.lo) / 2.0 / self.mean.abs() }
    }

    /// Whether the interval excludes `x`.
    pub fn excludes(&self, x: f64) -> bool {
        self.has_interval() && (x < self.lo || x > self.hi)
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn resample_mean(v: &[f64], rng: &mut SplitMix64) -> f64 {
    let n = v.len();
    (0..n).map(|_| v[(rng.next_u64() % n as u64) as usize]).sum::<f64>() / n as f64
}

fn percentile_interval(mut draws: Vec<f64>) -> (f64, f64) {
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    (at(0.025), at(0.975))
}

/// Mean of `samples` with a bootstrap interval.
pub fn bootstrap_mean(samples: &[f64], seed: u64) -> Option<Estimate> {
    if samples.is_empty() {
        return None;
    }
    let m = mean(samples);
    if samples.len() < 2 {
        return Some(Estimate { mean: m, lo: m, hi: m, n: samples.len() });
    }
    let mut rng = SplitMix64::new(seed);
    let draws = (0..RESAMPLES).map(|_| resample_mean(samples, &mut rng)).collect();
    let (lo, hi) = percentile_interval(draws);
    Some(Estimate { mean: m, lo, hi, n: samples.len() })
}

/// Ratio of means `a / b` with a bootstrap interval (each side resampled).
pub fn bootstrap_ratio(a: &[f64], b: &[f64], seed: u64) -> Option<Estimate> {
    if a.is_empty() || b.is_empty() || mean(b) == 0.0 {
        return None;
    }
    let r = mean(a) / mean(b);
    let n = a.len().min(b.len());
    if n < 2 {
        return Some(Estimate { mean: r, lo: r, hi: r, n });
    }
    let mut rng = SplitMix64::new(seed);
    let draws = (0..RESAMPLES)
        .map(|_| {
            let d = resample_mean(b, &mut rng);
            if d == 0.0 { r } else { resample_mean(a, &mut rng) / d }
        })
        .collect();
    let (lo, hi) = percentile_interval(draws);
    Some(Estimate { mean: r, lo, hi, n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sample_has_no_interval() {
        let e = bootstrap_mean(&[5.0], 1).unwrap();
        assert_eq!((e.mean, e.lo, e.hi), (5.0, 5.0, 5.0));
        assert!(!e.has_interval());
        assert!(bootstrap_mean(&[], 1).is_none());
    }

    #[test]
    fn interval_brackets_the_mean_and_is_reproducible() {
        let v = [100.0, 104.0, 98.0, 101.0, 97.0];
        let e = bootstrap_mean(&v, 7).unwrap();
        assert!(e.lo <= e.mean && e.mean <= e.hi);
        assert!(e.lo >= 97.0 && e.hi <= 104.0);
        assert_eq!(e, bootstrap_mean(&v, 7).unwrap());
    }

    #[test]
    fn ratio_of_clearly_different_sets_excludes_one() {
        let a = [97.0, 96.0, 98.0];
        let b = [100.0, 100.5, 99.5];
        let r = bootstrap_ratio(&a, &b, 3).unwrap();
        assert!((r.mean - 0.97).abs() < 1e-9);
        assert!(r.excludes(1.0), "{r:?}");
        let same = bootstrap_ratio(&[100.0, 90.0, 110.0], &[95.0, 105.0, 100.0], 3).unwrap();
        assert!(!same.excludes(1.0), "{same:?}");
    }
}
