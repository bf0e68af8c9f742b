//! Progress people can watch while blobs move (`copy`, `run`, `add-tag`, `add-image`).
//!
//! - On a terminal (stderr): one live display, redrawn five times a second: a line per copy
//!   in flight (source -> target, bytes in the target of the bytes it found it must bring,
//!   the rate), and an overall line (jobs ended of all, bytes, rate). Each finished job is
//!   printed above it; log lines go around it (`console.rs`), so none leaves a stale bar.
//! - Elsewhere (CI, a pipe, Kubernetes): every `--progress-interval` while work goes on, one
//!   line on stderr (a JSON object with `--log-format json`) saying the same; finished jobs
//!   are lines on stdout.
//! - `-q`: neither.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_mirror_common::{JobEvent, Outcome};
use image_mirror_worker::{Activity, CopyView};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::console::{self, say, Level};
use crate::outln;

/// How often the live display is redrawn.
const TICK: Duration = Duration::from_millis(200);
/// Copies in flight named in a plain progress line.
const NAMED: usize = 3;

/// What the display shows, and where.
pub struct Display {
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
}

/// What the display and its ticker share.
struct Shared {
    activity: Arc<Activity>,
    jobs: usize,
    ended: AtomicUsize,
    started: Instant,
    /// Job lines for people (off with `--output json`).
    job_lines: bool,
    live: Option<Live>,
}

/// The live display's bars.
struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    copies: Mutex<HashMap<u64, ProgressBar>>,
}

/// How a display is set up.
pub struct Setup {
    /// Jobs the work has (1 for `copy`).
    pub jobs: usize,
    /// `--progress-interval`.
    pub interval: Duration,
    /// Print a line per finished job (not with `--output json`, nor for `copy`).
    pub job_lines: bool,
}

impl Display {
    /// Starts showing what `activity` does, as `setup` says.
    pub fn start(activity: Arc<Activity>, setup: &Setup) -> Self {
        let quiet = console::quiet();
        let live = (!quiet && std::io::stderr().is_terminal()).then(|| Live::new(setup.jobs));
        let shared = Arc::new(Shared {
            activity,
            jobs: setup.jobs,
            ended: AtomicUsize::new(0),
            started: Instant::now(),
            job_lines: setup.job_lines,
            live,
        });
        let ticker = if quiet {
            None
        } else if shared.live.is_some() {
            let s = Arc::clone(&shared);
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    s.draw();
                }
            }))
        } else {
            let (s, every) = (Arc::clone(&shared), setup.interval);
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    s.line();
                }
            }))
        };
        Self { shared, ticker }
    }

    /// Job number `n` of the total ended with `event`.
    pub fn finished(&self, event: &JobEvent, n: usize) {
        self.shared.ended.store(n, Ordering::Relaxed);
        if !self.shared.job_lines {
            return;
        }
        let what = event.describe();
        let outcome = match &event.error {
            Some(err) if event.outcome == Outcome::Failed => format!("failed ({})", err.class),
            _ => event.outcome.as_str().replace('_', " "),
        };
        let total = self.shared.jobs;
        let width = total.to_string().len();
        let platforms = event
            .platform_subset
            .as_ref()
            .map_or_else(String::new, |s| {
                let mut text = format!(" · platforms {}", s.describe(&event.platforms));
                if let Some(d) = &s.rewritten_digest {
                    text.push_str(&format!(" · target index {d} (rewritten)"));
                }
                text
            });
        // Above the live display, when there is one (see `console::out`).
        outln!("[{n:>width$}/{total}] {outcome:<15} {what}{platforms}");
    }

    /// Stops drawing and clears the live display, before the summary.
    pub fn finish(mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(live) = &self.shared.live {
            console::set_live(None);
            for bar in live
                .copies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
            {
                bar.finish_and_clear();
            }
            live.overall.finish_and_clear();
            let _ = live.multi.clear();
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if self.shared.live.is_some() {
            console::set_live(None);
        }
    }
}

impl Live {
    fn new(jobs: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(style(
            "{spinner} [{elapsed_precise}] [{bar:30}] {msg} {bytes}/{total_bytes} {bytes_per_sec}",
        ));
        overall.set_message(format!("0/{jobs} jobs"));
        console::set_live(Some(multi.clone()));
        Self {
            multi,
            overall,
            copies: Mutex::new(HashMap::new()),
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Shared {
    /// Brings the live bars up to date: one per copy in flight, and the overall one.
    fn draw(&self) {
        let Some(live) = &self.live else { return };
        let copies = self.activity.snapshot();
        let mut bars = live.copies.lock().unwrap_or_else(|p| p.into_inner());
        bars.retain(|id, bar| {
            let keep = copies.iter().any(|c| c.id == *id);
            if !keep {
                bar.finish_and_clear();
                live.multi.remove(bar);
            }
            keep
        });
        let room = label_room();
        for copy in &copies {
            let bar = bars.entry(copy.id).or_insert_with(|| {
                let bar = live.multi.insert_before(&live.overall, ProgressBar::new(0));
                bar.set_style(style(
                    "  {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}  {msg}",
                ));
                bar.set_message(shortened(&copy.label, room));
                bar
            });
            bar.set_length(copy.total.max(copy.done));
            bar.set_position(copy.done);
        }
        let bytes = self.activity.bytes();
        live.overall.set_length(bytes.total.max(bytes.done));
        live.overall.set_position(bytes.done);
        live.overall.set_message(format!(
            "{}/{} jobs",
            self.ended.load(Ordering::Relaxed),
            self.jobs
        ));
    }

    /// One plain line of where the work stands.
    fn line(&self) {
        let copies = self.activity.snapshot();
        let bytes = self.activity.bytes();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let mut text = format!(
            "progress: {}/{} jobs ended, {} in flight, {} of {} in the targets ({}/s)",
            self.ended.load(Ordering::Relaxed),
            self.jobs,
            copies.len(),
            HumanBytes(bytes.done),
            HumanBytes(bytes.total),
            HumanBytes((bytes.done as f64 / secs) as u64),
        );
        let named: Vec<String> = copies.iter().take(NAMED).map(copy_text).collect();
        if !named.is_empty() {
            text.push_str(": ");
            text.push_str(&named.join("; "));
        }
        if copies.len() > NAMED {
            text.push_str(&format!("; and {} more", copies.len() - NAMED));
        }
        say(Level::Info, "progress", text);
    }
}

/// Columns a copy's label may take on its line: the line stays shorter than the terminal, so
/// that it never wraps (a wrapped line would be counted wrong when the display is cleared).
fn label_room() -> usize {
    let (_, cols) = ::console::Term::stderr().size();
    usize::from(cols).saturating_sub(40).max(20)
}

/// `label`, its start cut off (`…` instead) when longer than `room` characters: the end
/// names the target.
fn shortened(label: &str, room: usize) -> String {
    let chars = label.chars().count();
    if chars <= room {
        return label.to_owned();
    }
    let tail: String = label.chars().skip(chars - room + 1).collect();
    format!("…{tail}")
}

/// `source -> target 120.0 MiB/200.0 MiB (12.0 MiB/s)`.
fn copy_text(copy: &CopyView) -> String {
    let secs = copy.started.elapsed().as_secs_f64().max(0.001);
    format!(
        "{} {}/{} ({}/s)",
        copy.label,
        HumanBytes(copy.done),
        HumanBytes(copy.total),
        HumanBytes((copy.done as f64 / secs) as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_label_keeps_its_end() {
        assert_eq!(shortened("a -> b", 20), "a -> b");
        let long = "quay.io/coreos/etcd:v3.5.21 -> registry.example.com/mirror/etcd:v3.5.21";
        let short = shortened(long, 30);
        assert_eq!(short.chars().count(), 30);
        assert!(
            short.starts_with('…') && short.ends_with("mirror/etcd:v3.5.21"),
            "{short}"
        );
    }
}
