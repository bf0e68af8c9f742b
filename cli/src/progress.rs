//! How `run` shows progress: a bar on a terminal, one plain line per finished job otherwise
//! (logs, CI). Failures are always printed as lines, above the bar.

use std::io::IsTerminal;
use std::time::Duration;

use image_mirror_common::{JobEvent, Outcome};
use indicatif::{ProgressBar, ProgressStyle};

/// Progress of a run of `total` jobs.
pub enum Progress {
    /// A bar redrawn on stderr.
    Bar(ProgressBar),
    /// A line on stdout per finished job.
    Lines { total: usize },
}

impl Progress {
    /// A bar when stdout is a terminal, plain lines otherwise.
    pub fn new(total: usize) -> Self {
        if !std::io::stdout().is_terminal() {
            return Self::Lines { total };
        }
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:40}] {pos}/{len} jobs {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self::Bar(bar)
    }

    /// Job `n` of the total ended with `event`.
    pub fn finished(&self, event: &JobEvent, n: usize) {
        let what = event.describe();
        let outcome = match &event.error {
            Some(err) => format!("failed ({})", err.class),
            None => event.outcome.as_str().replace('_', " "),
        };
        match self {
            Self::Bar(bar) => {
                if event.outcome == Outcome::Failed {
                    bar.println(format!("{outcome:<15} {what}"));
                }
                bar.set_position(n as u64);
                bar.set_message(what);
            }
            Self::Lines { total } => {
                let width = total.to_string().len();
                println!("[{n:>width$}/{total}] {outcome:<15} {what}");
            }
        }
    }

    /// Clears the bar before the summary.
    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
