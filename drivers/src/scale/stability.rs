//! Software stability for streaming protocols: the band-and-time filter of scales.md §4.
//!
//! A stream is *settled* when the terminal's own stable flag is set and the last
//! `min_readings` readings lie within ±`band_divisions`·e of the newest one and span at least
//! `window_ms`. The terminal's flag stays authoritative (it implements the approved motion
//! detection); the filter only adds a stricter condition, e.g. "the truck has stopped rocking"
//! before a continuous-output terminal's value is taken.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::scale::reading::{Reading, Weight};

/// Readings kept at most, whatever the configuration, so a fast stream cannot grow memory.
pub const MAX_STABILITY_SAMPLES: usize = 256;

fn default_min_readings() -> usize {
    5
}
fn default_band_divisions() -> u32 {
    1
}
fn default_window_ms() -> u64 {
    1000
}

/// `[scales.stability]`: N readings within ±k·e over t ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StabilityConfig {
    /// N: how many consecutive readings must agree.
    #[serde(default = "default_min_readings")]
    pub min_readings: usize,
    /// k: half-width of the band in verification intervals e.
    #[serde(default = "default_band_divisions")]
    pub band_divisions: u32,
    /// t: how long the agreeing readings must span.
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        Self {
            min_readings: default_min_readings(),
            band_divisions: default_band_divisions(),
            window_ms: default_window_ms(),
        }
    }
}

impl StabilityConfig {
    /// Checks ranges; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_STABILITY_SAMPLES).contains(&self.min_readings) {
            return Err(format!(
                "stability.min_readings must be 1 to {MAX_STABILITY_SAMPLES}"
            ));
        }
        Ok(())
    }
}

/// The filter state of one scale.
#[derive(Debug, Clone)]
pub struct StabilityFilter {
    config: StabilityConfig,
    division: Weight,
    samples: VecDeque<(Instant, Weight)>,
}

impl StabilityFilter {
    /// A filter with band ±k·`division`.
    pub fn new(config: StabilityConfig, division: Weight) -> Self {
        Self {
            config,
            division,
            samples: VecDeque::new(),
        }
    }

    /// Adds a reading taken at `at`; returns whether the stream is settled now.
    pub fn push(&mut self, reading: &Reading, at: Instant) -> bool {
        let weight = match reading.net {
            Some(w) if reading.stable && !reading.overload && !reading.underload => w,
            // Motion or no valid weight: the run of agreeing readings starts over.
            _ => {
                self.samples.clear();
                return false;
            }
        };
        if self.samples.len() == MAX_STABILITY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, weight));
        self.is_settled()
    }

    /// Whether the readings so far satisfy the rule.
    pub fn is_settled(&self) -> bool {
        let Some(&(newest_at, newest)) = self.samples.back() else {
            return false;
        };
        let band = Weight::new(
            self.division
                .value
                .saturating_mul(i64::from(self.config.band_divisions)),
            self.division.decimals,
            self.division.unit,
        );
        let mut count = 0;
        let mut oldest_at = newest_at;
        for &(at, weight) in self.samples.iter().rev() {
            let within = weight
                .abs_diff(&newest)
                .and_then(|d| d.compare(&band))
                .is_some_and(|o| o.is_le());
            if !within {
                break;
            }
            count += 1;
            oldest_at = at;
        }
        count >= self.config.min_readings
            && newest_at.duration_since(oldest_at) >= Duration::from_millis(self.config.window_ms)
    }

    /// Forgets all readings (after a reconnect).
    pub fn reset(&mut self) {
        self.samples.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(kg: i64, stable: bool) -> Reading {
        Reading {
            net: Some(Weight::kg(kg)),
            stable,
            ..Reading::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn settles_after_n_readings_within_band_over_window() {
        let config = StabilityConfig {
            min_readings: 3,
            band_divisions: 1,
            window_ms: 200,
        };
        let mut filter = StabilityFilter::new(config, Weight::kg(20));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(!filter.push(&reading(10_000, true), ms(0)));
        assert!(!filter.push(&reading(10_020, true), ms(100)));
        // Three readings within ±20 kg, but only 200 ms once the third arrives.
        assert!(filter.push(&reading(10_000, true), ms(200)));
        // Out of the band: the run restarts at this reading.
        assert!(!filter.push(&reading(10_060, true), ms(300)));
        assert!(!filter.push(&reading(10_060, false), ms(400)));
        assert!(!filter.is_settled());
        for n in 5..=7 {
            filter.push(&reading(10_060, true), ms(n * 100));
        }
        assert!(filter.is_settled());
        let over = Reading {
            overload: true,
            stable: true,
            ..Reading::default()
        };
        assert!(!filter.push(&over, ms(800)));
    }

    #[test]
    fn validation() {
        assert!(StabilityConfig::default().validate().is_ok());
        let bad = StabilityConfig {
            min_readings: 0,
            ..StabilityConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("stability.min_readings")
        );
    }
}
