//! Sending one blob's bytes to the target: streamed from the source through a bounded pipe,
//! hashed on the way, watched for stalls.
//!
//! Blobs up to one chunk go in the single request that closes the upload; its last piece is
//! held back until the whole blob hashed to its digest, so a bad blob never completes an
//! upload, and a broken request starts the blob over. Large blobs go up in chunks: the sha256
//! state is saved at every chunk the registry confirmed (the [`Checkpoint`]); after a broken
//! chunk the registry is asked how many bytes it holds (N), the source is read again from the
//! checkpoint (the bytes up to N only hashed, not sent), and the upload goes on from N. Only
//! when the registry has lost the upload does the blob start over.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use image_mirror_common::{Digest, Repository};
use image_mirror_queue::coordination::Lease;
use image_mirror_registry::{
    BlobDownload, Descriptor, NetworkFailure, RegistryError, StallRule, Stalled, Upload,
    UploadSlot, Watchdog,
};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::copy::error::CopyError;
use crate::copy::progress::Progress;
use crate::copy::report::Counters;
use crate::copy::source::SourceReader;
use crate::copy::CopyEngine;

/// Bytes read from the source per piece handed to the upload.
const PIECE: usize = 256 * 1024;
/// Pieces buffered between download and upload.
const PIPE_DEPTH: usize = 4;

/// An upload opened in its slot, with the source download already under way when it could
/// start alongside.
pub(crate) struct Started {
    pub(crate) upload: Upload,
    pub(crate) slot: UploadSlot,
    pub(crate) download: Option<BlobDownload>,
    /// The pieces of a download shared with other targets.
    pub(crate) tee: Option<mpsc::Receiver<Bytes>>,
}

/// The hash of the blob's first `offset` bytes: where a broken upload resumes from.
#[derive(Clone)]
struct Checkpoint {
    offset: u64,
    hasher: Sha256,
}

impl Checkpoint {
    fn start() -> Self {
        Self {
            offset: 0,
            hasher: Sha256::new(),
        }
    }
}

/// The blob and where its bytes come from and go.
#[derive(Clone, Copy)]
pub(crate) struct Transfer<'a> {
    pub(crate) source: &'a Repository,
    pub(crate) target: &'a Repository,
    pub(crate) blob: &'a Descriptor,
    pub(crate) counters: &'a Counters,
    pub(crate) progress: &'a Progress,
    /// The fleet's lease of the blob, when held: each chunk the registry confirms is
    /// checkpointed there for a successor.
    pub(crate) lease: Option<&'a Lease>,
}

impl CopyEngine {
    /// Blobs up to one chunk: streamed in the single request that closes the upload. A broken
    /// request starts the blob over.
    pub(crate) async fn upload_whole(
        &self,
        t: &Transfer<'_>,
        started: Started,
    ) -> Result<(), CopyError> {
        let client = &self.client;
        let Started {
            mut upload,
            slot,
            mut download,
            mut tee,
        } = started;
        let mut failures = 0_usize;
        loop {
            let (tx, body) = pipe();
            let mut reader = SourceReader::new(self, t.source, t.blob, 0, t.counters)
                .with_download(download.take())
                .with_tee(tee.take());
            let mut hasher = Sha256::new();
            let send =
                client.put_blob_stream(t.target, &upload, &t.blob.digest, body, t.blob.size, &slot);
            let feeding = feed(
                &mut reader,
                &mut hasher,
                tx,
                t.blob.size,
                Some(t),
                client.stall_rule(),
            );
            let (sent, fed) = transfer(send, feeding, client.request_timeout(), t.target).await;
            drop(reader);
            let reason = match (sent, fed) {
                (Ok(()), Fed::Done) => {
                    Counters::add(&t.counters.bytes_sent, t.blob.size);
                    return Ok(());
                }
                (_, Fed::Source(e)) => {
                    client.cancel_upload(t.target, &upload).await;
                    return Err(e);
                }
                (Err(e), _) if !e.is_transient() => {
                    client.cancel_upload(t.target, &upload).await;
                    return Err(e.into());
                }
                (result, fed) => failure_reason(result, &fed),
            };
            failures += 1;
            client.cancel_upload(t.target, &upload).await;
            if client.retry_policy().gives_up_after(failures) {
                return Err(kept_failing(t, &reason));
            }
            tracing::debug!(blob = %t.blob.digest, %reason, "upload broke; sending the blob again");
            Counters::add(&t.counters.resumes, 1);
            tokio::time::sleep(client.retry_policy().delay(failures)).await;
            upload = client.start_upload(t.target).await?;
        }
    }

    /// Large blobs: in chunks of `chunk` bytes, streamed, resumable.
    pub(crate) async fn upload_chunked(
        &self,
        t: &Transfer<'_>,
        started: Started,
        chunk: u64,
    ) -> Result<(), CopyError> {
        let client = &self.client;
        let Started {
            mut upload,
            slot,
            download,
            tee,
        } = started;
        let chunk = chunk.max(1);
        // An upload taken over from another worker: its bytes so far are hashed, not sent.
        let mut saved = self
            .hash_up_to(t, Checkpoint::start(), upload.offset)
            .await?;
        let mut hasher = saved.hasher.clone();
        let mut reader = SourceReader::new(self, t.source, t.blob, upload.offset, t.counters)
            .with_download(download)
            .with_tee(tee);
        let mut failures = 0_usize;
        while upload.offset < t.blob.size {
            let start = upload.offset;
            let len = chunk.min(t.blob.size - start);
            let reason = match self
                .send_chunk(t, &mut upload, &slot, &mut reader, &mut hasher, len)
                .await
            {
                Ok(None) => {
                    saved = Checkpoint {
                        offset: upload.offset,
                        hasher: hasher.clone(),
                    };
                    failures = 0;
                    checkpoint(t, &upload).await;
                    continue;
                }
                Ok(Some(reason)) => reason,
                Err(e) => {
                    client.cancel_upload(t.target, &upload).await;
                    return Err(e);
                }
            };
            failures += 1;
            if client.retry_policy().gives_up_after(failures) {
                client.cancel_upload(t.target, &upload).await;
                return Err(kept_failing(t, &reason));
            }
            tracing::debug!(blob = %t.blob.digest, offset = start, %reason, "upload broke; resuming");
            Counters::add(&t.counters.resumes, 1);
            tokio::time::sleep(client.retry_policy().delay(failures)).await;
            reader.release();
            saved = self.resume(t, &mut upload, saved, start).await?;
            hasher = saved.hasher.clone();
            reader = SourceReader::new(self, t.source, t.blob, saved.offset, t.counters);
        }
        reader.release();
        if let Err(e) = check_digest(t.source, t.blob, hasher) {
            client.cancel_upload(t.target, &upload).await;
            return Err(e);
        }
        t.progress.checked(&t.blob.digest);
        client
            .finish_upload(t.target, &upload, &t.blob.digest)
            .await?;
        Ok(())
    }

    /// Sends the next `len` bytes as one chunk: `Ok(None)` when the registry confirmed all of
    /// them, `Ok(Some(why))` when the chunk broke in a way a resume can mend, `Err` when the
    /// blob cannot go on (the source failed, or the registry refused for good).
    async fn send_chunk(
        &self,
        t: &Transfer<'_>,
        upload: &mut Upload,
        slot: &UploadSlot,
        reader: &mut SourceReader<'_>,
        hasher: &mut Sha256,
        len: u64,
    ) -> Result<Option<String>, CopyError> {
        let client = &self.client;
        let start = upload.offset;
        let (tx, body) = pipe();
        let send = client.upload_chunk(t.target, upload, body, len, slot);
        let feeding = feed(reader, hasher, tx, len, None, client.stall_rule());
        let (sent, fed) = transfer(send, feeding, client.request_timeout(), t.target).await;
        match (sent, fed) {
            (Ok(()), Fed::Done) if upload.offset == start + len => {
                Counters::add(&t.counters.bytes_sent, len);
                Ok(None)
            }
            (_, Fed::Source(e)) => Err(e),
            (Err(e), _) if !e.is_transient() => Err(e.into()),
            (Ok(()), Fed::Done) => Ok(Some(format!(
                "registry reports offset {} after a chunk to {}",
                upload.offset,
                start + len
            ))),
            (result, fed) => Ok(Some(failure_reason(result, &fed))),
        }
    }

    /// After a broken chunk: asks the registry where the upload stands (a new session when it
    /// lost it), and hashes the source from the checkpoint up to there. The new checkpoint.
    async fn resume(
        &self,
        t: &Transfer<'_>,
        upload: &mut Upload,
        saved: Checkpoint,
        chunk_start: u64,
    ) -> Result<Checkpoint, CopyError> {
        let client = &self.client;
        // A registry whose Range is stale cannot say where a broken upload stands.
        if client.upload_limits().range_is_stuck(t.target.registry()) {
            tracing::info!(blob = %t.blob.digest, "the registry's Range cannot be trusted; starting the blob over");
            client.cancel_upload(t.target, upload).await;
            *upload = client.start_upload(t.target).await?;
            return Ok(Checkpoint::start());
        }
        let saved = match client.upload_status(t.target, upload).await {
            Ok(()) if upload.offset >= saved.offset && upload.offset <= t.blob.size => {
                Counters::add(
                    &t.counters.bytes_sent,
                    upload.offset.saturating_sub(chunk_start),
                );
                saved
            }
            Ok(()) | Err(RegistryError::NotFound { .. }) | Err(RegistryError::Status { .. }) => {
                tracing::info!(blob = %t.blob.digest, "the registry lost the upload; starting the blob over");
                *upload = client.start_upload(t.target).await?;
                Checkpoint::start()
            }
            Err(e) => return Err(e.into()),
        };
        self.hash_up_to(t, saved, upload.offset).await
    }

    /// Hashes, without sending, the source from `saved` up to `offset`.
    async fn hash_up_to(
        &self,
        t: &Transfer<'_>,
        saved: Checkpoint,
        offset: u64,
    ) -> Result<Checkpoint, CopyError> {
        if saved.offset >= offset {
            return Ok(saved);
        }
        let mut hasher = saved.hasher;
        let mut reader = SourceReader::new(self, t.source, t.blob, saved.offset, t.counters);
        while reader.position < offset {
            let want = usize::try_from(offset - reader.position)
                .unwrap_or(PIECE)
                .min(PIECE);
            let piece = reader.next(want).await?;
            hasher.update(&piece);
        }
        reader.release();
        Ok(Checkpoint { offset, hasher })
    }
}

/// Leaves where the upload stands for a successor, when the fleet's lease is held.
async fn checkpoint(t: &Transfer<'_>, upload: &Upload) {
    if let Some(lease) = t.lease {
        let saved = lease
            .save_upload(t.target.path(), upload.location.as_str(), upload.offset)
            .await;
        if let Err(e) = saved {
            tracing::debug!(error = %e, "could not checkpoint the upload");
        }
    }
}

/// An upload that kept failing: transient, as a download that keeps failing is.
fn kept_failing(t: &Transfer<'_>, reason: &str) -> CopyError {
    RegistryError::Network {
        registry: t.target.registry().to_owned(),
        operation: format!("upload {} to {}", t.blob.digest, t.target.path()),
        message: format!("kept failing: {reason}"),
        failure: NetworkFailure::Broken,
    }
    .into()
}

fn failure_reason(result: Result<(), RegistryError>, fed: &Fed) -> String {
    match (result, fed) {
        (_, Fed::Stalled(s)) => format!("the upload {s}"),
        (Err(e), _) => e.to_string(),
        (Ok(()), _) => "the upload ended early".to_owned(),
    }
}

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

/// How feeding a request body ended.
enum Fed {
    /// Every byte went into the pipe.
    Done,
    /// The request ended before the body did.
    RequestEnded,
    /// The registry stopped taking the body.
    Stalled(Stalled),
    /// The source failed, or the blob did not hash to its digest: the request is aborted.
    Source(CopyError),
}

/// Moves `len` bytes from `reader` into the pipe, hashing them. With `verify`, the last piece
/// goes only once the blob's digest checked out.
async fn feed(
    reader: &mut SourceReader<'_>,
    hasher: &mut Sha256,
    tx: mpsc::Sender<Piece>,
    len: u64,
    verify: Option<&Transfer<'_>>,
    stall: StallRule,
) -> Fed {
    let mut left = len;
    let mut watchdog = Watchdog::new(stall);
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(PIECE).min(PIECE);
        let piece = match reader.next(want).await {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.try_send(Err(std::io::Error::other("source failed")));
                return Fed::Source(e);
            }
        };
        hasher.update(&piece);
        left -= piece.len() as u64;
        if left == 0 {
            if let Some(t) = verify {
                if let Err(e) = check_digest(t.source, t.blob, hasher.clone()) {
                    let _ = tx.try_send(Err(std::io::Error::other("digest mismatch")));
                    return Fed::Source(e);
                }
                t.progress.checked(&t.blob.digest);
            }
        }
        let n = piece.len();
        match watchdog.guard(tx.send(Ok(piece))).await {
            Ok(Ok(())) => watchdog.moved(n),
            Ok(Err(_)) => return Fed::RequestEnded,
            Err(stalled) => return Fed::Stalled(stalled),
        }
    }
    Fed::Done
}

/// Runs a request and the feeding of its body together. A feed that fails or stalls ends the
/// request at once; once the body is all in, the answer must come within `tail`.
async fn transfer(
    send: impl Future<Output = Result<(), RegistryError>>,
    feeding: impl Future<Output = Fed>,
    tail: Duration,
    target: &Repository,
) -> (Result<(), RegistryError>, Fed) {
    tokio::pin!(send);
    tokio::pin!(feeding);
    tokio::select! {
        sent = &mut send => {
            let fed = feeding.await;
            (sent, fed)
        }
        fed = &mut feeding => match fed {
            Fed::Stalled(_) | Fed::Source(_) => (Ok(()), fed),
            Fed::Done | Fed::RequestEnded => match tokio::time::timeout(tail, send).await {
                Ok(sent) => (sent, fed),
                Err(_) => (
                    Err(RegistryError::Network {
                        registry: target.registry().to_owned(),
                        operation: format!("upload to {}", target.path()),
                        message: format!("no answer within {}s of the body's end", tail.as_secs()),
                        failure: NetworkFailure::Timeout,
                    }),
                    fed,
                ),
            },
        },
    }
}

pub(crate) fn check_digest(
    source: &Repository,
    blob: &Descriptor,
    hasher: Sha256,
) -> Result<(), CopyError> {
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
