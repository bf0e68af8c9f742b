//! Stopping: SIGINT (Ctrl-C), SIGTERM, or stdout closed under the process.
//!
//! A command that can stop well (save where its transfers are, say what finished) asks for
//! [`requested`]; the first signal then only tells it to stop, and a second SIGINT or SIGTERM
//! ends the process at once. A command that never asked is ended by the first signal, as
//! without a handler. The exit status says why: 130 for SIGINT, 143 for SIGTERM, 141 for a
//! closed stdout (128 + the signal, as a shell reports a process the signal ended).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tokio::sync::watch;

use crate::console::{self, say, Level};

/// Why the process is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: a service manager, Kubernetes.
    Terminate,
    /// stdout was closed (`| head`).
    ClosedPipe,
}

impl Why {
    /// The exit status of a process that stopped for this.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
            Self::ClosedPipe => console::CLOSED_PIPE,
        }
    }
}

struct State {
    graceful: AtomicBool,
    requested: watch::Sender<Option<Why>>,
}

static STATE: OnceLock<State> = OnceLock::new();

fn state() -> &'static State {
    STATE.get_or_init(|| State {
        graceful: AtomicBool::new(false),
        requested: watch::Sender::new(None),
    })
}

/// Listens for the stop signals from now on. Called once, inside the runtime, before the
/// command runs.
pub fn install() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(term), Ok(int)) => {
                tokio::spawn(listen(term, int));
            }
            (Err(e), _) | (_, Err(e)) => {
                say(
                    Level::Warn,
                    "signals",
                    format!("warning: cannot listen for stop signals: {e}"),
                );
            }
        }
    }
}

#[cfg(unix)]
async fn listen(mut term: tokio::signal::unix::Signal, mut int: tokio::signal::unix::Signal) {
    let mut pipe_seen = false;
    loop {
        let why = tokio::select! {
            _ = term.recv() => Why::Terminate,
            _ = int.recv() => Why::Interrupt,
            () = console::closed(), if !pipe_seen => {
                pipe_seen = true;
                Why::ClosedPipe
            }
        };
        let s = state();
        let already = s.requested.borrow().is_some();
        if already && why != Why::ClosedPipe {
            console::set_live(None);
            say(Level::Warn, "stop", "stopped at once");
            std::process::exit(i32::from(why.exit_code()));
        }
        if !s.graceful.load(Ordering::Relaxed) {
            console::set_live(None);
            std::process::exit(i32::from(why.exit_code()));
        }
        if !already {
            if why != Why::ClosedPipe {
                say(
                    Level::Warn,
                    "stop",
                    "stopping: no new work is started and transfers stop at their next \
                     checkpoint (press Ctrl-C again to quit at once)",
                );
            }
            tracing::debug!(reason = ?why, "stop signal received");
            s.requested.send_replace(Some(why));
        }
    }
}

/// Completes when the process is asked to stop, with why; from this call on, the first
/// signal only asks (a second one ends the process at once).
pub fn requested() -> impl Future<Output = Why> {
    let s = state();
    s.graceful.store(true, Ordering::Relaxed);
    let mut rx = s.requested.subscribe();
    async move {
        match rx.wait_for(Option::is_some).await {
            Ok(why) => why.unwrap_or(Why::Interrupt),
            Err(_) => std::future::pending().await,
        }
    }
}

/// Completes when the process is asked to stop; for roles that only need to know when.
pub fn signal() -> impl Future<Output = ()> {
    let requested = requested();
    async move {
        requested.await;
    }
}
