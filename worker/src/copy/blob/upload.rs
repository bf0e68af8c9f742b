//! Sent: one blob's bytes up to the target, streamed from the source through a bounded pipe,
//! hashed on the way, watched for stalls.
//!
//! Blobs up to one chunk go in the single request that closes the upload; its last piece is
//! held back until the whole blob hashed to its digest, so a bad blob never completes an
//! upload, and a broken request starts the blob over. Large blobs go up in chunks: the sha256
//! state is kept at every chunk the registry confirmed ([`Hashed`]) and the upload's place is
//! checkpointed ([`Keeper`]); after a broken chunk the registry is asked how many bytes it
//! holds (N), the source is read again from the last confirmed chunk (the bytes up to N only
//! hashed, not sent), and the upload goes on from N. Only when the registry has lost the
//! upload does the blob start over.
//!
//! A stop (see `stop.rs`) lets the chunk in flight finish within the checkpoint grace, else
//! cuts it, and keeps the session for the next run; a blob going in one request has its
//! session deleted at once.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use image_mirror_common::{Digest, Repository};
use image_mirror_registry::bandwidth::Way;
use image_mirror_registry::{
    Descriptor, NetworkFailure, RegistryError, StallRule, Stalled, Upload, UploadPlan, UploadSlot,
    Watchdog,
};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::copy::blob::attempts::{Attempts, Halt};
use crate::copy::blob::blob_copy::BlobCopy;
use crate::copy::blob::checkpoint::Keeper;
use crate::copy::blob::source::SourceReader;
use crate::copy::blob::start::Started;
use crate::copy::error::CopyError;
use crate::copy::report::Counters;
use crate::copy::stop::CHECKPOINT_GRACE;

/// Bytes read from the source per piece handed to the upload.
const PIECE: usize = 256 * 1024;
/// Pieces buffered between download and upload.
const PIPE_DEPTH: usize = 4;

/// The hash of the blob's first `offset` bytes: where a broken upload resumes from.
#[derive(Clone)]
struct Hashed {
    offset: u64,
    hasher: Sha256,
}

impl Hashed {
    fn start() -> Self {
        Self {
            offset: 0,
            hasher: Sha256::new(),
        }
    }
}

/// How one chunk ended.
enum Chunk {
    /// The registry confirmed all of it.
    Confirmed,
    /// It broke in a way a resume can mend, for this reason.
    Broke(String),
}

impl Started {
    /// Sends the blob's bytes, whole or in chunks as its target registry's limits say,
    /// checkpointing each confirmed chunk with `keeper`.
    pub(crate) async fn send(self, b: &BlobCopy<'_>, keeper: &Keeper) -> Result<Sent, CopyError> {
        match b.plan(self.upload.min_chunk) {
            UploadPlan::Whole => upload_whole(b, self).await?,
            UploadPlan::Chunked { chunk } => upload_chunked(b, self, chunk, keeper).await?,
        }
        Ok(Sent)
    }
}

/// Sent: every byte is in the registry, checked against the blob's digest, and the upload
/// closed there.
pub(crate) struct Sent;

/// Blobs up to one chunk: streamed in the single request that closes the upload. A broken
/// request starts the blob over; a stop deletes the session.
async fn upload_whole(b: &BlobCopy<'_>, started: Started) -> Result<(), CopyError> {
    let client = &b.parts.client;
    let Started {
        mut upload,
        slot,
        mut download,
        mut tee,
    } = started;
    let (target, blob) = (b.target, b.blob);
    let mut attempts = Attempts::new(client.retry_policy(), &b.counters.resumes, &b.parts.stop);
    loop {
        let (tx, body) = pipe();
        let mut reader = b
            .reader(0)
            .with_download(download.take())
            .with_tee(tee.take());
        let mut hasher = Sha256::new();
        let send = client.put_blob_stream(target, &upload, &blob.digest, body, blob.size, &slot);
        let feeding = feed(b, &mut reader, &mut hasher, tx, blob.size, true);
        let exchanged = transfer(send, feeding, client.request_timeout(), target);
        let (sent, fed) = tokio::select! {
            done = exchanged => done,
            () = b.parts.stop.stopped() => {
                drop(reader);
                client.cancel_upload(target, &upload).await;
                b.meter.at(0);
                return Err(CopyError::Interrupted);
            }
        };
        drop(reader);
        let reason = match (sent, fed) {
            (Ok(()), Fed::Done) => {
                Counters::add(&b.counters.bytes_sent, blob.size);
                return Ok(());
            }
            (_, Fed::Source(e)) => {
                client.cancel_upload(target, &upload).await;
                return Err(e);
            }
            (Err(e), _) if !e.is_transient() => {
                client.cancel_upload(target, &upload).await;
                return Err(e.into());
            }
            (result, fed) => failure_reason(result, &fed),
        };
        client.cancel_upload(target, &upload).await;
        b.meter.at(0);
        if let Err(halt) = attempts.broke(blob.digest.as_str(), 0, &reason).await {
            return Err(halted(b, halt, &reason));
        }
        upload = client.start_upload(target).await?;
    }
}

/// Large blobs: in chunks of `chunk` bytes, streamed, resumable, each confirmed chunk
/// checkpointed with `keeper`. Stopped, the session stays for the next run where a chunk
/// was confirmed in it (else it is deleted).
async fn upload_chunked(
    b: &BlobCopy<'_>,
    started: Started,
    chunk: u64,
    keeper: &Keeper,
) -> Result<(), CopyError> {
    let Started {
        mut upload,
        slot,
        download,
        tee,
    } = started;
    let reader = b
        .reader(upload.offset)
        .with_download(download)
        .with_tee(tee);
    let sent = chunks(b, &mut upload, &slot, reader, chunk.max(1), keeper).await;
    if let Err(CopyError::Interrupted) = sent {
        if upload.offset > 0 {
            keeper.save(b, &upload).await;
        } else {
            b.parts.client.cancel_upload(b.target, &upload).await;
        }
    }
    sent
}

/// The chunks of [`upload_chunked`], from the upload's offset.
async fn chunks(
    b: &BlobCopy<'_>,
    upload: &mut Upload,
    slot: &UploadSlot,
    mut reader: SourceReader<'_>,
    chunk: u64,
    keeper: &Keeper,
) -> Result<(), CopyError> {
    let client = &b.parts.client;
    let (target, blob) = (b.target, b.blob);
    // An upload taken over: its bytes so far are hashed, not sent.
    let mut saved = hash_up_to(b, Hashed::start(), upload.offset).await?;
    let mut hasher = saved.hasher.clone();
    let mut attempts = Attempts::new(client.retry_policy(), &b.counters.resumes, &b.parts.stop);
    while upload.offset < blob.size {
        if b.parts.stop.is_stopped() {
            return Err(CopyError::Interrupted);
        }
        let start = upload.offset;
        let len = chunk.min(blob.size - start);
        let reason = match send_chunk(b, upload, slot, &mut reader, &mut hasher, len).await {
            Ok(Chunk::Confirmed) => {
                saved = Hashed {
                    offset: upload.offset,
                    hasher: hasher.clone(),
                };
                attempts.progressed();
                keeper.save(b, upload).await;
                continue;
            }
            Ok(Chunk::Broke(reason)) => reason,
            Err(CopyError::Interrupted) => return Err(CopyError::Interrupted),
            Err(e) => {
                client.cancel_upload(target, upload).await;
                return Err(e);
            }
        };
        if let Err(halt) = attempts.broke(blob.digest.as_str(), start, &reason).await {
            if let Halt::GaveUp = halt {
                client.cancel_upload(target, upload).await;
            }
            return Err(halted(b, halt, &reason));
        }
        reader.release();
        saved = resume(b, upload, saved, start).await?;
        hasher = saved.hasher.clone();
        reader = b.reader(saved.offset);
    }
    reader.release();
    if let Err(e) = check_digest(b.source, blob, hasher) {
        client.cancel_upload(target, upload).await;
        return Err(e);
    }
    b.blob_states.checked(&blob.digest);
    client.finish_upload(target, upload, &blob.digest).await?;
    Ok(())
}

/// Sends the next `len` bytes as one chunk; `Err` when the blob cannot go on (the source
/// failed, the registry refused for good, or a stop cut the chunk).
async fn send_chunk(
    b: &BlobCopy<'_>,
    upload: &mut Upload,
    slot: &UploadSlot,
    reader: &mut SourceReader<'_>,
    hasher: &mut Sha256,
    len: u64,
) -> Result<Chunk, CopyError> {
    let client = &b.parts.client;
    let start = upload.offset;
    let (tx, body) = pipe();
    let (sent, fed) = {
        let send = client.upload_chunk(b.target, upload, body, len, slot);
        let feeding = feed(b, reader, hasher, tx, len, false);
        let exchanged = transfer(send, feeding, client.request_timeout(), b.target);
        // After a stop, the chunk in flight has the grace to be confirmed; else it is cut
        // and the next run asks the registry where the session stands.
        let cut = async {
            b.parts.stop.stopped().await;
            tokio::time::sleep(CHECKPOINT_GRACE).await;
        };
        tokio::select! {
            done = exchanged => done,
            () = cut => return Err(CopyError::Interrupted),
        }
    };
    match (sent, fed) {
        (Ok(()), Fed::Done) if upload.offset == start + len => {
            Counters::add(&b.counters.bytes_sent, len);
            Ok(Chunk::Confirmed)
        }
        (_, Fed::Source(e)) => Err(e),
        (Err(e), _) if !e.is_transient() => Err(e.into()),
        (Ok(()), Fed::Done) => Ok(Chunk::Broke(format!(
            "registry reports offset {} after a chunk to {}",
            upload.offset,
            start + len
        ))),
        (result, fed) => Ok(Chunk::Broke(failure_reason(result, &fed))),
    }
}

/// After a broken chunk: asks the registry where the upload stands (a new session when it
/// lost it), and hashes the source from the last confirmed chunk up to there.
async fn resume(
    b: &BlobCopy<'_>,
    upload: &mut Upload,
    saved: Hashed,
    chunk_start: u64,
) -> Result<Hashed, CopyError> {
    let client = &b.parts.client;
    let (target, blob) = (b.target, b.blob);
    // A registry whose Range is stale cannot say where a broken upload stands.
    if client.upload_limits().range_is_stuck(target.registry()) {
        tracing::info!(blob = %blob.digest, "the registry's Range cannot be trusted; starting the blob over");
        client.cancel_upload(target, upload).await;
        *upload = client.start_upload(target).await?;
        b.meter.at(0);
        return Ok(Hashed::start());
    }
    let saved = match client.upload_status(target, upload).await {
        Ok(()) if upload.offset >= saved.offset && upload.offset <= blob.size => {
            Counters::add(
                &b.counters.bytes_sent,
                upload.offset.saturating_sub(chunk_start),
            );
            saved
        }
        Ok(()) | Err(RegistryError::NotFound { .. }) | Err(RegistryError::Status { .. }) => {
            tracing::info!(blob = %blob.digest, "the registry lost the upload; starting the blob over");
            *upload = client.start_upload(target).await?;
            b.meter.at(0);
            Hashed::start()
        }
        Err(e) => return Err(e.into()),
    };
    hash_up_to(b, saved, upload.offset).await
}

/// Hashes, without sending, the source from `saved` up to `offset`.
async fn hash_up_to(b: &BlobCopy<'_>, saved: Hashed, offset: u64) -> Result<Hashed, CopyError> {
    if saved.offset >= offset {
        return Ok(saved);
    }
    let mut hasher = saved.hasher;
    let mut reader = b.reader(saved.offset);
    while reader.position < offset {
        if b.parts.stop.is_stopped() {
            return Err(CopyError::Interrupted);
        }
        let want = usize::try_from(offset - reader.position)
            .unwrap_or(PIECE)
            .min(PIECE);
        let piece = reader.next(want).await?;
        hasher.update(&piece);
        b.meter.at(reader.position);
    }
    reader.release();
    Ok(Hashed { offset, hasher })
}

/// The error a halted transfer ends with: a stop, or an upload that kept failing
/// (transient, as a download that keeps failing is).
fn halted(b: &BlobCopy<'_>, halt: Halt, reason: &str) -> CopyError {
    match halt {
        Halt::Stopped => CopyError::Interrupted,
        Halt::GaveUp => RegistryError::Network {
            registry: b.target.registry().to_owned(),
            operation: format!("upload {} to {}", b.blob.digest, b.target.path()),
            message: format!("kept failing: {reason}"),
            failure: NetworkFailure::Broken,
        }
        .into(),
    }
}

/// Moves `len` bytes from `reader` into the pipe, hashing them and counting them on the
/// blob's meter. With `verify`, the last piece goes only once the blob's digest checked
/// out.
async fn feed(
    b: &BlobCopy<'_>,
    reader: &mut SourceReader<'_>,
    hasher: &mut Sha256,
    tx: mpsc::Sender<Piece>,
    len: u64,
    verify: bool,
) -> Fed {
    let stall: StallRule = b.parts.client.stall_rule();
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
        if left == 0 && verify {
            if let Err(e) = check_digest(b.source, b.blob, hasher.clone()) {
                let _ = tx.try_send(Err(std::io::Error::other("digest mismatch")));
                return Fed::Source(e);
            }
            b.blob_states.checked(&b.blob.digest);
        }
        let n = piece.len();
        let waited = b
            .parts
            .client
            .bandwidth()
            .take(b.target.registry(), n, Way::Up)
            .await;
        watchdog.paused(waited);
        match watchdog.guard(tx.send(Ok(piece))).await {
            Ok(Ok(())) => {
                watchdog.moved(n);
                b.meter.at(reader.position);
            }
            Ok(Err(_)) => return Fed::RequestEnded,
            Err(stalled) => return Fed::Stalled(stalled),
        }
    }
    Fed::Done
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

/// The blob's bytes hashed to `hasher` must match its digest.
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
