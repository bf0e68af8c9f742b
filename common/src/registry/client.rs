//! The registry transport: one `reqwest` client shared by every operation, with credentials,
//! token and basic auth, a limit of concurrent requests per registry host, and retries.
//!
//! Protocol operations (manifests, blobs, uploads, tags) live in their own modules and go
//! through [`RegistryClient::send`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::reference::DOCKER_HUB;
use crate::registry::challenge::Challenge;
use crate::registry::credentials::{Credential, DockerConfig};
use crate::registry::error::{network_message, RegistryError};
use crate::registry::retry::{parse_retry_after, RetryPolicy};
use crate::registry::token::{Scope, TokenCache};

/// The API host of Docker Hub.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

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
    /// Longest silence while reading a response before the request fails.
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            insecure_hosts: Vec::new(),
            max_requests_per_host: 16,
            retry: RetryPolicy::default(),
            docker_config: DockerConfig::default(),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// How a host wants to be authenticated, learned from its first 401.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostAuth {
    Anonymous,
    Bearer {
        realm: String,
        service: Option<String>,
    },
    Basic,
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
    insecure: HashSet<String>,
    host_auth: Mutex<HashMap<String, HostAuth>>,
    credentials: tokio::sync::Mutex<HashMap<String, Option<Credential>>>,
    tokens: TokenCache,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    upload_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    stats: ClientStats,
}

/// A registry client; cheap to clone, shared by every copy in a process.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

/// A slot in a host's pool of concurrent uploads; see [`RegistryClient::upload_slot`].
pub struct UploadSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// A response together with the per-host permit it holds while its body is read.
pub struct Answer {
    /// The response.
    pub response: Response,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

impl RegistryClient {
    /// A client with the given options.
    pub fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.read_timeout)
            .pool_max_idle_per_host(options.max_requests_per_host);
        let tls = crate::registry::trust::client_config().map_err(|e| RegistryError::Protocol {
            registry: "*".into(),
            operation: "set up TLS".into(),
            message: e.to_string(),
        })?;
        let http = builder
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| RegistryError::Protocol {
                registry: "*".into(),
                operation: "build HTTP client".into(),
                message: network_message(&e),
            })?;
        let insecure = options.insecure_hosts.iter().cloned().collect();
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                insecure,
                host_auth: Mutex::default(),
                credentials: tokio::sync::Mutex::default(),
                tokens: TokenCache::default(),
                limits: Mutex::default(),
                upload_limits: Mutex::default(),
                stats: ClientStats::default(),
                options,
            }),
        })
    }

    /// The counters of this client.
    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.inner.options.retry
    }

    /// The underlying HTTP client, for requests to URLs a registry handed out.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// `https://host` (or `http://` for insecure hosts); Docker Hub's API host for `docker.io`.
    pub fn base_url(&self, registry: &str) -> Result<Url, RegistryError> {
        let api_host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        let scheme = if self.inner.insecure.contains(registry) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| RegistryError::Protocol {
            registry: registry.to_owned(),
            operation: "build URL".into(),
            message: e.to_string(),
        })
    }

    /// `<base>/v2/<repository path>/<tail>`.
    pub(crate) fn repo_url(
        &self,
        repo: &crate::Repository,
        tail: &str,
    ) -> Result<Url, RegistryError> {
        self.base_url(repo.registry())?
            .join(&format!("v2/{}/{tail}", repo.path()))
            .map_err(|e| RegistryError::Protocol {
                registry: repo.registry().to_owned(),
                operation: "build URL".into(),
                message: e.to_string(),
            })
    }

    /// Runs `op` with the client's retry policy, counting retries.
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
                crate::metrics::RETRIES.inc(&[&err.retry_class()]);
                stats
                    .retry_wait_ms
                    .fetch_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
                tracing::warn!(registry = err.registry(), error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            })
            .await
    }

    async fn permit(&self, registry: &str) -> Result<OwnedSemaphorePermit, RegistryError> {
        Self::acquire(
            &self.inner.limits,
            registry,
            self.inner.options.max_requests_per_host,
        )
        .await
    }

    /// A slot in `registry`'s pool of blob uploads, held by one blob copy from its first byte
    /// to its last. Uploads have their own pool, taken before the source is read: a copy holds
    /// its upload slot, then a request slot for its download, always in that order, and lets
    /// go of the download before its other requests, so copies within one registry cannot wait
    /// on each other.
    pub async fn upload_slot(&self, registry: &str) -> Result<UploadSlot, RegistryError> {
        Ok(UploadSlot(
            Self::acquire(
                &self.inner.upload_limits,
                registry,
                self.inner.options.max_requests_per_host,
            )
            .await?,
        ))
    }

    async fn acquire(
        pools: &Mutex<HashMap<String, Arc<Semaphore>>>,
        registry: &str,
        limit: usize,
    ) -> Result<OwnedSemaphorePermit, RegistryError> {
        let semaphore = {
            let mut limits = pools.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                limits
                    .entry(registry.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1)))),
            )
        };
        semaphore
            .acquire_owned()
            .await
            .map_err(|_| RegistryError::Protocol {
                registry: registry.to_owned(),
                operation: "acquire a request slot".into(),
                message: "the client is shutting down".into(),
            })
    }

    async fn credential(&self, registry: &str) -> Result<Option<Credential>, RegistryError> {
        let mut cache = self.inner.credentials.lock().await;
        if let Some(c) = cache.get(registry) {
            return Ok(c.clone());
        }
        let c = self
            .inner
            .options
            .docker_config
            .credential_for(registry)
            .await?;
        cache.insert(registry.to_owned(), c.clone());
        Ok(c)
    }

    fn host_auth(&self, registry: &str) -> Option<HostAuth> {
        self.inner
            .host_auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(registry)
            .cloned()
    }

    fn learn(&self, registry: &str, auth: HostAuth) {
        self.inner
            .host_auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry.to_owned(), auth);
    }

    /// The `Authorization` value for a request to `registry` within `scope`, if one is due.
    async fn authorization(
        &self,
        registry: &str,
        scope: &Scope,
        refresh: bool,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        match self.host_auth(registry) {
            None | Some(HostAuth::Anonymous) => Ok(None),
            Some(HostAuth::Basic) => match self.credential(registry).await? {
                Some(Credential::Basic { username, password }) => {
                    Ok(Some(basic_auth_header(&username, password.expose())))
                }
                _ => Err(RegistryError::Auth {
                    registry: registry.to_owned(),
                    operation: "authenticate".into(),
                    status: 401,
                    message: "the registry asks for a user name and password and the Docker \
                              config has none for it"
                        .into(),
                }),
            },
            Some(HostAuth::Bearer { realm, service }) => {
                let credential = self.credential(registry).await?;
                let token = self
                    .inner
                    .tokens
                    .get_or_fetch(
                        self,
                        registry,
                        &realm,
                        service.as_deref(),
                        scope,
                        credential.as_ref(),
                        refresh,
                    )
                    .await?;
                Ok(Some(bearer_header(token.expose())))
            }
        }
    }

    /// Sends the request `build` makes (called again after an auth challenge), holding a
    /// per-host permit, and maps failures to [`RegistryError`]s. Statuses other than 401 are
    /// returned as they are, for the caller to judge; 401 and 403 after a fresh token are
    /// [`RegistryError::Auth`].
    pub async fn send(
        &self,
        registry: &str,
        scope: &Scope,
        operation: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Answer, RegistryError> {
        let permit = self.permit(registry).await?;
        let mut refresh = false;
        for attempt in 0..2 {
            let mut request = build(&self.inner.http);
            if let Some(auth) = self.authorization(registry, scope, refresh).await? {
                request = request.header(AUTHORIZATION, auth);
            }
            let response = request
                .send()
                .await
                .map_err(|e| RegistryError::network(registry, operation, &e))?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.inner
                    .stats
                    .too_many_requests
                    .fetch_add(1, Ordering::Relaxed);
                crate::metrics::TOO_MANY_REQUESTS.inc(&[registry]);
            }
            if status != StatusCode::UNAUTHORIZED {
                return Ok(Answer {
                    response,
                    permit: Some(permit),
                });
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(Challenge::parse);
            let learned = match challenge {
                Some(Challenge::Bearer { realm, service }) => HostAuth::Bearer { realm, service },
                Some(Challenge::Basic) => HostAuth::Basic,
                None => HostAuth::Anonymous,
            };
            let known = self.host_auth(registry);
            if attempt == 1
                || (known.as_ref() == Some(&learned) && refresh)
                || learned == HostAuth::Anonymous
            {
                let message = error_detail(response).await;
                return Err(RegistryError::Auth {
                    registry: registry.to_owned(),
                    operation: operation.to_owned(),
                    status: 401,
                    message: if message.is_empty() {
                        "unauthorized".into()
                    } else {
                        message
                    },
                });
            }
            self.learn(registry, learned);
            refresh = true;
        }
        Err(RegistryError::Auth {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            status: 401,
            message: "unauthorized".into(),
        })
    }

    /// Like [`send`](Self::send) for an upload whose body can be sent only once (a stream),
    /// in the given upload slot: the auth challenge is answered beforehand by the operations
    /// that open an upload, so a 401 here is an error.
    pub async fn send_once(
        &self,
        registry: &str,
        scope: &Scope,
        operation: &str,
        request: RequestBuilder,
        _slot: &UploadSlot,
    ) -> Result<Answer, RegistryError> {
        let mut request = request;
        if let Some(auth) = self.authorization(registry, scope, false).await? {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::network(registry, operation, &e))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let message = error_detail(response).await;
            return Err(RegistryError::Auth {
                registry: registry.to_owned(),
                operation: operation.to_owned(),
                status: 401,
                message,
            });
        }
        Ok(Answer {
            response,
            permit: None,
        })
    }
}

pub(crate) fn basic_auth_header(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

fn bearer_header(token: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    v.set_sensitive(true);
    v
}

/// The registry's error text (its JSON `errors[].message`, or the body), shortened.
pub(crate) async fn error_detail(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let from_json = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| {
                        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                        let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                        (!code.is_empty() || !message.is_empty())
                            .then(|| format!("{code} {message}").trim().to_owned())
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
    let detail = from_json.unwrap_or(text);
    let detail = detail.trim();
    match detail.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &detail[..i]),
        None => detail.to_owned(),
    }
}

/// Turns a non-success response into an error: 404 `NotFound`, 401/403 `Auth`, else `Status`
/// (with `Retry-After`).
pub(crate) async fn status_error(
    registry: &str,
    operation: &str,
    response: Response,
) -> RegistryError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let detail = error_detail(response).await;
    match status.as_u16() {
        404 => RegistryError::NotFound {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
        },
        code @ (401 | 403) => RegistryError::Auth {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            status: code,
            message: detail,
        },
        code => RegistryError::Status {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            status: code,
            detail,
            retry_after,
        },
    }
}
