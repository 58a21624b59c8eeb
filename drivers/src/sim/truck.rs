//! A weighbridge physical model for the simulators: a truck drives on (the load ramps up),
//! the bridge oscillates with decaying amplitude, settles, and the truck drives off again.
//!
//! Time is `tokio::time::Instant`, so tests that pause tokio's clock control the model
//! exactly. The model also holds the terminal-side zero offset, tare and alibi memory
//! (consecutive numbers), because a real terminal keeps those across connections.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::Rng;
use tokio::time::Instant;

/// Period of the bridge's oscillation while it settles.
const OSCILLATION_PERIOD_MS: f64 = 700.0;

/// OIML R 76: the overload indication starts above Max + 9 e.
const OVERLOAD_DIVISIONS: i64 = 9;

/// OIML R 76: zero setting is limited to ±4 % of Max.
const ZERO_RANGE_PERCENT: i64 = 4;

/// Alibi records kept; the oldest are dropped beyond this (a real memory is a ring buffer).
pub const MAX_ALIBI_RECORDS: usize = 10_000;

/// One entry of the simulated alibi memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlibiRecord {
    /// Consecutive number, starting at 1.
    pub id: u32,
    /// Registered gross weight in kg.
    pub gross_kg: i64,
    /// Tare at the time in kg.
    pub tare_kg: i64,
    /// Terminal date `dd.mm.yy`.
    pub date: String,
    /// Terminal time `HH:MM`.
    pub time: String,
}

/// Why the simulated terminal refuses to register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefusal {
    /// In motion.
    NotStable,
    /// Above Max + 9 e.
    Overload,
    /// Negative gross weight.
    Negative,
}

/// The terminal's clock as `(dd.mm.yy, HH:MM)` in UTC, from the system clock.
pub fn terminal_clock() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    let minute_of_day = (secs % 86_400) / 60;
    (
        format!("{day:02}.{month:02}.{:02}", year.rem_euclid(100)),
        format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60),
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parameters of the simulated weighbridge.
#[derive(Debug, Clone)]
pub struct TruckScaleParams {
    /// Verification scale interval e in kg; displayed weights are multiples of it.
    pub division_kg: i64,
    /// Max capacity in kg.
    pub capacity_kg: i64,
    /// How long driving on or off takes.
    pub ramp_ms: u64,
    /// How long the bridge oscillates after a ramp before it is stable.
    pub settle_ms: u64,
    /// Initial oscillation amplitude after a ramp.
    pub oscillation_kg: i64,
    /// Uniform random noise amplitude added to every sample (0 = deterministic).
    pub noise_kg: i64,
}

impl Default for TruckScaleParams {
    fn default() -> Self {
        Self {
            division_kg: 20,
            capacity_kg: 60_000,
            ramp_ms: 3000,
            settle_ms: 2500,
            oscillation_kg: 300,
            noise_kg: 0,
        }
    }
}

/// One sample of the displayed gross weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleSample {
    /// Gross weight after zero setting, rounded to the division.
    pub weight_kg: i64,
    /// The terminal's motion detection reports no motion.
    pub stable: bool,
    /// Above Max + 9 e.
    pub overload: bool,
}

/// Outcome of a zero-setting request on the simulated terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroOutcome {
    Done,
    NotStable,
    AboveRange,
    BelowRange,
}

/// Outcome of a tare request on the simulated terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TareOutcome {
    Done(i64),
    NotStable,
    AboveRange,
    BelowRange,
}

#[derive(Debug, Clone, Copy)]
struct Motion {
    start: Instant,
    from_kg: f64,
    to_kg: f64,
}

#[derive(Debug)]
struct State {
    params: TruckScaleParams,
    /// None while nothing has moved since creation: the bridge is at rest at `to_kg` = 0.
    motion: Option<Motion>,
    zero_offset_kg: i64,
    tare_kg: i64,
    alibi: Vec<AlibiRecord>,
    next_alibi_id: u32,
}

impl State {
    /// Physical load in kg and whether the bridge has settled.
    fn load_at(&self, now: Instant) -> (f64, bool) {
        let Some(motion) = self.motion else {
            return (0.0, true);
        };
        let elapsed_ms = now.saturating_duration_since(motion.start).as_secs_f64() * 1000.0;
        let ramp_ms = self.params.ramp_ms as f64;
        let settle_ms = self.params.settle_ms as f64;
        if elapsed_ms < ramp_ms {
            let progress = elapsed_ms / ramp_ms;
            return (
                motion.from_kg + (motion.to_kg - motion.from_kg) * progress,
                false,
            );
        }
        let t = elapsed_ms - ramp_ms;
        if t < settle_ms {
            let amplitude = self.params.oscillation_kg as f64 * (1.0 - t / settle_ms);
            let phase = 2.0 * std::f64::consts::PI * t / OSCILLATION_PERIOD_MS;
            return (motion.to_kg + amplitude * phase.sin(), false);
        }
        (motion.to_kg, true)
    }

    fn division(&self) -> i64 {
        self.params.division_kg.max(1)
    }

    fn sample_at(&self, now: Instant) -> ScaleSample {
        let (load, stable) = self.load_at(now);
        let noise = if self.params.noise_kg > 0 {
            let n = self.params.noise_kg as f64;
            rand::rng().random_range(-n..=n)
        } else {
            0.0
        };
        let gross = load + noise - self.zero_offset_kg as f64;
        let division = self.division();
        // Round half away from zero to the division, as terminals display.
        let weight_kg = ((gross / division as f64).round() as i64).saturating_mul(division);
        let overload = weight_kg
            > self
                .params
                .capacity_kg
                .saturating_add(OVERLOAD_DIVISIONS.saturating_mul(division));
        ScaleSample {
            weight_kg,
            stable,
            overload,
        }
    }
}

/// A simulated weighbridge; clones share the same bridge.
#[derive(Debug, Clone)]
pub struct TruckScale {
    state: Arc<Mutex<State>>,
}

impl TruckScale {
    /// An empty, settled bridge.
    pub fn new(params: TruckScaleParams) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                params,
                motion: None,
                zero_offset_kg: 0,
                tare_kg: 0,
                alibi: Vec::new(),
                next_alibi_id: 1,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked; a simulator keeps going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn move_to(&self, to_kg: i64) {
        let now = Instant::now();
        let mut state = self.lock();
        let (from_kg, _) = state.load_at(now);
        state.motion = Some(Motion {
            start: now,
            from_kg,
            to_kg: to_kg as f64,
        });
    }

    /// From now: ramp to `load_kg`, oscillate, settle.
    pub fn drive_on(&self, load_kg: i64) {
        self.move_to(load_kg);
    }

    /// From now: ramp to 0, oscillate, settle.
    pub fn drive_off(&self) {
        self.move_to(0);
    }

    /// The displayed gross weight at `tokio::time::Instant::now()`.
    pub fn sample(&self) -> ScaleSample {
        self.lock().sample_at(Instant::now())
    }

    /// The parameters the bridge was built with.
    pub fn params(&self) -> TruckScaleParams {
        self.lock().params.clone()
    }

    /// The current tare in kg (0 when none is set).
    pub fn tare_kg(&self) -> i64 {
        self.lock().tare_kg
    }

    pub(crate) fn zero(&self) -> ZeroOutcome {
        let mut state = self.lock();
        let sample = state.sample_at(Instant::now());
        if !sample.stable {
            return ZeroOutcome::NotStable;
        }
        let range = state.params.capacity_kg.saturating_mul(ZERO_RANGE_PERCENT) / 100;
        if sample.weight_kg > range {
            return ZeroOutcome::AboveRange;
        }
        if sample.weight_kg < -range {
            return ZeroOutcome::BelowRange;
        }
        state.zero_offset_kg = state.zero_offset_kg.saturating_add(sample.weight_kg);
        ZeroOutcome::Done
    }

    pub(crate) fn tare(&self) -> TareOutcome {
        let mut state = self.lock();
        let sample = state.sample_at(Instant::now());
        if !sample.stable {
            return TareOutcome::NotStable;
        }
        if sample.overload {
            return TareOutcome::AboveRange;
        }
        if sample.weight_kg < 0 {
            return TareOutcome::BelowRange;
        }
        state.tare_kg = sample.weight_kg;
        TareOutcome::Done(sample.weight_kg)
    }

    pub(crate) fn clear_tare(&self) {
        self.lock().tare_kg = 0;
    }

    /// Changes the noise amplitude at runtime (fault injection).
    pub fn set_noise_kg(&self, noise_kg: i64) {
        self.lock().params.noise_kg = noise_kg.max(0);
    }

    /// Stores the current stable gross weight in the alibi memory under the next number.
    pub fn register(&self) -> Result<AlibiRecord, RegisterRefusal> {
        let mut state = self.lock();
        let sample = state.sample_at(Instant::now());
        if sample.overload {
            return Err(RegisterRefusal::Overload);
        }
        if !sample.stable {
            return Err(RegisterRefusal::NotStable);
        }
        if sample.weight_kg < 0 {
            return Err(RegisterRefusal::Negative);
        }
        let (date, time) = terminal_clock();
        let record = AlibiRecord {
            id: state.next_alibi_id,
            gross_kg: sample.weight_kg,
            tare_kg: state.tare_kg,
            date,
            time,
        };
        state.next_alibi_id = state.next_alibi_id.wrapping_add(1).max(1);
        if state.alibi.len() >= MAX_ALIBI_RECORDS {
            state.alibi.remove(0);
        }
        state.alibi.push(record.clone());
        Ok(record)
    }

    /// The alibi memory, oldest first.
    pub fn alibi_records(&self) -> Vec<AlibiRecord> {
        self.lock().alibi.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::advance;

    #[tokio::test(start_paused = true)]
    async fn truck_ramps_oscillates_and_settles() {
        let scale = TruckScale::new(TruckScaleParams::default());
        assert_eq!(
            scale.sample(),
            ScaleSample {
                weight_kg: 0,
                stable: true,
                overload: false
            }
        );
        scale.drive_on(40_000);
        advance(Duration::from_millis(1500)).await;
        let half = scale.sample();
        assert!(!half.stable);
        assert_eq!(half.weight_kg, 20_000);

        // While settling the weight wanders around the load, within the oscillation.
        advance(Duration::from_millis(1500 + 175)).await;
        let oscillating = scale.sample();
        assert!(!oscillating.stable);
        assert!((oscillating.weight_kg - 40_000).abs() <= 300);
        assert_ne!(oscillating.weight_kg, 40_000);
        assert_eq!(oscillating.weight_kg % 20, 0);

        advance(Duration::from_millis(2500)).await;
        assert_eq!(
            scale.sample(),
            ScaleSample {
                weight_kg: 40_000,
                stable: true,
                overload: false
            }
        );

        scale.drive_off();
        assert!(!scale.sample().stable);
        advance(Duration::from_millis(5500)).await;
        assert_eq!(scale.sample().weight_kg, 0);
        assert!(scale.sample().stable);
    }

    #[tokio::test(start_paused = true)]
    async fn alibi_memory_numbers_consecutively_and_refuses_motion() {
        let scale = TruckScale::new(TruckScaleParams {
            ramp_ms: 100,
            settle_ms: 0,
            ..TruckScaleParams::default()
        });
        scale.drive_on(24_000);
        assert_eq!(scale.register(), Err(RegisterRefusal::NotStable));
        advance(Duration::from_millis(100)).await;
        let first = scale.register().unwrap();
        let second = scale.register().unwrap();
        assert_eq!((first.id, second.id), (1, 2));
        assert_eq!(first.gross_kg, 24_000);
        assert_eq!(scale.alibi_records(), vec![first, second]);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        let (date, time) = terminal_clock();
        assert_eq!((date.len(), time.len()), (8, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn overload_above_max_plus_nine_e() {
        let params = TruckScaleParams {
            ramp_ms: 0,
            settle_ms: 0,
            ..TruckScaleParams::default()
        };
        let scale = TruckScale::new(params);
        scale.drive_on(60_180);
        assert!(!scale.sample().overload);
        scale.drive_on(60_200);
        assert!(scale.sample().overload);
    }

    #[tokio::test(start_paused = true)]
    async fn noise_stays_within_bounds_and_divisions() {
        let params = TruckScaleParams {
            ramp_ms: 0,
            settle_ms: 0,
            noise_kg: 30,
            ..TruckScaleParams::default()
        };
        let scale = TruckScale::new(params);
        scale.drive_on(10_000);
        for _ in 0..200 {
            let sample = scale.sample();
            assert!((sample.weight_kg - 10_000).abs() <= 40, "{sample:?}");
            assert_eq!(sample.weight_kg % 20, 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_and_tare_follow_the_terminal_rules() {
        let params = TruckScaleParams {
            ramp_ms: 100,
            settle_ms: 0,
            ..TruckScaleParams::default()
        };
        let scale = TruckScale::new(params);
        scale.drive_on(1000);
        assert_eq!(scale.zero(), ZeroOutcome::NotStable);
        assert_eq!(scale.tare(), TareOutcome::NotStable);
        advance(Duration::from_millis(100)).await;
        assert_eq!(scale.zero(), ZeroOutcome::Done);
        assert_eq!(scale.sample().weight_kg, 0);
        scale.drive_on(30_000);
        advance(Duration::from_millis(100)).await;
        assert_eq!(scale.zero(), ZeroOutcome::AboveRange);
        assert_eq!(scale.tare(), TareOutcome::Done(29_000));
        assert_eq!(scale.tare_kg(), 29_000);
        scale.clear_tare();
        assert_eq!(scale.tare_kg(), 0);
    }
}
