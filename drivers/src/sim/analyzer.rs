//! A simulated grain analyzer: answers `MEAS` with a result line in the
//! format of [`crate::analyzer::SIMULATED_FORMAT`]. Serve it on a
//! pseudo-terminal ([`crate::sim::PtyScale::spawn_terminal`]) or TCP like
//! any simulated terminal.

use std::sync::{Arc, Mutex, PoisonError};

use crate::scale::framing::{Framing, RawFrame};
use crate::sim::terminal::{Terminal, TerminalFactory};

/// Longest command line the simulated analyzer takes.
const MAX_COMMAND_BYTES: usize = 64;

/// The analyzer's current sample, shared with the test or demo that sets it.
#[derive(Debug, Clone, Default)]
pub struct SimulatedAnalyzer {
    sample: Arc<Mutex<Option<[f64; 3]>>>,
}

impl SimulatedAnalyzer {
    /// An analyzer holding a sample of moisture %, hectolitre kg/hl, protein %.
    pub fn new(sample: [f64; 3]) -> Self {
        let analyzer = Self::default();
        analyzer.set_sample(Some(sample));
        analyzer
    }

    /// Puts a sample in (or takes it out: then it answers `ERR NO SAMPLE`).
    pub fn set_sample(&self, sample: Option<[f64; 3]>) {
        *self.sample.lock().unwrap_or_else(PoisonError::into_inner) = sample;
    }

    fn sample(&self) -> Option<[f64; 3]> {
        *self.sample.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A factory for the terminal servers (one session per connection).
    pub fn factory(&self) -> TerminalFactory {
        let analyzer = self.clone();
        Arc::new(move || Box::new(AnalyzerTerminal(analyzer.clone())))
    }
}

struct AnalyzerTerminal(SimulatedAnalyzer);

impl Terminal for AnalyzerTerminal {
    fn command_framing(&self) -> Option<Framing> {
        Some(Framing::lines(MAX_COMMAND_BYTES))
    }

    fn respond(&mut self, command: &RawFrame) -> Vec<u8> {
        match (command.body(), self.0.sample()) {
            (b"MEAS", Some([moisture, hectolitre, protein])) => {
                format!("H2O={moisture:.1};HLW={hectolitre:.1};PROT={protein:.1}\r\n").into_bytes()
            }
            (b"MEAS", None) => b"ERR NO SAMPLE\r\n".to_vec(),
            _ => b"ERR UNKNOWN COMMAND\r\n".to_vec(),
        }
    }
}
