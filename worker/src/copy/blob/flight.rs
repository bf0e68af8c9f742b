//! One blob's copy from its first step to its last: planned, placed, claimed, started, sent,
//! landed (see the module). Within a process one copy at a time moves a given blob into a
//! given registry ([`flights`](crate::copy::flights)): the others wait for it, then skip or
//! mount. A request the registry refuses as too large teaches it a smaller limit, and the
//! blob goes again in a new session.

use std::sync::Arc;

use image_mirror_registry::RegistryError;

use crate::copy::blob::blob_copy::{BlobCopy, BlobOutcome};
use crate::copy::blob::checkpoint::Keeper;
use crate::copy::blob::claim::{Claim, Claimed};
use crate::copy::blob::place::{Placed, Planned};
use crate::copy::blob::start::{open, Begun, Started};
use crate::copy::blob::tee::{Need, Supply};
use crate::copy::error::CopyError;
use crate::copy::flights::{Flights, Landed, Turn};
use crate::copy::report::Counters;

/// Brings the blob into its target: after another copy's flight of it when one is under
/// way; with the download shared with the image copy's other targets when `supply` is given.
/// `target_is_new`: the target repository did not exist when the image copy began.
pub(crate) async fn bring(
    b: &BlobCopy<'_>,
    target_is_new: bool,
    supply: Option<Arc<Supply>>,
) -> Result<BlobOutcome, CopyError> {
    let mut need = Need::to(supply);
    loop {
        match b.parts.flights.take(b.target, &b.blob.digest) {
            Turn::Lead(lead) => {
                let outcome = lead_flight(b, target_is_new, &mut need).await;
                lead.land(outcome.is_ok().then_some(b.target));
                return outcome;
            }
            Turn::Follow(rx) => {
                // Waiting on the flight, this target has no use for the shared download: it
                // answers now, or the flight (which may be the one waiting for that download
                // to start) would wait for it until the join deadline.
                need.pass();
                match Flights::wait(rx).await {
                    Landed::In(repo) if &repo == b.target => {
                        b.blob_states.stored(&b.blob.digest);
                        b.meter.at(b.blob.size);
                        Counters::add(&b.counters.blobs_skipped, 1);
                        return Ok(BlobOutcome::Skipped);
                    }
                    // In another repository (the location index knows it now, so the next
                    // turn mounts it), or the leader failed: take a turn.
                    Landed::In(_) | Landed::Failed => {}
                }
            }
        }
    }
}

/// Places, claims, starts and sends the blob, as this process's one flight of it; in a
/// fleet, as the fleet's one sender of it (see `fleet.rs`). Its checkpoints end with it:
/// forgotten once it landed or was given up, kept when the copy was stopped.
async fn lead_flight(
    b: &BlobCopy<'_>,
    target_is_new: bool,
    need: &mut Need,
) -> Result<BlobOutcome, CopyError> {
    let unsent = match (Planned { target_is_new }).place(b).await? {
        Placed::Done(how) => return Ok(how),
        Placed::Unsent(unsent) => unsent,
    };
    let Claimed { keeper, unstarted } = match unsent.claim(b).await? {
        Claim::Done(how) => return Ok(how),
        Claim::Claimed(claimed) => *claimed,
    };
    let leased = matches!(keeper, Keeper::Lease(_));
    let sent = match unstarted.start(b, need).await {
        Ok(Begun::Found) => Ok(BlobOutcome::Skipped),
        Ok(Begun::Started(started)) => send(b, *started, &keeper).await,
        Err(e) => Err(e),
    };
    match &sent {
        Ok(how) => {
            if leased {
                // Told before the lease goes, so that a worker waiting for it learns where.
                if let Some(fleet) = &b.parts.fleet {
                    fleet.announce_now(b.target, &b.blob.digest).await;
                }
            }
            keeper.landed(b).await;
            b.stored(*how, leased);
        }
        Err(CopyError::Interrupted) => keeper.kept(),
        Err(_) => keeper.given_up(b).await,
    }
    sent
}

/// Sends the started upload; when the registry refuses a request as too large, its limit is
/// lowered (for every later blob too) and the blob goes again in smaller requests, in a new
/// session, as long as there is a smaller size to try.
async fn send(
    b: &BlobCopy<'_>,
    mut started: Started,
    keeper: &Keeper,
) -> Result<BlobOutcome, CopyError> {
    loop {
        match started.send(b, keeper).await {
            Ok(_sent) => return Ok(BlobOutcome::Copied),
            Err(CopyError::Registry(RegistryError::TooLarge {
                registry,
                sent,
                limit,
                ..
            })) if b
                .parts
                .client
                .upload_limits()
                .refused(&registry, sent, limit)
                .is_some() =>
            {
                Counters::add(&b.counters.resumes, 1);
                b.meter.at(0);
                started = open(b, None, None).await?;
            }
            Err(e) => return Err(e),
        }
    }
}
