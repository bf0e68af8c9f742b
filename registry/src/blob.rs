//! Blobs: existence checks, downloads from an offset (HTTP `Range`), and uploads: monolithic
//! for small blobs, chunked (`PATCH` with `Content-Range`) for large ones, with the upload's
//! status read back after a failure so that it resumes where the registry stands, and
//! cross-repository mounts.

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Body, Method, StatusCode, Url};
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{Watchdog, MAX_EMPTY_BODY};
use crate::client::RegistryClient;
use crate::error::{NetworkFailure, RegistryError};
use crate::limits::UploadSlot;
use crate::manifest::protocol;
use crate::origin::{Destination, Origins};
use crate::scope::Scope;
use crate::transport::{Call, Reply};
use crate::upload_limits::{limit_in_message, says_too_large};
use image_mirror_common::digest::Digest;
use image_mirror_common::reference::Repository;

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

/// A download in progress: the response body as a stream of chunks, watched for stalls.
pub struct BlobDownload {
    /// The first byte this download starts at.
    pub offset: u64,
    response: reqwest::Response,
    _permit: OwnedSemaphorePermit,
    watchdog: Watchdog,
    bandwidth: std::sync::Arc<crate::bandwidth::Bandwidth>,
    registry: String,
    operation: String,
}

impl BlobDownload {
    /// The next chunk of the body, `None` at its end. A body that stops moving (fewer bytes
    /// than the stall rule asks for in a window) is a transient `Stalled` error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        match self.watchdog.guard(self.response.chunk()).await {
            Ok(Ok(Some(bytes))) => {
                self.watchdog.moved(bytes.len());
                let waited = self
                    .bandwidth
                    .take(&self.registry, bytes.len(), crate::bandwidth::Way::Down)
                    .await;
                self.watchdog.paused(waited);
                Ok(Some(bytes))
            }
            Ok(Ok(None)) => Ok(None),
            Ok(Err(e)) => Err(RegistryError::network(&self.registry, &self.operation, &e)),
            Err(stalled) => Err(RegistryError::Network {
                registry: self.registry.clone(),
                operation: self.operation.clone(),
                message: stalled.to_string(),
                failure: NetworkFailure::Stalled,
            }),
        }
    }
}

impl RegistryClient {
    /// Whether `repo` holds the blob `digest`.
    pub async fn blob_exists(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.operation(async {
            let registry = repo.registry();
            let operation = format!("HEAD blob {digest} in {}", repo.path());
            let url = self.repo_url(repo, &format!("blobs/{digest}"))?;
            let scope = Scope::pull(repo.path());
            let reply = self
                .fetch(
                    Call::new(registry, &scope, &operation, Method::HEAD, url),
                    MAX_EMPTY_BODY,
                )
                .await?;
            match reply.status {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(reply.into_error(registry, &operation)),
            }
        })
        .await
    }

    /// Starts downloading blob `digest` (of `size` bytes) of `repo` from byte `offset`. An
    /// answer announcing more bytes than are left is refused.
    pub async fn get_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        offset: u64,
        size: u64,
    ) -> Result<BlobDownload, RegistryError> {
        self.operation(async {
            let registry = repo.registry();
            let operation = format!("GET blob {digest} from {}", repo.path());
            let url = self.repo_url(repo, &format!("blobs/{digest}"))?;
            let scope = Scope::pull(repo.path());
            let mut call = Call::new(registry, &scope, &operation, Method::GET, url);
            if offset > 0 {
                call = call.header(RANGE, &format!("bytes={offset}-"));
            }
            let opened = match self.open(call).await? {
                Ok(opened) => opened,
                Err(reply) => return Err(reply.into_error(registry, &operation)),
            };
            let status = opened.response.status();
            if offset > 0 && status != StatusCode::PARTIAL_CONTENT {
                return Err(protocol(
                    registry,
                    &operation,
                    "the registry ignored the Range request".into(),
                ));
            }
            if offset == 0 && status != StatusCode::OK {
                return Err(protocol(
                    registry,
                    &operation,
                    format!("unexpected HTTP {status} for a whole blob"),
                ));
            }
            let left = size.saturating_sub(offset);
            if let Some(len) = opened.response.content_length().filter(|n| *n > left) {
                return Err(protocol(
                    registry,
                    &operation,
                    format!("the answer announces {len} bytes, the descriptor leaves {left}"),
                ));
            }
            Ok(BlobDownload {
                offset,
                response: opened.response,
                _permit: opened.permit,
                watchdog: Watchdog::new(self.stall_rule()),
                bandwidth: std::sync::Arc::clone(self.bandwidth()),
                registry: registry.to_owned(),
                operation: operation.clone(),
            })
        })
        .await
    }

    /// Opens an upload session in `repo`.
    pub async fn start_upload(&self, repo: &Repository) -> Result<Upload, RegistryError> {
        self.operation(async {
            let registry = repo.registry();
            let operation = format!("start upload to {}", repo.path());
            let url = self.repo_url(repo, "blobs/uploads/")?;
            let scope = Scope::push(repo.path());
            let call = Call::new(registry, &scope, &operation, Method::POST, url)
                .header(CONTENT_LENGTH, "0");
            let reply = self.fetch(call, MAX_EMPTY_BODY).await?;
            if reply.status != StatusCode::ACCEPTED {
                return Err(reply.into_error(registry, &operation));
            }
            self.upload_from(repo, &operation, &reply)
        })
        .await
    }

    /// The upload session at `location` in `repo`, as another worker left it. Only a
    /// location on the registry's own origin is taken (it came through the broker, not from
    /// the registry); ask [`upload_status`](Self::upload_status) where it stands before
    /// sending.
    pub fn resumed_upload(
        &self,
        repo: &Repository,
        location: &str,
    ) -> Result<Upload, RegistryError> {
        let operation = format!("resume upload to {}", repo.path());
        let bad = |why: String| protocol(repo.registry(), &operation, why);
        let url = Url::parse(location).map_err(|e| bad(format!("bad upload location: {e}")))?;
        let what = format!("{operation}: the upload location");
        if self.origins().check(repo.registry(), &url, &what)? != Destination::Registry {
            return Err(bad("the upload location is not on the registry".into()));
        }
        Ok(Upload {
            location: url,
            offset: 0,
            min_chunk: None,
        })
    }

    /// Asks the registry to mount `digest` into `repo` from `from` (same registry).
    pub async fn mount_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        from: &Repository,
    ) -> Result<Mount, RegistryError> {
        self.operation(async {
            let registry = repo.registry();
            let operation = format!("mount {digest} into {} from {}", repo.path(), from.path());
            let mut url = self.repo_url(repo, "blobs/uploads/")?;
            url.query_pairs_mut()
                .append_pair("mount", digest.as_str())
                .append_pair("from", from.path());
            let scope = Scope::mount(repo.path(), from.path());
            let call = Call::new(registry, &scope, &operation, Method::POST, url)
                .header(CONTENT_LENGTH, "0");
            let reply = self.fetch(call, MAX_EMPTY_BODY).await?;
            match reply.status {
                StatusCode::CREATED => Ok(Mount::Mounted),
                StatusCode::ACCEPTED => {
                    Ok(Mount::Upload(self.upload_from(repo, &operation, &reply)?))
                }
                _ => Err(reply.into_error(registry, &operation)),
            }
        })
        .await
    }

    /// The upload session an answer opened.
    pub(crate) fn upload_from_reply(
        &self,
        repo: &Repository,
        operation: &str,
        reply: &Reply,
    ) -> Result<Upload, RegistryError> {
        self.upload_from(repo, operation, reply)
    }

    fn upload_from(
        &self,
        repo: &Repository,
        operation: &str,
        reply: &Reply,
    ) -> Result<Upload, RegistryError> {
        let location = self.location(repo, operation, reply)?;
        let min_chunk = reply
            .header("oci-chunk-min-length")
            .and_then(|v| v.parse().ok());
        Ok(Upload {
            location,
            offset: range_end(reply).unwrap_or(0),
            min_chunk,
        })
    }

    /// The upload `Location` of an answer, joined to the URL that answered, and checked
    /// against the rules of where requests may go (another host gets no credentials; plain
    /// HTTP to a host not listed as insecure is refused here).
    fn location(
        &self,
        repo: &Repository,
        operation: &str,
        reply: &Reply,
    ) -> Result<Url, RegistryError> {
        let raw = reply.header(LOCATION.as_str()).ok_or_else(|| {
            protocol(
                repo.registry(),
                operation,
                "no Location in the answer".into(),
            )
        })?;
        let url = reply
            .url
            .join(raw)
            .map_err(|e| protocol(repo.registry(), operation, format!("bad Location: {e}")))?;
        let what = format!("{operation}: the upload Location");
        if self.origins().check(repo.registry(), &url, &what)? == Destination::Elsewhere {
            tracing::debug!(registry = repo.registry(), location = %Origins::authority(&url), "the upload goes to another host, without credentials");
        }
        Ok(url)
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
        let scope = Scope::push(repo.path());
        let call = Call::new(
            registry,
            &scope,
            &operation,
            Method::PATCH,
            upload.location.clone(),
        )
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_RANGE, &format!("{start}-{}", start + len - 1))
        .header(CONTENT_LENGTH, &len.to_string());
        let reply = self
            .send_stream(call, Body::wrap_stream(body), slot)
            .await?;
        // 202 as the spec says; ECR answers 201. Any 2xx took the chunk.
        if !reply.status.is_success() {
            return Err(refusal(reply, registry, &operation, len));
        }
        if reply.header(LOCATION.as_str()).is_some() {
            upload.location = self.location(repo, &operation, &reply)?;
        }
        let end = start + len;
        upload.offset = match range_end(&reply) {
            // A Range short of what an accepted chunk brought: the registry's Range is stale
            // (ECR's stays at the end of the first chunk), so the bytes sent are counted; the
            // closing PUT checks the digest of what the registry holds.
            Some(reported) if reported < end => {
                self.upload_limits().stuck_range(registry);
                end
            }
            Some(reported) => reported,
            None => end,
        };
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
            .operation(async {
                let registry = repo.registry();
                let operation = format!("upload status in {}", repo.path());
                let scope = Scope::push(repo.path());
                let call = Call::new(
                    registry,
                    &scope,
                    &operation,
                    Method::GET,
                    upload.location.clone(),
                );
                let reply = self.fetch(call, MAX_EMPTY_BODY).await?;
                if reply.status != StatusCode::NO_CONTENT {
                    return Err(reply.into_error(registry, &operation));
                }
                let location = self.location(repo, &operation, &reply)?;
                Ok((location, range_end(&reply).unwrap_or(0)))
            })
            .await?;
        upload.location = location;
        upload.offset = offset;
        Ok(())
    }

    /// Closes `upload` as blob `digest`; the registry checks the digest of what it received.
    ///
    /// A closing `PUT` whose answer was lost (a cut) is sent again and then finds no session
    /// (`404`): the registry had closed it. The blob is looked up then: there, the upload is
    /// done; not there, the registry lost the session, and the blob must go again (a
    /// transient failure, never a permanent `not_found`).
    pub async fn finish_upload(
        &self,
        repo: &Repository,
        upload: &Upload,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        match self.close_upload(repo, upload, digest).await {
            Err(RegistryError::NotFound {
                registry,
                operation,
            }) => match self.blob_exists(repo, digest).await {
                Ok(true) => {
                    tracing::debug!(blob = %digest, "the upload was closed already (its answer lost): the blob is there");
                    Ok(())
                }
                Ok(false) => Err(RegistryError::Network {
                    registry,
                    operation,
                    message: "the registry no longer has the upload; the blob goes again"
                        .to_owned(),
                    failure: NetworkFailure::Broken,
                }),
                Err(e) => Err(e),
            },
            other => other,
        }
    }

    async fn close_upload(
        &self,
        repo: &Repository,
        upload: &Upload,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        self.operation(async {
            let registry = repo.registry();
            let operation = format!("finish upload of {digest} to {}", repo.path());
            let mut url = upload.location.clone();
            url.query_pairs_mut().append_pair("digest", digest.as_str());
            let scope = Scope::push(repo.path());
            let call = Call::new(registry, &scope, &operation, Method::PUT, url)
                .header(CONTENT_LENGTH, "0");
            let reply = self.fetch(call, MAX_EMPTY_BODY).await?;
            if !reply.status.is_success() {
                return Err(reply.into_error(registry, &operation));
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
        let scope = Scope::push(repo.path());
        let call = Call::new(registry, &scope, &operation, Method::PUT, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, &len.to_string());
        let reply = self
            .send_stream(call, Body::wrap_stream(body), slot)
            .await?;
        if !reply.status.is_success() {
            return Err(refusal(reply, registry, &operation, len));
        }
        Ok(())
    }

    /// Abandons `upload` (best effort).
    pub async fn cancel_upload(&self, repo: &Repository, upload: &Upload) {
        let operation = format!("cancel upload to {}", repo.path());
        let scope = Scope::push(repo.path());
        let call = Call::new(
            repo.registry(),
            &scope,
            &operation,
            Method::DELETE,
            upload.location.clone(),
        );
        if let Err(e) = self.fetch(call, MAX_EMPTY_BODY).await {
            tracing::debug!(error = %e, "cancelling an upload failed");
        }
    }
}

/// The error of a refused upload request that carried `sent` bytes: `TooLarge` when the
/// registry says the body was too large (413, or 416 with words to that effect, as GHCR
/// answers), else what the status says.
fn refusal(reply: Reply, registry: &str, operation: &str, sent: u64) -> RegistryError {
    let detail = crate::body::error_text(&reply.body);
    let too_large = reply.status == StatusCode::PAYLOAD_TOO_LARGE
        || (reply.status == StatusCode::RANGE_NOT_SATISFIABLE && says_too_large(&detail));
    if !too_large {
        return reply.into_error(registry, operation);
    }
    RegistryError::TooLarge {
        registry: registry.to_owned(),
        operation: operation.to_owned(),
        sent,
        limit: limit_in_message(&detail),
        detail,
    }
}

/// The accepted length from a `Range: 0-N` header: N+1. Registries answer `0-0` for an empty
/// upload (distribution writes the same for one byte), so `0-0` reads as nothing accepted.
fn range_end(reply: &Reply) -> Option<u64> {
    range_end_of(reply.header(RANGE.as_str())?)
}

/// [`range_end`] of a `Range` header value.
pub(crate) fn range_end_of(value: &str) -> Option<u64> {
    let (_, end) = value.trim_start_matches("bytes=").split_once('-')?;
    match end.trim().parse::<u64>().ok()? {
        0 => Some(0),
        n => Some(n + 1),
    }
}
