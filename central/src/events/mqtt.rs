//! Publishes the outbox on `valeo/v1/events/{kind}`, in id order, through
//! the receiver's connection.
//!
//! The database keeps a cursor: every event up to it came back from the
//! broker (see `DevicePublisher::publish_event`), so it reached the broker.
//! After a restart publishing resumes after the cursor; events published
//! but not yet confirmed then are published again. Consumers dedupe by id.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use valeo_sync::receiver::DevicePublisher;
use valeo_sync::wire::topic;

use crate::store::{Store, StoreError};

/// Name of the MQTT publisher's cursor in `event_cursors`.
pub const CURSOR: &str = "mqtt";

/// Events published and not yet confirmed, at most. Below the receiver's
/// `MAX_PENDING_EVENTS`, so publishing never waits on its queue.
pub const MAX_UNCONFIRMED_EVENTS: usize = 256;

/// How often the outbox is checked for new events: business transactions
/// only write rows, they do not wake anyone.
pub const POLL_INTERVAL_MS: u64 = 200;

/// Longest gap between two saves of the cursor while events flow.
const SAVE_INTERVAL_MS: u64 = 1_000;

/// Wait after a database error before trying again.
const ERROR_DELAY_MS: u64 = 1_000;

/// Runs `f` on the blocking pool; errors as text, for the log.
pub(crate) async fn blocking<T, F>(store: &Store, f: F) -> Result<T, String>
where
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// Runs until the receiver stops.
pub async fn run(store: Store, publisher: DevicePublisher) {
    let mut confirmed_rx = publisher.events_confirmed();
    let saved = loop {
        match blocking(&store, |s| s.event_cursor(CURSOR)).await {
            Ok(cursor) => break cursor.unwrap_or(0),
            Err(error) => {
                tracing::error!(%error, "cannot read the MQTT event cursor");
                tokio::time::sleep(Duration::from_millis(ERROR_DELAY_MS)).await;
            }
        }
    };
    tracing::info!(cursor = saved, "publishing integration events on MQTT");
    let mut state = Progress::new(saved, Instant::now());
    loop {
        let confirmed = *confirmed_rx.borrow_and_update();
        let confirmed = i64::try_from(confirmed).unwrap_or(i64::MAX);
        if let Some(cursor) = state.confirm(confirmed, Instant::now()) {
            match blocking(&store, move |s| s.set_event_cursor(CURSOR, cursor)).await {
                Ok(()) => state.saved(cursor, Instant::now()),
                Err(error) => tracing::error!(%error, "cannot save the MQTT event cursor"),
            }
        }
        let room = state.room();
        let mut full_batch = false;
        if room > 0 {
            let after = state.sent;
            let limit = room as u32;
            match blocking(&store, move |s| s.events_after(after, None, limit)).await {
                Ok(events) => {
                    full_batch = events.len() == room;
                    for event in events {
                        let payload = Bytes::from(event.to_bytes());
                        let seq = u64::try_from(event.id).unwrap_or(0);
                        if publisher
                            .publish_event(seq, topic::event(&event.kind), payload)
                            .await
                            .is_err()
                        {
                            tracing::info!("receiver stopped; no more events on MQTT");
                            return;
                        }
                        state.published(event.id);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read integration events");
                    tokio::time::sleep(Duration::from_millis(ERROR_DELAY_MS)).await;
                    continue;
                }
            }
        }
        if full_batch {
            continue;
        }
        tokio::select! {
            changed = confirmed_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)) => {}
        }
    }
}

/// What has been published, confirmed and saved.
#[derive(Debug)]
struct Progress {
    /// The newest event handed to the receiver.
    sent: i64,
    /// Events handed over and not yet confirmed, oldest first.
    unconfirmed: VecDeque<i64>,
    /// The cursor in the database.
    saved: i64,
    /// Confirmed but not yet saved.
    confirmed: i64,
    last_save: Instant,
}

impl Progress {
    fn new(saved: i64, now: Instant) -> Progress {
        Progress {
            sent: saved,
            unconfirmed: VecDeque::new(),
            saved,
            confirmed: saved,
            last_save: now,
        }
    }

    fn room(&self) -> usize {
        MAX_UNCONFIRMED_EVENTS.saturating_sub(self.unconfirmed.len())
    }

    fn published(&mut self, id: i64) {
        self.sent = id;
        self.unconfirmed.push_back(id);
    }

    /// Takes the receiver's confirmation; returns a cursor to save when one
    /// is due (at most every [`SAVE_INTERVAL_MS`] while events flow, at once
    /// when all are confirmed).
    fn confirm(&mut self, confirmed: i64, now: Instant) -> Option<i64> {
        while self.unconfirmed.front().is_some_and(|id| *id <= confirmed) {
            self.unconfirmed.pop_front();
        }
        self.confirmed = self.confirmed.max(confirmed.min(self.sent));
        let due = self.unconfirmed.is_empty()
            || now.duration_since(self.last_save) >= Duration::from_millis(SAVE_INTERVAL_MS);
        (self.confirmed > self.saved && due).then_some(self.confirmed)
    }

    fn saved(&mut self, cursor: i64, now: Instant) {
        self.saved = cursor;
        self.last_save = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_follows_confirmations_never_publications() {
        let start = Instant::now();
        let later = start + Duration::from_millis(SAVE_INTERVAL_MS);
        let mut progress = Progress::new(10, start);
        assert_eq!(progress.room(), MAX_UNCONFIRMED_EVENTS);
        for id in [11, 12, 13] {
            progress.published(id);
        }
        assert_eq!(progress.room(), MAX_UNCONFIRMED_EVENTS - 3);
        // Nothing confirmed yet (the receiver starts at 0).
        assert_eq!(progress.confirm(0, start), None);
        // 11 confirmed, 12 and 13 in flight: saved only once a second.
        assert_eq!(progress.confirm(11, start), None);
        assert_eq!(progress.confirm(11, later), Some(11));
        progress.saved(11, later);
        // Everything confirmed: saved at once.
        assert_eq!(progress.confirm(13, later), Some(13));
        progress.saved(13, later);
        assert_eq!(progress.confirm(13, later), None);
        assert_eq!(progress.room(), MAX_UNCONFIRMED_EVENTS);
    }
}
