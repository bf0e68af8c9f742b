//! Started: the blob's upload session (the one an earlier upload left, taken over where the
//! registry has it, else a new one) opened in its registry's upload slot, with the source
//! download under way alongside. An earlier upload that cannot be gone on with is deleted at
//! the registry, never left behind.

use bytes::Bytes;
use image_mirror_common::metrics;
use image_mirror_registry::{BlobDownload, Upload, UploadPlan, UploadSlot};
use tokio::sync::mpsc;

use crate::copy::blob::blob_copy::BlobCopy;
use crate::copy::blob::claim::Unstarted;
use crate::copy::blob::saved::LeftOff;
use crate::copy::blob::tee::Need;
use crate::copy::error::CopyError;
use crate::copy::report::Counters;

/// An upload opened in its slot, with the source download already under way when it could
/// start alongside: what the sending step owns.
pub(crate) struct Started {
    pub(crate) upload: Upload,
    pub(crate) slot: UploadSlot,
    pub(crate) download: Option<BlobDownload>,
    /// The pieces of a download shared with other targets.
    pub(crate) tee: Option<mpsc::Receiver<Bytes>>,
}

/// What starting came to.
pub(crate) enum Begun {
    /// The upload, ready to go.
    Started(Box<Started>),
    /// The blob itself is in the repository: an earlier upload's closing request went
    /// through.
    Found,
}

impl Unstarted {
    /// Starts the upload: from where an earlier one was left when it can be taken over, else
    /// from the start (with the download shared with the copy's other targets, `need`, when
    /// there are).
    pub(crate) async fn start(self, b: &BlobCopy<'_>, need: &mut Need) -> Result<Begun, CopyError> {
        let client = &b.parts.client;
        let taken_over = match &self.left_off {
            Some(left) => take_over(b, left).await?,
            None => TakenOver::StartOver,
        };
        match taken_over {
            TakenOver::Resumed(started) => {
                if let Some(u) = self.upload {
                    client.cancel_upload(b.target, &u).await;
                }
                Ok(Begun::Started(started))
            }
            TakenOver::Landed => {
                if let Some(u) = self.upload {
                    client.cancel_upload(b.target, &u).await;
                }
                Ok(Begun::Found)
            }
            TakenOver::StartOver => {
                let tee = match need.take() {
                    Some(supply) => supply.join(b.parts, b.source, b.blob).await,
                    None => None,
                };
                Ok(Begun::Started(Box::new(open(b, self.upload, tee).await?)))
            }
        }
    }
}

/// What was found where an upload of the blob was left.
enum TakenOver {
    Resumed(Box<Started>),
    Landed,
    StartOver,
}

/// Where an earlier upload of the blob was left at `left`: that upload, ready to go on from
/// where the registry has it; else the blob itself, when that upload's closing request went
/// through (one HEAD); else nothing, and the blob starts over (the session deleted, if the
/// registry still holds it).
async fn take_over(b: &BlobCopy<'_>, left: &LeftOff) -> Result<TakenOver, CopyError> {
    let client = &b.parts.client;
    let digest = &b.blob.digest;
    match resume_left(b, left).await? {
        Ok(started) => return Ok(TakenOver::Resumed(Box::new(started))),
        Err(Some(stale)) => client.cancel_upload(b.target, &stale).await,
        Err(None) => {}
    }
    if client.blob_exists(b.target, digest).await? {
        tracing::info!(blob = %digest, "the upload left earlier was finished: the blob is in the repository");
        return Ok(TakenOver::Landed);
    }
    tracing::info!(blob = %digest, "the registry no longer has the upload left earlier; starting the blob over");
    Ok(TakenOver::StartOver)
}

/// The upload left at `left`, when the registry still has it where it can go on: ready to go
/// on from there. Else the session to delete, when the registry still holds it. The registry
/// is asked where the session stands first, which also renews its `Location` (distribution 3
/// refuses a `DELETE` carrying the state of an older chunk).
async fn resume_left(
    b: &BlobCopy<'_>,
    left: &LeftOff,
) -> Result<Result<Started, Option<Upload>>, CopyError> {
    let client = &b.parts.client;
    if left.offset >= b.blob.size {
        return Ok(Err(None));
    }
    let mut upload = match client.resumed_upload(b.target, &left.location) {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "the upload left earlier cannot be taken over");
            return Ok(Err(None));
        }
    };
    if client.upload_limits().range_is_stuck(b.target.registry()) {
        return Ok(Err(Some(upload)));
    }
    if let Err(e) = client.upload_status(b.target, &mut upload).await {
        tracing::debug!(error = %e, "the registry cannot say where the upload left earlier stands");
        return Ok(Err(None));
    }
    let usable = upload.offset > 0 && upload.offset < b.blob.size;
    if !usable || b.plan(upload.min_chunk) == UploadPlan::Whole {
        tracing::debug!(
            offset = upload.offset,
            "the upload left earlier will not be gone on with; deleting it"
        );
        return Ok(Err(Some(upload)));
    }
    tracing::info!(blob = %b.blob.digest, offset = upload.offset, "taking over the upload left earlier");
    metrics::UPLOAD_TAKEOVERS.inc(&[]);
    Counters::add(&b.counters.resumes, 1);
    let slot = client.upload_slot(b.target.registry()).await?;
    Ok(Ok(Started {
        upload,
        slot,
        download: None,
        tee: None,
    }))
}

/// Takes an upload slot, then opens the upload (unless a refused mount opened one) and,
/// between two registries, the source download alongside. The upload slot comes first, then
/// the source's request slot (see `RegistryClient::upload_slot`); within one registry, the
/// download's request would hold a slot the upload's requests may need.
pub(crate) async fn open(
    b: &BlobCopy<'_>,
    upload: Option<Upload>,
    tee: Option<mpsc::Receiver<Bytes>>,
) -> Result<Started, CopyError> {
    let client = &b.parts.client;
    let (source, target, blob) = (b.source, b.target, b.blob);
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
