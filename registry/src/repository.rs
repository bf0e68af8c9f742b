//! Whether a target repository can take an image: it exists, or the registry creates it on
//! the first push (found out by opening an upload session and abandoning it: nothing is
//! written), or neither.

use reqwest::header::CONTENT_LENGTH;
use reqwest::{Method, StatusCode};

use crate::body::{error_text, MAX_EMPTY_BODY, MAX_TAG_PAGE};
use crate::client::RegistryClient;
use crate::error::RegistryError;
use crate::scope::Scope;
use crate::transport::Call;
use image_mirror_common::reference::Repository;

/// What a registry says about a repository it would be asked to take an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryStatus {
    /// It exists.
    Exists,
    /// It does not exist yet, and the registry creates it on the first push.
    Creatable,
    /// It does not exist, or refuses pushes: why, as the registry said it.
    Refused(String),
}

impl RegistryClient {
    /// Whether `repo` exists, or would be created by a push, or neither.
    pub async fn repository_status(
        &self,
        repo: &Repository,
    ) -> Result<RepositoryStatus, RegistryError> {
        let registry = repo.registry();
        let scope = Scope::push(repo.path());
        let operation = format!("list tags of {}", repo.path());
        let url = self.repo_url(repo, "tags/list?n=1")?;
        let listed = self
            .operation({
                let call = Call::new(registry, &scope, &operation, Method::GET, url.clone());
                self.fetch(call, MAX_TAG_PAGE)
            })
            .await;
        match listed {
            Ok(reply) if reply.status == StatusCode::OK => return Ok(RepositoryStatus::Exists),
            Ok(reply) if reply.status != StatusCode::NOT_FOUND => {
                return Ok(RepositoryStatus::Refused(format!(
                    "HTTP {}: {}",
                    reply.status.as_u16(),
                    error_text(&reply.body)
                )))
            }
            Ok(_) => {}
            Err(RegistryError::Auth { message, .. }) => {
                return Ok(RepositoryStatus::Refused(message))
            }
            Err(e) => return Err(e),
        }
        self.probe_push(repo).await
    }

    /// Opens an upload session in `repo` and abandons it: a registry that opens one creates
    /// the repository on a push.
    async fn probe_push(&self, repo: &Repository) -> Result<RepositoryStatus, RegistryError> {
        let registry = repo.registry();
        let scope = Scope::push(repo.path());
        let operation = format!("start upload to {}", repo.path());
        let url = self.repo_url(repo, "blobs/uploads/")?;
        let call =
            Call::new(registry, &scope, &operation, Method::POST, url).header(CONTENT_LENGTH, "0");
        match self.fetch(call, MAX_EMPTY_BODY).await {
            Ok(reply) if reply.status == StatusCode::ACCEPTED => {
                if let Ok(upload) = self.upload_from_reply(repo, &operation, &reply) {
                    self.cancel_upload(repo, &upload).await;
                }
                Ok(RepositoryStatus::Creatable)
            }
            Ok(reply) => Ok(RepositoryStatus::Refused(format!(
                "HTTP {}: {}",
                reply.status.as_u16(),
                error_text(&reply.body)
            ))),
            Err(RegistryError::Auth { message, .. }) => Ok(RepositoryStatus::Refused(message)),
            Err(e) => Err(e),
        }
    }
}
