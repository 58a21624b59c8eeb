//! The weighbridge interlock as a pure state machine: which vehicle situation the platform is
//! in (`Free`, `Occupied`, `Weighing`, `Released`), whether a weighing may start, and what the
//! lights and barriers must show. It does no I/O so that every state × event combination can
//! be tested from a table; the controller task (`site_io::controller`) feeds it the platform
//! weight, the position sensors and the weighing lifecycle, and writes `outputs()` to the pins.
//!
//! The input events (`PlatformLoad`, `Sensors`) are level-like: repeating one changes nothing,
//! so the controller may send them on every reading. The leave rules (an empty platform with
//! every sensor clear ends `Occupied` and `Released`) are evaluated only on those input events,
//! so a weighing that is recorded always shows the exit green until the next reading says the
//! platform is empty. A vehicle lighter than the empty threshold is indistinguishable from no
//! vehicle.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the platform is in the weighing cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterlockState {
    /// The platform is empty; the next vehicle may drive on.
    #[default]
    Free,
    /// A vehicle is on the platform and has not been weighed yet.
    Occupied,
    /// A weighing is being taken.
    Weighing,
    /// The weighing is recorded; the vehicle may leave.
    Released,
}

impl InterlockState {
    /// Every state, for tables and exhaustive tests.
    pub const ALL: [InterlockState; 4] = [
        InterlockState::Free,
        InterlockState::Occupied,
        InterlockState::Weighing,
        InterlockState::Released,
    ];

    /// The state's name as configs, logs and the status JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            InterlockState::Free => "free",
            InterlockState::Occupied => "occupied",
            InterlockState::Weighing => "weighing",
            InterlockState::Released => "released",
        }
    }
}

impl fmt::Display for InterlockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened at the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The platform weight is at or above the empty threshold (`loaded`) or below it.
    PlatformLoad {
        /// Weight ≥ `empty_below_kg`.
        loaded: bool,
    },
    /// The position sensors were read. The names, not just a flag, so that a refusal can say
    /// which light barrier the vehicle is standing in.
    Sensors {
        /// Names of the interrupted sensors; empty when the vehicle is positioned.
        blocked: Vec<String>,
    },
    /// A weighing is about to be taken.
    WeighingStarted,
    /// The weighing was recorded.
    WeighingRecorded,
    /// The weighing was not recorded (refused by the terminal, abandoned, cancelled).
    WeighingFailed,
}

/// Why the interlock refuses an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterlockError {
    /// A position sensor is interrupted: the vehicle is not fully on the platform.
    #[error("vehicle is not positioned: position sensor {} is interrupted", .blocked.join(", "))]
    NotPositioned {
        /// The interrupted sensors.
        blocked: Vec<String>,
    },
    /// A weighing is already being taken.
    #[error("a weighing is already in progress")]
    Busy,
    /// The weighed vehicle has not left yet; a new weighing would close the exit on it.
    #[error("the weighed vehicle has not left the platform yet")]
    AwaitingExit,
    /// A weighing outcome arrived although no weighing is in progress.
    #[error("no weighing is in progress (state {state})")]
    NotWeighing {
        /// The state the event arrived in.
        state: InterlockState,
    },
    /// The site I/O controller task is not running, so nothing guards the weighing.
    #[error("the site I/O controller is not running")]
    Unavailable,
}

/// Colour of a two-lamp traffic light; exactly one lamp is lit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Light {
    /// Stop.
    Red,
    /// Go.
    Green,
}

/// Position of a barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Barrier {
    /// Down: no passage.
    Closed,
    /// Up: passage.
    Open,
}

/// What the lights and barriers must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outputs {
    /// The light at the platform entry.
    pub entry_light: Light,
    /// The barrier at the platform entry.
    pub entry_barrier: Barrier,
    /// The light at the platform exit.
    pub exit_light: Light,
    /// The barrier at the platform exit.
    pub exit_barrier: Barrier,
}

impl Outputs {
    /// Everything red and closed: shown on pin errors and when the controller stops.
    pub const SAFE: Outputs = Outputs {
        entry_light: Light::Red,
        entry_barrier: Barrier::Closed,
        exit_light: Light::Red,
        exit_barrier: Barrier::Closed,
    };

    /// Per output, the more restrictive of the two (red over green, closed over open).
    pub fn most_restrictive(self, other: Outputs) -> Outputs {
        let light = |a: Light, b: Light| {
            if a == Light::Red || b == Light::Red {
                Light::Red
            } else {
                Light::Green
            }
        };
        let barrier = |a: Barrier, b: Barrier| {
            if a == Barrier::Closed || b == Barrier::Closed {
                Barrier::Closed
            } else {
                Barrier::Open
            }
        };
        Outputs {
            entry_light: light(self.entry_light, other.entry_light),
            entry_barrier: barrier(self.entry_barrier, other.entry_barrier),
            exit_light: light(self.exit_light, other.exit_light),
            exit_barrier: barrier(self.exit_barrier, other.exit_barrier),
        }
    }

    /// The outputs for a state: entry green only when `Free` and positioned (no sensor
    /// interrupted, so nobody is still driving on or off), exit green only when `Released`.
    /// Each barrier is open exactly when its light is green.
    pub fn for_state(state: InterlockState, positioned: bool) -> Outputs {
        let entry = if state == InterlockState::Free && positioned {
            Light::Green
        } else {
            Light::Red
        };
        let exit = if state == InterlockState::Released {
            Light::Green
        } else {
            Light::Red
        };
        Outputs {
            entry_light: entry,
            entry_barrier: barrier_for(entry),
            exit_light: exit,
            exit_barrier: barrier_for(exit),
        }
    }
}

fn barrier_for(light: Light) -> Barrier {
    match light {
        Light::Green => Barrier::Open,
        Light::Red => Barrier::Closed,
    }
}

/// Whether a weighing may start in `state` with these sensors interrupted. Shared by the
/// interlock and `SiteIoStatus`, so a UI can show the refusal before anyone presses a button.
pub fn check_can_weigh(state: InterlockState, blocked: &[String]) -> Result<(), InterlockError> {
    match state {
        InterlockState::Weighing => Err(InterlockError::Busy),
        InterlockState::Released => Err(InterlockError::AwaitingExit),
        InterlockState::Free | InterlockState::Occupied if !blocked.is_empty() => {
            Err(InterlockError::NotPositioned {
                blocked: blocked.to_vec(),
            })
        }
        InterlockState::Free | InterlockState::Occupied => Ok(()),
    }
}

/// The interlock: the state plus the inputs it depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interlock {
    state: InterlockState,
    loaded: bool,
    blocked: Vec<String>,
}

impl Interlock {
    /// `Free`, platform empty, no sensor interrupted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state.
    pub fn state(&self) -> InterlockState {
        self.state
    }

    /// The platform weight was at or above the empty threshold at the last `PlatformLoad`.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// The sensors interrupted at the last `Sensors` event.
    pub fn blocked_sensors(&self) -> &[String] {
        &self.blocked
    }

    /// No position sensor is interrupted.
    pub fn positioned(&self) -> bool {
        self.blocked.is_empty()
    }

    /// Whether `WeighingStarted` would be accepted now; call it before asking the scale.
    pub fn check_can_weigh(&self) -> Result<(), InterlockError> {
        check_can_weigh(self.state, &self.blocked)
    }

    /// What the lights and barriers must show now.
    pub fn outputs(&self) -> Outputs {
        Outputs::for_state(self.state, self.positioned())
    }

    /// Applies an event and returns the new state. A refused event leaves the interlock
    /// unchanged.
    pub fn apply(&mut self, event: Event) -> Result<InterlockState, InterlockError> {
        use InterlockState::{Free, Occupied, Released, Weighing};
        match event {
            Event::PlatformLoad { loaded } => {
                self.loaded = loaded;
                self.settle();
            }
            Event::Sensors { blocked } => {
                self.blocked = blocked;
                self.settle();
            }
            Event::WeighingStarted => {
                self.check_can_weigh()?;
                self.state = Weighing;
            }
            Event::WeighingRecorded => {
                self.expect_weighing()?;
                self.state = Released;
            }
            Event::WeighingFailed => {
                self.expect_weighing()?;
                self.state = if self.is_empty_and_clear() {
                    Free
                } else {
                    Occupied
                };
            }
        }
        Ok(self.state)
    }

    fn expect_weighing(&self) -> Result<(), InterlockError> {
        if self.state == InterlockState::Weighing {
            Ok(())
        } else {
            Err(InterlockError::NotWeighing { state: self.state })
        }
    }

    fn is_empty_and_clear(&self) -> bool {
        !self.loaded && self.blocked.is_empty()
    }

    /// The transitions driven by the platform inputs alone.
    fn settle(&mut self) {
        use InterlockState::{Free, Occupied, Released, Weighing};
        self.state = match self.state {
            Free if self.loaded => Occupied,
            // Left after the weighing, or without one: either way the platform is clear.
            Occupied | Released if self.is_empty_and_clear() => Free,
            // The weighing's own outcome ends it; a weight dip mid-weighing is the scale's
            // business (it will not report a stable weight).
            state @ (Free | Occupied | Weighing | Released) => state,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet, VecDeque};

    use super::InterlockState::{Free, Occupied, Released, Weighing};
    use super::*;

    /// The platform inputs a state is combined with: (loaded, a sensor interrupted).
    const CONTEXTS: [(bool, bool); 4] =
        [(false, false), (false, true), (true, false), (true, true)];

    fn blocked(is_blocked: bool) -> Vec<String> {
        if is_blocked {
            vec!["front".to_owned()]
        } else {
            Vec::new()
        }
    }

    fn events() -> [Event; 7] {
        [
            Event::PlatformLoad { loaded: true },
            Event::PlatformLoad { loaded: false },
            Event::Sensors {
                blocked: blocked(true),
            },
            Event::Sensors {
                blocked: blocked(false),
            },
            Event::WeighingStarted,
            Event::WeighingRecorded,
            Event::WeighingFailed,
        ]
    }

    /// Expected outcome of one (state, context, event).
    #[derive(Debug, Clone, Copy)]
    enum Expect {
        To(InterlockState),
        NotPositioned,
        Busy,
        AwaitingExit,
        NotWeighing,
        /// The (state, context) pair cannot be reached; checked by `unreachable_pairs_...`.
        Never,
    }
    use Expect::{AwaitingExit, Busy, Never, NotPositioned, NotWeighing, To};

    /// One row per state × event; the four columns are the `CONTEXTS`
    /// (empty+clear, empty+blocked, loaded+clear, loaded+blocked).
    fn table() -> Vec<(InterlockState, usize, [Expect; 4])> {
        // Event indices as in `events()`.
        const LOAD: usize = 0;
        const UNLOAD: usize = 1;
        const BLOCK: usize = 2;
        const CLEAR: usize = 3;
        const START: usize = 4;
        const RECORDED: usize = 5;
        const FAILED: usize = 6;
        vec![
            (Free, LOAD, [To(Occupied), To(Occupied), Never, Never]),
            (Free, UNLOAD, [To(Free), To(Free), Never, Never]),
            (Free, BLOCK, [To(Free), To(Free), Never, Never]),
            (Free, CLEAR, [To(Free), To(Free), Never, Never]),
            (Free, START, [To(Weighing), NotPositioned, Never, Never]),
            (Free, RECORDED, [NotWeighing, NotWeighing, Never, Never]),
            (Free, FAILED, [NotWeighing, NotWeighing, Never, Never]),
            (
                Occupied,
                LOAD,
                [Never, To(Occupied), To(Occupied), To(Occupied)],
            ),
            (
                Occupied,
                UNLOAD,
                [Never, To(Occupied), To(Free), To(Occupied)],
            ),
            (
                Occupied,
                BLOCK,
                [Never, To(Occupied), To(Occupied), To(Occupied)],
            ),
            (
                Occupied,
                CLEAR,
                [Never, To(Free), To(Occupied), To(Occupied)],
            ),
            (
                Occupied,
                START,
                [Never, NotPositioned, To(Weighing), NotPositioned],
            ),
            (
                Occupied,
                RECORDED,
                [Never, NotWeighing, NotWeighing, NotWeighing],
            ),
            (
                Occupied,
                FAILED,
                [Never, NotWeighing, NotWeighing, NotWeighing],
            ),
            (Weighing, LOAD, [To(Weighing); 4]),
            (Weighing, UNLOAD, [To(Weighing); 4]),
            (Weighing, BLOCK, [To(Weighing); 4]),
            (Weighing, CLEAR, [To(Weighing); 4]),
            (Weighing, START, [Busy; 4]),
            (Weighing, RECORDED, [To(Released); 4]),
            (
                Weighing,
                FAILED,
                [To(Free), To(Occupied), To(Occupied), To(Occupied)],
            ),
            (Released, LOAD, [To(Released); 4]),
            (
                Released,
                UNLOAD,
                [To(Free), To(Released), To(Free), To(Released)],
            ),
            (Released, BLOCK, [To(Released); 4]),
            (
                Released,
                CLEAR,
                [To(Free), To(Free), To(Released), To(Released)],
            ),
            (Released, START, [AwaitingExit; 4]),
            (Released, RECORDED, [NotWeighing; 4]),
            (Released, FAILED, [NotWeighing; 4]),
        ]
    }

    fn at(state: InterlockState, (loaded, is_blocked): (bool, bool)) -> Interlock {
        Interlock {
            state,
            loaded,
            blocked: blocked(is_blocked),
        }
    }

    #[test]
    fn the_table_covers_every_state_and_event_once() {
        let rows: BTreeSet<(usize, usize)> = table()
            .iter()
            .map(|(state, event, _)| {
                let s = InterlockState::ALL.iter().position(|x| x == state);
                (s.unwrap(), *event)
            })
            .collect();
        assert_eq!(table().len(), InterlockState::ALL.len() * events().len());
        assert_eq!(rows.len(), table().len());
    }

    #[test]
    fn every_state_and_event_behaves_as_the_table_says() {
        let events = events();
        for (state, event_index, expected) in table() {
            for (context, expect) in CONTEXTS.into_iter().zip(expected) {
                let event = events[event_index].clone();
                let before = at(state, context);
                let mut interlock = before.clone();
                let result = interlock.apply(event.clone());
                let case = format!("{state} {context:?} {event:?}");
                match expect {
                    Never => continue,
                    To(next) => {
                        assert_eq!(result, Ok(next), "{case}");
                        assert_eq!(interlock.state(), next, "{case}");
                    }
                    NotPositioned => assert_eq!(
                        result,
                        Err(InterlockError::NotPositioned {
                            blocked: vec!["front".to_owned()]
                        }),
                        "{case}"
                    ),
                    Busy => assert_eq!(result, Err(InterlockError::Busy), "{case}"),
                    AwaitingExit => {
                        assert_eq!(result, Err(InterlockError::AwaitingExit), "{case}");
                    }
                    NotWeighing => {
                        assert_eq!(result, Err(InterlockError::NotWeighing { state }), "{case}")
                    }
                }
                if result.is_err() {
                    assert_eq!(interlock, before, "a refusal changes nothing: {case}");
                }
                // The inputs an event carries are always taken over.
                match &event {
                    Event::PlatformLoad { loaded } => assert_eq!(interlock.loaded(), *loaded),
                    Event::Sensors { blocked } => {
                        assert_eq!(interlock.blocked_sensors(), blocked.as_slice());
                    }
                    _ => {
                        assert_eq!(interlock.loaded(), before.loaded());
                        assert_eq!(interlock.blocked_sensors(), before.blocked_sensors());
                    }
                }
            }
        }
    }

    #[test]
    fn check_can_weigh_predicts_weighing_started() {
        for state in InterlockState::ALL {
            for context in CONTEXTS {
                let interlock = at(state, context);
                let check = interlock.check_can_weigh();
                let mut applied = interlock.clone();
                let result = applied.apply(Event::WeighingStarted).map(|_| ());
                assert_eq!(check, result, "{state} {context:?}");
            }
        }
    }

    #[test]
    fn unreachable_pairs_are_exactly_the_never_cells() {
        // Breadth-first search over (state, loaded, blocked) from the initial interlock.
        let key = |i: &Interlock| (i.state, i.loaded, !i.blocked.is_empty());
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([Interlock::new()]);
        while let Some(interlock) = queue.pop_front() {
            if !seen.insert(key(&interlock)) {
                continue;
            }
            for event in events() {
                let mut next = interlock.clone();
                if next.apply(event).is_ok() {
                    queue.push_back(next);
                }
            }
        }
        let table = table();
        for state in InterlockState::ALL {
            let row = table.iter().find(|(s, _, _)| *s == state).unwrap();
            for (context, expect) in CONTEXTS.into_iter().zip(row.2) {
                let reachable = seen.contains(&(state, context.0, context.1));
                assert_eq!(
                    reachable,
                    !matches!(expect, Never),
                    "{state} {context:?} reachable={reachable}"
                );
            }
        }
    }

    #[test]
    fn outputs_follow_state_and_positioning() {
        use Barrier::{Closed, Open};
        use Light::{Green, Red};
        let out = |entry_light, entry_barrier, exit_light, exit_barrier| Outputs {
            entry_light,
            entry_barrier,
            exit_light,
            exit_barrier,
        };
        let table = [
            (Free, true, out(Green, Open, Red, Closed)),
            (Free, false, out(Red, Closed, Red, Closed)),
            (Occupied, true, out(Red, Closed, Red, Closed)),
            (Occupied, false, out(Red, Closed, Red, Closed)),
            (Weighing, true, out(Red, Closed, Red, Closed)),
            (Weighing, false, out(Red, Closed, Red, Closed)),
            (Released, true, out(Red, Closed, Green, Open)),
            (Released, false, out(Red, Closed, Green, Open)),
        ];
        for (state, positioned, expected) in table {
            assert_eq!(
                Outputs::for_state(state, positioned),
                expected,
                "{state} positioned={positioned}"
            );
            let interlock = at(state, (state != Free, !positioned));
            assert_eq!(interlock.outputs(), expected);
        }
        assert_eq!(Outputs::SAFE, out(Red, Closed, Red, Closed));
    }

    #[test]
    fn a_full_cycle_and_the_refusal_message() {
        let mut interlock = Interlock::new();
        assert_eq!(interlock.outputs().entry_light, Light::Green);
        interlock
            .apply(Event::PlatformLoad { loaded: true })
            .unwrap();
        interlock
            .apply(Event::Sensors {
                blocked: vec!["front".to_owned(), "rear".to_owned()],
            })
            .unwrap();
        let refused = interlock.check_can_weigh().unwrap_err();
        assert_eq!(
            refused.to_string(),
            "vehicle is not positioned: position sensor front, rear is interrupted"
        );
        interlock
            .apply(Event::Sensors {
                blocked: Vec::new(),
            })
            .unwrap();
        assert_eq!(interlock.apply(Event::WeighingStarted), Ok(Weighing));
        assert_eq!(interlock.apply(Event::WeighingRecorded), Ok(Released));
        assert_eq!(interlock.outputs().exit_barrier, Barrier::Open);
        assert_eq!(
            interlock.apply(Event::PlatformLoad { loaded: false }),
            Ok(Free)
        );
        assert_eq!(
            serde_json::to_value(InterlockState::Released).unwrap(),
            "released"
        );
    }
}
