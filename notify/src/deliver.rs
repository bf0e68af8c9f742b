//! Delivering notices. A notice goes to every `--notify` URL at once, as a CloudEvent or a
//! Slack message, signed when a secret is given. Delivery never slows or fails the work: each
//! attempt is bounded ([`NotifyOptions::attempt_timeout`]), a 5xx, a 429 or a connection that
//! fails is tried again with backoff, the whole delivery ends within
//! [`NotifyOptions::budget`], a redirect is never followed (the body and its signature go only
//! to the host named), and the answer's body is never read. A delivery that fails for good is
//! one WARN line naming the receiver by its host alone (a webhook URL's path is its secret) and
//! a count in `image_mirror_notifications_total{outcome="failed"}`; the caller's exit status
//! does not change.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use image_mirror_common::metrics;
use image_mirror_common::retry::RetryPolicy;
use image_mirror_common::secret::Secret;

use crate::event::Notice;
use crate::policy::NotifyOn;
use crate::sign::{signature, SIGNATURE_HEADER};
use crate::NotifyError;

/// The wire format of notices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// CloudEvents 1.0, structured mode (`application/cloudevents+json`).
    #[default]
    CloudEvents,
    /// A Slack incoming-webhook message.
    Slack,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cloudevents" => Ok(Self::CloudEvents),
            "slack" => Ok(Self::Slack),
            other => Err(format!("{other:?}: one of cloudevents, slack")),
        }
    }
}

/// How notices are sent.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Where: `http(s)` URLs.
    pub urls: Vec<String>,
    pub format: Format,
    pub on: NotifyOn,
    /// The key of the body's HMAC-SHA256 signature.
    pub secret: Option<Secret>,
    /// The CloudEvent `source`: `/image-mirror/<role>/<host>`.
    pub source: String,
    /// The bound of one attempt, connection and answer included.
    pub attempt_timeout: Duration,
    /// Retries of a 5xx, a 429 or a failed connection.
    pub retry: RetryPolicy,
    /// The bound of a whole delivery, retries included.
    pub budget: Duration,
}

impl NotifyOptions {
    /// Notices to `urls` with the default bounds: 10 s an attempt, 3 retries from 1 s, 30 s
    /// in all.
    pub fn new(urls: Vec<String>, role: &str) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Self {
            urls,
            format: Format::default(),
            on: NotifyOn::default(),
            secret: None,
            source: format!("/image-mirror/{}/{host}", role.replace(' ', "-")),
            attempt_timeout: Duration::from_secs(10),
            retry: RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(8), 3),
            budget: Duration::from_secs(30),
        }
    }
}

/// One receiver.
#[derive(Debug, Clone)]
struct Receiver {
    url: reqwest::Url,
    /// Its scheme and host alone: what logs and reports may show.
    shown: String,
}

/// What became of a notice at one receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver, by scheme and host.
    pub receiver: String,
    pub delivered: bool,
    pub attempts: u32,
    /// Why it was not delivered.
    pub error: Option<String>,
}

/// Sends notices; see the module's documentation. Cheap to share.
#[derive(Debug)]
pub struct Notifier {
    receivers: Vec<Receiver>,
    options: NotifyOptions,
    client: reqwest::Client,
}

impl Notifier {
    /// A notifier for `options`; a URL that is not `http(s)` is refused, naming it by host.
    pub fn new(options: NotifyOptions) -> Result<Arc<Self>, NotifyError> {
        let mut receivers = Vec::new();
        for raw in &options.urls {
            let url = reqwest::Url::parse(raw).map_err(|e| NotifyError::BadUrl {
                url: shown_of_raw(raw),
                why: e.to_string(),
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(NotifyError::BadUrl {
                    url: shown_of_raw(raw),
                    why: "not an http(s) URL with a host".into(),
                });
            }
            let shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
            receivers.push(Receiver { url, shown });
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.attempt_timeout)
            .timeout(options.attempt_timeout)
            .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        Ok(Arc::new(Self {
            receivers,
            options,
            client,
        }))
    }

    /// Whether there is anywhere to send to.
    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    /// Sends `notice` to every receiver when the policy wants it, within the budget; what
    /// became of it at each (nothing when not sent).
    pub async fn send(&self, notice: &Notice) -> Vec<Delivery> {
        if self.is_empty() || !self.options.on.wants(notice) {
            return Vec::new();
        }
        let (body, content_type) = self.body(notice);
        let sends = self
            .receivers
            .iter()
            .map(|r| self.deliver(r, &body, content_type));
        let deliveries = join_all(sends).await;
        for d in &deliveries {
            match &d.error {
                None => {
                    metrics::NOTIFICATIONS.inc(&["delivered"]);
                    tracing::debug!(receiver = %d.receiver, attempts = d.attempts, kind = notice.kind(), "notification delivered");
                }
                Some(why) => {
                    metrics::NOTIFICATIONS.inc(&["failed"]);
                    tracing::warn!(
                        "notification to {} not delivered after {} attempt(s): {why}",
                        d.receiver,
                        d.attempts
                    );
                }
            }
        }
        deliveries
    }

    /// [`send`](Self::send) on a task of its own, for a role that goes on working.
    pub fn send_in_background(self: &Arc<Self>, notice: Notice) {
        if self.is_empty() || !self.options.on.wants(&notice) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.send(&notice).await });
    }

    /// The body of `notice` in the configured format, and its content type.
    fn body(&self, notice: &Notice) -> (Vec<u8>, &'static str) {
        match self.options.format {
            Format::CloudEvents => {
                let id = format!("{:032x}", rand::random::<u128>());
                let event = notice.cloud_event(&self.options.source, &id, Utc::now());
                (
                    serde_json::to_vec(&event).unwrap_or_default(),
                    "application/cloudevents+json; charset=utf-8",
                )
            }
            Format::Slack => (
                serde_json::to_vec(&crate::slack::message(notice)).unwrap_or_default(),
                "application/json",
            ),
        }
    }

    /// One receiver's delivery: attempts until one is answered 2xx, one fails for good, the
    /// retries run out, or the budget does.
    async fn deliver(&self, receiver: &Receiver, body: &[u8], content_type: &str) -> Delivery {
        let mut attempts = 0_u32;
        let mut last = String::new();
        let all = async {
            loop {
                attempts += 1;
                match self.attempt(receiver, body, content_type).await {
                    Ok(()) => return None,
                    Err(Attempt::Final(why)) => return Some(why),
                    Err(Attempt::Again(why)) => {
                        last.clone_from(&why);
                        let failures = attempts as usize;
                        if self.options.retry.gives_up_after(failures) {
                            return Some(why);
                        }
                        tracing::debug!(receiver = %receiver.shown, error = %why, "notification not delivered yet; trying again");
                        tokio::time::sleep(self.options.retry.delay(failures)).await;
                    }
                }
            }
        };
        let error = match tokio::time::timeout(self.options.budget, all).await {
            Ok(outcome) => outcome,
            Err(_) => Some(format!(
                "no delivery within {} s ({last})",
                self.options.budget.as_secs()
            )),
        };
        Delivery {
            receiver: receiver.shown.clone(),
            delivered: error.is_none(),
            attempts,
            error,
        }
    }

    async fn attempt(
        &self,
        receiver: &Receiver,
        body: &[u8],
        content_type: &str,
    ) -> Result<(), Attempt> {
        let mut request = self
            .client
            .post(receiver.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body.to_vec());
        if let Some(secret) = &self.options.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose().as_bytes(), body),
            );
        }
        let answer = request.send().await.map_err(|e| {
            // Never the URL: its path may be a secret.
            let why = if e.is_timeout() {
                format!(
                    "no answer within {} s",
                    self.options.attempt_timeout.as_secs()
                )
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                "the request failed".to_owned()
            };
            Attempt::Again(why)
        })?;
        let status = answer.status();
        drop(answer);
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(Attempt::Final(format!(
                "answered {status}: a redirect is not followed"
            )))
        } else if status.is_server_error() || status.as_u16() == 429 {
            Err(Attempt::Again(format!("answered {status}")))
        } else {
            Err(Attempt::Final(format!("answered {status}")))
        }
    }
}

/// How an attempt failed.
enum Attempt {
    /// Worth another try.
    Again(String),
    /// Not.
    Final(String),
}

/// A URL as it may be shown: its scheme and host when it parses that far, else nothing of it.
fn shown_of_raw(raw: &str) -> String {
    reqwest::Url::parse(raw)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}", u.scheme())))
        .unwrap_or_else(|| "(a URL that does not parse)".to_owned())
}
