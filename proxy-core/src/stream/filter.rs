//! Filters: which objects of a stream are dropped, by their metadata.

use std::fmt;

use super::metadata::Metadata;
use crate::error::{Error, Result};

/// Decides, from an object's [`Metadata`], whether the object is dropped from the stream.
///
/// As in ProxyStore, `true` means *drop*. A producer's filter runs in
/// [`send`](super::StreamProducer::send), before batching and aggregation; a consumer's runs
/// on each event it receives, and a dropped object that was to be evicted once consumed is
/// evicted all the same. Any `Fn(&Metadata) -> bool` is a filter.
pub trait Filter: Send + Sync {
    /// Whether the object with `metadata` is dropped.
    fn drops(&self, metadata: &Metadata) -> bool;
}

impl<F: Fn(&Metadata) -> bool + Send + Sync> Filter for F {
    fn drops(&self, metadata: &Metadata) -> bool {
        self(metadata)
    }
}

/// A filter that drops nothing (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullFilter;

impl Filter for NullFilter {
    fn drops(&self, _: &Metadata) -> bool {
        false
    }
}

/// A filter that drops each object with probability `p`, whatever its metadata.
///
/// ```
/// use proxy_core::stream::{Filter, Metadata, SamplingFilter};
///
/// let all = SamplingFilter::new(1.0)?;
/// assert!(all.drops(&Metadata::new()));
/// assert!(SamplingFilter::new(1.5).is_err());
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct SamplingFilter {
    p: f64,
    random: fn() -> f64,
}

impl fmt::Debug for SamplingFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplingFilter")
            .field("p", &self.p)
            .finish()
    }
}

impl SamplingFilter {
    /// Drops each object with probability `p` (from 0 to 1), drawing from the operating
    /// system's random generator.
    ///
    /// # Errors
    /// [`Error::Config`] when `p` is not in `[0, 1]`.
    pub fn new(p: f64) -> Result<SamplingFilter> {
        SamplingFilter::with_source(p, uniform)
    }

    /// Like [`new`](SamplingFilter::new), drawing numbers in `[0, 1)` from `random` (an
    /// object is dropped when the number drawn is at most `p`).
    ///
    /// # Errors
    /// [`Error::Config`] when `p` is not in `[0, 1]`.
    pub fn with_source(p: f64, random: fn() -> f64) -> Result<SamplingFilter> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Config {
                what: "sampling filter".to_string(),
                message: format!("the probability p must be in [0, 1], not {p}"),
            });
        }
        Ok(SamplingFilter { p, random })
    }
}

impl Filter for SamplingFilter {
    fn drops(&self, _: &Metadata) -> bool {
        (self.random)() <= self.p
    }
}

/// A uniform number in `[0, 1)` from the operating system's generator.
fn uniform() -> f64 {
    // 53 random bits: every double in [0, 1) with that spacing is equally likely.
    (crate::ids::new_id() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ProxyStore's `filters_test.py::test_null_filter`.
    #[test]
    fn the_null_filter_drops_nothing() {
        assert!(!NullFilter.drops(&Metadata::new()));
        assert!(!NullFilter.drops(&Metadata::new().with("field", true)));
    }

    /// ProxyStore's `filters_test.py::test_sampling_filter`, with the random source fixed
    /// instead of mocked.
    #[test]
    fn the_sampling_filter_drops_when_the_draw_is_at_most_p() {
        let low = SamplingFilter::with_source(0.2, || 0.1).expect("filter");
        assert!(low.drops(&Metadata::new()));
        assert!(low.drops(&Metadata::new().with("field", true)));
        let high = SamplingFilter::with_source(0.2, || 0.3).expect("filter");
        assert!(!high.drops(&Metadata::new()));
        assert!(!high.drops(&Metadata::new().with("field", true)));
    }

    /// ProxyStore's `filters_test.py::test_sampling_filter_value_error`.
    #[test]
    fn probabilities_outside_zero_to_one_are_refused() {
        for p in [-1.0, 1.1, f64::NAN] {
            match SamplingFilter::new(p) {
                Err(Error::Config { message, .. }) => assert!(message.contains("[0, 1]")),
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_os_source_is_in_range_and_samples_about_p() {
        let half = SamplingFilter::new(0.5).expect("filter");
        let dropped = (0..4000).filter(|_| half.drops(&Metadata::new())).count();
        // Binomial(4000, 0.5): sd 32; 1000..3000 is over 30 sd.
        assert!((1000..3000).contains(&dropped), "{dropped}");
        assert!((0..1000)
            .map(|_| uniform())
            .all(|x| (0.0..1.0).contains(&x)));
        let never = SamplingFilter::with_source(0.0, || 0.5).expect("filter");
        assert!(!never.drops(&Metadata::new()));
    }
}
