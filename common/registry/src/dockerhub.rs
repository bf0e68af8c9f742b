//! Docker Hub's web API, for the one thing the registry protocol cannot tell: whether a
//! repository exists (`GET /v2/namespaces/NS/repositories/REPO/`). A private repository needs
//! the Docker config's Docker Hub credentials, exchanged for a token at `/v2/users/login`;
//! they go to the Hub API only (its own origin, over TLS unless the URL was set otherwise for a
//! test). Answers are read within a cap and a deadline.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::OnceCell;

use crate::{Credential, DockerConfig};
use image_mirror_common::reference::Repository;
use image_mirror_common::secret::Secret;

/// The public Hub API.
pub const DEFAULT_HUB_API: &str = "https://hub.docker.com";
/// The largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;
/// The deadline of one request.
const DEADLINE: Duration = Duration::from_secs(30);

/// Why the Hub could not say.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Docker Hub API: {0}")]
pub struct HubError(pub String);

/// A Docker Hub API client; cheap to clone (clones share the login).
#[derive(Clone)]
pub struct DockerHub {
    base: String,
    http: reqwest::Client,
    docker_config: DockerConfig,
    token: std::sync::Arc<OnceCell<Option<Secret>>>,
}

impl DockerHub {
    /// A client for the API at `base` (default [`DEFAULT_HUB_API`]), with Docker Hub's
    /// credentials from `docker_config` when it has them.
    pub fn new(base: &str, docker_config: DockerConfig) -> Result<Self, HubError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(DEADLINE)
            .user_agent(concat!("image-mirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HubError(e.to_string()))?;
        reqwest::Url::parse(base).map_err(|e| HubError(format!("bad URL {base:?}: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            docker_config,
            token: std::sync::Arc::default(),
        })
    }

    /// Whether the Docker Hub repository `repo` exists.
    pub async fn repository_exists(&self, repo: &Repository) -> Result<bool, HubError> {
        let (namespace, name) = repo
            .path()
            .split_once('/')
            .ok_or_else(|| HubError(format!("{}: not NAMESPACE/REPOSITORY", repo.path())))?;
        let url = format!(
            "{}/v2/namespaces/{namespace}/repositories/{name}/",
            self.base
        );
        let mut request = self.http.get(&url);
        if let Some(token) = self.token().await? {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| HubError(e.to_string()))?;
        let status = response.status();
        let _ = read_capped(response).await;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(HubError(format!(
                "asking for {}: HTTP {}",
                repo.path(),
                other.as_u16()
            ))),
        }
    }

    /// A token for the Docker config's Docker Hub credentials, once; none without them.
    async fn token(&self) -> Result<Option<Secret>, HubError> {
        self.token
            .get_or_try_init(|| async {
                let credential = self
                    .docker_config
                    .credential_for(image_mirror_common::reference::DOCKER_HUB)
                    .await
                    .map_err(|e| HubError(e.to_string()))?;
                let Some(Credential::Basic { username, password }) = credential else {
                    return Ok(None);
                };
                let login =
                    serde_json::json!({"username": username, "password": password.expose()});
                let response = self
                    .http
                    .post(format!("{}/v2/users/login", self.base))
                    .json(&login)
                    .send()
                    .await
                    .map_err(|e| HubError(e.to_string()))?;
                if !response.status().is_success() {
                    return Err(HubError(format!(
                        "login refused (HTTP {})",
                        response.status().as_u16()
                    )));
                }
                let body = read_capped(response).await?;
                let token = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("token")?.as_str().map(str::to_owned))
                    .ok_or_else(|| HubError("the login answer holds no token".into()))?;
                Ok(Some(Secret::new(token)))
            })
            .await
            .cloned()
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, HubError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HubError(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(HubError("the answer is over 1 MiB".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
