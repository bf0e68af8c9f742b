//! Planned, then placed: whether a blob has to be sent at all. Skipped when the target has
//! it, mounted when another repository of the target registry is known to have it (the
//! location index, fed by this process, the cache of earlier runs and the fleet).

use image_mirror_registry::{Mount, Upload};

use crate::copy::blob::blob_copy::{BlobCopy, BlobOutcome};
use crate::copy::error::CopyError;

/// A blob whose copy has not done anything yet.
pub(crate) struct Planned {
    /// The target repository did not exist when the image copy began: it holds only what an
    /// earlier, broken copy left there.
    pub(crate) target_is_new: bool,
}

/// Whether a blob still has to be sent.
pub(crate) enum Placed {
    /// Skipped or mounted.
    Done(BlobOutcome),
    /// To be sent.
    Unsent(Unsent),
}

/// A blob to be sent, with the upload session a refused mount opened, if any.
pub(crate) struct Unsent {
    pub(crate) upload: Option<Upload>,
}

impl Planned {
    /// Skips the blob when the target has it, mounts it when another repository of the
    /// registry is known to; else says it must be sent.
    pub(crate) async fn place(self, b: &BlobCopy<'_>) -> Result<Placed, CopyError> {
        let parts = b.parts;
        let (client, target, blob) = (&parts.client, b.target, b.blob);
        let mount_from = parts.mounts.source_for(target, &blob.digest);
        // With a mount candidate, the mount itself tells whether the blob is there. A
        // repository that did not exist when the copy began holds only what an earlier,
        // broken copy left there, which the location index knows when that copy ran here.
        let may_be_there = !self.target_is_new || parts.mounts.holds(target, &blob.digest);
        if mount_from.is_none() && may_be_there && client.blob_exists(target, &blob.digest).await? {
            b.stored(BlobOutcome::Skipped, false);
            return Ok(Placed::Done(BlobOutcome::Skipped));
        }
        let Some(from) = mount_from else {
            return Ok(Placed::Unsent(Unsent { upload: None }));
        };
        match client.mount_blob(target, &blob.digest, &from).await {
            Ok(Mount::Mounted) => {
                b.stored(BlobOutcome::Mounted, false);
                Ok(Placed::Done(BlobOutcome::Mounted))
            }
            Ok(Mount::Upload(u)) => Ok(Placed::Unsent(Unsent { upload: Some(u) })),
            Err(e) => {
                tracing::debug!(error = %e, "mount refused; sending the bytes");
                Ok(Placed::Unsent(Unsent { upload: None }))
            }
        }
    }
}
