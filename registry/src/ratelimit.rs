//! A registry's quota is the user's money: rate limits as budgets, per registry and
//! process-wide.
//!
//! Docker Hub counts every manifest GET as a pull (HEADs are free) and says on every manifest
//! answer how many are left (`ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 76;w=21600`);
//! a GET past the quota gets `429 TOOMANYREQUESTS` without `Retry-After`. Other registries
//! answer bursts with plain 429s. So:
//!
//! - A pull is sent only while the registry's last known remaining quota, less the pulls in
//!   flight, is above the reserve. At the reserve, or at a 429 that speaks of the quota, the
//!   registry's pulls pause, for every job in the process at once.
//! - A paused quota is learned back from a `Retry-After`, or from free HEADs (one request
//!   probes at a time, the others wait), or from the window. A plain 429 pauses every request
//!   to the registry for its `Retry-After`, or a growing pause.
//! - A pause that will not end within the longest wait allowed is not waited out: the request
//!   fails with [`RegistryError::RateLimited`], which defers its job (it is not a failure).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use tokio::sync::Notify;

use crate::error::RegistryError;

/// The pause of a registry after a plain 429 without `Retry-After`: 5 s, doubling with each
/// one in a row, at most 40 s (no jitter: every request of the process waits the same pause).
pub const BURST_PAUSES: crate::retry::RetryPolicy =
    crate::retry::RetryPolicy::new(Duration::from_secs(5), Duration::from_secs(40), usize::MAX);

/// How a process spends registry quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Pulls left untouched in every registry's quota.
    pub reserve: u64,
    /// The longest pause waited out; a longer one defers the request.
    pub max_wait: Duration,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        Self {
            reserve: 2,
            max_wait: Duration::from_secs(300),
        }
    }
}

/// What a registry's answers have told about its quota, and what this process spent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaView {
    /// Pulls per window, when the registry says.
    pub limit: Option<u64>,
    /// The window, when the registry says.
    pub window: Option<Duration>,
    /// Pulls left at the last answer that said.
    pub remaining: Option<u64>,
    /// Manifest GETs sent (pulls).
    pub pulls: u64,
    /// Manifest HEADs sent.
    pub heads: u64,
    /// 429 answers.
    pub refused: u64,
    /// Times the registry was paused.
    pub pauses: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PauseKind {
    /// The pull quota is spent: pulls wait, other requests go on.
    Quota,
    /// A plain 429: every request waits.
    Burst,
}

#[derive(Debug, Clone, Copy)]
struct Pause {
    kind: PauseKind,
    since: Instant,
    /// When it ends for sure (a `Retry-After`, a burst's pause).
    until: Option<Instant>,
    next_probe: Instant,
    probing: bool,
}

#[derive(Default)]
struct State {
    view: QuotaView,
    in_flight: u64,
    pause: Option<Pause>,
    bursts: u32,
}

#[derive(Default)]
struct Budget {
    state: Mutex<State>,
    changed: Notify,
}

/// What a request may do now.
pub(crate) enum Gate {
    /// Go; a pull holds its ticket until its answer is in.
    Go(Option<PullTicket>),
    /// Wait until this instant (or a change), then ask again.
    Wait(Instant),
    /// Send a free HEAD of the same manifest to learn the quota, then ask again.
    Probe,
}

/// A pull in flight.
pub(crate) struct PullTicket {
    budget: Arc<Budget>,
}

impl Drop for PullTicket {
    fn drop(&mut self) {
        let mut s = self.budget.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

/// Every registry's budget in this process.
#[derive(Default)]
pub(crate) struct RateLimits {
    policy: RateLimitPolicy,
    budgets: Mutex<HashMap<String, Arc<Budget>>>,
}

impl RateLimits {
    pub(crate) fn new(policy: RateLimitPolicy) -> Self {
        Self {
            policy,
            budgets: Mutex::default(),
        }
    }

    fn budget(&self, registry: &str) -> Arc<Budget> {
        let mut b = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(b.entry(registry.to_owned()).or_insert_with(|| {
            image_mirror_common::metrics::touch_registry(registry);
            Arc::default()
        }))
    }

    /// What the process knows of `registry`'s quota.
    #[cfg(test)]
    pub(crate) fn view(&self, registry: &str) -> QuotaView {
        let budget = self.budget(registry);
        let s = budget.state.lock().unwrap_or_else(|p| p.into_inner());
        s.view.clone()
    }

    /// Every registry asked so far, with its view.
    pub(crate) fn views(&self) -> Vec<(String, QuotaView)> {
        let budgets: Vec<(String, Arc<Budget>)> = {
            let b = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
            b.iter().map(|(k, v)| (k.clone(), Arc::clone(v))).collect()
        };
        let mut out: Vec<(String, QuotaView)> = budgets
            .into_iter()
            .map(|(k, b)| {
                let s = b.state.lock().unwrap_or_else(|p| p.into_inner());
                (k, s.view.clone())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether a request (a pull when `pull`) may go to `registry` now.
    pub(crate) fn gate(&self, registry: &str, pull: bool) -> Result<Gate, RegistryError> {
        let budget = self.budget(registry);
        let mut s = budget.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(pause) = s.pause {
            match pause.kind {
                PauseKind::Burst => match pause.until {
                    Some(until) if now < until => {
                        return self.wait_or_defer(registry, &s.view, until, until, now)
                    }
                    _ => s.pause = None,
                },
                PauseKind::Quota if pull => {
                    let expected = expected_end(&pause, &s.view);
                    if expected.saturating_duration_since(now) > self.policy.max_wait {
                        return Err(deferred(registry, &s.view, expected - now));
                    }
                    if pause.until.is_some_and(|u| now >= u) {
                        s.pause = None;
                    } else if !pause.probing && now >= pause.next_probe {
                        s.pause = Some(Pause {
                            probing: true,
                            ..pause
                        });
                        return Ok(Gate::Probe);
                    } else {
                        let wake = pause
                            .until
                            .map_or(pause.next_probe, |u| u.min(pause.next_probe));
                        return self.wait_or_defer(registry, &s.view, wake.max(now), expected, now);
                    }
                }
                PauseKind::Quota => {}
            }
        }
        if !pull {
            return Ok(Gate::Go(None));
        }
        let left = s.view.remaining.map(|r| r.saturating_sub(s.in_flight));
        if left.is_some_and(|l| l <= self.policy.reserve) {
            self.start_pause(registry, &mut s, PauseKind::Quota, None, now);
            drop(s);
            return self.gate(registry, pull);
        }
        s.in_flight += 1;
        s.view.pulls += 1;
        image_mirror_common::metrics::PULLS.inc(&[registry]);
        Ok(Gate::Go(Some(PullTicket {
            budget: Arc::clone(&budget),
        })))
    }

    fn wait_or_defer(
        &self,
        registry: &str,
        view: &QuotaView,
        wake: Instant,
        expected: Instant,
        now: Instant,
    ) -> Result<Gate, RegistryError> {
        if expected.saturating_duration_since(now) > self.policy.max_wait {
            return Err(deferred(registry, view, expected - now));
        }
        Ok(Gate::Wait(wake))
    }

    /// Waits until `until`, or until `registry`'s budget changes.
    pub(crate) async fn wait(&self, registry: &str, until: Instant) {
        let budget = self.budget(registry);
        let changed = budget.changed.notified();
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep_until(until.into()) => {}
        }
    }

    /// A probe is done: the next one waits its interval.
    pub(crate) fn probed(&self, registry: &str) {
        let budget = self.budget(registry);
        let mut s = budget.state.lock().unwrap_or_else(|p| p.into_inner());
        let interval = probe_interval(&s.view);
        if let Some(p) = &mut s.pause {
            p.probing = false;
            p.next_probe = Instant::now() + interval;
        }
    }

    /// Learns from an answer of `registry`: its quota headers, a 429.
    pub(crate) fn observe(
        &self,
        registry: &str,
        status: u16,
        headers: &HeaderMap,
        manifest_head: bool,
    ) {
        let budget = self.budget(registry);
        let mut s = budget.state.lock().unwrap_or_else(|p| p.into_inner());
        if manifest_head {
            s.view.heads += 1;
            image_mirror_common::metrics::MANIFEST_HEADS.inc(&[registry]);
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining = header("ratelimit-remaining").and_then(parse_quota);
        if let Some(limit) = header("ratelimit-limit").and_then(parse_quota) {
            s.view.limit = Some(limit.count);
            s.view.window = limit.window.or(s.view.window);
            image_mirror_common::metrics::QUOTA_LIMIT.set(&[registry], limit.count as f64);
            image_mirror_common::metrics::QUOTA_RESERVE
                .set(&[registry], self.policy.reserve as f64);
        }
        if let Some(r) = remaining {
            s.view.remaining = Some(r.count);
            s.view.window = r.window.or(s.view.window);
            image_mirror_common::metrics::QUOTA_REMAINING.set(&[registry], r.count as f64);
            image_mirror_common::metrics::QUOTA_RESERVE
                .set(&[registry], self.policy.reserve as f64);
        }
        let now = Instant::now();
        if status == 429 {
            s.view.refused += 1;
            let retry_after = header("retry-after").and_then(crate::retry::parse_retry_after);
            if remaining.is_some() || s.view.limit.is_some() {
                s.view.remaining = Some(0);
                self.start_pause(
                    registry,
                    &mut s,
                    PauseKind::Quota,
                    retry_after.map(|d| now + d),
                    now,
                );
            } else {
                s.bursts += 1;
                let backoff = BURST_PAUSES.base_delay(s.bursts as usize);
                let until = now + retry_after.unwrap_or(backoff);
                self.start_pause(registry, &mut s, PauseKind::Burst, Some(until), now);
            }
        } else {
            s.bursts = 0;
            let recovered = s.pause.is_some_and(|p| p.kind == PauseKind::Quota)
                && remaining.is_some_and(|r| r.count > self.policy.reserve);
            if recovered {
                s.pause = None;
                tracing::info!(
                    registry,
                    remaining = s.view.remaining,
                    "the pull quota is back"
                );
            }
        }
        drop(s);
        budget.changed.notify_waiters();
    }

    fn start_pause(
        &self,
        registry: &str,
        s: &mut State,
        kind: PauseKind,
        until: Option<Instant>,
        now: Instant,
    ) {
        let already = s.pause.is_some_and(|p| p.kind == kind);
        if !already {
            s.view.pauses += 1;
            image_mirror_common::metrics::PAUSES.inc(&[registry]);
            tracing::info!(
                registry,
                remaining = s.view.remaining,
                limit = s.view.limit,
                "pausing requests to a rate-limited registry"
            );
        }
        let next_probe = now + probe_interval(&s.view);
        s.pause = Some(Pause {
            kind,
            since: s.pause.filter(|_| already).map_or(now, |p| p.since),
            until: until.or(s.pause.and_then(|p| p.until)),
            next_probe,
            probing: false,
        });
    }
}

/// When a quota pause is expected to end: its `Retry-After`, else a window after it began.
fn expected_end(pause: &Pause, view: &QuotaView) -> Instant {
    pause
        .until
        .unwrap_or_else(|| pause.since + view.window.unwrap_or(Duration::from_secs(60)))
}

fn probe_interval(view: &QuotaView) -> Duration {
    view.window.map_or(Duration::from_secs(5), |w| {
        (w / 8).clamp(Duration::from_secs(1), Duration::from_secs(30))
    })
}

fn deferred(registry: &str, view: &QuotaView, reset_in: Duration) -> RegistryError {
    let limit = match (view.limit, view.window) {
        (Some(l), Some(w)) => format!(" ({l} per {})", human(w)),
        (Some(l), None) => format!(" ({l})"),
        _ => String::new(),
    };
    RegistryError::RateLimited {
        registry: registry.to_owned(),
        message: format!(
            "the pull rate limit{limit} is spent; expected back in about {}",
            human(reset_in)
        ),
        reset_in,
    }
}

/// `6h`, `8s`, `5m`.
fn human(d: Duration) -> String {
    let s = d.as_secs().max(1);
    match s {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s.div_ceil(60)),
        s => format!("{s}s"),
    }
}

/// `76;w=21600`.
#[derive(Clone, Copy)]
pub(crate) struct QuotaHeader {
    count: u64,
    window: Option<Duration>,
}

pub(crate) fn parse_quota(value: &str) -> Option<QuotaHeader> {
    let mut parts = value.split(';');
    let count = parts.next()?.trim().parse().ok()?;
    let window = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "w").then(|| v.trim().parse::<u64>().ok().map(Duration::from_secs))?
    });
    Some(QuotaHeader { count, window })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(limit: &str, remaining: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", limit.parse().unwrap());
        h.insert("ratelimit-remaining", remaining.parse().unwrap());
        h
    }

    #[test]
    fn quota_headers() {
        let q = parse_quota("76;w=21600").unwrap();
        assert_eq!(q.count, 76);
        assert_eq!(q.window, Some(Duration::from_secs(21600)));
        assert_eq!(parse_quota("100").unwrap().window, None);
        assert!(parse_quota("lots").is_none());
        assert_eq!(human(Duration::from_secs(21600)), "6h");
        assert_eq!(human(Duration::from_secs(8)), "8s");
    }

    #[test]
    fn pulls_stop_at_the_reserve_counting_those_in_flight() {
        let rl = RateLimits::new(RateLimitPolicy {
            reserve: 2,
            max_wait: Duration::from_secs(60),
        });
        rl.observe("hub", 200, &headers("10;w=20", "4;w=20"), true);
        let a = rl.gate("hub", true).unwrap();
        let b = rl.gate("hub", true).unwrap();
        assert!(matches!(a, Gate::Go(Some(_))) && matches!(b, Gate::Go(Some(_))));
        // 4 left, 2 in flight: at the reserve.
        assert!(matches!(rl.gate("hub", true).unwrap(), Gate::Wait(_)));
        // HEADs and blobs go on.
        assert!(matches!(rl.gate("hub", false).unwrap(), Gate::Go(None)));
        assert_eq!(rl.view("hub").pauses, 1);
        // A free HEAD says the quota is back: pulls go again.
        rl.observe("hub", 200, &headers("10;w=20", "10;w=20"), true);
        drop((a, b));
        assert!(matches!(rl.gate("hub", true).unwrap(), Gate::Go(Some(_))));
    }

    #[test]
    fn a_spent_quota_with_a_long_window_defers_at_once() {
        let rl = RateLimits::new(RateLimitPolicy::default());
        rl.observe("hub", 200, &headers("100;w=21600", "0;w=21600"), true);
        let Err(e) = rl.gate("hub", true) else {
            panic!("a pull went out on a spent quota");
        };
        assert!(e.to_string().contains("(100 per 6h) is spent"), "{e}");
        assert_eq!(e.class(), crate::ErrorClass::Deferred);
    }

    #[test]
    fn a_plain_429_pauses_every_request_for_its_retry_after() {
        let rl = RateLimits::new(RateLimitPolicy::default());
        let mut h = HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        rl.observe("quay", 429, &h, false);
        assert!(matches!(rl.gate("quay", false).unwrap(), Gate::Wait(_)));
        assert!(matches!(rl.gate("quay", true).unwrap(), Gate::Wait(_)));
        let mut long = HeaderMap::new();
        long.insert("retry-after", "3600".parse().unwrap());
        rl.observe("ghcr", 429, &long, false);
        assert!(rl.gate("ghcr", false).is_err());
    }
}
