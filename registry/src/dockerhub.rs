//! Docker Hub's web API, for the one thing the registry protocol cannot tell: whether a
//! repository exists (`GET /v2/namespaces/NS/repositories/REPO/`).
//!
//! It goes through the registry client's transport, so its requests follow the same rules:
//! one HTTP client and TLS trust, no redirects followed, hosts that cannot be reached
//! remembered, every answer read within a cap and the request deadline.
//!
//! Credentials: the one place where a registry's credentials go to a host other than the
//! registry's own. Docker Hub's API (`hub.docker.com`, or the URL `--docker-hub-api` names)
//! is Docker Hub's own service, and a private repository there can only be seen with the
//! Docker config's credentials for `docker.io`, exchanged for a token at `/v2/users/login`.
//! They go to that API's origin and nowhere else: not to a redirect (none is followed), and
//! over TLS unless the URL was set otherwise (for a test).

use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use tokio::sync::OnceCell;

use crate::call::{Api, Call};
use crate::client::RegistryClient;
use crate::credentials::Credential;
use image_mirror_common::reference::{Repository, DOCKER_HUB};
use image_mirror_common::secret::Secret;

/// The public Hub API.
pub const DEFAULT_HUB_API: &str = "https://hub.docker.com";
/// The largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// Why the Hub could not say.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Docker Hub API: {0}")]
pub struct HubError(pub String);

/// A Docker Hub API client; cheap to clone (clones share the login).
#[derive(Clone)]
pub struct DockerHub {
    base: Url,
    client: RegistryClient,
    token: Arc<OnceCell<Option<Secret>>>,
}

impl DockerHub {
    /// A client for the API at `base` (default [`DEFAULT_HUB_API`]) through `client`'s
    /// transport, with Docker Hub's credentials from its Docker config when it has them.
    pub fn new(base: &str, client: &RegistryClient) -> Result<Self, HubError> {
        let base = format!("{}/", base.trim_end_matches('/'));
        let base = Url::parse(&base).map_err(|e| HubError(format!("bad URL {base:?}: {e}")))?;
        Ok(Self {
            base,
            client: client.clone(),
            token: Arc::default(),
        })
    }

    /// Whether the Docker Hub repository `repo` exists.
    pub async fn repository_exists(&self, repo: &Repository) -> Result<bool, HubError> {
        let (namespace, name) = repo
            .path()
            .split_once('/')
            .ok_or_else(|| HubError(format!("{}: not NAMESPACE/REPOSITORY", repo.path())))?;
        let url = self.url(&format!("v2/namespaces/{namespace}/repositories/{name}/"))?;
        let operation = format!("ask whether {} exists", repo.path());
        let mut call = Call::api(Api::Named, DOCKER_HUB, &operation, Method::GET, url);
        if let Some(token) = self.token().await? {
            call = call.header(AUTHORIZATION, &format!("Bearer {}", token.expose()));
        }
        let reply = self
            .client
            .call_api(call, MAX_ANSWER)
            .await
            .map_err(|e| HubError(e.to_string()))?;
        match reply.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(HubError(format!(
                "asking for {}: HTTP {}",
                repo.path(),
                other.as_u16()
            ))),
        }
    }

    fn url(&self, path: &str) -> Result<Url, HubError> {
        self.base
            .join(path)
            .map_err(|e| HubError(format!("{path}: {e}")))
    }

    /// A token for the Docker config's Docker Hub credentials, once; none without them.
    async fn token(&self) -> Result<Option<Secret>, HubError> {
        self.token
            .get_or_try_init(|| async {
                let credential = self
                    .client
                    .credential(DOCKER_HUB)
                    .await
                    .map_err(|e| HubError(e.to_string()))?;
                let Some(Credential::Basic { username, password }) = credential else {
                    return Ok(None);
                };
                let login =
                    serde_json::json!({"username": username, "password": password.expose()});
                let url = self.url("v2/users/login")?;
                let call = Call::api(
                    Api::Named,
                    DOCKER_HUB,
                    "log in to Docker Hub",
                    Method::POST,
                    url,
                )
                .header(CONTENT_TYPE, "application/json")
                .body(login.to_string().into());
                let reply = self
                    .client
                    .call_api(call, MAX_ANSWER)
                    .await
                    .map_err(|e| HubError(e.to_string()))?;
                if !reply.status.is_success() {
                    return Err(HubError(format!(
                        "login refused (HTTP {})",
                        reply.status.as_u16()
                    )));
                }
                let token = serde_json::from_slice::<serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("token")?.as_str().map(str::to_owned))
                    .ok_or_else(|| HubError("the login answer holds no token".into()))?;
                Ok(Some(Secret::new(token)))
            })
            .await
            .cloned()
    }
}
