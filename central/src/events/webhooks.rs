//! Delivers the outbox to webhooks: a signed POST per event, retried with
//! exponential backoff, in id order per webhook.
//!
//! One task schedules; every attempt runs as its own task, at most
//! `max_concurrent_deliveries` at once and at most one per webhook, so a
//! webhook that fails holds back only its own later events. All state
//! (head, attempts, next attempt) is in SQLite: after a restart the
//! dispatcher continues where it was. An attempt that was running when
//! central stopped is made again, so a receiver may see an event twice.
//!
//! The HTTP transport and the clock are injected, so tests decide what
//! receivers answer and when retries are due.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::mqtt::blocking;
use super::{Clock, EventsConfig, backoff_delay_ms, signature_header};
use crate::store::Store;
use crate::store::events::{AttemptOutcome, DueDelivery, WebhookTarget};

/// How much of a webhook's answer is read (for `last_error`); the rest is
/// never read.
pub const MAX_RESPONSE_BODY_BYTES: usize = 1024;

/// How often the dispatcher looks for new events and due retries.
pub const POLL_INTERVAL_MS: u64 = 200;

/// Wait after a database error before trying again.
const ERROR_DELAY_MS: u64 = 1_000;

/// One POST to a webhook.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub timeout: Duration,
}

/// What a webhook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAnswer {
    pub status: u16,
    /// The first [`MAX_RESPONSE_BODY_BYTES`] of the body, lossily as text.
    pub body_excerpt: String,
}

/// Sends webhook requests; `Err` is a failure without an HTTP answer.
pub trait Transport: Send + Sync + 'static {
    fn post(
        &self,
        request: WebhookRequest,
    ) -> impl Future<Output = Result<WebhookAnswer, String>> + Send;
}

/// HTTP(S) with reqwest. Redirects are not followed: a webhook is
/// delivered to the URL it was registered with.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    pub fn new() -> Result<ReqwestTransport, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("valeo-central/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ReqwestTransport { client })
    }
}

/// An error's text with its causes ("connection refused" is a cause), and
/// without the URL, which may carry a token.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Transport for ReqwestTransport {
    async fn post(&self, request: WebhookRequest) -> Result<WebhookAnswer, String> {
        let mut builder = self
            .client
            .post(&request.url)
            .timeout(request.timeout)
            .body(request.body);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        let mut response = builder.send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let mut excerpt = Vec::new();
        while excerpt.len() < MAX_RESPONSE_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                // The status is the answer; a broken body only shortens the excerpt.
                Ok(None) | Err(_) => break,
            }
        }
        excerpt.truncate(MAX_RESPONSE_BODY_BYTES);
        Ok(WebhookAnswer {
            status,
            body_excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
        })
    }
}

/// Per webhook without an attempt running: nothing to do before `due`, or,
/// without `due`, before an event newer than `newest_seen` exists.
#[derive(Debug, Clone, Copy)]
struct Idle {
    newest_seen: i64,
    due: Option<DateTime<Utc>>,
}

/// Schedules webhook deliveries.
pub struct Dispatcher<T: Transport, C: Clock> {
    store: Store,
    transport: Arc<T>,
    clock: Arc<C>,
    config: Arc<EventsConfig>,
    wake: Arc<Notify>,
    running: JoinSet<()>,
    /// Webhook of each running attempt.
    attempts: HashMap<tokio::task::Id, i64>,
    in_flight: HashSet<i64>,
    idle: HashMap<i64, Idle>,
}

impl<T: Transport, C: Clock> std::fmt::Debug for Dispatcher<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl<T: Transport, C: Clock> Dispatcher<T, C> {
    /// `wake` is notified by the API when webhooks or deliveries change.
    pub fn new(
        store: Store,
        transport: Arc<T>,
        clock: Arc<C>,
        config: EventsConfig,
        wake: Arc<Notify>,
    ) -> Dispatcher<T, C> {
        Dispatcher {
            store,
            transport,
            clock,
            config: Arc::new(config),
            wake,
            running: JoinSet::new(),
            attempts: HashMap::new(),
            in_flight: HashSet::new(),
            idle: HashMap::new(),
        }
    }

    /// Runs forever.
    pub async fn run(mut self) {
        loop {
            let next = match self.start_due().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::error!(%error, "webhook dispatcher cannot read the outbox");
                    tokio::time::sleep(Duration::from_millis(ERROR_DELAY_MS)).await;
                    continue;
                }
            };
            let poll = Duration::from_millis(POLL_INTERVAL_MS);
            let wait = next.map_or(poll, |due| {
                (due - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(poll)
            });
            tokio::select! {
                Some(done) = self.running.join_next_with_id() => self.finished(done),
                () = self.wake.notified() => self.idle.clear(),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts the attempts due now, one per webhook and within the limit;
    /// returns when the next known attempt is due.
    pub async fn start_due(&mut self) -> Result<Option<DateTime<Utc>>, String> {
        let now = self.clock.now();
        let newest = blocking(&self.store, Store::newest_event_id).await?;
        let targets = blocking(&self.store, Store::webhook_targets).await?;
        self.idle
            .retain(|id, _| targets.iter().any(|target| target.id == *id));
        let mut next: Option<DateTime<Utc>> = None;
        for target in targets {
            if self.running.len() >= self.config.max_concurrent_deliveries {
                break;
            }
            if self.in_flight.contains(&target.id) {
                continue;
            }
            if let Some(idle) = self.idle.get(&target.id) {
                match idle.due {
                    Some(due) if due > now => {
                        next = Some(next.map_or(due, |n| n.min(due)));
                        continue;
                    }
                    None if idle.newest_seen >= newest => continue,
                    _ => {}
                }
            }
            let head_of = target.clone();
            let head = blocking(&self.store, move |s| s.webhook_head(&head_of, now)).await?;
            match head {
                None => {
                    self.idle.insert(
                        target.id,
                        Idle {
                            newest_seen: newest,
                            due: None,
                        },
                    );
                }
                Some(due) if due.next_attempt_at > now => {
                    let at = due.next_attempt_at;
                    next = Some(next.map_or(at, |n| n.min(at)));
                    self.idle.insert(
                        target.id,
                        Idle {
                            newest_seen: newest,
                            due: Some(at),
                        },
                    );
                }
                Some(due) => self.start(target, due),
            }
        }
        Ok(next)
    }

    fn start(&mut self, target: WebhookTarget, due: DueDelivery) {
        self.idle.remove(&target.id);
        self.in_flight.insert(target.id);
        let webhook_id = target.id;
        let handle = self.running.spawn(attempt(
            self.store.clone(),
            Arc::clone(&self.transport),
            Arc::clone(&self.clock),
            Arc::clone(&self.config),
            target,
            due,
        ));
        self.attempts.insert(handle.id(), webhook_id);
    }

    fn finished(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(error) => {
                tracing::error!(%error, "webhook attempt stopped");
                error.id()
            }
        };
        if let Some(webhook_id) = self.attempts.remove(&id) {
            self.in_flight.remove(&webhook_id);
            self.idle.remove(&webhook_id);
        }
    }

    /// Runs attempts until none is due at the clock's time (tests).
    #[cfg(test)]
    async fn settle(&mut self) {
        loop {
            self.start_due().await.unwrap();
            if self.running.is_empty() {
                return;
            }
            while let Some(done) = self.running.join_next_with_id().await {
                self.finished(done);
            }
        }
    }
}

/// One attempt: POST, then record the outcome and the next attempt.
async fn attempt<T: Transport, C: Clock>(
    store: Store,
    transport: Arc<T>,
    clock: Arc<C>,
    config: Arc<EventsConfig>,
    target: WebhookTarget,
    due: DueDelivery,
) {
    let body = Bytes::from(due.event.to_bytes());
    let signature = signature_header(&target.secret, clock.now().timestamp(), &body);
    let timeout = Duration::from_millis(config.request_timeout_ms);
    let request = WebhookRequest {
        url: target.url,
        headers: vec![
            ("Content-Type", "application/json".to_owned()),
            ("Valeo-Event-Id", due.event.id.to_string()),
            ("Valeo-Event-Kind", due.event.kind.clone()),
            ("Valeo-Signature", signature),
        ],
        body,
        timeout,
    };
    let answer = match tokio::time::timeout(timeout, transport.post(request)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!(
            "no answer within request_timeout_ms = {}",
            config.request_timeout_ms
        )),
    };
    let now = clock.now();
    let attempts = due.attempts.saturating_add(1);
    let (status_code, error) = match answer {
        Ok(answer) if (200..300).contains(&answer.status) => {
            let outcome = AttemptOutcome::Delivered {
                status_code: answer.status,
            };
            record(&store, due.delivery_id, outcome, now).await;
            return;
        }
        Ok(answer) => (
            Some(answer.status),
            format!("HTTP {}: {}", answer.status, answer.body_excerpt.trim()),
        ),
        Err(error) => (None, error),
    };
    let outcome = if attempts >= config.max_attempts {
        tracing::warn!(
            webhook_id = target.id,
            event_id = due.event.id,
            attempts,
            %error,
            "webhook delivery failed for good"
        );
        AttemptOutcome::Failed { status_code, error }
    } else {
        let jitter = rand::Rng::random::<f64>(&mut rand::rng());
        let delay_ms = backoff_delay_ms(&config, attempts, jitter);
        tracing::info!(
            webhook_id = target.id,
            event_id = due.event.id,
            attempts,
            delay_ms,
            %error,
            "webhook delivery failed; trying again"
        );
        AttemptOutcome::Retry {
            status_code,
            error,
            next_attempt_at: now
                + chrono::Duration::milliseconds(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
        }
    };
    record(&store, due.delivery_id, outcome, now).await;
}

async fn record(store: &Store, delivery_id: i64, outcome: AttemptOutcome, now: DateTime<Utc>) {
    if let Err(error) = blocking(store, move |s| s.record_attempt(delivery_id, &outcome, now)).await
    {
        // The attempt is made again: at least once, never lost.
        tracing::error!(%error, delivery_id, "webhook attempt not recorded");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::store::events::DeliveryStatus;

    /// Answers per URL from a script (200 once it is used up) and logs
    /// which event each request carried.
    #[derive(Debug, Default)]
    struct Scripted {
        answers: Mutex<HashMap<String, VecDeque<Result<u16, String>>>>,
        seen: Mutex<Vec<(String, i64)>>,
        /// Requests to this URL never get an answer.
        hang: Option<String>,
    }

    impl Scripted {
        fn answer(&self, url: &str, answers: impl IntoIterator<Item = Result<u16, String>>) {
            self.answers
                .lock()
                .unwrap()
                .entry(url.to_owned())
                .or_default()
                .extend(answers);
        }

        fn seen_by(&self, url: &str) -> Vec<i64> {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .filter(|(u, _)| u == url)
                .map(|(_, id)| *id)
                .collect()
        }
    }

    impl Transport for Scripted {
        async fn post(&self, request: WebhookRequest) -> Result<WebhookAnswer, String> {
            let event: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let id = event["id"].as_i64().unwrap();
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            assert_eq!(header("Valeo-Event-Id"), id.to_string());
            assert_eq!(header("Valeo-Event-Kind"), event["kind"].as_str().unwrap());
            self.seen.lock().unwrap().push((request.url.clone(), id));
            if self.hang.as_deref() == Some(request.url.as_str()) {
                std::future::pending::<()>().await;
            }
            let next = self
                .answers
                .lock()
                .unwrap()
                .get_mut(&request.url)
                .and_then(VecDeque::pop_front)
                .unwrap_or(Ok(200));
            next.map(|status| WebhookAnswer {
                status,
                body_excerpt: "ok".into(),
            })
        }
    }

    #[derive(Debug)]
    struct ManualClock(Mutex<DateTime<Utc>>);

    impl ManualClock {
        fn advance_ms(&self, ms: u64) {
            *self.0.lock().unwrap() += chrono::Duration::milliseconds(ms as i64);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        store: Store,
        transport: Arc<Scripted>,
        clock: Arc<ManualClock>,
        config: EventsConfig,
    }

    impl Setup {
        fn new(transport: Scripted, config: EventsConfig) -> Setup {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("central.db")).unwrap();
            let start = DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
                .unwrap()
                .with_timezone(&Utc);
            Setup {
                _dir: dir,
                store,
                transport: Arc::new(transport),
                clock: Arc::new(ManualClock(Mutex::new(start))),
                config,
            }
        }

        fn dispatcher(&self) -> Dispatcher<Scripted, ManualClock> {
            Dispatcher::new(
                self.store.clone(),
                Arc::clone(&self.transport),
                Arc::clone(&self.clock),
                self.config.clone(),
                Arc::new(Notify::new()),
            )
        }

        fn webhook(&self, url: &str, events: &[&str]) -> i64 {
            let events: Vec<String> = events.iter().map(|e| (*e).to_owned()).collect();
            self.store
                .create_webhook(url, &events, None, "secret", 50, self.clock.now())
                .unwrap()
                .id
        }

        fn events(&self, kinds: &[&str]) -> Vec<i64> {
            kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| {
                    self.store
                        .enqueue_event(kind, &i.to_string(), &json!({"n": i}))
                        .unwrap()
                })
                .collect()
        }

        /// Moves the clock past the longest possible wait after `attempts`.
        fn after_backoff(&self, attempts: u32) {
            self.clock
                .advance_ms(backoff_delay_ms(&self.config, attempts, 0.0) + 1);
        }
    }

    const A: &str = "http://a.example/hook";
    const B: &str = "http://b.example/hook";

    #[tokio::test]
    async fn a_failing_webhook_holds_back_only_its_own_later_events() {
        let transport = Scripted::default();
        transport.answer(A, [Ok(500), Err("connection refused".into())]);
        let setup = Setup::new(transport, EventsConfig::default());
        let a = setup.webhook(A, &["*"]);
        setup.webhook(B, &["weighing.completed"]);
        let ids = setup.events(&["weighing.completed", "device.online", "weighing.completed"]);
        let mut dispatcher = setup.dispatcher();

        dispatcher.settle().await;
        assert_eq!(setup.transport.seen_by(A), [ids[0]]);
        assert_eq!(setup.transport.seen_by(B), [ids[0], ids[2]], "B goes on");

        setup.after_backoff(1);
        dispatcher.settle().await;
        assert_eq!(setup.transport.seen_by(A), [ids[0], ids[0]]);
        let deliveries = setup.store.webhook_deliveries(a, 10, 0).unwrap().unwrap();
        assert_eq!(deliveries.len(), 1, "later events wait: {deliveries:?}");
        assert_eq!(deliveries[0].attempts, 2);
        assert_eq!(deliveries[0].status, DeliveryStatus::Pending);
        assert_eq!(deliveries[0].last_status_code, None);
        assert_eq!(
            deliveries[0].last_error.as_deref(),
            Some("connection refused")
        );

        setup.after_backoff(2);
        dispatcher.settle().await;
        assert_eq!(
            setup.transport.seen_by(A),
            [ids[0], ids[0], ids[0], ids[1], ids[2]],
            "in order once the head is through"
        );
        let deliveries = setup.store.webhook_deliveries(a, 10, 0).unwrap().unwrap();
        assert!(
            deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Delivered),
            "{deliveries:?}"
        );
        assert_eq!(deliveries.last().unwrap().attempts, 3);
    }

    #[tokio::test]
    async fn retries_wait_for_their_backoff_and_give_up_after_max_attempts() {
        let transport = Scripted::default();
        transport.answer(A, [Ok(503), Ok(404), Ok(500)]);
        let config = EventsConfig {
            max_attempts: 3,
            ..EventsConfig::default()
        };
        let setup = Setup::new(transport, config);
        let a = setup.webhook(A, &["weighing.completed"]);
        let ids = setup.events(&["weighing.completed", "weighing.completed"]);
        let mut dispatcher = setup.dispatcher();

        dispatcher.settle().await;
        // Not due before half the backoff (the most jitter takes off).
        setup
            .clock
            .advance_ms(backoff_delay_ms(&setup.config, 1, 0.0) / 2 - 1);
        dispatcher.settle().await;
        assert_eq!(setup.transport.seen_by(A).len(), 1);
        setup.after_backoff(1);
        dispatcher.settle().await;
        setup.after_backoff(2);
        dispatcher.settle().await;
        // Three attempts of the first event, then it failed and the second went.
        assert_eq!(setup.transport.seen_by(A), [ids[0], ids[0], ids[0], ids[1]]);
        let deliveries = setup.store.webhook_deliveries(a, 10, 0).unwrap().unwrap();
        let first = deliveries.iter().find(|d| d.event_id == ids[0]).unwrap();
        assert_eq!(first.status, DeliveryStatus::Failed);
        assert_eq!(first.attempts, 3);
        assert_eq!(first.last_status_code, Some(500));
        assert!(first.next_attempt_at.is_none());

        // An admin retries it: delivered on the next round.
        setup
            .store
            .retry_delivery(a, first.id, setup.clock.now())
            .unwrap();
        dispatcher.idle.clear();
        dispatcher.settle().await;
        assert_eq!(
            setup.transport.seen_by(A),
            [ids[0], ids[0], ids[0], ids[1], ids[0]]
        );
        let again = setup.store.webhook_deliveries(a, 10, 0).unwrap().unwrap();
        assert!(
            again.iter().all(|d| d.status == DeliveryStatus::Delivered),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_webhook_that_does_not_answer_times_out_and_is_retried() {
        let transport = Scripted {
            hang: Some(A.to_owned()),
            ..Scripted::default()
        };
        let config = EventsConfig {
            request_timeout_ms: 100,
            ..EventsConfig::default()
        };
        let setup = Setup::new(transport, config);
        let a = setup.webhook(A, &["*"]);
        setup.events(&["stock.corrected"]);
        let mut dispatcher = setup.dispatcher();
        dispatcher.settle().await;
        let delivery = &setup.store.webhook_deliveries(a, 10, 0).unwrap().unwrap()[0];
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempts, 1);
        assert!(
            delivery
                .last_error
                .as_deref()
                .unwrap()
                .contains("request_timeout_ms"),
            "{delivery:?}"
        );
    }

    #[tokio::test]
    async fn a_new_dispatcher_continues_where_the_old_one_stopped() {
        let transport = Scripted::default();
        transport.answer(A, [Ok(500)]);
        let setup = Setup::new(transport, EventsConfig::default());
        setup.webhook(A, &["*"]);
        let ids = setup.events(&["weighing.completed", "weighing.cancelled"]);
        setup.dispatcher().settle().await;
        assert_eq!(setup.transport.seen_by(A), [ids[0]]);

        // Central restarts: the pending head and its schedule are in SQLite.
        let mut restarted = setup.dispatcher();
        restarted.settle().await;
        assert_eq!(setup.transport.seen_by(A), [ids[0]], "not due yet");
        setup.after_backoff(1);
        restarted.settle().await;
        assert_eq!(setup.transport.seen_by(A), [ids[0], ids[0], ids[1]]);
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let setup = Setup::new(
            Scripted::default(),
            EventsConfig {
                max_concurrent_deliveries: 2,
                ..EventsConfig::default()
            },
        );
        for n in 0..5 {
            setup.webhook(&format!("http://h{n}.example/"), &["*"]);
        }
        setup.events(&["device.offline"]);
        let mut dispatcher = setup.dispatcher();
        dispatcher.start_due().await.unwrap();
        assert_eq!(dispatcher.running.len(), 2);
        dispatcher.settle().await;
        assert_eq!(setup.transport.seen.lock().unwrap().len(), 5);
    }
}
