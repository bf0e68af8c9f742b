//! The one way the authenticator reaches the network: token realms, named by a registry's
//! own challenge, asked through the transport as every request is (the rate-limit gate, a
//! slot, a deadline, retries, hosts that cannot be reached, an answer within a cap), as a web
//! API's call: credentials only in its own headers, to the realm's URL only, no redirect
//! followed, plain HTTP only to a host listed as insecure.

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};

use crate::body::MAX_TOKEN_BODY;
use crate::call::{Api, Call};
use crate::error::RegistryError;
use crate::transport::{protocol, Read, Round, Transport};

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

/// A narrow handle on the transport: it sends token realm requests, and can reach no
/// registry.
#[derive(Clone, Copy)]
pub(crate) struct Realms<'a> {
    transport: &'a Transport,
}

impl<'a> Realms<'a> {
    pub(crate) fn new(transport: &'a Transport) -> Self {
        Self { transport }
    }

    /// Asks a token realm (`realm`, named by `registry`'s own challenge) and reads its answer
    /// (at most [`MAX_TOKEN_BODY`]).
    pub(crate) async fn call(
        &self,
        registry: &str,
        realm: &Url,
        operation: &str,
        request: RealmRequest,
    ) -> Result<Bytes, RegistryError> {
        let call = match request {
            RealmRequest::Get {
                query,
                authorization,
            } => {
                let mut url = realm.clone();
                if !query.is_empty() {
                    url.query_pairs_mut().extend_pairs(query);
                }
                let mut call = Call::api(Api::Realm, registry, operation, Method::GET, url);
                if let Some(a) = authorization {
                    call.headers.insert(AUTHORIZATION, a);
                }
                call
            }
            RealmRequest::Post { form } => {
                Call::api(Api::Realm, registry, operation, Method::POST, realm.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form)
            }
        };
        let reply = match self
            .transport
            .send(&call, None, Read::Whole(MAX_TOKEN_BODY))
            .await?
        {
            Round::Whole(reply) | Round::Unauthorized(reply) => reply,
            Round::Streaming(_) => {
                return Err(protocol(
                    &call,
                    "internal: a whole answer was asked for".into(),
                ))
            }
        };
        if !reply.status.is_success() {
            return Err(reply.into_error(registry, operation));
        }
        Ok(reply.body)
    }
}
