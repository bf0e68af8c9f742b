//! The bandwidth budget (`--max-bandwidth`): how many blob bytes may move per second, for every
//! transfer of the process and per registry host (what is read from it and written to it).
//! Each cap is a token bucket that may go into debt: a piece of a blob takes its bytes at once
//! and the one who took it waits until the bucket is even again, so the rate holds on average
//! over any second whatever the pieces' sizes, and concurrent copies share it in the order they
//! ask. A fleet's cap is the fleet's: each worker's buckets run at the share of it the fleet
//! gives that worker ([`Bandwidth::set_share`]).
//!
//! Waiting for budget is not stalling: the watchdog of a body is told how long its transfer
//! waited (`Watchdog::paused`), so a capped transfer is never cut for being slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use image_mirror_common::metrics;
use image_mirror_common::rate::{HostRate, Rate};
use tokio::time::Instant;

/// The label of the process's cap, and of every transfer's total, in the metrics.
pub const ALL: &str = "all";

/// The shortest burst a bucket holds, so that a small cap still moves a piece at a time.
const MIN_BURST: f64 = 64.0 * 1024.0;
/// A bucket's burst, in seconds of its rate.
const BURST_SECONDS: f64 = 0.1;

/// One cap.
#[derive(Debug)]
struct Bucket {
    cap: Rate,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Bytes that may go now; below zero, the debt to wait out.
    tokens: f64,
    last: Instant,
    /// This process's share of the cap (1 alone, less in a fleet).
    share: f64,
}

impl Bucket {
    fn new(cap: Rate) -> Self {
        Self {
            cap,
            state: Mutex::new(BucketState {
                tokens: 0.0,
                last: Instant::now(),
                share: 1.0,
            }),
        }
    }

    /// Adds what the time since the last refill earned, at the current share; the rate.
    fn refill(&self, s: &mut BucketState) -> f64 {
        let rate = self.cap.bytes_per_second() as f64 * s.share;
        let now = Instant::now();
        let burst = (rate * BURST_SECONDS).max(MIN_BURST);
        s.tokens = (s.tokens + rate * now.duration_since(s.last).as_secs_f64()).min(burst);
        s.last = now;
        rate
    }

    /// Takes `n` bytes; how long the taker must wait for them.
    fn charge(&self, n: u64) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rate = self.refill(&mut s);
        s.tokens -= n as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }

    /// Runs at `share` of the cap from now on (what was earned until now, at the old one).
    fn set_share(&self, share: f64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut s);
        s.share = share.clamp(0.01, 1.0);
    }
}

/// Which way bytes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Read from a registry.
    Down,
    /// Written to a registry.
    Up,
}

/// Every cap of the process; see the module's documentation.
#[derive(Debug, Default)]
pub struct Bandwidth {
    all: Option<Bucket>,
    hosts: HashMap<String, Bucket>,
    /// Bytes moved since [`Bandwidth::take_moved`] last asked.
    moved: std::sync::atomic::AtomicU64,
}

impl Bandwidth {
    /// The caps `caps` give (none: nothing is capped).
    pub fn new(caps: &[HostRate]) -> Self {
        let mut bandwidth = Self::default();
        for c in caps {
            match &c.host {
                None => bandwidth.all = Some(Bucket::new(c.rate)),
                Some(host) => {
                    bandwidth.hosts.insert(host.clone(), Bucket::new(c.rate));
                }
            }
        }
        metrics::BANDWIDTH_CAP.set(
            &[ALL],
            bandwidth
                .all
                .as_ref()
                .map_or(0.0, |b| b.cap.bytes_per_second() as f64),
        );
        for (host, b) in &bandwidth.hosts {
            metrics::BANDWIDTH_CAP.set(&[host], b.cap.bytes_per_second() as f64);
        }
        bandwidth
    }

    /// Whether anything is capped.
    pub fn is_capped(&self) -> bool {
        self.all.is_some() || !self.hosts.is_empty()
    }

    /// The caps, as given: the process's, then each host's.
    pub fn caps(&self) -> Vec<HostRate> {
        let all = self.all.iter().map(|b| HostRate {
            host: None,
            rate: b.cap,
        });
        let hosts = self.hosts.iter().map(|(h, b)| HostRate {
            host: Some(h.clone()),
            rate: b.cap,
        });
        all.chain(hosts).collect()
    }

    /// The bytes moved since the last call (whether this process is moving any).
    pub fn take_moved(&self) -> u64 {
        self.moved.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// Gives this process `share` (0 to 1) of every cap: a fleet's cap divided among the
    /// workers moving bytes.
    pub fn set_share(&self, share: f64) {
        for b in self.all.iter().chain(self.hosts.values()) {
            b.set_share(share);
        }
    }

    /// The bucket of `registry`: its own cap, or its host's without the port.
    fn host(&self, registry: &str) -> Option<&Bucket> {
        self.hosts.get(registry).or_else(|| {
            let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
            self.hosts.get(host)
        })
    }

    /// Takes `n` bytes moved `way` (to or from `registry`) from the budget and waits until
    /// they may go; how long it waited (to be told to the body's watchdog). A registry's cap
    /// counts both ways; the process's counts what is written (a byte copied counts once, and
    /// the reads feeding the uploads follow them).
    pub async fn take(&self, registry: &str, n: usize, way: Way) -> Duration {
        self.moved
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        metrics::TRANSFER_BYTES.add(&[registry], n as f64);
        metrics::TRANSFER_BYTES.add(&[ALL], n as f64);
        if !self.is_capped() {
            return Duration::ZERO;
        }
        let n = n as u64;
        let all = match way {
            Way::Up => self.all.as_ref(),
            Way::Down => None,
        };
        let wait = [all, self.host(registry)]
            .into_iter()
            .flatten()
            .map(|b| b.charge(n))
            .max()
            .unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            metrics::BANDWIDTH_WAIT.add(&[registry], wait.as_secs_f64());
            metrics::BANDWIDTH_WAIT.add(&[ALL], wait.as_secs_f64());
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(text: &[&str]) -> Vec<HostRate> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_cap_holds_on_average_whatever_the_pieces() {
        let bw = Bandwidth::new(&caps(&["1MiB/s"]));
        let started = Instant::now();
        for _ in 0..40 {
            bw.take("reg.test", 256 * 1024, Way::Up).await;
        }
        // 10 MiB at 1 MiB/s: 10 s, less the first burst.
        let took = started.elapsed().as_secs_f64();
        assert!((9.8..=10.1).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_budget_is_told_to_the_watchdog_and_is_no_stall() {
        use crate::body::{StallRule, Watchdog};
        let rule = StallRule {
            window: Duration::from_secs(1),
            min_bytes: 64 * 1024,
        };
        // Pieces of 16 KiB that arrive at once, under a cap of 32 KiB/s: 64 KiB take 2 s.
        let run = |tell: bool| async move {
            let bw = Bandwidth::new(&caps(&["reg.test=32KiB/s"]));
            let mut dog = Watchdog::new(rule);
            for _ in 0..16 {
                // Each read takes a moment on the wire.
                let read = tokio::time::sleep(Duration::from_millis(10));
                if dog.guard(read).await.is_err() {
                    return false;
                }
                dog.moved(16 * 1024);
                let waited = bw.take("reg.test", 16 * 1024, Way::Down).await;
                if tell {
                    dog.paused(waited);
                }
            }
            true
        };
        assert!(run(true).await, "a capped body was taken for stalled");
        assert!(
            !run(false).await,
            "the watchdog would not have seen the difference"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_cap_applies_to_its_host_alone_and_a_share_slows_it() {
        let bw = Bandwidth::new(&caps(&["ghcr.io=1MiB/s"]));
        let started = Instant::now();
        for _ in 0..8 {
            bw.take("quay.io", 1 << 20, Way::Up).await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1),
            "another host waited"
        );
        bw.take("ghcr.io:443", 1 << 20, Way::Down).await;
        let waited = bw.take("ghcr.io:443", 1 << 20, Way::Down).await;
        assert!((0.9..=1.01).contains(&waited.as_secs_f64()), "{waited:?}");
        bw.set_share(0.5);
        let waited = bw.take("ghcr.io:443", 1 << 20, Way::Down).await;
        assert!(
            (1.9..=2.01).contains(&waited.as_secs_f64()),
            "half the share: {waited:?}"
        );
    }
}
