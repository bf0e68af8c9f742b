//! Claimed: the right to send a blob, and where an upload of it was left. In a fleet, the
//! blob's lease in the target registry (another worker holding it means waiting, then skipping
//! or mounting what it landed), with its previous holder's checkpoint; on its own (or when the
//! broker cannot be asked), this machine's saved upload of the blob.

use image_mirror_queue::coordination::BlobState;
use image_mirror_registry::{Upload, UploadPlan};

use super::checkpoint::Keeper;
use super::place::Placed;
use super::saved::LeftOff;
use super::{BlobCopy, BlobOutcome};
use crate::copy::error::CopyError;
use crate::copy::fleet::{Claim as FleetClaim, Fleet};

/// Claims of a blob's lease one copy makes at most, each after the fleet said where the
/// blob landed and mounting it from there did not work.
const CLAIM_ROUNDS: usize = 3;

/// A blob claimed for sending.
pub(super) struct Claimed {
    /// The upload a refused mount opened, if any.
    pub(super) upload: Option<Upload>,
    /// Where its checkpoints go.
    pub(super) keeper: Keeper,
    /// Where an earlier upload of it stood.
    pub(super) left_off: Option<LeftOff>,
}

/// What claiming a blob came to.
pub(super) enum Claim {
    /// Skipped or mounted after all.
    Done(BlobOutcome),
    /// To be sent.
    Send(Box<Claimed>),
}

impl BlobCopy<'_> {
    /// On its own: checkpoints go to this machine's saved uploads, and an upload saved there
    /// is where the blob goes on from.
    pub(super) fn claim_here(&self, upload: Option<Upload>) -> Claimed {
        Claimed {
            upload,
            keeper: Keeper::Local,
            left_off: self.engine.saved.get(self.target, &self.blob.digest),
        }
    }

    /// Claims the blob in the fleet: mounts or skips it when another worker landed it
    /// meanwhile, else holds its lease (with where a previous holder's upload stood) or goes
    /// on alone.
    pub(super) async fn claim(
        &self,
        fleet: &Fleet,
        mut upload: Option<Upload>,
    ) -> Result<Claim, CopyError> {
        let engine = self.engine;
        let chunks = self.plan_for(None) != UploadPlan::Whole;
        for _ in 0..CLAIM_ROUNDS {
            let held = match fleet
                .claim(self.target, &self.blob.digest, &engine.mounts, chunks)
                .await
            {
                FleetClaim::Alone => break,
                FleetClaim::Learned => None,
                FleetClaim::Held(held) if !held.waited => {
                    return Ok(Claim::Send(Box::new(self.held(upload, *held))))
                }
                FleetClaim::Held(held) => Some(held),
            };
            // Another worker had it: skip or mount it with what is known now.
            if let Some(u) = upload.take() {
                engine.client.cancel_upload(self.target, &u).await;
            }
            match self.place(false).await? {
                Placed::Done(how) => {
                    if let Some(h) = held {
                        let _ = h.lease.landed().await;
                    }
                    return Ok(Claim::Done(how));
                }
                Placed::Send(u) => upload = u,
            }
            if let Some(held) = held {
                return Ok(Claim::Send(Box::new(self.held(upload, *held))));
            }
        }
        Ok(Claim::Send(Box::new(self.claim_here(upload))))
    }

    /// The lease held: checkpoints go to it, and its previous holder's upload of this
    /// repository is where the blob goes on from.
    fn held(&self, upload: Option<Upload>, held: crate::copy::fleet::Holding) -> Claimed {
        let left_off = match held.state {
            Some(BlobState::Uploading {
                repository,
                location,
                offset,
            }) if repository == self.target.path() => Some(LeftOff { location, offset }),
            _ => None,
        };
        Claimed {
            upload,
            keeper: Keeper::Lease(Box::new(held.lease)),
            left_off,
        }
    }
}
