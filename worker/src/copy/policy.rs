//! The policy hook (`--policy-hook PATH`): before anything of an image is written, an
//! executable of the user's is told what is about to be copied (as JSON on its stdin: the
//! source, the targets, the digest, the platforms, the key or identity that verified its
//! signature, the labels of its config when it is one image) and
//! answers on stdout `{"decision": "allow"|"deny"|"defer", "reason": "…"}`. A deny fails the
//! copy as `policy_denied` (never retried, nothing written); a defer puts it off as a spent rate
//! limit does (a worker's job waits in a delay queue, `run` reports it deferred). A hook that
//! fails, outlives `--policy-hook-timeout` or answers anything else is handled as
//! `--policy-hook-fail` says: `closed` (the default) denies, `open` allows; either way the
//! hook's stderr tail is in the message.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most of a hook's stdout read.
const MAX_ANSWER: u64 = 64 * 1024;
/// The most of a hook's stderr kept for a message.
const STDERR_TAIL: usize = 500;

/// What a hook that cannot be asked gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnHookFailure {
    /// Denied (the default): no image goes unchecked.
    #[default]
    Closed,
    /// Allowed, with a warning.
    Open,
}

impl std::str::FromStr for OnHookFailure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "closed" => Ok(Self::Closed),
            "open" => Ok(Self::Open),
            other => Err(format!("{other:?}: one of closed, open")),
        }
    }
}

/// The hook and how it is run.
#[derive(Debug, Clone)]
pub struct PolicyHook {
    pub path: PathBuf,
    pub timeout: Duration,
    pub on_failure: OnHookFailure,
    /// How long a deferred copy waits before it is tried again.
    pub defer_for: Duration,
}

/// What the hook is told.
#[derive(Debug, Clone, Serialize)]
pub struct HookInput {
    pub source: String,
    pub targets: Vec<String>,
    pub digest: String,
    pub media_type: Option<String>,
    pub platforms: Vec<String>,
    /// The trusted key or identity whose signature verified the image.
    pub signer: Option<String>,
    /// The labels of the image's config (none for an index).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What the hook answers.
#[derive(Debug, Clone, Deserialize)]
struct Answer {
    decision: String,
    #[serde(default)]
    reason: String,
}

/// The hook's decision, failures already resolved by the failure policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    Defer(String),
}

impl PolicyHook {
    /// The decision for `input`: the hook's answer, or the failure policy's when the hook could
    /// not give one.
    pub async fn decide(&self, input: &HookInput) -> Decision {
        match self.ask(input).await {
            Ok(decision) => decision,
            Err(why) => match self.on_failure {
                OnHookFailure::Closed => Decision::Deny(format!(
                    "the policy hook failed ({why}); --policy-hook-fail closed denies"
                )),
                OnHookFailure::Open => {
                    tracing::warn!(
                        "the policy hook failed ({why}); --policy-hook-fail open lets {} through",
                        input.source
                    );
                    Decision::Allow
                }
            },
        }
    }

    /// Runs the hook once for `input`: its decision, or why it gave none.
    async fn ask(&self, input: &HookInput) -> Result<Decision, String> {
        let mut child = tokio::process::Command::new(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{} cannot be run: {e}", self.path.display()))?;
        let body = serde_json::to_vec(input).unwrap_or_default();
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let talk = async {
            if let Some(mut s) = stdin.take() {
                // A hook that does not read its input still answers.
                let _ = s.write_all(&body).await;
                let _ = s.shutdown().await;
            }
            // Both pipes at once: a hook that fills one while we wait on the other never
            // blocks.
            let (out, err) = tokio::join!(read_capped(stdout.take()), read_capped(stderr.take()));
            let status = child.wait().await;
            (out, err, status)
        };
        let (out, err, status) = tokio::time::timeout(self.timeout, talk)
            .await
            .map_err(|_| format!("no answer within {} s", self.timeout.as_secs_f64()))?;
        let tail = tail_of(&err);
        let status = status.map_err(|e| format!("{e}{tail}"))?;
        if !status.success() {
            return Err(format!("it exited with {status}{tail}"));
        }
        let answer: Answer = serde_json::from_slice(&out).map_err(|e| {
            format!("its answer is not {{\"decision\": …, \"reason\": …}} ({e}){tail}")
        })?;
        match answer.decision.as_str() {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny(answer.reason)),
            "defer" => Ok(Decision::Defer(answer.reason)),
            other => Err(format!("it answered the decision {other:?}{tail}")),
        }
    }
}

/// What `pipe` carries, at most [`MAX_ANSWER`] bytes.
async fn read_capped(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(p) = pipe {
        let _ = p.take(MAX_ANSWER).read_to_end(&mut out).await;
    }
    out
}

/// `; stderr: …` with the last characters the hook wrote there, when it wrote any.
fn tail_of(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let start = text
        .char_indices()
        .rev()
        .nth(STDERR_TAIL)
        .map_or(0, |(i, _)| i);
    format!("; stderr: {}", &text[start..].replace('\n', " / "))
}

impl PolicyHook {
    /// The refusal of copying `input`'s image, when the hook (or its failure policy) does not
    /// allow it; counted in `image_mirror_policy_decisions_total`.
    pub(crate) async fn gate(&self, input: &HookInput) -> Option<crate::copy::error::CopyError> {
        use crate::copy::error::CopyError;
        let decision = self.decide(input).await;
        let (name, refusal) = match decision {
            Decision::Allow => ("allow", None),
            Decision::Deny(reason) => (
                "deny",
                Some(CopyError::PolicyDenied {
                    image: format!("{}@{}", input.source, input.digest),
                    reason,
                }),
            ),
            Decision::Defer(reason) => (
                "defer",
                Some(CopyError::PolicyDeferred {
                    image: format!("{}@{}", input.source, input.digest),
                    reason,
                    wait: self.defer_for,
                }),
            ),
        };
        image_mirror_common::metrics::POLICY_DECISIONS.inc(&[name]);
        refusal
    }
}
