//! Bearer tokens for token-auth registries (Docker Hub, quay.io, ghcr.io, …): fetched from the
//! realm a challenge names, for a scope, and cached until shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::registry::client::{basic_auth_header, status_error, RegistryClient};
use crate::registry::credentials::Credential;
use crate::registry::error::{network_message, RegistryError};
use crate::secret::Secret;

/// What a request needs access to: a repository, pull or push, and for cross-repository
/// mounts a second repository to pull from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The repository path.
    pub repository: String,
    /// Whether the request writes.
    pub push: bool,
    /// A repository to read from as well (mount source).
    pub also_pull: Option<String>,
}

impl Scope {
    /// Read access to `repository`.
    pub fn pull(repository: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            push: false,
            also_pull: None,
        }
    }

    /// Read and write access to `repository`.
    pub fn push(repository: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            push: true,
            also_pull: None,
        }
    }

    /// Write access to `repository` and read access to `from`, for a mount.
    pub fn mount(repository: &str, from: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            push: true,
            also_pull: Some(from.to_owned()),
        }
    }

    /// The `scope` query values.
    fn values(&self) -> Vec<String> {
        let actions = if self.push { "pull,push" } else { "pull" };
        let mut v = vec![format!("repository:{}:{actions}", self.repository)];
        if let Some(from) = &self.also_pull {
            v.push(format!("repository:{from}:pull"));
        }
        v
    }
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Tokens by registry and scope.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<(String, Scope), (Secret, Instant)>>,
}

impl TokenCache {
    /// A valid token for `scope` at `registry`, from the cache unless `refresh` or expired.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn get_or_fetch(
        &self,
        client: &RegistryClient,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
        credential: Option<&Credential>,
        refresh: bool,
    ) -> Result<Secret, RegistryError> {
        let key = (registry.to_owned(), scope.clone());
        if !refresh {
            let cached = self
                .tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            if let Some((token, until)) = cached {
                if Instant::now() < until {
                    return Ok(token);
                }
            }
        }
        let (token, lifetime) = client
            .with_retries(|| fetch(client, registry, realm, service, scope, credential))
            .await?;
        // Renew a little early so that a token never expires in the middle of a request.
        let until = Instant::now()
            + lifetime
                .saturating_sub(Duration::from_secs(10))
                .max(Duration::from_secs(5));
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (token.clone(), until));
        Ok(token)
    }
}

async fn fetch(
    client: &RegistryClient,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scope: &Scope,
    credential: Option<&Credential>,
) -> Result<(Secret, Duration), RegistryError> {
    let operation = "fetch token";
    let mut query: Vec<(&str, String)> = scope.values().into_iter().map(|v| ("scope", v)).collect();
    if let Some(s) = service {
        query.push(("service", s.to_owned()));
    }
    let http = client.http();
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
            http.post(realm)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        }
        Some(Credential::Basic { username, password }) => http.get(realm).query(&query).header(
            "authorization",
            basic_auth_header(username, password.expose()),
        ),
        None => http.get(realm).query(&query),
    };
    let response = request.send().await.map_err(|e| RegistryError::Network {
        registry: registry.to_owned(),
        operation: operation.to_owned(),
        message: network_message(&e),
    })?;
    if !response.status().is_success() {
        return Err(status_error(registry, operation, response).await);
    }
    let answer: TokenAnswer = response.json().await.map_err(|e| RegistryError::Protocol {
        registry: registry.to_owned(),
        operation: operation.to_owned(),
        message: format!(
            "token answer is not the expected JSON: {}",
            network_message(&e)
        ),
    })?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::Protocol {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            message: "token answer holds no token".into(),
        })?;
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(60));
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
    fn scope_values() {
        assert_eq!(Scope::pull("a/b").values(), ["repository:a/b:pull"]);
        assert_eq!(
            Scope::mount("a/b", "c/d").values(),
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
