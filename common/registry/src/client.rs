//! The registry client: one `reqwest` client shared by every operation, with the rules of
//! [`origin`](super::origin) for where requests and credentials may go, auth
//! ([`auth`](super::auth)), per-host limits ([`limits`](super::limits)), deadlines and caps
//! ([`transport`](super::transport), [`body`](super::body)) and retries.
//!
//! Protocol operations (manifests, blobs, uploads, tags) live in their own modules and go
//! through the transport; nothing else can send a request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::auth::Auth;
use crate::body::StallRule;
use crate::credentials::DockerConfig;
use crate::error::{network_message, RegistryError};
use crate::limits::HostLimits;
use crate::origin::Origins;
use crate::ratelimit::{QuotaView, RateLimitPolicy, RateLimits};
use crate::retry::RetryPolicy;
use crate::unreachable::UnreachableHosts;
use crate::upload_limits::{UploadLimits, UploadSettings};

/// Settings of a [`RegistryClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Hosts (with port when not default) that may be reached over plain HTTP.
    pub insecure_hosts: Vec<String>,
    /// Concurrent requests per registry host.
    pub max_requests_per_host: usize,
    /// Retry policy for transient errors.
    pub retry: RetryPolicy,
    /// Where credentials come from.
    pub docker_config: DockerConfig,
    /// Timeout to establish a connection.
    pub connect_timeout: Duration,
    /// Deadline of every request that carries no blob body (manifests, tokens, tag pages,
    /// upload sessions, mounts), from sending it to the end of its answer.
    pub request_timeout: Duration,
    /// How fast a blob body must move, up or down.
    pub stall: StallRule,
    /// How long a host that could not be reached stays known as unreachable.
    pub unreachable_cooldown: Duration,
    /// How registry quotas are spent.
    pub rate_limits: RateLimitPolicy,
    /// Upload request sizes set per registry host (`--blob-chunk`, `--blob-max`).
    pub upload_settings: HashMap<String, UploadSettings>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_hosts: Vec::new(),
            max_requests_per_host: 16,
            retry: RetryPolicy::default(),
            docker_config: DockerConfig::default(),
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            stall: StallRule::default(),
            unreachable_cooldown: Duration::from_secs(30),
            rate_limits: RateLimitPolicy::default(),
            upload_settings: HashMap::new(),
        }
    }
}

/// Counters of what the client has seen, for reports and metrics.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Requests retried after a transient error.
    pub retries: AtomicU64,
    /// 429 answers.
    pub too_many_requests: AtomicU64,
    /// Time spent waiting before retries, in milliseconds.
    pub retry_wait_ms: AtomicU64,
}

struct Inner {
    http: reqwest::Client,
    options: ClientOptions,
    origins: Origins,
    auth: Auth,
    limits: HostLimits,
    unreachable: UnreachableHosts,
    rate_limits: RateLimits,
    upload_limits: UploadLimits,
    stats: ClientStats,
}

/// A registry client; cheap to clone, shared by every copy in a process.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl RegistryClient {
    /// A client with the given options.
    pub fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        let setup = |operation: &str, message: String| RegistryError::Protocol {
            registry: "*".into(),
            operation: operation.into(),
            message,
        };
        let tls = crate::trust::client_config().map_err(|e| setup("set up TLS", e.to_string()))?;
        // Redirects are followed by the transport, hop by hop, under its rules; the read
        // timeout is only a backstop behind the deadlines and the stall watchdog.
        let backstop = options.request_timeout.max(options.stall.window) * 2;
        let http = reqwest::Client::builder()
            .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(backstop)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .pool_max_idle_per_host(options.max_requests_per_host)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| setup("build HTTP client", network_message(&e)))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                origins: Origins::new(&options.insecure_hosts),
                auth: Auth::new(options.docker_config.clone()),
                limits: HostLimits::default(),
                unreachable: UnreachableHosts::default(),
                rate_limits: RateLimits::new(options.rate_limits),
                upload_limits: UploadLimits::new(options.upload_settings.clone()),
                stats: ClientStats::default(),
                options,
            }),
        })
    }

    /// The counters of this client.
    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// Tokens fetched from token realms so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.auth.tokens.fetched()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.options.retry
    }

    /// How fast blob bodies must move.
    pub fn stall_rule(&self) -> StallRule {
        self.inner.options.stall
    }

    /// The deadline of requests without a blob body.
    pub fn request_timeout(&self) -> Duration {
        self.inner.options.request_timeout
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn origins(&self) -> &Origins {
        &self.inner.origins
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// How large each registry's upload requests may be: known, set, and learned.
    pub fn upload_limits(&self) -> &UploadLimits {
        &self.inner.upload_limits
    }

    pub(crate) fn limits(&self) -> &HostLimits {
        &self.inner.limits
    }

    /// What this process knows of each registry's quota, and what it spent: pulls, HEADs,
    /// refusals, pauses.
    pub fn quotas(&self) -> Vec<(String, QuotaView)> {
        self.inner.rate_limits.views()
    }

    pub(crate) fn rate_limits(&self) -> &RateLimits {
        &self.inner.rate_limits
    }

    pub(crate) fn unreachable_hosts(&self) -> &UnreachableHosts {
        &self.inner.unreachable
    }

    pub(crate) fn count_429(&self, registry: &str) {
        self.inner
            .stats
            .too_many_requests
            .fetch_add(1, Ordering::Relaxed);
        image_mirror_common::metrics::TOO_MANY_REQUESTS.inc(&[registry]);
    }

    /// `<base>/v2/<repository path>/<tail>`.
    pub(crate) fn repo_url(
        &self,
        repo: &image_mirror_common::Repository,
        tail: &str,
    ) -> Result<Url, RegistryError> {
        self.inner
            .origins
            .base_url(repo.registry())?
            .join(&format!("v2/{}/{tail}", repo.path()))
            .map_err(|e| RegistryError::Protocol {
                registry: repo.registry().to_owned(),
                operation: "build URL".into(),
                message: e.to_string(),
            })
    }

    /// Runs `op` with the client's retry policy, counting retries. A retry is logged at DEBUG:
    /// only the outcome of the whole operation is for people.
    pub async fn with_retries<T, F, Fut>(&self, op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let stats = &self.inner.stats;
        self.inner
            .options
            .retry
            .run(op, |err, delay| {
                stats.retries.fetch_add(1, Ordering::Relaxed);
                image_mirror_common::metrics::RETRIES.inc(&[&err.retry_class()]);
                stats
                    .retry_wait_ms
                    .fetch_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
                tracing::debug!(registry = err.registry(), error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            })
            .await
    }
}
