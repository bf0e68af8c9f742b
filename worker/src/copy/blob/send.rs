//! Started, then sent: the blob's upload session (the one left where it stood, else a new
//! one) opened in its registry's upload slot with the source download under way alongside,
//! then its bytes sent whole or in chunks as the target registry's limits say; a request the
//! registry refuses as too large teaches it a smaller limit and the blob goes again.

use bytes::Bytes;
use image_mirror_common::metrics;
use image_mirror_registry::{BlobDownload, RegistryError, Upload, UploadPlan, UploadSlot};
use tokio::sync::mpsc;

use super::checkpoint::Keeper;
use super::saved::LeftOff;
use super::{Answer, BlobCopy, BlobOutcome};
use crate::copy::error::CopyError;
use crate::copy::report::Counters;

/// An upload opened in its slot, with the source download already under way when it could
/// start alongside.
pub(super) struct Started {
    pub(super) upload: Upload,
    pub(super) slot: UploadSlot,
    pub(super) download: Option<BlobDownload>,
    /// The pieces of a download shared with other targets.
    pub(super) tee: Option<mpsc::Receiver<Bytes>>,
}

/// What was found where an upload of the blob was left.
enum TakenOver {
    /// The upload, ready to go on.
    Resumed(Box<Started>),
    /// The blob itself: that upload's closing request went through.
    Landed,
    /// Neither: the blob starts over.
    StartOver,
}

impl BlobCopy<'_> {
    /// Sends the blob's bytes: from where an earlier upload was left when it can be taken
    /// over, else from the start (with the download shared with the copy's other targets
    /// when there are); checkpoints go to `keeper`.
    pub(super) async fn send(
        &self,
        upload: Option<Upload>,
        answer: &mut Answer,
        left_off: Option<LeftOff>,
        keeper: &Keeper,
    ) -> Result<BlobOutcome, CopyError> {
        let client = &self.engine.client;
        let taken_over = match left_off {
            Some(left) => self.take_over(left).await?,
            None => TakenOver::StartOver,
        };
        let mut started = match taken_over {
            TakenOver::Resumed(started) => {
                if let Some(u) = upload {
                    client.cancel_upload(self.target, &u).await;
                }
                *started
            }
            TakenOver::Landed => {
                if let Some(u) = upload {
                    client.cancel_upload(self.target, &u).await;
                }
                self.stored(BlobOutcome::Skipped, matches!(keeper, Keeper::Lease(_)));
                return Ok(BlobOutcome::Skipped);
            }
            TakenOver::StartOver => {
                let tee = match answer.0.take() {
                    Some(supply) => supply.join(self.engine, self.source, self.blob).await,
                    None => None,
                };
                self.start(upload, tee).await?
            }
        };
        loop {
            let sent = match self.plan_for(started.upload.min_chunk) {
                UploadPlan::Whole => self.upload_whole(started).await,
                UploadPlan::Chunked { chunk } => self.upload_chunked(started, chunk, keeper).await,
            };
            match sent {
                Ok(()) => break,
                // Too large for this registry: its limit is lowered (for every later blob
                // too) and the blob goes again in smaller requests, as long as there is a
                // smaller size to try.
                Err(CopyError::Registry(RegistryError::TooLarge {
                    registry,
                    sent,
                    limit,
                    ..
                })) if client
                    .upload_limits()
                    .refused(&registry, sent, limit)
                    .is_some() =>
                {
                    Counters::add(&self.counters.resumes, 1);
                    self.meter.at(0);
                    started = self.start(None, None).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.stored(BlobOutcome::Copied, matches!(keeper, Keeper::Lease(_)));
        Ok(BlobOutcome::Copied)
    }

    /// How the blob goes up to the target: whole or in chunks of what size, as the target
    /// registry's limits say (what is known, set, and learned of it), with a session's
    /// advertised minimum chunk when known.
    pub(super) fn plan_for(&self, advertised_min: Option<u64>) -> UploadPlan {
        self.engine.client.upload_limits().plan(
            self.target.registry(),
            self.blob.size,
            advertised_min,
        )
    }

    /// Where an earlier upload of the blob was left at `left`: that upload, ready to go on
    /// from where the registry has it; else the blob itself, when that upload's closing
    /// request went through (one HEAD); else nothing, and the blob starts over (the session
    /// deleted, if the registry still has it).
    async fn take_over(&self, left: LeftOff) -> Result<TakenOver, CopyError> {
        let client = &self.engine.client;
        let digest = &self.blob.digest;
        match self.resume_left(&left).await? {
            Ok(started) => return Ok(TakenOver::Resumed(Box::new(started))),
            Err(Some(stale)) => client.cancel_upload(self.target, &stale).await,
            Err(None) => {}
        }
        if client.blob_exists(self.target, digest).await? {
            tracing::info!(blob = %digest, "the upload left earlier was finished: the blob is in the repository");
            return Ok(TakenOver::Landed);
        }
        tracing::info!(blob = %digest, "the registry no longer has the upload left earlier; starting the blob over");
        Ok(TakenOver::StartOver)
    }

    /// The upload left at `left`, when the registry still has it where it can go on: ready
    /// to go on from there. Else the session to delete, when the registry still holds it.
    /// The registry is asked where the session stands first, which also renews its
    /// `Location` (distribution 3 refuses a `DELETE` carrying the state of an older chunk).
    async fn resume_left(
        &self,
        left: &LeftOff,
    ) -> Result<Result<Started, Option<Upload>>, CopyError> {
        let client = &self.engine.client;
        if left.offset >= self.blob.size {
            return Ok(Err(None));
        }
        let mut upload = match client.resumed_upload(self.target, &left.location) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "the upload left earlier cannot be taken over");
                return Ok(Err(None));
            }
        };
        if client
            .upload_limits()
            .range_is_stuck(self.target.registry())
        {
            return Ok(Err(Some(upload)));
        }
        if client
            .upload_status(self.target, &mut upload)
            .await
            .is_err()
        {
            return Ok(Err(None));
        }
        let usable = upload.offset > 0 && upload.offset < self.blob.size;
        if !usable || self.plan_for(upload.min_chunk) == UploadPlan::Whole {
            tracing::debug!(
                offset = upload.offset,
                "the upload left earlier will not be gone on with; deleting it"
            );
            return Ok(Err(Some(upload)));
        }
        tracing::info!(blob = %self.blob.digest, offset = upload.offset, "taking over the upload left earlier");
        metrics::UPLOAD_TAKEOVERS.inc(&[]);
        Counters::add(&self.counters.resumes, 1);
        let slot = client.upload_slot(self.target.registry()).await?;
        Ok(Ok(Started {
            upload,
            slot,
            download: None,
            tee: None,
        }))
    }

    /// Takes an upload slot, then opens the upload (unless a refused mount opened one) and,
    /// between two registries, the source download alongside. The upload slot comes first,
    /// then the source's request slot (see `RegistryClient::upload_slot`); within one
    /// registry, the download's request would hold a slot the upload's requests may need.
    pub(super) async fn start(
        &self,
        upload: Option<Upload>,
        tee: Option<mpsc::Receiver<Bytes>>,
    ) -> Result<Started, CopyError> {
        let client = &self.engine.client;
        let (source, target, blob) = (self.source, self.target, self.blob);
        let slot = client.upload_slot(target.registry()).await?;
        let (upload, download) = match upload {
            Some(u) => (u, None),
            None if tee.is_some() => (client.start_upload(target).await?, None),
            None if source.registry() != target.registry() => {
                let (upload, download) = tokio::join!(
                    client.start_upload(target),
                    client.get_blob(source, &blob.digest, 0, blob.size)
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
        Ok(Started {
            upload,
            slot,
            download,
            tee,
        })
    }
}
