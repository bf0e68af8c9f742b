//! Copying one blob: skip it when the target has it, mount it when another repository of the
//! target registry has it, else stream it from source to target ([`upload`](super::upload)).
//! Between two registries, the source download is asked for while the target upload opens.
//!
//! Within a process, one copy at a time moves a given blob into a given registry
//! ([`flights`](super::flights)): the others wait for it, then skip or mount.

use std::sync::Arc;

use image_mirror_common::registry::{Descriptor, Mount};
use image_mirror_common::Repository;

use crate::copy::error::CopyError;
use crate::copy::flights::{Flights, Landed, Turn};
use crate::copy::progress::Progress;
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

/// How one blob reached the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    Skipped,
    Mounted,
    Copied,
}

impl CopyEngine {
    /// Brings `blob` into `target`: after another copy's flight of it when one is under way;
    /// with the download shared with the copy's other targets when `supply` is given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn copy_blob(
        &self,
        source: &Repository,
        target: &Repository,
        blob: &Descriptor,
        target_is_new: bool,
        counters: &Counters,
        progress: &Progress,
        supply: Option<Arc<Supply>>,
    ) -> Result<BlobOutcome, CopyError> {
        let mut answer = Answer(supply);
        loop {
            match self.flights.take(target, &blob.digest) {
                Turn::Lead(lead) => {
                    let t = Transfer {
                        source,
                        target,
                        blob,
                        counters,
                        progress,
                    };
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

    /// Skips, mounts or sends the blob, as this process's one flight of it.
    async fn lead_blob(
        &self,
        t: &Transfer<'_>,
        target_is_new: bool,
        answer: &mut Answer,
    ) -> Result<BlobOutcome, CopyError> {
        let (client, target, blob) = (&self.client, t.target, t.blob);
        let mount_from = self.mounts.source_for(target, &blob.digest);
        // With a mount candidate, the mount itself tells whether the blob is there. A
        // repository that did not exist when the copy began holds only what an earlier,
        // broken copy left there, which the location index knows when that copy ran here.
        let may_be_there = !target_is_new || self.mounts.holds(target, &blob.digest);
        if mount_from.is_none() && may_be_there && client.blob_exists(target, &blob.digest).await? {
            self.stored(t, BlobOutcome::Skipped);
            return Ok(BlobOutcome::Skipped);
        }
        let mut upload = None;
        if let Some(from) = mount_from {
            match client.mount_blob(target, &blob.digest, &from).await {
                Ok(Mount::Mounted) => {
                    self.stored(t, BlobOutcome::Mounted);
                    return Ok(BlobOutcome::Mounted);
                }
                Ok(Mount::Upload(u)) => upload = Some(u),
                Err(e) => tracing::debug!(error = %e, "mount refused; sending the bytes"),
            }
        }
        let tee = match answer.0.take() {
            Some(supply) => supply.join(self, t.source, t.blob).await,
            None => None,
        };
        let started = self.start(t, upload, tee).await?;
        if blob.size <= self.options.single_request_max {
            self.upload_whole(t, started).await?;
        } else {
            self.upload_chunked(t, started).await?;
        }
        self.stored(t, BlobOutcome::Copied);
        Ok(BlobOutcome::Copied)
    }

    /// Takes an upload slot, then opens the upload (unless a refused mount opened one) and,
    /// between two registries, the source download alongside. The upload slot comes first,
    /// then the source's request slot (see `RegistryClient::upload_slot`); within one
    /// registry, the download's request would hold a slot the upload's requests may need.
    async fn start(
        &self,
        t: &Transfer<'_>,
        upload: Option<image_mirror_common::registry::Upload>,
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

    /// The blob is in the target repository: remembered for mounts, counted.
    fn stored(&self, t: &Transfer<'_>, how: BlobOutcome) {
        self.mounts.record(t.target, &t.blob.digest);
        t.progress.stored(&t.blob.digest);
        let counter = match how {
            BlobOutcome::Skipped => &t.counters.blobs_skipped,
            BlobOutcome::Mounted => &t.counters.blobs_mounted,
            BlobOutcome::Copied => &t.counters.blobs_copied,
        };
        Counters::add(counter, 1);
    }
}
