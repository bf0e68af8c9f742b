//! The notices, and each one's CloudEvent (1.0, structured mode): `type` says which notice,
//! `source` which role on which host, `data` the notice itself. Every type is documented with
//! an example in docs/operations.md ("Notifications").

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use image_mirror_common::{JobEvent, Outcome};

/// The CloudEvent type of a finished run.
pub const RUN_FINISHED: &str = "io.image-mirror.run.finished";
/// The CloudEvent type of a dead-lettered job.
pub const JOB_DEAD_LETTERED: &str = "io.image-mirror.job.dead-lettered";
/// The CloudEvent type of a pull request opened.
pub const PULL_REQUEST_OPENED: &str = "io.image-mirror.pull-request.opened";
/// The CloudEvent type of a pull request updated with more lines.
pub const PULL_REQUEST_UPDATED: &str = "io.image-mirror.pull-request.updated";

/// Something worth telling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    /// A run (or a producer's pass, an import, a committer's batch) ended.
    RunFinished(RunFinished),
    /// A worker sent a job to the dead-letter queue.
    JobDeadLettered(DeadLettered),
    /// The committer opened or updated a pull request.
    PullRequest(PullRequestNotice),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every job ended copied or already present (drift allowed).
    Succeeded,
    /// A job failed, was deferred, or a line could not be recorded.
    Failed,
    /// Stopped (Ctrl-C, SIGTERM) before every job ended.
    Interrupted,
}

/// Jobs by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub copied: u64,
    pub already_present: u64,
    pub drifted: u64,
    pub failed: u64,
    pub deferred: u64,
    /// Jobs published (a producer's pass).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub published: u64,
    /// Images whose signature a trusted key or identity verified.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub signatures_verified: u64,
    /// Of those, signed by a keyless identity (`--require-identity`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub identities_verified: u64,
    /// Signed statements of copies pushed (`--attest`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attestations_pushed: u64,
    /// Copies the policy hook allowed (`--policy-hook`; denials are failures of class
    /// `policy_denied`, deferrals deferred jobs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policy_allowed: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A job that went wrong (failed, drifted, deferred), with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProblem {
    /// `source:tag -> target:tag`.
    pub job: String,
    /// The failure's class (`not_found`, `auth`, …), or `drifted`, `deferred`.
    pub class: String,
    /// What happened, without secrets.
    pub message: String,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    /// What ran: `run`, `producer sync`, `producer discover`, `import`, `committer`.
    pub role: String,
    pub status: RunStatus,
    pub started: DateTime<Utc>,
    pub duration_ms: u64,
    pub counts: Counts,
    /// Blob bytes sent to the targets.
    pub bytes_sent: u64,
    pub failures: Vec<JobProblem>,
    pub drifted: Vec<JobProblem>,
    pub deferred: Vec<JobProblem>,
    /// images-list lines recorded (new images).
    pub new_images: Vec<String>,
    /// The pull request that records them, when one was opened or updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
}

impl RunFinished {
    /// A run of `role` that started at `started` and came to `events`.
    pub fn of_events(role: &str, started: DateTime<Utc>, events: &[JobEvent]) -> Self {
        let mut run = Self {
            role: role.to_owned(),
            status: RunStatus::Succeeded,
            started,
            duration_ms: u64::try_from((Utc::now() - started).num_milliseconds()).unwrap_or(0),
            counts: Counts::default(),
            bytes_sent: 0,
            failures: Vec::new(),
            drifted: Vec::new(),
            deferred: Vec::new(),
            new_images: Vec::new(),
            pull_request: None,
        };
        for e in events {
            run.bytes_sent += e.bytes_copied;
            run.counts.signatures_verified += u64::from(e.signed_by.is_some());
            run.counts.identities_verified += u64::from(e.identity_verified);
            run.counts.attestations_pushed += u64::from(e.attestation.as_deref() == Some("pushed"));
            run.counts.policy_allowed += u64::from(e.policy.as_deref() == Some("allow"));
            let problem = |class: &str, message: String| JobProblem {
                job: e.describe(),
                class: class.to_owned(),
                message,
            };
            match e.outcome {
                Outcome::Copied => run.counts.copied += 1,
                Outcome::AlreadyPresent => run.counts.already_present += 1,
                Outcome::Drifted => {
                    run.counts.drifted += 1;
                    let held = e
                        .target_digest
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    let source = e
                        .digest
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    run.drifted.push(problem(
                        "drifted",
                        format!("the target holds {held}, the source {source}"),
                    ));
                }
                Outcome::Failed => {
                    run.counts.failed += 1;
                    let (class, message) = e
                        .error
                        .as_ref()
                        .map(|f| (f.class.clone(), f.message.clone()))
                        .unwrap_or_else(|| ("unknown".into(), "failed".into()));
                    run.failures.push(problem(&class, message));
                }
                Outcome::Deferred => {
                    run.counts.deferred += 1;
                    let why = e
                        .error
                        .as_ref()
                        .map(|f| f.message.clone())
                        .unwrap_or_default();
                    run.deferred.push(problem("deferred", why));
                }
            }
        }
        if run.counts.failed > 0 || run.counts.deferred > 0 {
            run.status = RunStatus::Failed;
        }
        run
    }

    /// One line for people: `run failed: 3 copied, 1 failed (not_found: 1) in 4.2 s`.
    pub fn headline(&self) -> String {
        let c = &self.counts;
        let status = match self.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "was interrupted",
        };
        let mut parts = vec![
            format!("{} copied", c.copied),
            format!("{} already present", c.already_present),
            format!("{} failed", c.failed),
        ];
        if c.drifted > 0 {
            parts.push(format!("{} drifted", c.drifted));
        }
        if c.deferred > 0 {
            parts.push(format!("{} deferred", c.deferred));
        }
        if c.published > 0 {
            parts.push(format!("{} jobs published", c.published));
        }
        format!(
            "image-mirror {} {status}: {} in {:.1} s",
            self.role,
            parts.join(", "),
            self.duration_ms as f64 / 1000.0
        )
    }
}

/// A job sent to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLettered {
    /// `source:tag -> target:tag`.
    pub job: String,
    pub job_id: String,
    pub class: String,
    pub message: String,
    pub attempts: u32,
}

/// A pull request the committer opened or updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestNotice {
    pub url: String,
    pub number: u64,
    /// True when lines were added to a pull request already open.
    pub updated: bool,
    /// The images-list lines it proposes.
    pub lines: Vec<String>,
}

impl Notice {
    /// The CloudEvent type.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RunFinished(_) => RUN_FINISHED,
            Self::JobDeadLettered(_) => JOB_DEAD_LETTERED,
            Self::PullRequest(p) if p.updated => PULL_REQUEST_UPDATED,
            Self::PullRequest(_) => PULL_REQUEST_OPENED,
        }
    }

    /// What the notice is about, as a CloudEvent `subject`.
    pub fn subject(&self) -> String {
        match self {
            Self::RunFinished(r) => r.role.clone(),
            Self::JobDeadLettered(d) => d.job.clone(),
            Self::PullRequest(p) => p.url.clone(),
        }
    }

    /// Its data: the notice itself.
    pub fn data(&self) -> Value {
        match self {
            Self::RunFinished(r) => serde_json::to_value(r),
            Self::JobDeadLettered(d) => serde_json::to_value(d),
            Self::PullRequest(p) => serde_json::to_value(p),
        }
        .unwrap_or(Value::Null)
    }

    /// The notice as a CloudEvent (specversion 1.0, structured mode), from `source` (such as
    /// `/image-mirror/worker/host-1`), with `id` and `time`.
    pub fn cloud_event(&self, source: &str, id: &str, time: DateTime<Utc>) -> Value {
        json!({
            "specversion": "1.0",
            "id": id,
            "source": source,
            "type": self.kind(),
            "subject": self.subject(),
            "time": time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "datacontenttype": "application/json",
            "data": self.data(),
        })
    }
}
