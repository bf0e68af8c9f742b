//! Claimed: the right to send a blob, and where an upload of it was left. In a fleet, the
//! blob's lease in the target registry (another worker holding it means waiting, then skipping
//! or mounting what it landed), with its previous holder's checkpoint; on its own (or when the
//! broker cannot be asked), this machine's saved upload of the blob.

use image_mirror_queue::coordination::BlobState;
use image_mirror_registry::{Upload, UploadPlan};

use crate::copy::blob::blob_copy::{BlobCopy, BlobOutcome};
use crate::copy::blob::checkpoint::Keeper;
use crate::copy::blob::place::{Placed, Planned, Unsent};
use crate::copy::blob::saved::LeftOff;
use crate::copy::error::CopyError;
use crate::copy::fleet::{Claim as FleetClaim, Fleet, Holding, LEASE_MIN};

/// Claims of a blob's lease one copy makes at most, each after the fleet said where the
/// blob landed and mounting it from there did not work.
const CLAIM_ROUNDS: usize = 3;

/// What claiming a blob came to.
pub(crate) enum Claim {
    /// Skipped or mounted after all.
    Done(BlobOutcome),
    /// To be sent.
    Claimed(Box<Claimed>),
}

/// A blob claimed for sending: where its checkpoints go, and what it starts from.
pub(crate) struct Claimed {
    pub(crate) keeper: Keeper,
    pub(crate) unstarted: Unstarted,
}

/// What a claimed blob's upload starts from.
pub(crate) struct Unstarted {
    /// The upload a refused mount opened, if any.
    pub(crate) upload: Option<Upload>,
    /// Where an earlier upload of it stood.
    pub(crate) left_off: Option<LeftOff>,
}

impl Unsent {
    /// Claims the blob: in a fleet (for a blob of [`LEASE_MIN`] or more), its lease; else
    /// this machine's saved upload of it.
    pub(crate) async fn claim(self, b: &BlobCopy<'_>) -> Result<Claim, CopyError> {
        let fleet = b.parts.fleet.as_ref().filter(|_| b.blob.size >= LEASE_MIN);
        match fleet {
            Some(fleet) => self.claim_in(fleet, b).await,
            None => Ok(Claim::Claimed(Box::new(here(b, self.upload)))),
        }
    }

    /// Claims the blob in the fleet: mounts or skips it when another worker landed it
    /// meanwhile, else holds its lease (with where a previous holder's upload stood) or goes
    /// on alone.
    async fn claim_in(self, fleet: &Fleet, b: &BlobCopy<'_>) -> Result<Claim, CopyError> {
        let parts = b.parts;
        let mut upload = self.upload;
        let chunks = b.plan(None) != UploadPlan::Whole;
        for _ in 0..CLAIM_ROUNDS {
            let held = match fleet
                .claim(b.target, &b.blob.digest, &parts.mounts, chunks)
                .await
            {
                FleetClaim::Alone => break,
                FleetClaim::Learned => None,
                FleetClaim::Held(held) if !held.waited => {
                    return Ok(Claim::Claimed(Box::new(leased(b, upload, *held))))
                }
                FleetClaim::Held(held) => Some(held),
            };
            // Another worker had it: skip or mount it with what is known now.
            if let Some(u) = upload.take() {
                parts.client.cancel_upload(b.target, &u).await;
            }
            match (Planned {
                target_is_new: false,
            })
            .place(b)
            .await?
            {
                Placed::Done(how) => {
                    if let Some(h) = held {
                        let _ = h.lease.landed().await;
                    }
                    return Ok(Claim::Done(how));
                }
                Placed::Unsent(u) => upload = u.upload,
            }
            if let Some(held) = held {
                return Ok(Claim::Claimed(Box::new(leased(b, upload, *held))));
            }
        }
        Ok(Claim::Claimed(Box::new(here(b, upload))))
    }
}

/// On its own: checkpoints go to this machine's saved uploads, and an upload saved there is
/// where the blob goes on from.
fn here(b: &BlobCopy<'_>, upload: Option<Upload>) -> Claimed {
    Claimed {
        keeper: Keeper::Local,
        unstarted: Unstarted {
            upload,
            left_off: b.parts.saved.get(b.target, &b.blob.digest),
        },
    }
}

/// The lease held: checkpoints go to it, and its previous holder's upload of this
/// repository is where the blob goes on from.
fn leased(b: &BlobCopy<'_>, upload: Option<Upload>, held: Holding) -> Claimed {
    let left_off = match held.state {
        Some(BlobState::Uploading {
            repository,
            location,
            offset,
        }) if repository == b.target.path() => Some(LeftOff { location, offset }),
        _ => None,
    };
    Claimed {
        keeper: Keeper::Lease(Box::new(held.lease)),
        unstarted: Unstarted { upload, left_off },
    }
}
