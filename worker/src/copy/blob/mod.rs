//! One blob's copy into one target repository: one owned value, [`BlobCopy`], whose states
//! are its steps.
//!
//! 1. **planned**: within a process one copy at a time moves a given blob into a given
//!    registry ([`flights`](super::flights)); the others wait for it, then skip or mount;
//! 2. **placed** ([`place`]): skipped when the target has the blob, mounted when another
//!    repository of the registry has it, else to be sent;
//! 3. **claimed** ([`claim`]): in a fleet, the blob's lease; and where an upload of it was
//!    left, by another worker or by this machine before a stop or a crash ([`Claimed`]);
//! 4. **started** ([`send`]): the upload session taken over where it stood, or a new one, and
//!    the source download under way alongside ([`send::Started`]);
//! 5. **sent** ([`upload`]): every byte up, hashed to the blob's digest on the way, a
//!    checkpoint after each chunk the registry confirmed ([`checkpoint`]);
//! 6. **landed**: closed at the registry, remembered for mounts, told to the fleet.
//!
//! Between two registries the source download is asked for while the target upload opens;
//! with several targets one download feeds them all ([`tee`]). A broken transfer resumes
//! where the registry has it, within one bound ([`attempts`]).

mod attempts;
mod checkpoint;
mod claim;
mod place;
mod saved;
mod send;
mod source;
mod tee;
mod upload;

use std::sync::Arc;

use image_mirror_common::Repository;
use image_mirror_registry::Descriptor;

pub use saved::SavedUploads;
pub(crate) use tee::{Supplies, Supply};

use crate::copy::activity::Meter;
use crate::copy::engine::CopyEngine;
use crate::copy::error::CopyError;
use crate::copy::fleet::LEASE_MIN;
use crate::copy::flights::{Flights, Landed, Turn};
use crate::copy::progress::Progress;
use crate::copy::report::Counters;

use checkpoint::Keeper;
use claim::Claimed;
use place::Placed;

/// How one blob reached the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    Skipped,
    Mounted,
    Copied,
}

impl BlobOutcome {
    /// The name metrics and spans use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Copied => "copied",
            Self::Mounted => "mounted",
            Self::Skipped => "skipped",
        }
    }
}

/// A target's answer to the shared download of a blob: given once, when it knows whether it
/// needs the bytes; a blob it did not need (or failed on) passes when dropped.
pub(crate) struct Answer(Option<Arc<Supply>>);

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(supply) = self.0.take() {
            supply.pass();
        }
    }
}

/// One blob's copy into one target repository, and the state it carries through its steps.
pub(crate) struct BlobCopy<'a> {
    pub(crate) engine: &'a CopyEngine,
    pub(crate) source: &'a Repository,
    pub(crate) target: &'a Repository,
    pub(crate) blob: &'a Descriptor,
    /// The image copy's counters.
    pub(crate) counters: &'a Counters,
    /// The image copy's blob states (manifests wait on them).
    pub(crate) progress: &'a Progress,
    /// Where this blob stands in its copy's byte count.
    pub(crate) meter: &'a Meter,
    /// The target repository did not exist when the copy began.
    pub(crate) target_is_new: bool,
}

impl BlobCopy<'_> {
    /// Brings the blob into its target: after another copy's flight of it when one is under
    /// way; with the download shared with the copy's other targets when `supply` is given.
    pub(crate) async fn run(&self, supply: Option<Arc<Supply>>) -> Result<BlobOutcome, CopyError> {
        let mut answer = Answer(supply);
        loop {
            match self.engine.flights.take(self.target, &self.blob.digest) {
                Turn::Lead(lead) => {
                    let outcome = self.lead(&mut answer).await;
                    lead.land(outcome.is_ok().then_some(self.target));
                    return outcome;
                }
                Turn::Follow(rx) => match Flights::wait(rx).await {
                    Landed::In(repo) if &repo == self.target => {
                        self.progress.stored(&self.blob.digest);
                        self.meter.at(self.blob.size);
                        Counters::add(&self.counters.blobs_skipped, 1);
                        return Ok(BlobOutcome::Skipped);
                    }
                    // In another repository (the location index knows it now, so the next
                    // turn mounts it), or the leader failed: take a turn.
                    Landed::In(_) | Landed::Failed => {}
                },
            }
        }
    }

    /// Places, claims and sends the blob, as this process's one flight of it; in a fleet,
    /// as the fleet's one sender of it (see `fleet.rs`).
    async fn lead(&self, answer: &mut Answer) -> Result<BlobOutcome, CopyError> {
        let upload = match self.place(self.target_is_new).await? {
            Placed::Done(how) => return Ok(how),
            Placed::Send(upload) => upload,
        };
        let fleet = self
            .engine
            .fleet
            .as_ref()
            .filter(|_| self.blob.size >= LEASE_MIN);
        let claimed = match fleet {
            Some(fleet) => match self.claim(fleet, upload).await? {
                claim::Claim::Done(how) => return Ok(how),
                claim::Claim::Send(claimed) => *claimed,
            },
            None => self.claim_here(upload),
        };
        let Claimed {
            upload,
            keeper,
            left_off,
        } = claimed;
        let sent = self.send(upload, answer, left_off, &keeper).await;
        match &sent {
            Ok(_) => {
                if let Keeper::Lease(_) = keeper {
                    // Told before the lease goes, so that a worker waiting for it learns where.
                    if let Some(fleet) = fleet {
                        fleet.announce_now(self.target, &self.blob.digest).await;
                    }
                }
                keeper.landed(self).await;
            }
            Err(CopyError::Interrupted) => keeper.kept(),
            Err(_) => keeper.given_up(self).await,
        }
        sent
    }

    /// The blob is in the target repository: remembered for mounts (and told to the fleet,
    /// unless a lease holder tells it before letting go), counted.
    fn stored(&self, how: BlobOutcome, leased: bool) {
        let engine = self.engine;
        engine.mounts.record(self.target, &self.blob.digest);
        if let Some(fleet) = engine.fleet.as_ref().filter(|_| !leased) {
            fleet.announce(self.target, &self.blob.digest);
        }
        self.progress.stored(&self.blob.digest);
        self.meter.at(self.blob.size);
        let counter = match how {
            BlobOutcome::Skipped => &self.counters.blobs_skipped,
            BlobOutcome::Mounted => &self.counters.blobs_mounted,
            BlobOutcome::Copied => &self.counters.blobs_copied,
        };
        Counters::add(counter, 1);
    }
}
