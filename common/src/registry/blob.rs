//! Blobs: existence checks, downloads from an offset (HTTP `Range`), and uploads: monolithic
//! for small blobs, chunked (`PATCH` with `Content-Range`) for large ones, with the upload's
//! status read back after a failure so that it resumes where the registry stands, and
//! cross-repository mounts.

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Body, StatusCode, Url};

use crate::digest::Digest;
use crate::reference::Repository;
use crate::registry::client::{status_error, RegistryClient, UploadSlot};
use crate::registry::error::{network_message, RegistryError};
use crate::registry::manifest::protocol;
use crate::registry::token::Scope;

/// An open upload session at the target registry.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The newest `Location` the registry gave (only the newest is valid).
    pub location: Url,
    /// Bytes the registry has accepted.
    pub offset: u64,
    /// `OCI-Chunk-Min-Length`, when the registry sets one.
    pub min_chunk: Option<u64>,
}

/// The result of a mount request.
#[derive(Debug)]
pub enum Mount {
    /// The blob is now in the repository.
    Mounted,
    /// The registry did not mount it and opened an upload instead (202).
    Upload(Upload),
}

/// A download in progress: the response body as a stream of chunks.
pub struct BlobDownload {
    /// The first byte this download starts at.
    pub offset: u64,
    /// The body.
    pub response: reqwest::Response,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl BlobDownload {
    /// The next chunk of the body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, reqwest::Error> {
        self.response.chunk().await
    }
}

impl RegistryClient {
    /// Whether `repo` holds the blob `digest`.
    pub async fn blob_exists(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.with_retries(|| async {
            let registry = repo.registry();
            let operation = format!("HEAD blob {digest} in {}", repo.path());
            let url = self.repo_url(repo, &format!("blobs/{digest}"))?;
            let answer = self
                .send(registry, &Scope::pull(repo.path()), &operation, |http| {
                    http.head(url.clone())
                })
                .await?;
            match answer.response.status() {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(status_error(registry, &operation, answer.response).await),
            }
        })
        .await
    }

    /// Starts downloading blob `digest` of `repo` from byte `offset`.
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobDownload, RegistryError> {
        self.with_retries(|| async {
            let registry = repo.registry();
            let operation = format!("GET blob {digest} from {}", repo.path());
            let url = self.repo_url(repo, &format!("blobs/{digest}"))?;
            let answer = self
                .send(registry, &Scope::pull(repo.path()), &operation, |http| {
                    let r = http.get(url.clone());
                    if offset > 0 {
                        r.header(RANGE, format!("bytes={offset}-"))
                    } else {
                        r
                    }
                })
                .await?;
            let status = answer.response.status();
            let ok = if offset > 0 {
                status == StatusCode::PARTIAL_CONTENT
            } else {
                status == StatusCode::OK
            };
            if status == StatusCode::OK && offset > 0 {
                return Err(protocol(
                    registry,
                    &operation,
                    "the registry ignored the Range request".into(),
                ));
            }
            if !ok {
                return Err(status_error(registry, &operation, answer.response).await);
            }
            Ok(BlobDownload {
                offset,
                response: answer.response,
                _permit: answer.permit,
            })
        })
        .await
    }

    /// Opens an upload session in `repo`.
    pub async fn start_upload(&self, repo: &Repository) -> Result<Upload, RegistryError> {
        self.with_retries(|| async {
            let registry = repo.registry();
            let operation = format!("start upload to {}", repo.path());
            let url = self.repo_url(repo, "blobs/uploads/")?;
            let answer = self
                .send(registry, &Scope::push(repo.path()), &operation, |http| {
                    http.post(url.clone()).header(CONTENT_LENGTH, "0")
                })
                .await?;
            if answer.response.status() != StatusCode::ACCEPTED {
                return Err(status_error(registry, &operation, answer.response).await);
            }
            self.upload_from(repo, &operation, &answer.response)
        })
        .await
    }

    /// Asks the registry to mount `digest` into `repo` from `from` (same registry).
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        from: &Repository,
    ) -> Result<Mount, RegistryError> {
        self.with_retries(|| async {
            let registry = repo.registry();
            let operation = format!("mount {digest} into {} from {}", repo.path(), from.path());
            let mut url = self.repo_url(repo, "blobs/uploads/")?;
            url.query_pairs_mut()
                .append_pair("mount", digest.as_str())
                .append_pair("from", from.path());
            let answer = self
                .send(
                    registry,
                    &Scope::mount(repo.path(), from.path()),
                    &operation,
                    |http| http.post(url.clone()).header(CONTENT_LENGTH, "0"),
                )
                .await?;
            match answer.response.status() {
                StatusCode::CREATED => Ok(Mount::Mounted),
                StatusCode::ACCEPTED => Ok(Mount::Upload(self.upload_from(
                    repo,
                    &operation,
                    &answer.response,
                )?)),
                _ => Err(status_error(registry, &operation, answer.response).await),
            }
        })
        .await
    }

    fn upload_from(
        &self,
        repo: &Repository,
        operation: &str,
        response: &reqwest::Response,
    ) -> Result<Upload, RegistryError> {
        let location = self.location(repo, operation, response)?;
        let min_chunk = response
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(Upload {
            location,
            offset: range_end(response).unwrap_or(0),
            min_chunk,
        })
    }

    fn location(
        &self,
        repo: &Repository,
        operation: &str,
        response: &reqwest::Response,
    ) -> Result<Url, RegistryError> {
        let raw = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                protocol(
                    repo.registry(),
                    operation,
                    "no Location in the answer".into(),
                )
            })?;
        self.base_url(repo.registry())?
            .join(raw)
            .map_err(|e| protocol(repo.registry(), operation, format!("bad Location: {e}")))
    }

    /// Sends `len` bytes of `body` as the next chunk of `upload`, starting at its offset. On
    /// success the upload moves to the new location and offset. Not retried here: after a
    /// failure, ask [`upload_status`](Self::upload_status) where the registry stands.
    pub async fn upload_chunk<S>(
        &self,
        repo: &Repository,
        upload: &mut Upload,
        body: S,
        len: u64,
        slot: &UploadSlot,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let registry = repo.registry();
        let start = upload.offset;
        let operation = format!("upload bytes {start}+{len} to {}", repo.path());
        let request = self
            .http()
            .patch(upload.location.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_RANGE, format!("{start}-{}", start + len - 1))
            .header(CONTENT_LENGTH, len.to_string())
            .body(Body::wrap_stream(body));
        let answer = self
            .send_once(
                registry,
                &Scope::push(repo.path()),
                &operation,
                request,
                slot,
            )
            .await?;
        if answer.response.status() != StatusCode::ACCEPTED {
            return Err(status_error(registry, &operation, answer.response).await);
        }
        upload.location = self.location(repo, &operation, &answer.response)?;
        upload.offset = range_end(&answer.response).unwrap_or(start + len);
        Ok(())
    }

    /// Asks the registry how many bytes of `upload` it holds, and moves the upload to the
    /// location it answers with. `NotFound` when the session is gone.
    pub async fn upload_status(
        &self,
        repo: &Repository,
        upload: &mut Upload,
    ) -> Result<(), RegistryError> {
        let (location, offset) = self
            .with_retries(|| async {
                let registry = repo.registry();
                let operation = format!("upload status in {}", repo.path());
                let url = upload.location.clone();
                let answer = self
                    .send(registry, &Scope::push(repo.path()), &operation, |http| {
                        http.get(url.clone())
                    })
                    .await?;
                if answer.response.status() != StatusCode::NO_CONTENT {
                    return Err(status_error(registry, &operation, answer.response).await);
                }
                let location = self.location(repo, &operation, &answer.response)?;
                Ok((location, range_end(&answer.response).unwrap_or(0)))
            })
            .await?;
        upload.location = location;
        upload.offset = offset;
        Ok(())
    }

    /// Closes `upload` as blob `digest`; the registry checks the digest of what it received.
    pub async fn finish_upload(
        &self,
        repo: &Repository,
        upload: &Upload,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        self.with_retries(|| async {
            let registry = repo.registry();
            let operation = format!("finish upload of {digest} to {}", repo.path());
            let mut url = upload.location.clone();
            url.query_pairs_mut().append_pair("digest", digest.as_str());
            let answer = self
                .send(registry, &Scope::push(repo.path()), &operation, |http| {
                    http.put(url.clone()).header(CONTENT_LENGTH, "0")
                })
                .await?;
            if answer.response.status() != StatusCode::CREATED {
                return Err(status_error(registry, &operation, answer.response).await);
            }
            Ok(())
        })
        .await
    }

    /// Sends a whole blob of `len` bytes, streamed from `body`, in the request that closes
    /// `upload` (for blobs up to one chunk). Not retried here: a failed request leaves the
    /// session unusable, so the caller opens a new one.
    pub async fn put_blob_stream<S>(
        &self,
        repo: &Repository,
        upload: &Upload,
        digest: &Digest,
        body: S,
        len: u64,
        slot: &UploadSlot,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static,
    {
        let registry = repo.registry();
        let operation = format!("upload {digest} to {}", repo.path());
        let mut url = upload.location.clone();
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let request = self
            .http()
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, len.to_string())
            .body(Body::wrap_stream(body));
        let answer = self
            .send_once(
                registry,
                &Scope::push(repo.path()),
                &operation,
                request,
                slot,
            )
            .await?;
        if answer.response.status() != StatusCode::CREATED {
            return Err(status_error(registry, &operation, answer.response).await);
        }
        Ok(())
    }

    /// Abandons `upload` (best effort).
    pub async fn cancel_upload(&self, repo: &Repository, upload: &Upload) {
        let operation = format!("cancel upload to {}", repo.path());
        let url = upload.location.clone();
        let result = self
            .send(
                repo.registry(),
                &Scope::push(repo.path()),
                &operation,
                |http| http.delete(url.clone()),
            )
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "cancelling an upload failed");
        }
    }
}

/// The accepted length from a `Range: 0-N` header: N+1. Registries answer `0-0` for an empty
/// upload (distribution writes the same for one byte), so `0-0` reads as nothing accepted.
fn range_end(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(RANGE)?.to_str().ok()?;
    let (_, end) = value.trim_start_matches("bytes=").split_once('-')?;
    match end.trim().parse::<u64>().ok()? {
        0 => Some(0),
        n => Some(n + 1),
    }
}

/// A network error while reading a body.
pub fn body_error(repo: &Repository, what: &str, err: &reqwest::Error) -> RegistryError {
    RegistryError::Network {
        registry: repo.registry().to_owned(),
        operation: what.to_owned(),
        message: network_message(err),
    }
}
