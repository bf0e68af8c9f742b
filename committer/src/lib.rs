//! The committer role: turns [`JobEvent`](image_mirror_common::JobEvent)s of jobs that should be
//! recorded into `images-list` changes: batched ([`batch`]), verified against the target
//! registry ([`verify`]), sorted, deduplicated, and proposed as a pull request
//! ([`pull_request`]) or written in place without GitHub settings ([`local`]). The loop that
//! ties them and acknowledges events only once their change is durable is [`committer`].
//!
//! It also owns a run's committer ([`collect`]): the same loop over one run's events, ended
//! once every job of the run has ended, which the monolithic `run` and `add-tag` record
//! through; and what a run came to ([`summary`]), and what a batch tells people (`notices.rs`).

pub mod batch;
pub mod commit_run;
pub mod local;
mod notices;
pub mod pull_request;
pub mod runner;
pub mod summary;
pub mod verify;

pub use batch::BatchOptions;
pub use commit_run::{commit_run, CommitRunError, RunRecord};
pub use local::record_in_file;
pub use pull_request::{Proposal, PullRequestSettings, Recorded, RewrittenFrom};
pub use runner::{run_committer, BatchOutcome, BatchResult, Committer, CommitterError, Recorder};
pub use summary::RunSummary;
pub use verify::{verify, Verdict};
