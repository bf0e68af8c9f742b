//! One blob's copy into one target repository: what every step of it reads (the process's
//! parts, the blob, its source and target, the image copy's counters, blob states and byte
//! meter), how it ended, and what landing it means (remembered for mounts, told to the fleet,
//! counted).

use image_mirror_common::Repository;
use image_mirror_registry::{Descriptor, UploadPlan};

use crate::copy::activity::Meter;
use crate::copy::blob::source::SourceReader;
use crate::copy::blob_states::BlobStates;
use crate::copy::parts::Parts;
use crate::copy::report::Counters;

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

/// One blob's copy into one target repository: what its steps read.
pub(crate) struct BlobCopy<'a> {
    pub(crate) parts: &'a Parts,
    pub(crate) source: &'a Repository,
    pub(crate) target: &'a Repository,
    pub(crate) blob: &'a Descriptor,
    /// The image copy's counters.
    pub(crate) counters: &'a Counters,
    /// The image copy's blob states (manifests wait on them).
    pub(crate) blob_states: &'a BlobStates,
    /// Where this blob stands in its copy's byte count.
    pub(crate) meter: &'a Meter,
}

impl BlobCopy<'_> {
    /// The blob is in the target repository: remembered for mounts (and told to the fleet,
    /// unless a lease holder tells it before letting go), counted.
    pub(crate) fn stored(&self, how: BlobOutcome, leased: bool) {
        let parts = self.parts;
        parts.mounts.record(self.target, &self.blob.digest);
        if let Some(fleet) = parts.fleet.as_ref().filter(|_| !leased) {
            fleet.announce(self.target, &self.blob.digest);
        }
        self.blob_states.stored(&self.blob.digest);
        self.meter.at(self.blob.size);
        let counter = match how {
            BlobOutcome::Skipped => &self.counters.blobs_skipped,
            BlobOutcome::Mounted => &self.counters.blobs_mounted,
            BlobOutcome::Copied => &self.counters.blobs_copied,
        };
        Counters::add(counter, 1);
    }

    /// How the blob goes up to its target: whole or in chunks of what size, as the target
    /// registry's limits say (what is known, set, and learned of it), with a session's
    /// advertised minimum chunk when known.
    pub(crate) fn plan(&self, advertised_min: Option<u64>) -> UploadPlan {
        self.parts.client.upload_limits().plan(
            self.target.registry(),
            self.blob.size,
            advertised_min,
        )
    }

    /// A reader of the source blob from `position`.
    pub(crate) fn reader(&self, position: u64) -> SourceReader<'_> {
        SourceReader::new(self.parts, self.source, self.blob, position, self.counters)
    }
}
