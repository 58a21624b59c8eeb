//! Login throttling: failed logins are counted per username and per client
//! address in a fixed window that starts with the first failure; at the
//! limit that username or address is locked for the rest of the window,
//! even with the right password. Memory is bounded by `max_tracked`
//! entries per kind. The clock is a parameter.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Longest username kept as a key; longer ones cannot exist anyway.
const MAX_KEY_CHARS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counts of one kind of key, bounded.
#[derive(Debug)]
struct Counts<K> {
    windows: HashMap<K, Window>,
}

impl<K: Eq + Hash + Clone> Counts<K> {
    fn new() -> Self {
        Counts {
            windows: HashMap::new(),
        }
    }

    /// The time left of a lock on `key`, if it is locked at `now`.
    fn locked(&self, key: &K, limits: &Limits, now: Instant) -> Option<Duration> {
        let window = self.windows.get(key)?;
        let ends = window.started + limits.window;
        (window.failures >= limits.max_failures && now < ends).then(|| ends - now)
    }

    fn fail(&mut self, key: K, limits: &Limits, now: Instant) {
        if !self.windows.contains_key(&key) && self.windows.len() >= limits.max_tracked {
            self.make_room(limits, now);
        }
        let window = self.windows.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= window.started + limits.window {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    fn forget(&mut self, key: &K) {
        self.windows.remove(key);
    }

    /// Drops finished windows; if that frees nothing, the oldest window
    /// that is not a lock, else the oldest of all.
    fn make_room(&mut self, limits: &Limits, now: Instant) {
        self.windows.retain(|_, w| now < w.started + limits.window);
        if self.windows.len() < limits.max_tracked {
            return;
        }
        let victim = self
            .windows
            .iter()
            .min_by_key(|(_, w)| (w.failures >= limits.max_failures, w.started))
            .map(|(k, _)| k.clone());
        if let Some(victim) = victim {
            self.windows.remove(&victim);
        }
    }

    fn len(&self) -> usize {
        self.windows.len()
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_failures: u32,
    window: Duration,
    max_tracked: usize,
}

/// The login limiter; wrap it in a mutex to share it.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: Limits,
    by_user: Counts<String>,
    by_address: Counts<IpAddr>,
}

fn user_key(username: &str) -> String {
    username
        .chars()
        .take(MAX_KEY_CHARS)
        .collect::<String>()
        .to_lowercase()
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration, max_tracked: usize) -> LoginLimiter {
        LoginLimiter {
            limits: Limits {
                max_failures: max_failures.max(1),
                window,
                max_tracked: max_tracked.max(1),
            },
            by_user: Counts::new(),
            by_address: Counts::new(),
        }
    }

    /// How long until a login for `username` from `address` may be tried
    /// again; `None` when it may be tried now.
    pub fn retry_after(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Option<Duration> {
        let user = self.by_user.locked(&user_key(username), &self.limits, now);
        let address = address.and_then(|a| self.by_address.locked(&a, &self.limits, now));
        user.max(address)
    }

    pub fn record_failure(&mut self, username: &str, address: Option<IpAddr>, now: Instant) {
        self.by_user.fail(user_key(username), &self.limits, now);
        if let Some(address) = address {
            self.by_address.fail(address, &self.limits, now);
        }
    }

    /// A successful login clears the username's failures (not the
    /// address's: a valid account must not reset an attacker's count).
    pub fn record_success(&mut self, username: &str) {
        self.by_user.forget(&user_key(username));
    }

    /// Entries held: usernames, addresses.
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_user.len(), self.by_address.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(900);

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, n]))
    }

    #[test]
    fn the_fifth_failure_locks_for_the_rest_of_the_window() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::new(5, WINDOW, 100);
        for i in 0..4 {
            let at = t0 + Duration::from_secs(i * 10);
            assert_eq!(limiter.retry_after("alice", ip(1), at), None);
            limiter.record_failure("alice", ip(1), at);
        }
        assert_eq!(
            limiter.retry_after("alice", ip(1), t0 + Duration::from_secs(40)),
            None
        );
        limiter.record_failure("alice", ip(1), t0 + Duration::from_secs(40));
        // Locked until the window that began at t0 ends.
        let at = t0 + Duration::from_secs(100);
        assert_eq!(
            limiter.retry_after("alice", ip(1), at),
            Some(Duration::from_secs(800))
        );
        // The username is locked from anywhere, the address for anyone.
        assert!(limiter.retry_after("ALICE", ip(2), at).is_some());
        assert!(limiter.retry_after("bob", ip(1), at).is_some());
        assert_eq!(limiter.retry_after("bob", ip(2), at), None);
        // A success does not lift a lock; it is not even attempted.
        assert_eq!(
            limiter.retry_after("alice", ip(1), t0 + WINDOW - Duration::from_secs(1)),
            Some(Duration::from_secs(1))
        );
        // After the window, the slate is clean.
        assert_eq!(limiter.retry_after("alice", ip(1), t0 + WINDOW), None);
        limiter.record_failure("alice", ip(1), t0 + WINDOW);
        assert_eq!(
            limiter.retry_after("alice", ip(1), t0 + WINDOW + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn failures_spread_over_windows_do_not_add_up() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::new(3, WINDOW, 100);
        let cases = [
            (0, false),
            (100, false),
            (901, false),
            (902, false),
            (903, true),
        ];
        for (second, locked_after) in cases {
            let at = t0 + Duration::from_secs(second);
            limiter.record_failure("carol", None, at);
            assert_eq!(
                limiter.retry_after("carol", None, at).is_some(),
                locked_after,
                "after the failure at {second} s"
            );
        }
    }

    #[test]
    fn success_clears_the_username_not_the_address() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::new(2, WINDOW, 100);
        limiter.record_failure("dave", ip(3), t0);
        limiter.record_success("dave");
        limiter.record_failure("dave", ip(4), t0);
        assert_eq!(limiter.retry_after("dave", ip(4), t0), None);
        limiter.record_failure("erin", ip(3), t0);
        assert!(limiter.retry_after("frank", ip(3), t0).is_some());
    }

    #[test]
    fn memory_is_bounded_and_locks_are_kept_longest() {
        let t0 = Instant::now();
        let mut limiter = LoginLimiter::new(2, WINDOW, 10);
        limiter.record_failure("locked", ip(1), t0);
        limiter.record_failure("locked", ip(1), t0);
        for n in 0..1000u32 {
            let at = t0 + Duration::from_millis(u64::from(n));
            limiter.record_failure(
                &format!("spray-{n}"),
                Some(IpAddr::from(n.to_be_bytes())),
                at,
            );
            let (users, addresses) = limiter.tracked();
            assert!(users <= 10 && addresses <= 10, "{users} {addresses}");
        }
        assert!(
            limiter
                .retry_after("locked", ip(1), t0 + Duration::from_secs(2))
                .is_some()
        );
        // Finished windows make room before anything else.
        limiter.record_failure("later", None, t0 + WINDOW + Duration::from_secs(1));
        assert_eq!(limiter.tracked().0, 1);
    }
}
