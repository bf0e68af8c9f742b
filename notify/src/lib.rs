//! Telling people what happened, without Prometheus near: this crate owns the notices a role
//! sends when something worth knowing ends (a run finished, a job dead-lettered, a pull request
//! opened), their two wire formats (CloudEvents 1.0 in structured mode, and Slack's incoming
//! webhook messages), which notices a policy lets through (`--notify-on`), signing a body
//! with the shared secret as GitHub signs webhooks, delivering it within a bound that never
//! slows or fails the work, and the history of runs `status --runs` reads.
//!
//! - [`event`]: the notices and their CloudEvent form.
//! - [`slack`]: a notice as a Slack message, within Slack's limits.
//! - [`policy`]: which notices `always`, `failure` and `change` send.
//! - [`sign`]: the HMAC-SHA256 signature header.
//! - [`deliver`]: the notifier: every URL, retries within a bound, no redirect followed.
//! - [`history`]: the last runs' summaries, kept in a small file.

pub mod deliver;
pub mod event;
pub mod history;
pub mod policy;
pub mod sign;
pub mod slack;

pub use deliver::{Delivery, Format, Notifier, NotifyOptions};
pub use event::{
    Counts, DeadLettered, JobProblem, Notice, PullRequestNotice, RunFinished, RunStatus,
};
pub use history::RunHistory;
pub use policy::NotifyOn;

/// What can go wrong setting up notifications.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A `--notify` URL that is not an `http(s)` URL.
    #[error("--notify {url}: {why}")]
    BadUrl { url: String, why: String },
    /// The HTTP client could not be built.
    #[error("notifications: {0}")]
    Client(String),
    /// The history file could not be read or written.
    #[error("{path}: {why}")]
    History { path: String, why: String },
}
