//! The one way the authenticator reaches the network: token realms, named by a registry's
//! own challenge, asked through the transport's rules (origins, the rate-limit gate,
//! unreachable hosts, a cap and a deadline) and nothing else of it.

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Url;

use crate::body::MAX_TOKEN_BODY;
use crate::error::RegistryError;
use crate::transport::Transport;

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

/// A narrow handle on the transport: it sends token realm requests and retries them, and
/// can reach no registry.
#[derive(Clone, Copy)]
pub(crate) struct Realms<'a> {
    transport: &'a Transport,
}

impl<'a> Realms<'a> {
    pub(crate) fn new(transport: &'a Transport) -> Self {
        Self { transport }
    }

    /// Runs `op` with the registry retry policy.
    pub(crate) async fn with_retries<T, F, Fut>(&self, op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        self.transport.with_retries(op).await
    }

    /// Asks a token realm (`realm`, named by `registry`'s own challenge) and reads its answer
    /// (at most [`MAX_TOKEN_BODY`]) within the request deadline. A realm over plain HTTP is
    /// asked only when its host is listed as insecure, so credentials reach a realm only over
    /// TLS or on a host the user named.
    pub(crate) async fn call(
        &self,
        registry: &str,
        realm: &Url,
        operation: &str,
        request: RealmRequest,
    ) -> Result<Bytes, RegistryError> {
        self.transport.origins().check(registry, realm, operation)?;
        self.transport.wait_while_paused(registry).await?;
        let http = self.transport.http();
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
        let reply = self
            .transport
            .call_api(registry, operation, realm, builder, MAX_TOKEN_BODY)
            .await?;
        if !reply.status.is_success() {
            return Err(reply.into_error(registry, operation));
        }
        Ok(reply.body)
    }
}
