//! Where the process writes, and how: results on stdout, messages for people on stderr.
//!
//! - Results (a copy's report, a run's job lines and summary, `status`'s table) go to stdout
//!   through [`out`]. A closed stdout (`image-mirror run | head -1`) never panics: the line is
//!   dropped, the process is told to stop (as by a first Ctrl-C) and ends with status 141,
//!   the status of a process a closed pipe ended.
//! - Messages for people (a failure, an unreachable host, a warning) go to stderr through
//!   [`say`]: a plain line with `--log-format text`, one JSON object (the shape of the log
//!   lines') with `--log-format json`, so that every line on stderr parses as JSON.
//! - While a live progress display is drawn on stderr, every write to the terminal (results,
//!   messages, log lines through [`StderrSink`]) goes around it: the bars are hidden, the line
//!   written, the bars drawn again, so nothing leaves a stale bar behind. Meanwhile the
//!   terminal does not echo Ctrl-C as `^C`: the echo would move the cursor under the display,
//!   which then clears the wrong lines. The terminal's modes are put back with the display.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use clap::ValueEnum;
use indicatif::MultiProgress;
use tokio::sync::watch;

/// The exit status of a process whose stdout was closed under it (128 + SIGPIPE).
pub const CLOSED_PIPE: u8 = 141;

struct Console {
    /// The terminal's modes before the live display changed them.
    saved_modes: Mutex<Option<rustix::termios::Termios>>,
    format: LogFormat,
    quiet: bool,
    stdout_is_terminal: bool,
    live: Mutex<Option<MultiProgress>>,
    stdout_closed: AtomicBool,
    closed: watch::Sender<bool>,
}

static CONSOLE: OnceLock<Console> = OnceLock::new();

fn console() -> &'static Console {
    CONSOLE.get_or_init(|| Console::new(LogFormat::Text, false))
}

impl Console {
    fn new(format: LogFormat, quiet: bool) -> Self {
        use std::io::IsTerminal as _;
        Self {
            saved_modes: Mutex::new(None),
            format,
            quiet,
            stdout_is_terminal: std::io::stdout().is_terminal(),
            live: Mutex::new(None),
            stdout_closed: AtomicBool::new(false),
            closed: watch::Sender::new(false),
        }
    }

    fn live(&self) -> Option<MultiProgress> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Sets the log format and quietness, once, before anything is written.
/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

pub fn init(format: LogFormat, quiet: bool) {
    let _ = CONSOLE.set(Console::new(format, quiet));
}

/// The log format in force.
pub fn format() -> LogFormat {
    console().format
}

/// Whether `-q` asked for no progress and no messages below warnings.
pub fn quiet() -> bool {
    console().quiet
}

/// Draws `display` on stderr from now on (or nothing, with `None`): writes go around it.
pub fn set_live(display: Option<MultiProgress>) {
    let c = console();
    let drawing = display.is_some();
    *c.live.lock().unwrap_or_else(|p| p.into_inner()) = display;
    let mut saved = c.saved_modes.lock().unwrap_or_else(|p| p.into_inner());
    let stderr = std::io::stderr();
    if drawing && saved.is_none() {
        if let Ok(modes) = rustix::termios::tcgetattr(&stderr) {
            let mut quiet = modes.clone();
            quiet
                .local_modes
                .remove(rustix::termios::LocalModes::ECHOCTL);
            let set =
                rustix::termios::tcsetattr(&stderr, rustix::termios::OptionalActions::Now, &quiet);
            if set.is_ok() {
                *saved = Some(modes);
            }
        }
    } else if !drawing {
        if let Some(modes) = saved.take() {
            let _ =
                rustix::termios::tcsetattr(&stderr, rustix::termios::OptionalActions::Now, &modes);
        }
    }
}

/// Whether stdout was closed under the process.
pub fn stdout_closed() -> bool {
    console().stdout_closed.load(Ordering::Relaxed)
}

/// Completes once stdout has been closed under the process.
pub async fn closed() {
    let mut rx = console().closed.subscribe();
    let _ = rx.wait_for(|closed| *closed).await;
}

/// Writes `line` and a newline to stdout: around the live display when both are on the
/// terminal; dropped, and the process told to stop, once stdout is closed.
pub fn out(line: impl Display) {
    out_bytes(format!("{line}\n").as_bytes());
}

/// Writes `bytes` to stdout as they are, as [`out`] does a line.
pub fn out_bytes(bytes: &[u8]) {
    let c = console();
    if c.stdout_closed.load(Ordering::Relaxed) {
        return;
    }
    let write = || {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes).and_then(|()| stdout.flush())
    };
    let written = match c.live().filter(|_| c.stdout_is_terminal) {
        Some(live) => live.suspend(write),
        None => write(),
    };
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            c.stdout_closed.store(true, Ordering::Relaxed);
            c.closed.send_replace(true);
        }
    }
}

/// `outln!("{} copied", n)`: [`out`] with `format!` arguments.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::console::out(format_args!($($arg)*))
    };
}

/// How much a message for people weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warn => "WARN",
            Self::Info => "INFO",
        }
    }
}

/// A message for people on stderr: `text` as a line, or with `--log-format json` one JSON
/// object whose `fields` hold the message and its `kind` (`failed`, `unreachable`, …). `-q`
/// keeps errors and warnings only.
pub fn say(level: Level, kind: &str, text: impl Display) {
    let c = console();
    if c.quiet && level == Level::Info {
        return;
    }
    let text = text.to_string();
    let line = match c.format {
        LogFormat::Text => format!("{text}\n"),
        LogFormat::Json => {
            let object = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": level.as_str(),
                "fields": {"message": text, "kind": kind},
                "target": "image_mirror",
            });
            format!("{object}\n")
        }
    };
    write_stderr(line.as_bytes());
}

/// Writes to stderr, around the live display when one is drawn. Errors are dropped: there is
/// nowhere left to report them.
fn write_stderr(bytes: &[u8]) {
    let write = || {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(bytes);
        let _ = stderr.flush();
    };
    match console().live() {
        Some(live) => live.suspend(write),
        None => write(),
    }
}

/// The writer log lines go through: stderr, around the live display.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrSink;

/// One log line being written; it reaches stderr whole when dropped.
pub struct SinkLine(Vec<u8>);

impl Write for SinkLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SinkLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            write_stderr(&self.0);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrSink {
    type Writer = SinkLine;

    fn make_writer(&'a self) -> Self::Writer {
        SinkLine(Vec::with_capacity(256))
    }
}
