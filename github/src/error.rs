//! What can go wrong talking to GitHub, and whether trying again may help.

use std::time::Duration;

/// A failed GitHub request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("GitHub {operation}: {message}")]
pub struct GithubError {
    /// What was asked, such as `list releases of etcd-io/etcd`.
    pub operation: String,
    /// The HTTP status, when GitHub answered.
    pub status: Option<u16>,
    /// GitHub's message, or the transport failure.
    pub message: String,
    /// Whether trying again later may succeed.
    pub transient: bool,
    /// How long GitHub asked us to wait (`Retry-After` or the rate limit reset).
    pub retry_after: Option<Duration>,
}

impl GithubError {
    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Maps an octocrab error: a request that got no answer (answers with an error status
    /// are read by the transport, see [`from_answer`](Self::from_answer)).
    pub(crate) fn from_octocrab(operation: &str, err: &octocrab::Error) -> Self {
        match err {
            octocrab::Error::Hyper { .. }
            | octocrab::Error::Service { .. }
            | octocrab::Error::Http { .. } => Self {
                operation: operation.to_owned(),
                status: None,
                message: format!("connection failed: {err}"),
                transient: true,
                retry_after: None,
            },
            other => Self {
                operation: operation.to_owned(),
                status: None,
                message: first_line(&other.to_string()),
                transient: false,
                retry_after: None,
            },
        }
    }

    /// Maps an answer with an error status: its message, and whether it may pass (5xx, 408,
    /// rate limits, with the wait GitHub asks for).
    pub(crate) fn from_answer(
        operation: &str,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let text = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        let rate_limited = status == 429
            || (status == 403
                && (header("x-ratelimit-remaining").as_deref() == Some("0")
                    || text.to_ascii_lowercase().contains("rate limit")));
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .or_else(|| {
                let reset = header("x-ratelimit-reset")?.trim().parse::<i64>().ok()?;
                let now = chrono::Utc::now().timestamp();
                let wait = reset.saturating_sub(now).max(1);
                Some(Duration::from_secs(u64::try_from(wait).ok()?))
            })
            .filter(|_| rate_limited || status == 503);
        let mut message = format!("{status} {text}");
        if rate_limited {
            message.push_str(" (rate limited; set GITHUB_TOKEN for a higher limit)");
        }
        Self {
            operation: operation.to_owned(),
            status: Some(status),
            message,
            transient: rate_limited || status >= 500 || status == 408,
            retry_after,
        }
    }

    /// A request that ran out of its deadline: it may pass.
    pub(crate) fn timeout(operation: &str, deadline: Duration) -> Self {
        Self {
            operation: operation.to_owned(),
            status: None,
            message: format!("no whole answer within {}s", deadline.as_secs()),
            transient: true,
            retry_after: None,
        }
    }

    /// A refusal that retrying will not change, for what GitHub answered but cannot be used
    /// (a file that does not parse, a branch that is missing).
    pub fn unusable(operation: &str, message: impl Into<String>) -> Self {
        Self::permanent(operation, message.into())
    }

    pub(crate) fn permanent(operation: &str, message: String) -> Self {
        Self {
            operation: operation.to_owned(),
            status: None,
            message,
            transient: false,
            retry_after: None,
        }
    }
}

/// octocrab's displays end with a backtrace location on later lines.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}
