//! The one way requests leave the registry client. Every request goes through here, so these
//! rules hold for all of them:
//!
//! - Credentials go only to the registry's own origin ([`Origins`]): a redirect, an upload
//!   `Location` or any URL on another origin is sent without them, and plain HTTP to a host
//!   not listed as insecure is refused. Redirects are followed here, hop by hop (GET and HEAD
//!   only, at most [`MAX_REDIRECTS`]), never by the HTTP library.
//! - Every answer is read within a cap, and every request without a blob body has a deadline.
//! - A host that cannot be reached is tried once more after a moment, then remembered as
//!   unreachable for a while, so that the requests after it fail at once with the same
//!   message instead of each waiting for its own failure.
//! - Every request, token realm calls, Docker Hub's API and uploads included, passes the
//!   registry's rate-limit gate first, holds a slot of the host's pool while it is under way
//!   (a streamed upload: the blob's upload slot, which its caller must hold to send it), and
//!   is retried while it fails for now (broken connections, timeouts, 408, 429, 5xx) within the
//!   retry policy, a registry's `Retry-After` winning.
//!
//! These hold by construction: [`Transport::send`] and [`Transport::send_body`] are the only
//! ways out, and the HTTP client is not reachable from anywhere else. The transport knows
//! nothing of credentials beyond the [`Authorization`] value a caller hands it for a request;
//! answering a `401` is the client's (`client.rs`), fetching a token the authenticator's
//! (`auth.rs`, through the narrow realm sender of `realm.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use crate::authorization::Authorization;
use crate::body::{self, ReadFailure, MAX_ERROR_BODY};
pub(crate) use crate::call::{Api, Call, Opened, Reply};
use crate::error::{is_transient_status, network_message, RegistryError, Unreachable};
use crate::limits::{HostLimits, UploadSlot};
use crate::options::ClientOptions;
use crate::origin::{Destination, Origins};
use crate::ratelimit::{Gate, PullTicket, RateLimits};
use crate::unreachable::UnreachableHosts;

/// Redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// The pause before a host that could not be reached is tried again, once.
const UNREACHABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How an answer's body is taken.
#[derive(Clone, Copy)]
pub(crate) enum Read {
    /// Whole, at most this many bytes.
    Whole(usize),
    /// Left in the response, for the caller to stream.
    Stream,
}

/// What one round of a request ended with.
pub(crate) enum Round {
    Whole(Reply),
    /// A successful answer whose body is left to stream, holding its request slot.
    Streaming(Opened),
    /// The registry itself answered 401.
    Unauthorized(Reply),
}

/// What one exchange ended with, before it is a [`Round`].
enum Exchanged {
    Whole(Reply),
    Streaming(Response),
    Unauthorized(Reply),
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

/// Where every request to a registry goes through: one HTTP client, with the rules above.
pub(crate) struct Transport {
    http: reqwest::Client,
    options: ClientOptions,
    origins: Origins,
    limits: HostLimits,
    unreachable: UnreachableHosts,
    rate_limits: RateLimits,
    stats: ClientStats,
}

impl Transport {
    /// A transport with `options`: TLS set up, redirects left to the transport itself.
    pub(crate) fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        let setup = |operation: &str, message: String| RegistryError::Protocol {
            registry: "*".into(),
            operation: operation.into(),
            message,
        };
        let tls = crate::trust::client_config().map_err(|e| setup("set up TLS", e.to_string()))?;
        // Redirects are followed here, hop by hop, under the rules; the read timeout is only
        // a backstop behind the deadlines and the stall watchdog.
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
            http,
            origins: Origins::new(&options.insecure_hosts),
            limits: HostLimits::new(options.max_requests_per_host),
            unreachable: UnreachableHosts::default(),
            rate_limits: RateLimits::new(options.rate_limits),
            stats: ClientStats::default(),
            options,
        })
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub(crate) fn origins(&self) -> &Origins {
        &self.origins
    }

    pub(crate) fn limits(&self) -> &HostLimits {
        &self.limits
    }

    pub(crate) fn rate_limits(&self) -> &RateLimits {
        &self.rate_limits
    }

    pub(crate) fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Sends `call`, as every request without a streamed body is sent: through the registry's
    /// rate-limit gate (probing the quota with a free HEAD carrying `auth` when it is this
    /// request's turn), in a request slot of the host's pool, within the request deadline
    /// (for a streamed answer: until it begins), along redirects under the origin rules, and
    /// tried again while it fails for now, within the retry policy. The answer is read as
    /// `read` says; a `401` of the registry's own comes back as [`Round::Unauthorized`].
    pub(crate) async fn send(
        &self,
        call: &Call<'_>,
        auth: Option<&Authorization>,
        read: Read,
    ) -> Result<Round, RegistryError> {
        let stats = &self.stats;
        self.options
            .retry
            .run(
                crate::retry::TIMEOUT_RETRIES,
                || self.attempt(call, auth, read),
                |err: &RegistryError, delay| {
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    image_mirror_common::metrics::RETRIES.inc(&[&err.retry_class()]);
                    stats.retry_wait_ms.fetch_add(
                        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    tracing::debug!(registry = err.registry(), error = %err, delay_ms = delay.as_millis() as u64, "retrying");
                },
            )
            .await
    }

    /// One try of [`send`](Self::send): an answer that may pass on a later try (408, 429,
    /// 5xx) is this try's error.
    async fn attempt(
        &self,
        call: &Call<'_>,
        auth: Option<&Authorization>,
        read: Read,
    ) -> Result<Round, RegistryError> {
        let _ticket = self.pass_gate(call, auth).await?;
        match self.round(call, auth, read).await? {
            Round::Whole(reply) if is_transient_status(reply.status.as_u16()) => {
                Err(reply.into_error(call.registry, call.operation))
            }
            round => Ok(round),
        }
    }

    /// Waits until the registry's rate limit lets `call` go (probing the quota with a free
    /// HEAD, carrying `probe_auth`, when it is this request's turn); fails when the wait
    /// would be too long.
    async fn pass_gate(
        &self,
        call: &Call<'_>,
        probe_auth: Option<&Authorization>,
    ) -> Result<Option<PullTicket>, RegistryError> {
        let limits = &self.rate_limits;
        loop {
            match limits.gate(call.registry, call.pull)? {
                Gate::Go(ticket) => return Ok(ticket),
                Gate::Wait(until) => limits.wait(call.registry, until).await,
                Gate::Probe => {
                    let probe = Call {
                        method: Method::HEAD,
                        pull: false,
                        body: None,
                        url: call.url.clone(),
                        headers: call.headers.clone(),
                        ..*call
                    };
                    let head = self.hop(&probe, &probe.url, probe_auth, None);
                    let _ = tokio::time::timeout(self.options.request_timeout, head).await;
                    limits.probed(call.registry);
                }
            }
        }
    }

    /// One round of `call` within the request deadline and a request slot (held on by a
    /// streamed answer): the request, its redirects, and its answer read as asked.
    async fn round(
        &self,
        call: &Call<'_>,
        auth: Option<&Authorization>,
        read: Read,
    ) -> Result<Round, RegistryError> {
        let deadline = self.options.request_timeout;
        let permit = self.limits.request_slot(call.registry).await?;
        let exchanged = tokio::time::timeout(deadline, self.exchange(call, auth, read))
            .await
            .map_err(|_| RegistryError::timeout(call.registry, call.operation, deadline))?;
        Ok(match exchanged? {
            Exchanged::Whole(reply) => Round::Whole(reply),
            Exchanged::Unauthorized(reply) => Round::Unauthorized(reply),
            Exchanged::Streaming(response) => Round::Streaming(Opened { response, permit }),
        })
    }

    /// Sends `call` with a streamed `body` in the blob's upload `slot`, once (the body cannot
    /// be sent again: a broken one is resumed by its caller), after the registry's rate-limit
    /// gate, without a deadline (the caller watches the body move), and reads the answer; a
    /// `401` of the registry's own comes back as [`Round::Unauthorized`].
    pub(crate) async fn send_body(
        &self,
        call: &Call<'_>,
        auth: Option<&Authorization>,
        body: reqwest::Body,
        _slot: &UploadSlot,
    ) -> Result<Round, RegistryError> {
        let _ticket = self.pass_gate(call, auth).await?;
        let (response, destination) = self.hop(call, &call.url, auth, Some(body)).await?;
        let status = response.status();
        let url = call.url.clone();
        if status == StatusCode::UNAUTHORIZED {
            let reply = whole(response, call, url, MAX_ERROR_BODY).await?;
            if destination == Destination::Elsewhere {
                return Err(credentials_stay_home(call, &reply.url));
            }
            return Ok(Round::Unauthorized(reply));
        }
        Ok(Round::Whole(
            whole(response, call, url, body::MAX_EMPTY_BODY).await?,
        ))
    }

    /// One round: the request, its redirects, and its answer read as asked.
    async fn exchange(
        &self,
        call: &Call<'_>,
        auth: Option<&Authorization>,
        read: Read,
    ) -> Result<Exchanged, RegistryError> {
        let follows =
            call.api.is_none() && (call.method == Method::GET || call.method == Method::HEAD);
        let mut url = call.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let body = call.body.clone().map(reqwest::Body::from);
            let (response, destination) = self.hop(call, &url, auth, body).await?;
            let status = response.status();
            if follows && status.is_redirection() {
                if let Some(next) = redirect_target(&response, &url) {
                    url = next.map_err(|m| protocol(call, m))?;
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED && call.api.is_none() {
                let reply = whole(response, call, url, MAX_ERROR_BODY).await?;
                if destination == Destination::Registry {
                    return Ok(Exchanged::Unauthorized(reply));
                }
                return Err(credentials_stay_home(call, &reply.url));
            }
            return match read {
                Read::Stream if status.is_success() => Ok(Exchanged::Streaming(response)),
                Read::Stream => Ok(Exchanged::Whole(
                    whole(response, call, url, MAX_ERROR_BODY).await?,
                )),
                Read::Whole(cap) => Ok(Exchanged::Whole(whole(response, call, url, cap).await?)),
            };
        }
        Err(protocol(
            call,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// One HTTP request to `url` on `call`'s behalf: refused when the rules forbid it, with
    /// the registry's credentials only on its own origin. A web API's request (a token realm,
    /// Docker Hub's API) carries what its caller put in its headers, to its own URL only.
    async fn hop(
        &self,
        call: &Call<'_>,
        url: &Url,
        auth: Option<&Authorization>,
        body: Option<reqwest::Body>,
    ) -> Result<(Response, Destination), RegistryError> {
        let destination = match call.api {
            None => self.origins.check(call.registry, url, call.operation)?,
            Some(Api::Realm) => {
                self.origins
                    .check_elsewhere(call.registry, url, call.operation)?;
                Destination::Elsewhere
            }
            Some(Api::Named) => Destination::Elsewhere,
        };
        let host = Origins::authority(url);
        if let Some(why) = self.unreachable.get(&host) {
            return Err(unreachable(&host, call.registry, why));
        }
        let replayable = body.is_none() || call.body.is_some();
        let mut body = body;
        let mut tried_again = false;
        loop {
            let mut request = self
                .http
                .request(call.method.clone(), url.clone())
                .headers(call.headers.clone());
            if let Some(b) = body.take() {
                request = request.body(b);
            }
            if destination == Destination::Registry {
                if let Some(a) = auth {
                    request = request.header(AUTHORIZATION, a.header.clone());
                }
            }
            match request.send().await {
                Ok(response) => {
                    self.unreachable.forget(&host);
                    if destination == Destination::Registry {
                        self.observe(call, url, &response);
                    }
                    return Ok((response, destination));
                }
                Err(e) => {
                    let err = RegistryError::network_at(&host, call.registry, call.operation, &e);
                    let RegistryError::Unreachable { why, .. } = &err else {
                        return Err(err);
                    };
                    if tried_again || !replayable {
                        self.unreachable
                            .remember(&host, *why, self.options.unreachable_cooldown);
                        return Err(err);
                    }
                    tracing::debug!(%host, error = %err, "host unreachable; trying once more");
                    tried_again = true;
                    body = call.body.clone().map(reqwest::Body::from);
                    tokio::time::sleep(UNREACHABLE_RETRY_AFTER).await;
                }
            }
        }
    }

    /// Learns from every answer of the registry: its quota, a 429.
    fn observe(&self, call: &Call<'_>, url: &Url, response: &Response) {
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.stats.too_many_requests.fetch_add(1, Ordering::Relaxed);
            image_mirror_common::metrics::TOO_MANY_REQUESTS.inc(&[call.registry]);
        }
        let manifest_head = call.method == Method::HEAD && url.path().contains("/manifests/");
        self.rate_limits.observe(
            call.registry,
            status.as_u16(),
            response.headers(),
            manifest_head,
        );
    }
}

/// Another host, where the registry sent a request, asks for credentials: it gets none.
pub(crate) fn credentials_stay_home(call: &Call<'_>, url: &Url) -> RegistryError {
    RegistryError::Auth {
        registry: call.registry.to_owned(),
        operation: call.operation.to_owned(),
        status: 401,
        message: format!(
            "{} (where the registry sent this request) asks for credentials, which go only to \
             the registry itself",
            Origins::authority(url)
        ),
    }
}

pub(crate) fn unreachable(host: &str, registry: &str, why: Unreachable) -> RegistryError {
    RegistryError::Unreachable {
        host: host.to_owned(),
        registry: registry.to_owned(),
        why,
    }
}

/// Where a redirect answer points: `None` when it names nowhere, else the joined URL or why
/// it is bad.
fn redirect_target(response: &Response, from: &Url) -> Option<Result<Url, String>> {
    let location = response.headers().get(LOCATION)?;
    Some(
        location
            .to_str()
            .map_err(|_| "a redirect whose Location is not text".to_owned())
            .and_then(|l| {
                from.join(l)
                    .map_err(|e| format!("a redirect to a bad URL: {e}"))
            }),
    )
}

/// Reads `response` whole: a success body within `cap`, an error body's prefix.
pub(crate) async fn whole(
    response: Response,
    call: &Call<'_>,
    url: Url,
    cap: usize,
) -> Result<Reply, RegistryError> {
    read_whole(response, call.registry, call.operation, url, cap).await
}

/// [`whole`] for a request named by its registry and operation.
async fn read_whole(
    response: Response,
    registry: &str,
    operation: &str,
    url: Url,
    cap: usize,
) -> Result<Reply, RegistryError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = if status.is_success() {
        body::read_capped(response, cap)
            .await
            .map_err(|e| read_error(registry, operation, e, cap))?
    } else {
        body::read_prefix(response).await
    };
    Ok(Reply {
        status,
        headers,
        body,
        url,
    })
}

pub(crate) fn read_error(
    registry: &str,
    operation: &str,
    e: ReadFailure,
    cap: usize,
) -> RegistryError {
    match e {
        ReadFailure::TooLong => RegistryError::Protocol {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            message: format!("the answer is over the {} limit for it", size_text(cap)),
        },
        ReadFailure::Network(e) => RegistryError::network(registry, operation, &e),
    }
}

/// `4 MiB`, `64 KiB`, `100 bytes`.
fn size_text(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n}-byte"),
    }
}

pub(crate) fn protocol(call: &Call<'_>, message: String) -> RegistryError {
    RegistryError::Protocol {
        registry: call.registry.to_owned(),
        operation: call.operation.to_owned(),
        message,
    }
}
