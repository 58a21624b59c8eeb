//! The site I/O controller: one task owns every light, barrier and sensor pin, feeds the
//! interlock (`site_io::interlock`) and writes its outputs. Callers talk to it through a
//! cloneable `SiteIoHandle` (platform weight, begin a weighing) and watch `SiteIoStatus`.
//!
//! Each loop turn (a sensor poll, a command, a weighing outcome) reads the sensors, lets the
//! interlock decide and writes only the outputs that changed. Pin operations are GPIO ioctls
//! that return in microseconds, so they run on the task itself rather than a blocking pool.
//!
//! Fail-safe: a sensor that cannot be read counts as interrupted, and any pin error turns
//! every light red and closes every barrier for `PIN_FAULT_HOLD_MS` after the last error, so a
//! flaky line cannot make a barrier flap. The same safe outputs are written when the task
//! ends (every handle dropped) or unwinds.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;

use crate::site_io::SiteIoError;
use crate::site_io::interlock::{
    self, Barrier, Event, Interlock, InterlockError, InterlockState, Light, Outputs,
};
use crate::site_io::pins::{
    self, BoxedInputPin, BoxedOutputPin, ENTRY_BARRIER, ENTRY_LIGHT_GREEN, ENTRY_LIGHT_RED,
    EXIT_BARRIER, EXIT_LIGHT_GREEN, EXIT_LIGHT_RED, Level, LightConfig, OpenError, PinConfig,
    PinSources, SimulatedPins, SiteIoConfig,
};

/// Pending commands (weights, weighing requests); senders wait when it is full.
pub const COMMAND_QUEUE_CAPACITY: usize = 32;

/// How long outputs stay safe after the last pin error before the interlock's outputs are
/// tried again.
pub const PIN_FAULT_HOLD_MS: u64 = 5000;

/// One position sensor in the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SensorStatus {
    /// The configured name.
    pub name: String,
    /// A vehicle interrupts it, or it cannot be read.
    pub blocked: bool,
}

/// Live site I/O status, published by the controller task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteIoStatus {
    /// The interlock state.
    pub state: InterlockState,
    /// The entry light as commanded (also when no entry light is configured).
    pub entry_light: Light,
    /// The entry barrier as commanded.
    pub entry_barrier: Barrier,
    /// The exit light as commanded.
    pub exit_light: Light,
    /// The exit barrier as commanded.
    pub exit_barrier: Barrier,
    /// Every configured sensor, in config order.
    pub sensors: Vec<SensorStatus>,
    /// No sensor is interrupted: a weighing is not refused for position.
    pub positioned: bool,
    /// The last platform weight was at or above `empty_below_kg`.
    pub platform_loaded: bool,
    /// A pin failed within the last `PIN_FAULT_HOLD_MS`; outputs are held safe.
    pub pin_fault: bool,
    /// The latest pin error, `<pin>: <error>`; kept after recovery for display.
    pub last_pin_error: Option<String>,
}

impl SiteIoStatus {
    /// What `begin_weighing` would answer now; for showing the refusal before anyone asks.
    pub fn check_can_weigh(&self) -> Result<(), InterlockError> {
        let blocked: Vec<String> = self
            .sensors
            .iter()
            .filter(|sensor| sensor.blocked)
            .map(|sensor| sensor.name.clone())
            .collect();
        interlock::check_can_weigh(self.state, &blocked)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Recorded,
    Failed,
}

#[derive(Debug)]
enum Command {
    PlatformWeight {
        kg: f64,
    },
    BeginWeighing {
        /// Where the `WeighingGuard` reports how the weighing ended.
        outcome: oneshot::Receiver<Outcome>,
        reply: oneshot::Sender<Result<(), InterlockError>>,
    },
}

/// Cloneable handle to the site I/O controller. The task ends, leaving every output safe, when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct SiteIoHandle {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<SiteIoStatus>,
}

impl SiteIoHandle {
    /// A receiver of the live status.
    pub fn status(&self) -> watch::Receiver<SiteIoStatus> {
        self.status.clone()
    }

    /// The current platform weight; the controller compares it with `empty_below_kg`. Feed it
    /// every reading: the platform counts as empty only while the weight says so. NaN counts
    /// as loaded.
    pub async fn platform_weight_kg(&self, kg: f64) {
        if self
            .commands
            .send(Command::PlatformWeight { kg })
            .await
            .is_err()
        {
            tracing::debug!("site I/O controller stopped; platform weight dropped");
        }
    }

    /// Checks the interlock with freshly read sensors and enters `Weighing`. Keep the guard
    /// while the scale registers the weighing; call `recorded()` once it is stored. Dropping
    /// the guard otherwise reports the weighing as failed.
    pub async fn begin_weighing(&self) -> Result<WeighingGuard, InterlockError> {
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::BeginWeighing {
                outcome: outcome_rx,
                reply,
            })
            .await
            .map_err(|_| InterlockError::Unavailable)?;
        answer.await.map_err(|_| InterlockError::Unavailable)??;
        Ok(WeighingGuard {
            outcome: Some(outcome_tx),
        })
    }
}

/// A weighing in progress. `recorded()` releases the vehicle; dropping the guard without it
/// reports the weighing as failed.
///
/// The outcome travels on a oneshot channel of its own rather than the command queue: a
/// oneshot send never waits and cannot fail for lack of room, so a guard dropped while the
/// queue is full (or a `begin_weighing` future cancelled after the controller said yes) can
/// never leave the platform stuck in `Weighing` with every light red.
#[derive(Debug)]
#[must_use = "dropping the guard reports the weighing as failed; call `recorded()` once stored"]
pub struct WeighingGuard {
    outcome: Option<oneshot::Sender<Outcome>>,
}

impl WeighingGuard {
    /// The weighing is stored: the exit opens.
    pub fn recorded(mut self) {
        self.finish(Outcome::Recorded);
    }

    /// The weighing was not taken; the same as dropping the guard, but explicit.
    pub fn failed(mut self) {
        self.finish(Outcome::Failed);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(sender) = self.outcome.take()
            && sender.send(outcome).is_err()
        {
            tracing::debug!(?outcome, "site I/O controller stopped before the outcome");
        }
    }
}

impl Drop for WeighingGuard {
    fn drop(&mut self) {
        self.finish(Outcome::Failed);
    }
}

/// Opens every configured pin (outputs safe from the first moment), reads the sensors once,
/// and spawns the controller task (`tokio::spawn`, so call it inside a runtime). Simulated
/// pins register in `sim`, or in a private registry when `None`. Errors name the config field
/// of the offending pin.
pub fn spawn(
    config: SiteIoConfig,
    sim: Option<SimulatedPins>,
) -> Result<SiteIoHandle, SiteIoError> {
    let sources = PinSources {
        simulated: sim.unwrap_or_default(),
        modbus: Vec::new(),
    };
    spawn_with(config, &sources)
}

/// Like [`spawn`], with Modbus lines for pins of kind `modbus` (spawn the lines first).
pub fn spawn_with(config: SiteIoConfig, sources: &PinSources) -> Result<SiteIoHandle, SiteIoError> {
    config.validate()?;
    let poll = Duration::from_millis(config.input_poll_ms);
    let empty_below_kg = config.empty_below_kg;
    let pins = Pins::open(config, sources)?;
    let mut controller = Controller {
        interlock: Interlock::new(),
        empty_below_kg,
        pins,
        weighing: None,
        shown: Outputs::SAFE,
        fault_until: None,
        last_pin_error: None,
    };
    // Before anyone can ask: the first status and outputs already reflect the sensors.
    controller.cycle();
    let (status_tx, status_rx) = watch::channel(controller.status());
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
    tokio::spawn(
        controller
            .run(commands_rx, status_tx, poll)
            .instrument(tracing::info_span!("site_io")),
    );
    Ok(SiteIoHandle {
        commands: commands_tx,
        status: status_rx,
    })
}

/// An output pin and what was last written to it (`None`: unknown after an error, so the next
/// write goes out even if it repeats the last one).
struct OutputSlot {
    name: &'static str,
    pin: BoxedOutputPin,
    written: Option<bool>,
}

impl OutputSlot {
    fn open(
        name: &'static str,
        config: &PinConfig,
        initial_active: bool,
        sim: &PinSources,
    ) -> Result<Self, OpenError> {
        Ok(Self {
            name,
            pin: pins::open_output(config, name, initial_active, sim)?,
            written: Some(initial_active),
        })
    }

    fn set(&mut self, active: bool) -> Result<(), String> {
        if self.written == Some(active) {
            return Ok(());
        }
        let result = if active {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
        match result {
            Ok(()) => {
                self.written = Some(active);
                Ok(())
            }
            Err(error) => {
                self.written = None;
                Err(format!("{}: {error}", self.name))
            }
        }
    }

    /// Asks the pin whether its writes took effect; on a failure the next `set` writes again.
    fn confirm(&mut self) -> Result<(), String> {
        self.pin.confirm().map_err(|error| {
            self.written = None;
            format!("{}: {error}", self.name)
        })
    }
}

struct LightPins {
    red: OutputSlot,
    green: OutputSlot,
}

impl LightPins {
    fn open(
        config: &LightConfig,
        red: &'static str,
        green: &'static str,
        sim: &PinSources,
    ) -> Result<Self, OpenError> {
        Ok(Self {
            red: OutputSlot::open(red, &config.red, true, sim)?,
            green: OutputSlot::open(green, &config.green, false, sim)?,
        })
    }

    /// Lights the new lamp before darkening the old one, so the light is never dark and never
    /// shows green alone on its way to red.
    fn show(&mut self, light: Light) -> Result<(), String> {
        match light {
            Light::Red => {
                self.red.set(true)?;
                self.green.set(false)
            }
            Light::Green => {
                self.green.set(true)?;
                self.red.set(false)
            }
        }
    }
}

struct SensorPin {
    name: String,
    pin: BoxedInputPin,
    blocked_when: Level,
    blocked: bool,
}

struct Pins {
    entry_light: Option<LightPins>,
    exit_light: Option<LightPins>,
    entry_barrier: Option<OutputSlot>,
    exit_barrier: Option<OutputSlot>,
    sensors: Vec<SensorPin>,
}

impl Pins {
    fn open(config: SiteIoConfig, sim: &PinSources) -> Result<Self, OpenError> {
        let light = |light: &Option<LightConfig>, red, green| {
            light
                .as_ref()
                .map(|light| LightPins::open(light, red, green, sim))
                .transpose()
        };
        let barrier = |pin: &Option<PinConfig>, name| {
            pin.as_ref()
                .map(|pin| OutputSlot::open(name, pin, false, sim))
                .transpose()
        };
        let mut pins = Pins {
            entry_light: light(&config.entry_light, ENTRY_LIGHT_RED, ENTRY_LIGHT_GREEN)?,
            exit_light: light(&config.exit_light, EXIT_LIGHT_RED, EXIT_LIGHT_GREEN)?,
            entry_barrier: barrier(&config.entry_barrier, ENTRY_BARRIER)?,
            exit_barrier: barrier(&config.exit_barrier, EXIT_BARRIER)?,
            sensors: Vec::with_capacity(config.position_sensors.len()),
        };
        for (index, sensor) in config.position_sensors.into_iter().enumerate() {
            let pin = pins::open_sensor(index, &sensor, sim)?;
            pins.sensors.push(SensorPin {
                name: sensor.name,
                pin,
                blocked_when: sensor.blocked_when,
                // Until the first read, assume the worst.
                blocked: true,
            });
        }
        Ok(pins)
    }

    /// Collects the failures of earlier output writes (see `SiteOutput::confirm`).
    fn confirm_outputs(&mut self, errors: &mut Vec<String>) {
        let lights = [&mut self.entry_light, &mut self.exit_light]
            .into_iter()
            .flatten()
            .flat_map(|light| [&mut light.red, &mut light.green]);
        let barriers = [&mut self.entry_barrier, &mut self.exit_barrier]
            .into_iter()
            .flatten();
        for slot in lights.chain(barriers) {
            errors.extend(slot.confirm().err());
        }
    }

    /// Reads every sensor. A sensor that cannot be read counts as interrupted: nobody may weigh
    /// or drive on while we cannot see where the vehicle is.
    fn read_sensors(&mut self, errors: &mut Vec<String>) -> Vec<String> {
        let mut blocked = Vec::new();
        for sensor in &mut self.sensors {
            sensor.blocked = match sensor.pin.is_high() {
                Ok(high) => high == (sensor.blocked_when == Level::High),
                Err(error) => {
                    errors.push(format!("sensor.{}: {error}", sensor.name));
                    true
                }
            };
            if sensor.blocked {
                blocked.push(sensor.name.clone());
            }
        }
        blocked
    }

    /// Whether every output's last write has taken effect.
    fn all_settled(&mut self) -> bool {
        let lights = [&mut self.entry_light, &mut self.exit_light]
            .into_iter()
            .flatten()
            .flat_map(|light| [&mut light.red, &mut light.green]);
        let barriers = [&mut self.entry_barrier, &mut self.exit_barrier]
            .into_iter()
            .flatten();
        let mut settled = true;
        for slot in lights.chain(barriers) {
            settled &= slot.pin.settled();
        }
        settled
    }

    /// Writes `target`, restrictive changes first (lights to red before barriers close,
    /// barriers open before lights turn green), so a driver is never waved towards a closed or
    /// closing barrier. A more permissive step waits until every earlier write has taken
    /// effect (outputs on a field bus confirm later): `Ok(false)` means the target is not
    /// reached yet and the next cycle continues. Stops at the first error.
    fn write(&mut self, target: Outputs) -> Result<bool, String> {
        let lights = [
            (target.entry_light, &mut self.entry_light),
            (target.exit_light, &mut self.exit_light),
        ];
        for (light, pins) in lights {
            if let (Light::Red, Some(pins)) = (light, pins) {
                pins.show(Light::Red)?;
            }
        }
        let barriers = [
            (target.entry_barrier, &mut self.entry_barrier),
            (target.exit_barrier, &mut self.exit_barrier),
        ];
        for (barrier, pin) in barriers {
            if let (Barrier::Closed, Some(pin)) = (barrier, pin) {
                pin.set(false)?;
            }
        }
        if !self.all_settled() {
            return Ok(false);
        }
        let barriers = [
            (target.entry_barrier, &mut self.entry_barrier),
            (target.exit_barrier, &mut self.exit_barrier),
        ];
        for (barrier, pin) in barriers {
            if let (Barrier::Open, Some(pin)) = (barrier, pin) {
                pin.set(true)?;
            }
        }
        if !self.all_settled() {
            return Ok(false);
        }
        let lights = [
            (target.entry_light, &mut self.entry_light),
            (target.exit_light, &mut self.exit_light),
        ];
        for (light, pins) in lights {
            if let (Light::Green, Some(pins)) = (light, pins) {
                pins.show(Light::Green)?;
            }
        }
        Ok(self.all_settled())
    }

    /// Tries to make every output safe, carrying on past failures so one broken pin does not
    /// keep the others permissive.
    fn force_safe(&mut self, errors: &mut Vec<String>) {
        for light in [&mut self.entry_light, &mut self.exit_light]
            .into_iter()
            .flatten()
        {
            errors.extend(light.red.set(true).err());
            errors.extend(light.green.set(false).err());
        }
        for barrier in [&mut self.entry_barrier, &mut self.exit_barrier]
            .into_iter()
            .flatten()
        {
            errors.extend(barrier.set(false).err());
        }
    }
}

struct Controller {
    interlock: Interlock,
    empty_below_kg: f64,
    pins: Pins,
    /// The outcome channel of the weighing in progress.
    weighing: Option<oneshot::Receiver<Outcome>>,
    /// What the outputs were last told to show.
    shown: Outputs,
    /// Outputs stay safe until then.
    fault_until: Option<Instant>,
    last_pin_error: Option<String>,
}

/// The end of the weighing in progress; never resolves without one.
async fn next_outcome(weighing: &mut Option<oneshot::Receiver<Outcome>>) -> Outcome {
    match weighing {
        // A guard that vanished without a word (cancelled future, panic) did not record.
        Some(receiver) => receiver.await.unwrap_or(Outcome::Failed),
        None => std::future::pending().await,
    }
}

fn publish(status: &watch::Sender<SiteIoStatus>, new: SiteIoStatus) {
    status.send_if_modified(|current| {
        if *current == new {
            false
        } else {
            *current = new;
            true
        }
    });
}

impl Controller {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        status: watch::Sender<SiteIoStatus>,
        poll: Duration,
    ) {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let before = self.interlock.state();
            tokio::select! {
                // An outcome first: a `recorded()` followed by an empty platform must release
                // the vehicle before the platform counts as free.
                biased;
                outcome = next_outcome(&mut self.weighing) => {
                    self.weighing = None;
                    self.finish_weighing(outcome);
                }
                command = commands.recv() => {
                    let Some(command) = command else {
                        break;
                    };
                    self.handle(command);
                }
                _ = ticker.tick() => {}
            }
            self.cycle();
            let after = self.interlock.state();
            if after != before {
                tracing::info!(from = %before, to = %after, "interlock state changed");
            }
            publish(&status, self.status());
        }
        self.shutdown();
        publish(&status, self.status());
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::PlatformWeight { kg } => {
                // NaN counts as loaded: an unknown weight must not free the platform.
                let loaded = kg.is_nan() || kg >= self.empty_below_kg;
                self.apply(Event::PlatformLoad { loaded });
            }
            Command::BeginWeighing { outcome, reply } => {
                // Decide on the sensors as they are now, not as they were at the last poll.
                self.cycle();
                let result = self.interlock.apply(Event::WeighingStarted).map(|_| ());
                match &result {
                    Ok(()) => self.weighing = Some(outcome),
                    Err(error) => tracing::info!(%error, "weighing refused by the interlock"),
                }
                if reply.send(result).is_err() {
                    // If it was accepted, the dropped guard sender reports the weighing failed.
                    tracing::debug!("weighing requester gave up before the answer");
                }
            }
        }
    }

    fn finish_weighing(&mut self, outcome: Outcome) {
        let event = match outcome {
            Outcome::Recorded => Event::WeighingRecorded,
            Outcome::Failed => Event::WeighingFailed,
        };
        self.apply(event);
    }

    fn apply(&mut self, event: Event) {
        if let Err(error) = self.interlock.apply(event) {
            tracing::warn!(%error, "interlock refused an event");
        }
    }

    fn in_fault(&self, now: Instant) -> bool {
        self.fault_until.is_some_and(|until| now < until)
    }

    fn note_errors(&mut self, errors: Vec<String>, now: Instant) {
        for error in errors {
            self.fault_until = Some(now + Duration::from_millis(PIN_FAULT_HOLD_MS));
            // A broken line fails on every poll; say so once per distinct error.
            if self.last_pin_error.as_deref() != Some(error.as_str()) {
                tracing::warn!(%error, "site I/O pin error: lights red, barriers closed");
            }
            self.last_pin_error = Some(error);
        }
    }

    /// Reads the sensors, lets the interlock decide and writes the outputs that changed.
    fn cycle(&mut self) {
        let now = Instant::now();
        let mut errors = Vec::new();
        self.pins.confirm_outputs(&mut errors);
        let blocked = self.pins.read_sensors(&mut errors);
        self.apply(Event::Sensors { blocked });
        self.note_errors(errors, now);
        let target = if self.in_fault(now) {
            Outputs::SAFE
        } else {
            self.interlock.outputs()
        };
        match self.pins.write(target) {
            Ok(true) => self.shown = target,
            // On the way: show permissive only what was permissive already and still is.
            Ok(false) => self.shown = self.shown.most_restrictive(target),
            Err(error) => {
                let mut errors = vec![error];
                self.pins.force_safe(&mut errors);
                self.shown = Outputs::SAFE;
                self.note_errors(errors, now);
            }
        }
    }

    fn shutdown(&mut self) {
        let mut errors = Vec::new();
        self.pins.force_safe(&mut errors);
        self.shown = Outputs::SAFE;
        self.note_errors(errors, Instant::now());
        tracing::info!("site I/O controller stopped; lights red, barriers closed");
    }

    fn status(&self) -> SiteIoStatus {
        SiteIoStatus {
            state: self.interlock.state(),
            entry_light: self.shown.entry_light,
            entry_barrier: self.shown.entry_barrier,
            exit_light: self.shown.exit_light,
            exit_barrier: self.shown.exit_barrier,
            sensors: self
                .pins
                .sensors
                .iter()
                .map(|sensor| SensorStatus {
                    name: sensor.name.clone(),
                    blocked: sensor.blocked,
                })
                .collect(),
            positioned: self.interlock.positioned(),
            platform_loaded: self.interlock.loaded(),
            pin_fault: self.in_fault(Instant::now()),
            last_pin_error: self.last_pin_error.clone(),
        }
    }
}

impl Drop for Controller {
    /// Also when the task panics or the runtime drops it: leave the site safe.
    fn drop(&mut self) {
        let mut errors = Vec::new();
        self.pins.force_safe(&mut errors);
        for error in errors {
            tracing::error!(%error, "could not make a site output safe on shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site_io::pins::SensorConfig;

    fn site_config() -> SiteIoConfig {
        let light = || LightConfig {
            red: PinConfig::Simulated {},
            green: PinConfig::Simulated {},
        };
        let sensor = |name: &str, blocked_when| SensorConfig {
            name: name.to_owned(),
            pin: PinConfig::Simulated {},
            blocked_when,
        };
        SiteIoConfig {
            entry_light: Some(light()),
            exit_light: Some(light()),
            entry_barrier: Some(PinConfig::Simulated {}),
            exit_barrier: Some(PinConfig::Simulated {}),
            position_sensors: vec![sensor("front", Level::Low), sensor("rear", Level::High)],
            ..SiteIoConfig::default()
        }
    }

    /// The light as the lamps show it; exactly one lamp must be lit.
    fn lamp(sim: &SimulatedPins, light: &str) -> Light {
        let red = sim.is_high(&format!("{light}.red")).unwrap();
        let green = sim.is_high(&format!("{light}.green")).unwrap();
        assert_ne!(red, green, "{light}: exactly one lamp lit ({sim})");
        if green { Light::Green } else { Light::Red }
    }

    fn barrier(sim: &SimulatedPins, name: &str) -> Barrier {
        if sim.is_high(name).unwrap() {
            Barrier::Open
        } else {
            Barrier::Closed
        }
    }

    /// Entry light, entry barrier, exit light, exit barrier as the pins show them.
    fn pins_show(sim: &SimulatedPins) -> Outputs {
        Outputs {
            entry_light: lamp(sim, "entry_light"),
            entry_barrier: barrier(sim, "entry_barrier"),
            exit_light: lamp(sim, "exit_light"),
            exit_barrier: barrier(sim, "exit_barrier"),
        }
    }

    const ENTRY_OPEN: Outputs = Outputs {
        entry_light: Light::Green,
        entry_barrier: Barrier::Open,
        exit_light: Light::Red,
        exit_barrier: Barrier::Closed,
    };
    const EXIT_OPEN: Outputs = Outputs {
        entry_light: Light::Red,
        entry_barrier: Barrier::Closed,
        exit_light: Light::Green,
        exit_barrier: Barrier::Open,
    };

    async fn wait_for(
        status: &mut watch::Receiver<SiteIoStatus>,
        what: &str,
        condition: impl Fn(&SiteIoStatus) -> bool,
    ) -> SiteIoStatus {
        let waited =
            tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| condition(s)))
                .await
                .map(|seen| seen.expect("controller running").clone());
        match waited {
            Ok(seen) => seen,
            Err(_) => panic!("timed out waiting for {what}: {:?}", *status.borrow()),
        }
    }

    async fn wait_state(
        status: &mut watch::Receiver<SiteIoStatus>,
        state: InterlockState,
    ) -> SiteIoStatus {
        wait_for(status, state.as_str(), |s| s.state == state).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_truck_is_weighed_and_released() {
        let sim = SimulatedPins::new();
        let site = spawn(site_config(), Some(sim.clone())).unwrap();
        let mut status = site.status();
        let first = status.borrow().clone();
        assert_eq!(first.state, InterlockState::Free);
        assert!(first.positioned && !first.pin_fault);
        assert_eq!(pins_show(&sim), ENTRY_OPEN);

        // The truck drives on.
        site.platform_weight_kg(31_540.0).await;
        let on = wait_state(&mut status, InterlockState::Occupied).await;
        assert_eq!(on.entry_light, Light::Red);
        assert_eq!(pins_show(&sim), Outputs::SAFE);

        // Its front is still in the light barrier: refused, naming the sensor, without waiting
        // for a poll.
        sim.set_sensor_blocked("front", true).unwrap();
        let refused = site.begin_weighing().await.unwrap_err();
        assert_eq!(
            refused,
            InterlockError::NotPositioned {
                blocked: vec!["front".to_owned()]
            }
        );
        let seen = wait_for(&mut status, "front blocked", |s| !s.positioned).await;
        assert_eq!(seen.check_can_weigh(), Err(refused));
        assert_eq!(
            seen.sensors,
            [
                SensorStatus {
                    name: "front".to_owned(),
                    blocked: true
                },
                SensorStatus {
                    name: "rear".to_owned(),
                    blocked: false
                }
            ]
        );

        // Pulled forward: weighing allowed, everything red while it runs.
        sim.set_sensor_blocked("front", false).unwrap();
        let guard = site.begin_weighing().await.unwrap();
        let weighing = wait_state(&mut status, InterlockState::Weighing).await;
        assert_eq!(weighing.entry_light, Light::Red);
        assert_eq!(pins_show(&sim), Outputs::SAFE);
        assert_eq!(
            site.begin_weighing().await.unwrap_err(),
            InterlockError::Busy
        );

        // Recorded: the exit opens.
        guard.recorded();
        let released = wait_state(&mut status, InterlockState::Released).await;
        assert_eq!(
            (released.exit_light, released.exit_barrier),
            (Light::Green, Barrier::Open)
        );
        assert_eq!(pins_show(&sim), EXIT_OPEN);
        assert_eq!(
            site.begin_weighing().await.unwrap_err(),
            InterlockError::AwaitingExit
        );

        // Driving off through the rear barrier keeps the exit open; an empty platform frees it.
        sim.set_sensor_blocked("rear", true).unwrap();
        site.platform_weight_kg(12_000.0).await;
        wait_for(&mut status, "rear blocked", |s| !s.positioned).await;
        assert_eq!(pins_show(&sim), EXIT_OPEN);
        site.platform_weight_kg(0.0).await;
        sim.set_sensor_blocked("rear", false).unwrap();
        let free = wait_state(&mut status, InterlockState::Free).await;
        assert_eq!(free.entry_light, Light::Green);
        assert_eq!(free.exit_barrier, Barrier::Closed);
        assert_eq!(pins_show(&sim), ENTRY_OPEN);
        assert_eq!(free.last_pin_error, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_guard_returns_to_occupied_with_the_exit_closed() {
        let sim = SimulatedPins::new();
        let site = spawn(site_config(), Some(sim.clone())).unwrap();
        let mut status = site.status();
        site.platform_weight_kg(25_000.0).await;
        wait_state(&mut status, InterlockState::Occupied).await;
        let guard = site.begin_weighing().await.unwrap();
        wait_state(&mut status, InterlockState::Weighing).await;
        drop(guard);
        let back = wait_state(&mut status, InterlockState::Occupied).await;
        assert_eq!(back.exit_barrier, Barrier::Closed);
        assert_eq!(pins_show(&sim), Outputs::SAFE);
        // And a weighing may be tried again.
        site.begin_weighing().await.unwrap().failed();
        wait_state(&mut status, InterlockState::Occupied).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_request_cannot_leave_the_platform_weighing() {
        let site = spawn(site_config(), None).unwrap();
        let mut status = site.status();
        site.platform_weight_kg(25_000.0).await;
        wait_state(&mut status, InterlockState::Occupied).await;
        // Polled once: the request is queued, then the future is dropped.
        let mut request = Box::pin(site.begin_weighing());
        assert!(futures::poll!(request.as_mut()).is_pending());
        drop(request);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(status.borrow().state, InterlockState::Occupied);
        site.begin_weighing().await.unwrap().recorded();
        wait_state(&mut status, InterlockState::Released).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_empty_threshold_decides_loaded() {
        let site = spawn(site_config(), None).unwrap();
        let mut status = site.status();
        site.platform_weight_kg(199.5).await;
        site.platform_weight_kg(-20.0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(status.borrow().state, InterlockState::Free);
        site.platform_weight_kg(200.0).await;
        wait_state(&mut status, InterlockState::Occupied).await;
        site.platform_weight_kg(f64::NAN).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(status.borrow().platform_loaded);
        assert_eq!(status.borrow().state, InterlockState::Occupied);
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_configured_weighing_is_always_allowed() {
        let site = spawn(SiteIoConfig::default(), None).unwrap();
        let mut status = site.status();
        assert!(status.borrow().sensors.is_empty());
        // Manual operation: weighing from Free below the threshold.
        site.begin_weighing().await.unwrap().failed();
        wait_state(&mut status, InterlockState::Free).await;
        site.platform_weight_kg(40_000.0).await;
        let guard = site.begin_weighing().await.unwrap();
        guard.recorded();
        let released = wait_state(&mut status, InterlockState::Released).await;
        assert_eq!(released.exit_light, Light::Green);
        site.platform_weight_kg(0.0).await;
        wait_state(&mut status, InterlockState::Free).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_output_fault_holds_everything_safe_until_it_clears() {
        let sim = SimulatedPins::new();
        let site = spawn(site_config(), Some(sim.clone())).unwrap();
        let mut status = site.status();
        site.platform_weight_kg(30_000.0).await;
        wait_state(&mut status, InterlockState::Occupied).await;
        let guard = site.begin_weighing().await.unwrap();
        wait_state(&mut status, InterlockState::Weighing).await;

        // The exit's green lamp breaks; it shows when the exit is to turn green.
        sim.set_fault("exit_light.green", true).unwrap();
        guard.recorded();
        let faulted = wait_for(&mut status, "pin fault", |s| s.pin_fault).await;
        assert_eq!(faulted.state, InterlockState::Released);
        assert_eq!(
            faulted.last_pin_error.as_deref(),
            Some("exit_light.green: simulated pin fault")
        );
        assert_eq!(
            (faulted.exit_light, faulted.exit_barrier),
            (Light::Red, Barrier::Closed)
        );
        assert!(sim.is_high("exit_light.red").unwrap());
        assert_eq!(barrier(&sim, "exit_barrier"), Barrier::Closed);
        // Held safe while the fault persists, well past the hold time.
        tokio::time::sleep(Duration::from_millis(3 * PIN_FAULT_HOLD_MS)).await;
        assert!(status.borrow().pin_fault);
        assert_eq!(barrier(&sim, "exit_barrier"), Barrier::Closed);

        // Repaired: after the hold the exit opens again.
        sim.set_fault("exit_light.green", false).unwrap();
        let repaired_at = Instant::now();
        let repaired = wait_for(&mut status, "fault cleared", |s| !s.pin_fault).await;
        assert!(repaired_at.elapsed() >= Duration::from_millis(PIN_FAULT_HOLD_MS - 100));
        assert_eq!(repaired.exit_light, Light::Green);
        assert_eq!(pins_show(&sim), EXIT_OPEN);
        assert!(repaired.last_pin_error.is_some(), "kept for display");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_sensor_counts_as_blocked() {
        let sim = SimulatedPins::new();
        let site = spawn(site_config(), Some(sim.clone())).unwrap();
        let mut status = site.status();
        sim.set_fault("sensor.rear", true).unwrap();
        let refused = site.begin_weighing().await.unwrap_err();
        assert_eq!(
            refused,
            InterlockError::NotPositioned {
                blocked: vec!["rear".to_owned()]
            }
        );
        let faulted = wait_for(&mut status, "pin fault", |s| s.pin_fault).await;
        assert_eq!(
            faulted.last_pin_error.as_deref(),
            Some("sensor.rear: simulated pin fault")
        );
        assert_eq!(pins_show(&sim), Outputs::SAFE);
        sim.set_fault("sensor.rear", false).unwrap();
        wait_for(&mut status, "recovered", |s| !s.pin_fault).await;
        assert_eq!(pins_show(&sim), ENTRY_OPEN);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_every_handle_leaves_the_site_safe() {
        let sim = SimulatedPins::new();
        let site = spawn(site_config(), Some(sim.clone())).unwrap();
        let mut status = site.status();
        assert_eq!(pins_show(&sim), ENTRY_OPEN);
        let clone = site.clone();
        drop(site);
        clone.platform_weight_kg(0.0).await;
        drop(clone);
        while status.changed().await.is_ok() {}
        assert_eq!(status.borrow().entry_light, Light::Red);
        assert_eq!(pins_show(&sim), Outputs::SAFE);
    }

    #[tokio::test]
    async fn a_missing_gpio_chip_is_an_error_naming_the_pin() {
        let mut config = site_config();
        config.exit_barrier = Some(PinConfig::Gpio {
            chip: "/nonexistent/gpiochip7".into(),
            line: 5,
            active_low: true,
        });
        let error = spawn(config, None).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "site_io.exit_barrier: cannot open gpio line 5 on /nonexistent/gpiochip7: "
            ),
            "{error}"
        );
        let mut config = site_config();
        config.input_poll_ms = 0;
        let error = spawn(config, None).unwrap_err();
        assert!(
            matches!(&error, SiteIoError::Config(e) if e.field() == "site_io.input_poll_ms"),
            "{error}"
        );
    }

    #[test]
    fn the_status_serialises_as_documented() {
        let status = SiteIoStatus {
            state: InterlockState::Released,
            entry_light: Light::Red,
            entry_barrier: Barrier::Closed,
            exit_light: Light::Green,
            exit_barrier: Barrier::Open,
            sensors: vec![SensorStatus {
                name: "front".to_owned(),
                blocked: false,
            }],
            positioned: true,
            platform_loaded: true,
            pin_fault: false,
            last_pin_error: None,
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({
                "state": "released",
                "entry_light": "red",
                "entry_barrier": "closed",
                "exit_light": "green",
                "exit_barrier": "open",
                "sensors": [{"name": "front", "blocked": false}],
                "positioned": true,
                "platform_loaded": true,
                "pin_fault": false,
                "last_pin_error": null,
            })
        );
    }
}
