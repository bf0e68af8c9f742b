//! Placed: whether a blob has to be sent at all. Skipped when the target has it, mounted when
//! another repository of the target registry is known to have it (the location index, fed by
//! this process, the cache of earlier runs and the fleet).

use image_mirror_registry::{Mount, Upload};

use super::{BlobCopy, BlobOutcome};
use crate::copy::error::CopyError;

/// Whether a blob still has to be sent.
pub(super) enum Placed {
    /// Skipped or mounted.
    Done(BlobOutcome),
    /// To be sent, in the upload a refused mount opened, if any.
    Send(Option<Upload>),
}

impl BlobCopy<'_> {
    /// Skips the blob when the target has it, mounts it when another repository of the
    /// registry is known to; else says it must be sent (with the upload a refused mount
    /// opened, if any). `target_is_new`: the repository did not exist when the copy began.
    pub(super) async fn place(&self, target_is_new: bool) -> Result<Placed, CopyError> {
        let engine = self.engine;
        let (client, target, blob) = (&engine.client, self.target, self.blob);
        let mount_from = engine.mounts.source_for(target, &blob.digest);
        // With a mount candidate, the mount itself tells whether the blob is there. A
        // repository that did not exist when the copy began holds only what an earlier,
        // broken copy left there, which the location index knows when that copy ran here.
        let may_be_there = !target_is_new || engine.mounts.holds(target, &blob.digest);
        if mount_from.is_none() && may_be_there && client.blob_exists(target, &blob.digest).await? {
            self.stored(BlobOutcome::Skipped, false);
            return Ok(Placed::Done(BlobOutcome::Skipped));
        }
        let Some(from) = mount_from else {
            return Ok(Placed::Send(None));
        };
        match client.mount_blob(target, &blob.digest, &from).await {
            Ok(Mount::Mounted) => {
                self.stored(BlobOutcome::Mounted, false);
                Ok(Placed::Done(BlobOutcome::Mounted))
            }
            Ok(Mount::Upload(u)) => Ok(Placed::Send(Some(u))),
            Err(e) => {
                tracing::debug!(error = %e, "mount refused; sending the bytes");
                Ok(Placed::Send(None))
            }
        }
    }
}
