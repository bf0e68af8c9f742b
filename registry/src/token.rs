//! Bearer tokens for token-auth registries (Docker Hub, quay.io, ghcr.io, …): fetched from the
//! realm the registry's own challenge names, for a scope, one fetch at a time per registry
//! and scope, and cached until shortly before they expire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use crate::authorization::basic_auth_header;
use crate::credentials::Credential;
use crate::error::RegistryError;
use crate::realm::{RealmRequest, Realms};
use crate::scope::Scope;
use image_mirror_common::secret::Secret;

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// The token of a token answer, and its lifetime (the distribution spec's default: 60 s).
pub(crate) fn read_answer(body: &[u8]) -> Result<(String, Duration), String> {
    let answer: TokenAnswer = serde_json::from_slice(body)
        .map_err(|e| format!("token answer is not the expected JSON: {e}"))?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "token answer holds no token".to_owned())?;
    Ok((
        token,
        Duration::from_secs(answer.expires_in.unwrap_or(60).max(1)),
    ))
}

/// A token as cached: renewed a little before it expires.
struct Cached {
    token: Secret,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Tokens by registry and scope. One request per registry and scope fetches a token at a
/// time; the others wait for it and use it.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<(String, Scope), Slot>>,
    fetched: AtomicU64,
}

/// What a token is asked for: the registry whose challenge named the realm, the scope, the
/// credential to show, and the token a request just had refused (never handed out again).
pub(crate) struct TokenAsk<'a> {
    /// The registry host.
    pub(crate) registry: &'a str,
    /// The realm its challenge named.
    pub(crate) realm: &'a str,
    /// The challenge's `service`.
    pub(crate) service: Option<&'a str>,
    /// What the token must allow.
    pub(crate) scope: &'a Scope,
    /// The Docker config's credential for the registry.
    pub(crate) credential: Option<&'a Credential>,
    /// A token the registry refused.
    pub(crate) rejected: Option<&'a Secret>,
}

impl TokenCache {
    /// A valid token for the ask's scope at its registry: the cached one unless it is due for
    /// renewal or is the one rejected, else a new one from the realm.
    pub(crate) async fn get(
        &self,
        realms: Realms<'_>,
        ask: &TokenAsk<'_>,
    ) -> Result<Secret, RegistryError> {
        let TokenAsk {
            registry,
            realm,
            service,
            scope,
            credential,
            rejected,
        } = *ask;
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                slots
                    .entry((registry.to_owned(), scope.clone()))
                    .or_default(),
            )
        };
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.renew_at && rejected != Some(&c.token) {
                return Ok(c.token.clone());
            }
        }
        let realm = Url::parse(realm).map_err(|e| RegistryError::Protocol {
            registry: registry.to_owned(),
            operation: "fetch token".into(),
            message: format!("the challenge names a realm that is not a URL: {e}"),
        })?;
        let (token, lifetime) = fetch(realms, registry, &realm, service, scope, credential).await?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        // Renew a little early so that a token never expires in the middle of a request.
        let margin = (lifetime / 10)
            .max(Duration::from_secs(5))
            .min(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    /// Tokens fetched so far.
    pub(crate) fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

async fn fetch(
    realms: Realms<'_>,
    registry: &str,
    realm: &Url,
    service: Option<&str>,
    scope: &Scope,
    credential: Option<&Credential>,
) -> Result<(Secret, Duration), RegistryError> {
    let operation = "fetch token";
    let mut query: Vec<(&str, String)> = scope.values().into_iter().map(|v| ("scope", v)).collect();
    if let Some(s) = service {
        query.push(("service", s.to_owned()));
    }
    let request = match credential {
        Some(Credential::IdentityToken(refresh_token)) => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", refresh_token.expose().to_owned()),
                ("client_id", "image-mirror".to_owned()),
            ];
            form.extend(query.iter().cloned());
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            RealmRequest::Post {
                form: bytes::Bytes::from(body),
            }
        }
        Some(Credential::Basic { username, password }) => RealmRequest::Get {
            query,
            authorization: Some(basic_auth_header(username, password.expose())),
        },
        None => RealmRequest::Get {
            query,
            authorization: None,
        },
    };
    let body = realms.call(registry, realm, operation, request).await?;
    let (token, lifetime) = read_answer(&body).map_err(|message| RegistryError::Protocol {
        registry: registry.to_owned(),
        operation: operation.to_owned(),
        message,
    })?;
    Ok((Secret::new(token), lifetime))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
