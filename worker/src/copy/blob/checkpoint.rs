//! Where a chunked upload's checkpoints are kept, so that whoever comes next goes on from the
//! last chunk the registry confirmed: the fleet's lease of the blob (its last-value queue, for
//! a successor on any machine), or, for a process on its own, the saved uploads of its cache
//! folder ([`SavedUploads`](super::SavedUploads)), for the next run on this machine.

use image_mirror_queue::coordination::Lease;
use image_mirror_registry::Upload;

use crate::copy::blob::blob_copy::BlobCopy;

/// Where the checkpoints of one blob's upload go.
pub(crate) enum Keeper {
    /// The fleet's lease of the blob.
    Lease(Box<Lease>),
    /// This machine's saved uploads.
    Local,
}

impl Keeper {
    /// Records that `upload` stands at its offset (after a chunk the registry confirmed).
    pub(crate) async fn save(&self, b: &BlobCopy<'_>, upload: &Upload) {
        match self {
            Self::Lease(lease) => {
                let saved = lease
                    .save_upload(b.target.path(), upload.location.as_str(), upload.offset)
                    .await;
                if let Err(e) = saved {
                    tracing::debug!(error = %e, "could not checkpoint the upload");
                }
            }
            Self::Local => b.parts.saved.save(
                b.target,
                &b.blob.digest,
                upload.location.as_str(),
                upload.offset,
            ),
        }
    }

    /// The blob is in: nothing is left to resume.
    pub(crate) async fn landed(self, b: &BlobCopy<'_>) {
        match self {
            Self::Lease(lease) => {
                if let Err(e) = (*lease).landed().await {
                    tracing::debug!(error = %e, "could not tell the fleet the blob landed");
                }
            }
            Self::Local => b.parts.saved.forget(b.target, &b.blob.digest),
        }
    }

    /// The upload was given up (and its session deleted): nothing is left to resume.
    pub(crate) async fn given_up(self, b: &BlobCopy<'_>) {
        match self {
            Self::Lease(lease) => {
                if let Err(e) = (*lease).abandon().await {
                    tracing::debug!(error = %e, "could not tell the fleet the upload was given up");
                }
            }
            Self::Local => b.parts.saved.forget(b.target, &b.blob.digest),
        }
    }

    /// The copy was stopped: the last checkpoint stays for whoever comes next (a lease let go
    /// keeps its checkpoint queue for the successor).
    pub(crate) fn kept(self) {
        if let Self::Lease(lease) = self {
            drop(lease);
        }
    }
}
