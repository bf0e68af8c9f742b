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
//! - A `401` from the registry is answered once: its challenge is learned, a token fetched.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::sync::OwnedSemaphorePermit;

use crate::auth::{Authorization, HostAuth};
use crate::body::{self, ReadFailure, MAX_ERROR_BODY, MAX_TOKEN_BODY};
use crate::client::RegistryClient;
use crate::error::{RegistryError, Unreachable};
use crate::limits::UploadSlot;
use crate::origin::{Destination, Origins};
use crate::ratelimit::{Gate, PullTicket};
use crate::retry::parse_retry_after;
use crate::token::Scope;
use image_mirror_common::secret::Secret;

/// Redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// The pause before a host that could not be reached is tried again, once.
const UNREACHABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One request to a registry: where, what for, and what it carries.
pub(crate) struct Call<'a> {
    pub(crate) registry: &'a str,
    pub(crate) scope: &'a Scope,
    pub(crate) operation: &'a str,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// A manifest GET: a pull, as Docker Hub counts them, within the registry's budget.
    pub(crate) pull: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(
        registry: &'a str,
        scope: &'a Scope,
        operation: &'a str,
        method: Method,
        url: Url,
    ) -> Self {
        Self {
            registry,
            scope,
            operation,
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            pull: false,
        }
    }

    /// Marks the call as a pull (a manifest GET).
    pub(crate) fn pull(mut self) -> Self {
        self.pull = true;
        self
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }
}

/// A whole answer: its status, headers and body (for an error status, the first few KiB).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The URL that answered (after redirects).
    pub(crate) url: Url,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error this answer means: 404 `NotFound`, 401/403 `Auth`, else `Status` with its
    /// `Retry-After`.
    pub(crate) fn into_error(self, registry: &str, operation: &str) -> RegistryError {
        let retry_after = self.header("retry-after").and_then(parse_retry_after);
        let detail = body::error_text(&self.body);
        match self.status.as_u16() {
            404 => RegistryError::NotFound {
                registry: registry.to_owned(),
                operation: operation.to_owned(),
            },
            code @ (401 | 403) => RegistryError::Auth {
                registry: registry.to_owned(),
                operation: operation.to_owned(),
                status: code,
                message: if detail.is_empty() {
                    "unauthorized".into()
                } else {
                    detail
                },
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
}

/// A streamed answer (a blob body), holding its request slot while it is read.
pub(crate) struct Opened {
    pub(crate) response: Response,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// A request to a token realm.
pub(crate) enum RealmRequest {
    /// `GET realm?scope=…&service=…`, with Basic credentials when due.
    Get {
        query: Vec<(&'static str, String)>,
        authorization: Option<HeaderValue>,
    },
    /// `POST realm` with an OAuth2 form (a refresh token).
    Post { form: Bytes },
}

/// How an answer's body is taken.
#[derive(Clone, Copy)]
enum Read {
    /// Whole, at most this many bytes.
    Whole(usize),
    /// Left in the response, for the caller to stream.
    Stream,
}

/// What one round of a request ended with.
enum Round {
    Whole(Reply),
    Streaming(Response),
    /// The registry itself answered 401.
    Unauthorized(Reply),
}

impl RegistryClient {
    /// Sends `call` and reads its whole answer within the request deadline: a success body of
    /// at most `cap` bytes (longer is an error), an error body's first few KiB. GET and HEAD
    /// follow redirects.
    pub(crate) async fn fetch(&self, call: Call<'_>, cap: usize) -> Result<Reply, RegistryError> {
        match self.request(&call, Read::Whole(cap)).await? {
            Round::Whole(reply) => Ok(reply),
            Round::Streaming(..) | Round::Unauthorized(_) => Err(protocol(
                &call,
                "internal: a whole answer was asked for".into(),
            )),
        }
    }

    /// Sends `call` (a GET) and returns the answer with its body unread when it succeeds,
    /// holding a request slot; an error status comes back as a [`Reply`].
    pub(crate) async fn open(
        &self,
        call: Call<'_>,
    ) -> Result<Result<Opened, Reply>, RegistryError> {
        let permit = self.permit(call.registry).await?;
        match self.request(&call, Read::Stream).await? {
            Round::Streaming(response) => Ok(Ok(Opened { response, permit })),
            Round::Whole(reply) | Round::Unauthorized(reply) => Ok(Err(reply)),
        }
    }

    /// Sends `call` with a streamed `body`, once (it cannot be sent again), in an upload slot,
    /// after the registry's rate-limit gate as every request. No deadline here: the caller
    /// watches the body move. A `401` renews the token and is reported as
    /// [`RegistryError::TokenRenewed`], for the caller to resume.
    pub(crate) async fn send_stream(
        &self,
        call: Call<'_>,
        body: reqwest::Body,
        _slot: &UploadSlot,
    ) -> Result<Reply, RegistryError> {
        let _ticket = self.pass_gate(&call).await?;
        let auth = self.authorization(call.registry, call.scope, None).await?;
        let (response, destination) = self
            .hop(&call, &call.url, auth.as_ref(), Some(body))
            .await?;
        let status = response.status();
        let url = call.url.clone();
        if status == StatusCode::UNAUTHORIZED {
            let reply = whole(response, &call, url, MAX_ERROR_BODY).await?;
            if destination == Destination::Elsewhere {
                return Err(credentials_stay_home(&call, &reply.url));
            }
            return Err(self.renew_after_401(&call, auth, reply).await);
        }
        whole(response, &call, url, body::MAX_EMPTY_BODY).await
    }

    /// A `401` in the middle of an upload: a token that expired or was revoked is renewed, and
    /// the caller resumes; anything else is an auth error.
    async fn renew_after_401(
        &self,
        call: &Call<'_>,
        auth: Option<Authorization>,
        reply: Reply,
    ) -> RegistryError {
        let rejected = auth.and_then(|a| a.token);
        if rejected.is_none() {
            return reply.into_error(call.registry, call.operation);
        }
        match self
            .authorization(call.registry, call.scope, rejected.as_ref())
            .await
        {
            Ok(_) => RegistryError::TokenRenewed {
                registry: call.registry.to_owned(),
                operation: call.operation.to_owned(),
            },
            Err(e) => e,
        }
    }

    /// Asks a token realm (`realm`, named by `registry`'s own challenge) and reads its answer
    /// (at most [`MAX_TOKEN_BODY`]) within the request deadline. A realm over plain HTTP is
    /// asked only when its host is listed as insecure, so credentials reach a realm only over
    /// TLS or on a host the user named.
    pub(crate) async fn call_realm(
        &self,
        registry: &str,
        realm: &Url,
        operation: &str,
        request: RealmRequest,
    ) -> Result<Bytes, RegistryError> {
        self.origins().check(registry, realm, operation)?;
        self.wait_while_paused(registry).await?;
        let host = Origins::authority(realm);
        if let Some(why) = self.unreachable_hosts().get(&host) {
            return Err(unreachable(&host, registry, why));
        }
        let http = self.http();
        let builder = match request {
            RealmRequest::Get {
                query,
                authorization,
            } => {
                let b = http.get(realm.clone()).query(&query);
                match authorization {
                    Some(a) => b.header(AUTHORIZATION, a),
                    None => b,
                }
            }
            RealmRequest::Post { form } => http
                .post(realm.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
        };
        let deadline = self.options().request_timeout;
        let exchange = async {
            let response = builder
                .send()
                .await
                .map_err(|e| RegistryError::network_at(&host, registry, operation, &e))?;
            let status = response.status();
            if !status.is_success() {
                let body = body::read_prefix(response).await;
                return Err(Reply {
                    status,
                    headers: HeaderMap::new(),
                    body,
                    url: realm.clone(),
                }
                .into_error(registry, operation));
            }
            body::read_capped(response, MAX_TOKEN_BODY)
                .await
                .map_err(|e| read_error(registry, operation, e, MAX_TOKEN_BODY))
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RegistryError::timeout(registry, operation, deadline)),
        }
    }

    /// Waits while `registry` is paused for a burst (a plain 429): requests that are not
    /// pulls (a token for it, say) wait as every other request does.
    async fn wait_while_paused(&self, registry: &str) -> Result<(), RegistryError> {
        let limits = self.rate_limits();
        loop {
            match limits.gate(registry, false)? {
                Gate::Wait(until) => limits.wait(registry, until).await,
                Gate::Go(_) | Gate::Probe => return Ok(()),
            }
        }
    }

    /// Waits until the registry's rate limit lets `call` go (probing the quota with a free
    /// HEAD when it is this request's turn); fails when the wait would be too long.
    async fn pass_gate(&self, call: &Call<'_>) -> Result<Option<PullTicket>, RegistryError> {
        let limits = self.rate_limits();
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
                    let auth = self.authorization(call.registry, call.scope, None).await;
                    let deadline = self.options().request_timeout;
                    if let Ok(auth) = auth {
                        let head = self.hop(&probe, &probe.url, auth.as_ref(), None);
                        let _ = tokio::time::timeout(deadline, head).await;
                    }
                    limits.probed(call.registry);
                }
            }
        }
    }

    /// Sends `call`, answering one 401 challenge of the registry's.
    async fn request(&self, call: &Call<'_>, read: Read) -> Result<Round, RegistryError> {
        let _ticket = self.pass_gate(call).await?;
        let mut rejected: Option<Secret> = None;
        for round in 0..2 {
            let auth = self
                .authorization(call.registry, call.scope, rejected.as_ref())
                .await?;
            let deadline = self.options().request_timeout;
            let exchanged = match read {
                Read::Whole(_) => {
                    let permit = self.permit(call.registry).await?;
                    let r =
                        tokio::time::timeout(deadline, self.exchange(call, auth.as_ref(), read))
                            .await
                            .map_err(|_| {
                                RegistryError::timeout(call.registry, call.operation, deadline)
                            });
                    drop(permit);
                    r??
                }
                Read::Stream => {
                    tokio::time::timeout(deadline, self.exchange(call, auth.as_ref(), read))
                        .await
                        .map_err(|_| {
                            RegistryError::timeout(call.registry, call.operation, deadline)
                        })??
                }
            };
            let Round::Unauthorized(reply) = exchanged else {
                return Ok(exchanged);
            };
            let learned = HostAuth::from_challenge(reply.header(WWW_AUTHENTICATE.as_str()));
            if round == 1 || learned == HostAuth::Anonymous {
                return Err(reply.into_error(call.registry, call.operation));
            }
            self.auth().learn(call.registry, learned);
            rejected = auth.and_then(|a| a.token);
        }
        Err(RegistryError::Auth {
            registry: call.registry.to_owned(),
            operation: call.operation.to_owned(),
            status: 401,
            message: "unauthorized".into(),
        })
    }

    /// One round: the request, its redirects, and its answer read as asked.
    async fn exchange(
        &self,
        call: &Call<'_>,
        auth: Option<&Authorization>,
        read: Read,
    ) -> Result<Round, RegistryError> {
        let follows = call.method == Method::GET || call.method == Method::HEAD;
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
            if status == StatusCode::UNAUTHORIZED {
                let reply = whole(response, call, url, MAX_ERROR_BODY).await?;
                if destination == Destination::Registry {
                    return Ok(Round::Unauthorized(reply));
                }
                return Err(credentials_stay_home(call, &reply.url));
            }
            return match read {
                Read::Stream if status.is_success() => Ok(Round::Streaming(response)),
                Read::Stream => Ok(Round::Whole(
                    whole(response, call, url, MAX_ERROR_BODY).await?,
                )),
                Read::Whole(cap) => Ok(Round::Whole(whole(response, call, url, cap).await?)),
            };
        }
        Err(protocol(
            call,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// One HTTP request to `url` on `call`'s behalf: refused when the rules forbid it, with
    /// the registry's credentials only on its own origin.
    async fn hop(
        &self,
        call: &Call<'_>,
        url: &Url,
        auth: Option<&Authorization>,
        body: Option<reqwest::Body>,
    ) -> Result<(Response, Destination), RegistryError> {
        let destination = self.origins().check(call.registry, url, call.operation)?;
        let host = Origins::authority(url);
        if let Some(why) = self.unreachable_hosts().get(&host) {
            return Err(unreachable(&host, call.registry, why));
        }
        let replayable = body.is_none() || call.body.is_some();
        let mut body = body;
        let mut tried_again = false;
        loop {
            let mut request = self
                .http()
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
                    self.unreachable_hosts().forget(&host);
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
                        self.unreachable_hosts().remember(
                            &host,
                            *why,
                            self.options().unreachable_cooldown,
                        );
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
            self.count_429(call.registry);
        }
        let manifest_head = call.method == Method::HEAD && url.path().contains("/manifests/");
        self.rate_limits().observe(
            call.registry,
            status.as_u16(),
            response.headers(),
            manifest_head,
        );
    }
}

/// Another host, where the registry sent a request, asks for credentials: it gets none.
fn credentials_stay_home(call: &Call<'_>, url: &Url) -> RegistryError {
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

fn unreachable(host: &str, registry: &str, why: Unreachable) -> RegistryError {
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
async fn whole(
    response: Response,
    call: &Call<'_>,
    url: Url,
    cap: usize,
) -> Result<Reply, RegistryError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = if status.is_success() {
        body::read_capped(response, cap)
            .await
            .map_err(|e| read_error(call.registry, call.operation, e, cap))?
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

fn read_error(registry: &str, operation: &str, e: ReadFailure, cap: usize) -> RegistryError {
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

fn protocol(call: &Call<'_>, message: String) -> RegistryError {
    RegistryError::Protocol {
        registry: call.registry.to_owned(),
        operation: call.operation.to_owned(),
        message,
    }
}
