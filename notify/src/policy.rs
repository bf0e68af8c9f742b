//! Which notices are sent (`--notify-on`): `failure` (the default) tells of what needs a
//! person: a run that failed, was interrupted, drifted or deferred something, and every
//! dead-lettered job; `change` tells of anything copied or failed, and pull requests;
//! `always` tells of everything.

use serde::{Deserialize, Serialize};

use crate::event::{Notice, RunStatus};

/// When to tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// Every notice.
    Always,
    /// What needs a person (the default).
    #[default]
    Failure,
    /// Anything copied or failed.
    Change,
}

impl NotifyOn {
    /// Whether `notice` is sent under this policy.
    pub fn wants(self, notice: &Notice) -> bool {
        match (self, notice) {
            (Self::Always, _) => true,
            (_, Notice::JobDeadLettered(_)) => true,
            (Self::Failure, Notice::PullRequest(_)) => false,
            (Self::Change, Notice::PullRequest(_)) => true,
            (Self::Failure, Notice::RunFinished(r)) => {
                r.status != RunStatus::Succeeded || r.counts.drifted > 0 || r.counts.deferred > 0
            }
            (Self::Change, Notice::RunFinished(r)) => {
                r.counts.copied > 0 || r.counts.failed > 0 || r.status != RunStatus::Succeeded
            }
        }
    }
}

impl std::str::FromStr for NotifyOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "failure" => Ok(Self::Failure),
            "change" => Ok(Self::Change),
            other => Err(format!("{other:?}: one of always, failure, change")),
        }
    }
}
