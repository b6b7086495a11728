//! Failed password logins slow down the next attempts from the same address.

use crate::sync::Unpoisoned;
use std::time::Duration;

/// How long a run of failed logins from one address is remembered.
const FORGET_FAILURES: Duration = Duration::from_secs(60);
/// The longest wait before a login attempt.
const MAX_LOGIN_DELAY: Duration = Duration::from_secs(5);
/// Addresses remembered at most (beyond, the oldest entries go).
const MAX_ADDRESSES: usize = 10_000;

/// Failed password logins slow down the next attempts from the same address: after `n`
/// failures within a minute, an attempt waits 100 ms · 2ⁿ⁻¹ (at most 5 s) before its
/// password is checked. Guessing at hundreds per second from one address becomes a few per
/// minute; a user who mistypes once waits a tenth of a second. A success forgets the address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

/// The server's throttle (addresses are per process, as the listener is).
pub static THROTTLE: std::sync::LazyLock<LoginThrottle> = std::sync::LazyLock::new(LoginThrottle::default);

impl LoginThrottle {
    /// How long an attempt from `host` waits now.
    pub fn delay(&self, host: &str) -> Duration {
        let failures = self.failures.locked();
        match failures.get(host) {
            Some((n, last)) if last.elapsed() < FORGET_FAILURES && *n > 0 => {
                let exponent = (*n - 1).min(16);
                (Duration::from_millis(100) * 2u32.pow(exponent)).min(MAX_LOGIN_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Waits as long as [`LoginThrottle::delay`] says.
    pub async fn wait(&self, host: &str) {
        let delay = self.delay(host);
        if !delay.is_zero() {
            tracing::info!(host, ?delay, "login attempt delayed after failed logins");
            tokio::time::sleep(delay).await;
        }
    }

    /// Records a failed login from `host`.
    pub fn failed(&self, host: &str) {
        let mut failures = self.failures.locked();
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, (_, last)| last.elapsed() < FORGET_FAILURES);
            if failures.len() >= MAX_ADDRESSES {
                if let Some(oldest) = failures.iter().min_by_key(|(_, (_, last))| *last).map(|(k, _)| k.clone()) {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(host.to_string()).or_insert((0, std::time::Instant::now()));
        if entry.1.elapsed() >= FORGET_FAILURES {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = std::time::Instant::now();
    }

    /// Records a successful login from `host`.
    pub fn succeeded(&self, host: &str) {
        self.failures.locked().remove(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_an_address_and_a_success_forgets_it() {
        let t = LoginThrottle::default();
        assert_eq!(t.delay("10.0.0.1"), Duration::ZERO);
        t.failed("10.0.0.1");
        assert_eq!(t.delay("10.0.0.1"), Duration::from_millis(100));
        t.failed("10.0.0.1");
        t.failed("10.0.0.1");
        assert_eq!(t.delay("10.0.0.1"), Duration::from_millis(400));
        for _ in 0..20 {
            t.failed("10.0.0.1");
        }
        assert_eq!(t.delay("10.0.0.1"), MAX_LOGIN_DELAY);
        assert_eq!(t.delay("10.0.0.2"), Duration::ZERO, "per address");
        t.succeeded("10.0.0.1");
        assert_eq!(t.delay("10.0.0.1"), Duration::ZERO);
    }
}
