//! Copying one blob: skip it when the target has it, mount it when another repository of the
//! target registry has it, else stream it from source to target through a bounded buffer.
//! Between two registries, the source download is asked for while the target upload opens.
//!
//! Large blobs go up in chunks. The sha256 state is saved at every chunk the registry
//! confirmed; after a broken upload the registry is asked how many bytes it holds (N), the
//! source is read again from the last saved state with a `Range` request (the bytes up to N
//! only hashed, not sent), and the upload goes on from N. A broken download is resumed with a
//! `Range` request from the byte it stopped at. Only when the registry has lost the upload does
//! the blob start over.

use std::time::Duration;

use bytes::Bytes;
use image_mirror_common::registry::{
    BlobDownload, Descriptor, Mount, RegistryError, Upload, UploadSlot,
};
use image_mirror_common::{Digest, Repository};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::copy::error::CopyError;
use crate::copy::progress::Progress;
use crate::copy::report::Counters;
use crate::copy::CopyEngine;

/// Bytes read from the source per piece handed to the upload.
const PIECE: usize = 256 * 1024;
/// Pieces buffered between download and upload.
const PIPE_DEPTH: usize = 4;

/// How one blob reached the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    Skipped,
    Mounted,
    Copied,
}

impl CopyEngine {
    pub(crate) async fn copy_blob(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &Descriptor,
        target_is_new: bool,
        counters: &Counters,
        progress: &Progress,
    ) -> Result<BlobOutcome, CopyError> {
        let client = &self.client;
        let mount_from = self.mounts.source_for(target, &blob.digest);
        // With a mount candidate, the mount itself tells whether the blob is there. A
        // repository that did not exist when the copy began holds only what an earlier,
        // broken copy left there, which the location index knows when that copy ran here.
        let may_be_there = !target_is_new || self.mounts.holds(target, &blob.digest);
        if mount_from.is_none() && may_be_there && client.blob_exists(target, &blob.digest).await? {
            self.mounts.record(target, &blob.digest);
            progress.stored(&blob.digest);
            Counters::add(&counters.blobs_skipped, 1);
            return Ok(BlobOutcome::Skipped);
        }
        let mut upload = None;
        if let Some(from) = mount_from {
            match client.mount_blob(target, &blob.digest, &from).await {
                Ok(Mount::Mounted) => {
                    self.mounts.record(target, &blob.digest);
                    progress.stored(&blob.digest);
                    Counters::add(&counters.blobs_mounted, 1);
                    return Ok(BlobOutcome::Mounted);
                }
                Ok(Mount::Upload(u)) => upload = Some(u),
                Err(e) => tracing::debug!(error = %e, "mount refused; sending the bytes"),
            }
        }
        // The upload slot first, then the source's request slot (see
        // `RegistryClient::upload_slot`). Between two registries the download starts while
        // the upload is opened; within one, the download's request would hold a slot the
        // upload's requests may need.
        let slot = client.upload_slot(target.registry()).await?;
        let (upload, download) = match upload {
            Some(u) => (u, None),
            None if source.registry() != target.registry() => {
                let (upload, download) = tokio::join!(
                    client.start_upload(target),
                    client.get_blob(source, &blob.digest, 0)
                );
                let upload = upload?;
                match download {
                    Ok(d) => (upload, Some(d)),
                    Err(e) => {
                        client.cancel_upload(target, &upload).await;
                        return Err(e.into());
                    }
                }
            }
            None => (client.start_upload(target).await?, None),
        };
        let started = (upload, slot, download);
        if blob.size <= self.options.single_request_max {
            self.upload_whole(source, target, blob, started, counters, progress)
                .await?;
        } else {
            self.upload_chunked(source, target, blob, started, counters, progress)
                .await?;
        }
        self.mounts.record(target, &blob.digest);
        progress.stored(&blob.digest);
        Counters::add(&counters.blobs_copied, 1);
        Ok(BlobOutcome::Copied)
    }

    /// Blobs up to one chunk: streamed in the single request that closes the upload. The last
    /// piece is held back until the whole blob hashed to its digest, so a bad blob never
    /// completes an upload. A broken request starts the blob over (at most one chunk).
    async fn upload_whole(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &Descriptor,
        (mut upload, slot, mut download): Started,
        counters: &Counters,
        progress: &Progress,
    ) -> Result<(), CopyError> {
        let client = &self.client;
        let mut failures = 0_usize;
        loop {
            let (tx, body) = pipe();
            let mut reader = SourceReader::new(self, source, blob, 0, counters);
            reader.download = download.take();
            let mut hasher = Sha256::new();
            let send =
                client.put_blob_stream(target, &upload, &blob.digest, body, blob.size, &slot);
            let feeding = feed(
                &mut reader,
                &mut hasher,
                &tx,
                blob.size,
                Some(Verify {
                    source,
                    blob,
                    progress,
                }),
            );
            let (sent, fed) = tokio::join!(send, feeding);
            drop(tx);
            drop(reader);
            match (sent, fed) {
                (Ok(()), Ok(())) => {
                    Counters::add(&counters.bytes_sent, blob.size);
                    return Ok(());
                }
                (_, Err(Some(e))) => {
                    client.cancel_upload(target, &upload).await;
                    return Err(e);
                }
                (Err(e), _)
                    if !e.is_transient() || failures >= client.retry_policy().max_retries =>
                {
                    client.cancel_upload(target, &upload).await;
                    return Err(e.into());
                }
                (result, _) => {
                    failures += 1;
                    let reason = result
                        .err()
                        .map_or_else(|| "upload ended early".to_owned(), |e| e.to_string());
                    tracing::warn!(blob = %blob.digest, %reason, "upload broke; sending the blob again");
                    Counters::add(&counters.resumes, 1);
                    tokio::time::sleep(backoff(failures)).await;
                    client.cancel_upload(target, &upload).await;
                    upload = client.start_upload(target).await?;
                }
            }
        }
    }

    /// Large blobs: chunked, streamed, resumable.
    async fn upload_chunked(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &Descriptor,
        (mut upload, slot, download): Started,
        counters: &Counters,
        progress: &Progress,
    ) -> Result<(), CopyError> {
        let client = &self.client;
        let chunk = self
            .options
            .chunk_size
            .max(upload.min_chunk.unwrap_or(0))
            .max(1);
        let mut hasher = Sha256::new();
        // The hash state at `saved.0`, the last offset the registry confirmed.
        let mut saved = (upload.offset, hasher.clone());
        let mut reader = SourceReader::new(self, source, blob, upload.offset, counters);
        if upload.offset == 0 {
            reader.download = download;
        }
        let mut failures = 0_usize;
        while upload.offset < blob.size {
            let start = upload.offset;
            let len = chunk.min(blob.size - start);
            let (tx, body) = pipe();
            let send = client.upload_chunk(target, &mut upload, body, len, &slot);
            let feeding = feed(&mut reader, &mut hasher, &tx, len, None);
            let (sent, fed) = tokio::join!(send, feeding);
            match (sent, fed) {
                (Ok(()), Ok(())) if upload.offset == start + len => {
                    Counters::add(&counters.bytes_sent, len);
                    saved = (upload.offset, hasher.clone());
                    failures = 0;
                    continue;
                }
                (_, Err(Some(source_error))) => {
                    client.cancel_upload(target, &upload).await;
                    return Err(source_error);
                }
                (Err(e), _) if !e.is_transient() => {
                    client.cancel_upload(target, &upload).await;
                    return Err(e.into());
                }
                (result, _) => {
                    failures += 1;
                    let reason = result.err().map_or_else(
                        || {
                            format!(
                                "registry reports offset {} after a chunk to {}",
                                upload.offset,
                                start + len
                            )
                        },
                        |e| e.to_string(),
                    );
                    if failures > client.retry_policy().max_retries {
                        client.cancel_upload(target, &upload).await;
                        return Err(CopyError::Invalid(format!(
                            "upload of {} to {} kept failing: {reason}",
                            blob.digest, target
                        )));
                    }
                    tracing::warn!(blob = %blob.digest, offset = start, %reason, "upload broke; resuming");
                    Counters::add(&counters.resumes, 1);
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
            // Where does the registry stand? (The download lets go of its request slot first.)
            reader.release();
            let sent_before = start;
            match client.upload_status(target, &mut upload).await {
                Ok(()) if upload.offset >= saved.0 && upload.offset <= blob.size => {
                    Counters::add(
                        &counters.bytes_sent,
                        upload.offset.saturating_sub(sent_before),
                    );
                }
                Ok(())
                | Err(RegistryError::NotFound { .. })
                | Err(RegistryError::Status { .. }) => {
                    tracing::warn!(blob = %blob.digest, "the registry lost the upload; starting the blob over");
                    upload = client.start_upload(target).await?;
                    saved = (0, Sha256::new());
                }
                Err(e) => return Err(e.into()),
            }
            // Re-read the source from the saved state; hash, without sending, up to the
            // registry's offset.
            hasher = saved.1.clone();
            reader = SourceReader::new(self, source, blob, saved.0, counters);
            while reader.position < upload.offset {
                let want = usize::try_from(upload.offset - reader.position)
                    .unwrap_or(PIECE)
                    .min(PIECE);
                let piece = reader.next(want).await?;
                hasher.update(&piece);
            }
            saved = (upload.offset, hasher.clone());
        }
        reader.release();
        if let Err(e) = check_digest(source, blob, hasher) {
            client.cancel_upload(target, &upload).await;
            return Err(e);
        }
        progress.checked(&blob.digest);
        client.finish_upload(target, &upload, &blob.digest).await?;
        Ok(())
    }
}

/// An upload opened in its slot, with the source download already under way when it could
/// start alongside.
type Started = (Upload, UploadSlot, Option<BlobDownload>);

type Piece = Result<Bytes, std::io::Error>;

/// A bounded pipe from the source reader to a request body.
fn pipe() -> (
    mpsc::Sender<Piece>,
    impl futures_util::Stream<Item = Piece> + Send + Sync + 'static,
) {
    let (tx, rx) = mpsc::channel::<Piece>(PIPE_DEPTH);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, body)
}

/// The check of a whole blob that one request carries.
struct Verify<'a> {
    source: &'a Repository,
    blob: &'a Descriptor,
    progress: &'a Progress,
}

/// Moves `len` bytes from `reader` into the pipe, hashing them. With `verify`, the last piece
/// goes only once the blob's digest checked out. `Err(Some)` is a source failure (the body is
/// aborted); `Err(None)` means the request ended first.
async fn feed(
    reader: &mut SourceReader<'_>,
    hasher: &mut Sha256,
    tx: &mpsc::Sender<Piece>,
    len: u64,
    verify: Option<Verify<'_>>,
) -> Result<(), Option<CopyError>> {
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(PIECE).min(PIECE);
        let piece = match reader.next(want).await {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other("source failed"))).await;
                return Err(Some(e));
            }
        };
        hasher.update(&piece);
        left -= piece.len() as u64;
        if left == 0 {
            if let Some(v) = &verify {
                if let Err(e) = check_digest(v.source, v.blob, hasher.clone()) {
                    let _ = tx.send(Err(std::io::Error::other("digest mismatch"))).await;
                    return Err(Some(e));
                }
                v.progress.checked(&v.blob.digest);
            }
        }
        if tx.send(Ok(piece)).await.is_err() {
            return Err(None);
        }
    }
    Ok(())
}

fn backoff(failures: usize) -> Duration {
    let exp = u32::try_from(failures.min(6)).unwrap_or(6);
    Duration::from_millis(200 * 2_u64.pow(exp)).min(Duration::from_secs(10))
}

fn check_digest(source: &Repository, blob: &Descriptor, hasher: Sha256) -> Result<(), CopyError> {
    let actual = Digest::from_sha256_bytes(&hasher.finalize());
    if blob.digest.algorithm() == "sha256" && actual != blob.digest {
        return Err(RegistryError::DigestMismatch {
            registry: source.registry().to_owned(),
            what: format!("blob in {}", source.path()),
            expected: blob.digest.clone(),
            actual,
        }
        .into());
    }
    Ok(())
}

/// Reads a source blob from an offset, resuming broken downloads with `Range`.
struct SourceReader<'a> {
    engine: &'a CopyEngine,
    repo: &'a Repository,
    blob: &'a Descriptor,
    counters: &'a Counters,
    download: Option<BlobDownload>,
    pending: Bytes,
    position: u64,
    failures: usize,
}

impl<'a> SourceReader<'a> {
    fn new(
        engine: &'a CopyEngine,
        repo: &'a Repository,
        blob: &'a Descriptor,
        position: u64,
        counters: &'a Counters,
    ) -> Self {
        Self {
            engine,
            repo,
            blob,
            counters,
            download: None,
            pending: Bytes::new(),
            position,
            failures: 0,
        }
    }

    /// Ends the download in progress (and frees its request slot); the next read resumes
    /// from the same position.
    fn release(&mut self) {
        self.download = None;
        self.pending = Bytes::new();
    }

    /// Up to `max` more bytes (at least one, while the blob has bytes left).
    async fn next(&mut self, max: usize) -> Result<Bytes, CopyError> {
        loop {
            if !self.pending.is_empty() {
                let n = max.min(self.pending.len());
                let piece = self.pending.split_to(n);
                self.position += n as u64;
                return Ok(piece);
            }
            if self.position >= self.blob.size {
                return Err(CopyError::Invalid(format!(
                    "read past the end of blob {}",
                    self.blob.digest
                )));
            }
            let download = match &mut self.download {
                Some(d) => d,
                None => {
                    let d = self
                        .engine
                        .client
                        .get_blob(self.repo, &self.blob.digest, self.position)
                        .await?;
                    self.download.insert(d)
                }
            };
            match download.chunk().await {
                Ok(Some(bytes)) => {
                    let left = self.blob.size - self.position;
                    if bytes.len() as u64 > left {
                        return Err(RegistryError::Protocol {
                            registry: self.repo.registry().to_owned(),
                            operation: format!("GET blob {}", self.blob.digest),
                            message: format!(
                                "the blob is longer than its descriptor's {} bytes",
                                self.blob.size
                            ),
                        }
                        .into());
                    }
                    self.failures = 0;
                    self.pending = bytes;
                }
                Ok(None) | Err(_) => {
                    // The body ended before the blob did: resume from here.
                    self.download = None;
                    self.failures += 1;
                    if self.failures > self.engine.client.retry_policy().max_retries {
                        return Err(RegistryError::Network {
                            registry: self.repo.registry().to_owned(),
                            operation: format!("GET blob {}", self.blob.digest),
                            message: format!("download kept breaking at byte {}", self.position),
                        }
                        .into());
                    }
                    tracing::warn!(blob = %self.blob.digest, offset = self.position, "download broke; resuming with Range");
                    Counters::add(&self.counters.resumes, 1);
                    tokio::time::sleep(backoff(self.failures)).await;
                }
            }
        }
    }
}
