//! The registry client: what the protocol operations (manifests, blobs, uploads, tags,
//! referrers, in their own modules) stand on. It pairs the transport (`transport.rs`: where a
//! request may go, caps, deadlines, limits, the rate-limit gate) with the authenticator
//! (`auth.rs`), and answers a registry's `401` once: its challenge learned, a token fetched,
//! the request sent again.

use std::time::Duration;

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::Url;

use crate::auth::{Auth, HostAuth};
use crate::authorization::Authorization;
use crate::bandwidth::Bandwidth;
use crate::body::StallRule;
use crate::error::RegistryError;
use crate::limits::UploadSlot;
use crate::options::ClientOptions;
use crate::origin::Origins;
use crate::ratelimit::QuotaView;
use crate::realm::Realms;
use crate::retry::RetryPolicy;
use crate::scope::Scope;
use crate::transport::{protocol, Call, ClientStats, Opened, Read, Reply, Round, Transport};
use crate::upload_limits::UploadLimits;
use image_mirror_common::secret::Secret;

/// A 401 to a request that carried a token its realm granted: the credentials were taken,
/// and the access they give does not cover this (a repository that does not exist, or may
/// not be pushed to), as Docker Hub answers `denied: requested access to the resource is
/// denied`.
fn denial(refused: RegistryError) -> RegistryError {
    match refused {
        RegistryError::Auth {
            registry,
            operation,
            status,
            message,
        } => RegistryError::Auth {
            registry,
            operation,
            status,
            message: format!(
                "denied: the token its realm granted does not give this access ({message})"
            ),
        },
        other => other,
    }
}

/// What precedes the credentials' source in an auth error's message.
const CREDENTIALS_NAMED: &str = "; credentials: ";

struct Inner {
    transport: Transport,
    auth: Auth,
    upload_limits: UploadLimits,
    bandwidth: std::sync::Arc<Bandwidth>,
}

/// A registry client; cheap to clone, shared by every copy in a process.
#[derive(Clone)]
pub struct RegistryClient {
    inner: std::sync::Arc<Inner>,
}

impl RegistryClient {
    /// A client with the given options.
    pub fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        let auth = Auth::new(options.docker_config.clone());
        let upload_limits = UploadLimits::new(options.upload_settings.clone());
        let bandwidth = std::sync::Arc::new(Bandwidth::new(&options.bandwidth));
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                transport: Transport::new(options)?,
                auth,
                upload_limits,
                bandwidth,
            }),
        })
    }

    /// The counters of this client.
    pub fn stats(&self) -> &ClientStats {
        self.inner.transport.stats()
    }

    /// Tokens fetched from token realms so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.inner.auth.tokens.fetched()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.options().retry
    }

    /// How fast blob bodies must move.
    pub fn stall_rule(&self) -> StallRule {
        self.options().stall
    }

    /// The bandwidth budget every blob byte moves through.
    pub fn bandwidth(&self) -> &std::sync::Arc<Bandwidth> {
        &self.inner.bandwidth
    }

    /// The deadline of requests without a blob body.
    pub fn request_timeout(&self) -> Duration {
        self.options().request_timeout
    }

    fn options(&self) -> &ClientOptions {
        self.inner.transport.options()
    }

    pub(crate) fn origins(&self) -> &Origins {
        self.inner.transport.origins()
    }

    /// How large each registry's upload requests may be: known, set, and learned.
    pub fn upload_limits(&self) -> &UploadLimits {
        &self.inner.upload_limits
    }

    /// What this process knows of each registry's quota, and what it spent: pulls, HEADs,
    /// refusals, pauses.
    pub fn quotas(&self) -> Vec<(String, QuotaView)> {
        self.inner.transport.rate_limits().views()
    }

    /// A slot in `registry`'s pool of blob uploads, held by one blob copy from its first byte
    /// to its last. Uploads have their own pool, taken before the source is read: a copy holds
    /// its upload slot, then a request slot for its download, always in that order, and lets
    /// go of the download before its other requests, so copies within one registry cannot wait
    /// on each other.
    pub async fn upload_slot(&self, registry: &str) -> Result<UploadSlot, RegistryError> {
        self.inner.transport.limits().upload_slot(registry).await
    }

    /// `<base>/v2/<repository path>/<tail>`.
    pub(crate) fn repo_url(
        &self,
        repo: &image_mirror_common::Repository,
        tail: &str,
    ) -> Result<Url, RegistryError> {
        self.origins()
            .base_url(repo.registry())?
            .join(&format!("v2/{}/{tail}", repo.path()))
            .map_err(|e| RegistryError::Protocol {
                registry: repo.registry().to_owned(),
                operation: "build URL".into(),
                message: e.to_string(),
            })
    }

    /// `op`, an operation of several requests (each sent through the transport, retried there
    /// while it fails for now), with an authentication failure naming the credentials
    /// consulted.
    pub(crate) async fn operation<T, Fut>(&self, op: Fut) -> Result<T, RegistryError>
    where
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        op.await.map_err(|e| self.naming_credentials(e))
    }

    /// Sends a web API's `call` (Docker Hub's) through the transport, as every request is
    /// sent, and reads its whole answer within `cap`.
    pub(crate) async fn call_api(
        &self,
        call: Call<'_>,
        cap: usize,
    ) -> Result<Reply, RegistryError> {
        match self
            .inner
            .transport
            .send(&call, None, Read::Whole(cap))
            .await?
        {
            Round::Whole(reply) | Round::Unauthorized(reply) => Ok(reply),
            Round::Streaming(_) => Err(protocol(
                &call,
                "internal: a whole answer was asked for".into(),
            )),
        }
    }

    /// The Docker config's credential for `registry`, read once.
    pub(crate) async fn credential(
        &self,
        registry: &str,
    ) -> Result<Option<crate::credentials::Credential>, RegistryError> {
        self.inner.auth.credential(registry).await
    }

    /// The `Authorization` for a request to `registry`'s own origin within `scope`, if due.
    async fn authorization(
        &self,
        registry: &str,
        scope: &Scope,
        rejected: Option<&Secret>,
    ) -> Result<Option<Authorization>, RegistryError> {
        let realms = Realms::new(&self.inner.transport);
        self.inner
            .auth
            .authorization(realms, registry, scope, rejected)
            .await
    }

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
        match self.request(&call, Read::Stream).await? {
            Round::Streaming(opened) => Ok(Ok(opened)),
            Round::Whole(reply) | Round::Unauthorized(reply) => Ok(Err(reply)),
        }
    }

    /// Sends `call` with a streamed `body`, once (it cannot be sent again), in the blob's
    /// upload slot, after the registry's rate-limit gate as every request. No deadline here:
    /// the caller watches the body move. A `401` renews the token and is reported as
    /// [`RegistryError::TokenRenewed`], for the caller to resume.
    pub(crate) async fn send_stream(
        &self,
        call: Call<'_>,
        body: reqwest::Body,
        slot: &UploadSlot,
    ) -> Result<Reply, RegistryError> {
        self.send_stream_once(call, body, slot)
            .await
            .map_err(|e| self.naming_credentials(e))
    }

    async fn send_stream_once(
        &self,
        call: Call<'_>,
        body: reqwest::Body,
        slot: &UploadSlot,
    ) -> Result<Reply, RegistryError> {
        let transport = &self.inner.transport;
        let auth = self.authorization(call.registry, call.scope, None).await?;
        match transport
            .send_body(&call, auth.as_ref(), body, slot)
            .await?
        {
            Round::Unauthorized(reply) => Err(self.renew_after_401(&call, auth, reply).await),
            Round::Whole(reply) => Ok(reply),
            Round::Streaming(..) => Err(protocol(
                &call,
                "internal: an upload's answer is read whole".into(),
            )),
        }
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

    /// `e`, when it is a refusal of credentials, saying which were consulted (never the
    /// secret): the helper, the store or the Docker config entry, or none.
    fn naming_credentials(&self, e: RegistryError) -> RegistryError {
        match e {
            RegistryError::Auth {
                registry,
                operation,
                status,
                message,
            } if !message.contains(CREDENTIALS_NAMED) => {
                let source = self.inner.auth.source_of(&registry);
                RegistryError::Auth {
                    message: format!("{message}{CREDENTIALS_NAMED}{source}"),
                    registry,
                    operation,
                    status,
                }
            }
            other => other,
        }
    }

    /// Sends `call` through the transport (the rate-limit gate, a slot, the deadline, the
    /// retries), answering one 401 challenge of the registry's; a refusal names the
    /// credentials consulted.
    async fn request(&self, call: &Call<'_>, read: Read) -> Result<Round, RegistryError> {
        self.challenged(call, read)
            .await
            .map_err(|e| self.naming_credentials(e))
    }

    async fn challenged(&self, call: &Call<'_>, read: Read) -> Result<Round, RegistryError> {
        let transport = &self.inner.transport;
        let mut rejected: Option<Secret> = None;
        for round in 0..2 {
            let auth = self
                .authorization(call.registry, call.scope, rejected.as_ref())
                .await?;
            let exchanged = transport.send(call, auth.as_ref(), read).await?;
            let Round::Unauthorized(reply) = exchanged else {
                return Ok(exchanged);
            };
            let learned = HostAuth::from_challenge(reply.header(WWW_AUTHENTICATE.as_str()));
            if round == 1 || learned == HostAuth::Anonymous {
                let refused = reply.into_error(call.registry, call.operation);
                let granted = auth.as_ref().is_some_and(|a| a.token.is_some());
                return Err(if granted { denial(refused) } else { refused });
            }
            self.inner.auth.learn(call.registry, learned);
            rejected = auth.and_then(|a| a.token);
        }
        Err(RegistryError::Auth {
            registry: call.registry.to_owned(),
            operation: call.operation.to_owned(),
            status: 401,
            message: "unauthorized".into(),
        })
    }
}
