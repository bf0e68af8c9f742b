//! Copying one blob: skip it when the target has it, mount it when another repository of the
//! target registry has it, else stream it from source to target ([`upload`](super::upload)).
//! Between two registries, the source download is asked for while the target upload opens.
//!
//! Within a process, one copy at a time moves a given blob into a given registry
//! ([`flights`](super::flights)): the others wait for it, then skip or mount.

use std::sync::Arc;

use image_mirror_common::metrics;
use image_mirror_queue::coordination::BlobState;
use image_mirror_registry::{Mount, RegistryError, Upload, UploadPlan, UploadSettings};

use crate::copy::error::CopyError;
use crate::copy::fleet::{Claim, Fleet, Holding, LEASE_MIN};
use crate::copy::flights::{Flights, Landed, Turn};
use crate::copy::report::Counters;
use crate::copy::tee::Supply;
use crate::copy::upload::{Started, Transfer};
use crate::copy::CopyEngine;

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

/// Claims of a blob's lease one copy makes at most, each after the fleet said where the
/// blob landed and mounting it from there did not work.
const CLAIM_ROUNDS: usize = 3;

/// Where the upload of a blob stood when its last holder stopped.
struct LeftOff {
    location: String,
    offset: u64,
}

/// Whether a blob still has to be sent.
enum Placed {
    /// Skipped or mounted.
    Done(BlobOutcome),
    /// To be sent, in the upload a refused mount opened, if any.
    Send(Option<Upload>),
}

/// What a successor found where another worker left a blob.
enum TakenOver {
    /// The upload, ready to go on.
    Resumed(Box<Started>),
    /// The blob itself: that worker's closing request went through.
    Landed,
    /// Neither: the blob starts over.
    StartOver,
}

/// What claiming a blob in the fleet came to.
enum Claimed {
    /// Skipped or mounted after all.
    Done(BlobOutcome),
    /// To be sent; with the lease, and what its previous holder left, when held.
    Send {
        upload: Option<Upload>,
        held: Option<Box<Holding>>,
    },
}

/// How one blob reached the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    Skipped,
    Mounted,
    Copied,
}

impl CopyEngine {
    /// Brings the transfer's blob into its target: after another copy's flight of it when one
    /// is under way; with the download shared with the copy's other targets when `supply` is
    /// given.
    pub(crate) async fn copy_blob(
        &self,
        t: &Transfer<'_>,
        target_is_new: bool,
        supply: Option<Arc<Supply>>,
    ) -> Result<BlobOutcome, CopyError> {
        let Transfer {
            target,
            blob,
            counters,
            progress,
            ..
        } = *t;
        let mut answer = Answer(supply);
        loop {
            match self.flights.take(target, &blob.digest) {
                Turn::Lead(lead) => {
                    let t = Transfer { lease: None, ..*t };
                    let outcome = self.lead_blob(&t, target_is_new, &mut answer).await;
                    lead.land(outcome.is_ok().then_some(target));
                    return outcome;
                }
                Turn::Follow(rx) => match Flights::wait(rx).await {
                    Landed::In(repo) if &repo == target => {
                        progress.stored(&blob.digest);
                        Counters::add(&counters.blobs_skipped, 1);
                        return Ok(BlobOutcome::Skipped);
                    }
                    // In another repository (the location index knows it now, so the next
                    // turn mounts it), or the leader failed: take a turn.
                    Landed::In(_) | Landed::Failed => {}
                },
            }
        }
    }

    /// Skips, mounts or sends the blob, as this process's one flight of it; in a fleet, as
    /// the fleet's one sender of it (see `fleet.rs`).
    async fn lead_blob(
        &self,
        t: &Transfer<'_>,
        target_is_new: bool,
        answer: &mut Answer,
    ) -> Result<BlobOutcome, CopyError> {
        let upload = match self.place(t, target_is_new).await? {
            Placed::Done(how) => return Ok(how),
            Placed::Send(upload) => upload,
        };
        let fleet = self.fleet.as_ref().filter(|_| t.blob.size >= LEASE_MIN);
        let Some(fleet) = fleet else {
            return self.send_blob(t, upload, answer, None).await;
        };
        let (upload, held) = match self.claim(fleet, t, upload).await? {
            Claimed::Done(how) => return Ok(how),
            Claimed::Send { upload, held } => (upload, held),
        };
        let Some(held) = held else {
            return self.send_blob(t, upload, answer, None).await;
        };
        let Holding { lease, state, .. } = *held;
        let left_off = match state {
            Some(BlobState::Uploading {
                repository,
                location,
                offset,
            }) if repository == t.target.path() => Some(LeftOff { location, offset }),
            _ => None,
        };
        let leased = Transfer {
            lease: Some(&lease),
            ..*t
        };
        let sent = self.send_blob(&leased, upload, answer, left_off).await;
        let said = match &sent {
            Ok(_) => {
                // Told before the lease goes, so that a worker waiting for it learns where.
                fleet.announce_now(t.target, &t.blob.digest).await;
                lease.landed().await
            }
            Err(_) => lease.abandon().await,
        };
        if let Err(e) = said {
            tracing::debug!(error = %e, "could not tell the fleet how the blob ended");
        }
        sent
    }

    /// Skips the blob when the target has it, mounts it when another repository of the
    /// registry is known to; else says it must be sent (with the upload a refused mount
    /// opened, if any).
    async fn place(&self, t: &Transfer<'_>, target_is_new: bool) -> Result<Placed, CopyError> {
        let (client, target, blob) = (&self.client, t.target, t.blob);
        let mount_from = self.mounts.source_for(target, &blob.digest);
        // With a mount candidate, the mount itself tells whether the blob is there. A
        // repository that did not exist when the copy began holds only what an earlier,
        // broken copy left there, which the location index knows when that copy ran here.
        let may_be_there = !target_is_new || self.mounts.holds(target, &blob.digest);
        if mount_from.is_none() && may_be_there && client.blob_exists(target, &blob.digest).await? {
            self.stored(t, BlobOutcome::Skipped);
            return Ok(Placed::Done(BlobOutcome::Skipped));
        }
        let Some(from) = mount_from else {
            return Ok(Placed::Send(None));
        };
        match client.mount_blob(target, &blob.digest, &from).await {
            Ok(Mount::Mounted) => {
                self.stored(t, BlobOutcome::Mounted);
                Ok(Placed::Done(BlobOutcome::Mounted))
            }
            Ok(Mount::Upload(u)) => Ok(Placed::Send(Some(u))),
            Err(e) => {
                tracing::debug!(error = %e, "mount refused; sending the bytes");
                Ok(Placed::Send(None))
            }
        }
    }

    /// Claims the blob in the fleet: mounts or skips it when another worker landed it
    /// meanwhile, else holds its lease (with where a previous holder's upload stood) or goes
    /// on alone.
    async fn claim(
        &self,
        fleet: &Fleet,
        t: &Transfer<'_>,
        mut upload: Option<Upload>,
    ) -> Result<Claimed, CopyError> {
        let chunks = self.plan_for(t, None) != UploadPlan::Whole;
        for _ in 0..CLAIM_ROUNDS {
            let held = match fleet
                .claim(t.target, &t.blob.digest, &self.mounts, chunks)
                .await
            {
                Claim::Alone => break,
                Claim::Learned => None,
                Claim::Held(held) if !held.waited => {
                    return Ok(Claimed::Send {
                        upload,
                        held: Some(held),
                    })
                }
                Claim::Held(held) => Some(held),
            };
            // Another worker had it: skip or mount it with what is known now.
            if let Some(u) = upload.take() {
                self.client.cancel_upload(t.target, &u).await;
            }
            match self.place(t, false).await? {
                Placed::Done(how) => {
                    if let Some(h) = held {
                        let _ = h.lease.landed().await;
                    }
                    return Ok(Claimed::Done(how));
                }
                Placed::Send(u) => upload = u,
            }
            if held.is_some() {
                return Ok(Claimed::Send { upload, held });
            }
        }
        Ok(Claimed::Send { upload, held: None })
    }

    /// Sends the blob's bytes: from where another worker left the upload when it can be
    /// taken over, else from the start (with the download shared with the copy's other
    /// targets when there are).
    async fn send_blob(
        &self,
        t: &Transfer<'_>,
        upload: Option<Upload>,
        answer: &mut Answer,
        left_off: Option<LeftOff>,
    ) -> Result<BlobOutcome, CopyError> {
        let taken_over = match left_off {
            Some(left) => self.take_over(t, left).await?,
            None => TakenOver::StartOver,
        };
        let mut started = match taken_over {
            TakenOver::Resumed(started) => {
                if let Some(u) = upload {
                    self.client.cancel_upload(t.target, &u).await;
                }
                *started
            }
            TakenOver::Landed => {
                if let Some(u) = upload {
                    self.client.cancel_upload(t.target, &u).await;
                }
                self.stored(t, BlobOutcome::Skipped);
                return Ok(BlobOutcome::Skipped);
            }
            TakenOver::StartOver => {
                let tee = match answer.0.take() {
                    Some(supply) => supply.join(self, t.source, t.blob).await,
                    None => None,
                };
                self.start(t, upload, tee).await?
            }
        };
        loop {
            let sent = match self.plan(t, &started.upload) {
                UploadPlan::Whole => self.upload_whole(t, started).await,
                UploadPlan::Chunked { chunk } => self.upload_chunked(t, started, chunk).await,
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
                })) if self
                    .client
                    .upload_limits()
                    .refused(&registry, sent, limit)
                    .is_some() =>
                {
                    Counters::add(&t.counters.resumes, 1);
                    started = self.start(t, None, None).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.stored(t, BlobOutcome::Copied);
        Ok(BlobOutcome::Copied)
    }

    /// How the blob goes up to the target: whole or in chunks of what size, from the target
    /// registry's limits and the session's advertised minimum.
    fn plan(&self, t: &Transfer<'_>, upload: &Upload) -> UploadPlan {
        self.plan_for(t, upload.min_chunk)
    }

    /// The plan with a session's advertised minimum chunk, if known.
    fn plan_for(&self, t: &Transfer<'_>, advertised_min: Option<u64>) -> UploadPlan {
        let defaults = UploadSettings {
            chunk: Some(self.options.chunk_size),
            blob_max: Some(self.options.single_request_max),
        };
        self.client
            .upload_limits()
            .plan(t.target.registry(), t.blob.size, defaults, advertised_min)
    }

    /// Where another worker left the blob at `left`: its upload, ready to go on from where the
    /// registry has it; else the blob itself, when that worker's closing request went through
    /// before it died (one HEAD); else nothing, and the blob starts over.
    async fn take_over(&self, t: &Transfer<'_>, left: LeftOff) -> Result<TakenOver, CopyError> {
        if let Some(started) = self.resume_left(t, left).await? {
            return Ok(TakenOver::Resumed(Box::new(started)));
        }
        if self.client.blob_exists(t.target, &t.blob.digest).await? {
            tracing::info!(blob = %t.blob.digest, "the upload another worker left was finished: the blob is in the repository");
            return Ok(TakenOver::Landed);
        }
        tracing::info!(blob = %t.blob.digest, "the registry no longer has the upload another worker left; starting the blob over");
        Ok(TakenOver::StartOver)
    }

    /// The upload another worker left at `left`, when the registry still has it where the
    /// checkpoint says: ready to go on from there.
    async fn resume_left(
        &self,
        t: &Transfer<'_>,
        left: LeftOff,
    ) -> Result<Option<Started>, CopyError> {
        if left.offset >= t.blob.size {
            return Ok(None);
        }
        let client = &self.client;
        let mut upload = match client.resumed_upload(t.target, &left.location) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "the checkpoint's upload cannot be taken over");
                return Ok(None);
            }
        };
        if self.plan(t, &upload) == UploadPlan::Whole
            || client.upload_limits().range_is_stuck(t.target.registry())
        {
            return Ok(None);
        }
        match client.upload_status(t.target, &mut upload).await {
            Ok(()) if upload.offset > 0 && upload.offset < t.blob.size => {}
            Ok(()) | Err(_) => return Ok(None),
        }
        tracing::info!(blob = %t.blob.digest, offset = upload.offset, "taking over the upload another worker left");
        metrics::UPLOAD_TAKEOVERS.inc(&[]);
        Counters::add(&t.counters.resumes, 1);
        let slot = client.upload_slot(t.target.registry()).await?;
        Ok(Some(Started {
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
    async fn start(
        &self,
        t: &Transfer<'_>,
        upload: Option<image_mirror_registry::Upload>,
        tee: Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>,
    ) -> Result<Started, CopyError> {
        let client = &self.client;
        let slot = client.upload_slot(t.target.registry()).await?;
        let (upload, download) = match upload {
            Some(u) => (u, None),
            None if tee.is_some() => (client.start_upload(t.target).await?, None),
            None if t.source.registry() != t.target.registry() => {
                let (upload, download) = tokio::join!(
                    client.start_upload(t.target),
                    client.get_blob(t.source, &t.blob.digest, 0, t.blob.size)
                );
                let upload = upload?;
                match download {
                    Ok(d) => (upload, Some(d)),
                    Err(e) => {
                        client.cancel_upload(t.target, &upload).await;
                        return Err(e.into());
                    }
                }
            }
            None => (client.start_upload(t.target).await?, None),
        };
        Ok(Started {
            upload,
            slot,
            download,
            tee,
        })
    }

    /// The blob is in the target repository: remembered for mounts (and told to the fleet),
    /// counted.
    fn stored(&self, t: &Transfer<'_>, how: BlobOutcome) {
        self.mounts.record(t.target, &t.blob.digest);
        // A leased blob is announced before its lease goes (see `lead_blob`).
        if let Some(fleet) = self.fleet.as_ref().filter(|_| t.lease.is_none()) {
            fleet.announce(t.target, &t.blob.digest);
        }
        t.progress.stored(&t.blob.digest);
        let counter = match how {
            BlobOutcome::Skipped => &t.counters.blobs_skipped,
            BlobOutcome::Mounted => &t.counters.blobs_mounted,
            BlobOutcome::Copied => &t.counters.blobs_copied,
        };
        Counters::add(counter, 1);
    }
}
