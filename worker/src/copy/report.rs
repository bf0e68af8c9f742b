//! What a copy did.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use image_mirror_common::{Digest, PlatformSubset};

/// Whether anything was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutcome {
    /// The target was written.
    Copied,
    /// The target tag already had the source digest; nothing was written.
    AlreadyPresent,
    /// The target tag holds another digest and was kept (the drift policy); nothing was
    /// written.
    Drifted,
}

/// The result of one copy.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Copied, already present, or drifted.
    pub outcome: CopyOutcome,
    /// The source's top-level digest (the same at both ends, unless drifted).
    pub digest: Digest,
    /// What the target tag held instead of the source digest: kept (drifted), or replaced
    /// (overwritten by the drift policy).
    pub target_digest: Option<Digest>,
    /// Its media type.
    pub media_type: String,
    /// Platforms of an index at the target (`linux/amd64`, `windows/amd64:10.0.17763.1`):
    /// all of the source's, or those chosen.
    pub platforms: Vec<String>,
    /// When only some platforms were chosen: what the source offered and lacked, and the
    /// digest of the rewritten index a target that refused the sparse one holds.
    pub platform_subset: Option<PlatformSubset>,
    /// Blob bytes sent to the target (resent bytes included).
    pub bytes_sent: u64,
    /// Blobs whose bytes were sent.
    pub blobs_copied: u64,
    /// Blobs mounted from another repository of the target registry.
    pub blobs_mounted: u64,
    /// Blobs the target already had.
    pub blobs_skipped: u64,
    /// Manifests written (children and top level).
    pub manifests_pushed: u64,
    /// Uploads and downloads resumed after a broken connection.
    pub resumes: u64,
    /// Wall time of the copy.
    pub duration: Duration,
    /// Where that time went.
    pub phases: Phases,
    /// What travelled with the image (referrers, digest tags).
    pub attached: Attached,
}

/// The wall time of each phase of one copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Reading the source manifests and asking about the target.
    pub resolve: Duration,
    /// Checking, mounting and sending blobs.
    pub blobs: Duration,
    /// Pushing manifests and verifying the target.
    pub manifests: Duration,
}

/// Counters shared by the blob copies of one image.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub bytes_sent: AtomicU64,
    pub blobs_copied: AtomicU64,
    pub blobs_mounted: AtomicU64,
    pub blobs_skipped: AtomicU64,
    pub manifests_pushed: AtomicU64,
    pub resumes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The report of a copy that began at `started`.
    pub(crate) fn report(
        &self,
        outcome: CopyOutcome,
        digest: Digest,
        media_type: String,
        platforms: Vec<String>,
        started: std::time::Instant,
        phases: Phases,
    ) -> CopyReport {
        CopyReport {
            outcome,
            digest,
            target_digest: None,
            media_type,
            platforms,
            platform_subset: None,
            bytes_sent: Self::get(&self.bytes_sent),
            blobs_copied: Self::get(&self.blobs_copied),
            blobs_mounted: Self::get(&self.blobs_mounted),
            blobs_skipped: Self::get(&self.blobs_skipped),
            manifests_pushed: Self::get(&self.manifests_pushed),
            resumes: Self::get(&self.resumes),
            duration: started.elapsed(),
            phases,
            attached: Attached::default(),
        }
    }
}

/// What travelled with one image, and whose signature let it through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// Referrers copied (or found at the target).
    pub referrers: u64,
    /// Digest tags copied.
    pub digest_tags: u64,
    /// Who signed the image, verified: a trusted key (`--require-signature`) or a keyless
    /// identity (`--require-identity`).
    pub verified_by: Option<String>,
    /// Whether `verified_by` is a keyless identity a certificate carried, not a key.
    pub identity_verified: bool,
    /// This copy's signed statement (`--attest`): `pushed`, or `present` when the target
    /// already held it.
    pub attestation: Option<&'static str>,
    /// The policy hook's decision that let this copy through (`--policy-hook`): `allow`.
    pub policy: Option<&'static str>,
}
