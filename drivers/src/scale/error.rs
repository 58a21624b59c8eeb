//! `ScaleError`: everything that can go wrong when asking a scale for a weight, from a broken
//! line to the terminal's own refusals.

use crate::scale::reading::Weight;

/// An error from a scale driver.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The byte stream to the terminal failed.
    #[error("scale I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// No reply arrived in time.
    #[error("scale did not answer within {timeout_ms} ms")]
    Timeout {
        /// The response timeout that elapsed.
        timeout_ms: u64,
    },
    /// The terminal could not produce a stable weight (in motion, or busy).
    #[error("scale reports no stable weight (in motion or busy)")]
    NotStable,
    /// The load is above the weighing range.
    #[error("scale is overloaded (weight above the weighing range)")]
    Overload,
    /// The load is below the weighing range.
    #[error("scale is underloaded (weight below the weighing range)")]
    Underload,
    /// A weighing was refused because the load is below the required minimum.
    #[error("weight {weight} is below the minimum load {min}")]
    BelowMinimumLoad {
        /// The stable weight the terminal reported.
        weight: Weight,
        /// The minimum load asked for.
        min: Weight,
    },
    /// The terminal answered, but refused the command.
    #[error("scale rejected command {command:?} with reply {reply:?}")]
    Rejected {
        /// The command as sent, without CR LF.
        command: String,
        /// The terminal's reply line.
        reply: String,
    },
    /// The terminal answered something we cannot make sense of.
    #[error("scale protocol error: {0}")]
    Protocol(String),
    /// The connection to the terminal is closed or not established.
    #[error("scale is disconnected")]
    Disconnected,
    /// The configured protocol has no command for what was asked.
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl ScaleError {
    /// True when the connection itself is in doubt and should be re-established; false when
    /// the terminal answered and merely refused or reported a weighing condition.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            ScaleError::Io(_)
                | ScaleError::Timeout { .. }
                | ScaleError::Disconnected
                | ScaleError::Protocol(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_specific() {
        assert_eq!(
            ScaleError::Timeout { timeout_ms: 2000 }.to_string(),
            "scale did not answer within 2000 ms"
        );
        assert_eq!(
            ScaleError::BelowMinimumLoad {
                weight: Weight::kg(0),
                min: Weight::kg(400)
            }
            .to_string(),
            "weight 0 kg is below the minimum load 400 kg"
        );
        assert!(ScaleError::Disconnected.is_connection_error());
        assert!(!ScaleError::NotStable.is_connection_error());
    }
}
