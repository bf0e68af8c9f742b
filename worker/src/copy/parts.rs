//! What every copy of a process shares, and every step reads: the registry client, where blobs
//! are (for mounts), what target tags were seen to hold, the blob flights under way, the fleet, this machine's saved uploads, what
//! a drifted target gets, what travels with images, which platforms go and what a target that
//! refuses a sparse index gets, the stop signal and what people watch; and what one copy asks
//! beyond them ([`CopyAsks`]).
//! The engine (`engine.rs`) owns one and hands it to the steps; nothing here does a step.

use std::sync::Arc;

use image_mirror_common::Platforms;
use image_mirror_registry::RegistryClient;

use crate::copy::activity::Activity;
use crate::copy::attachments::{Attach, AttachOptions};
use crate::copy::blob::saved::SavedUploads;
use crate::copy::drift::DriftPolicy;
use crate::copy::fleet::Fleet;
use crate::copy::flights::Flights;
use crate::copy::mounts::MountIndex;
use crate::copy::platforms::OnSparseRefused;
use crate::copy::stop::StopSignal;
use crate::copy::target_record::TargetRecord;

/// Tuning of the copy engine. How large upload requests are is the target registry's to say
/// (`image_mirror_registry::UploadLimits`), not the engine's.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Blobs of one image copied at the same time.
    pub blob_concurrency: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            blob_concurrency: 8,
        }
    }
}

/// What one copy asks beyond the engine's own settings (a job's asks, a command's flags).
#[derive(Debug, Clone, Default)]
pub struct CopyAsks {
    /// What travels with the image besides what the engine sends with every image.
    pub attach: AttachOptions,
    /// Only these platforms of an index, instead of the engine's choice.
    pub platforms: Option<Platforms>,
    /// The images-list revision the copy was planned from, for its attestation.
    pub list_revision: Option<String>,
}

/// What every copy of a process shares; cheap to clone (clones share it all).
#[derive(Clone)]
pub(crate) struct Parts {
    pub(crate) client: RegistryClient,
    pub(crate) mounts: Arc<MountIndex>,
    /// What target tags were seen to hold (off unless given).
    pub(crate) record: Arc<TargetRecord>,
    pub(crate) flights: Arc<Flights>,
    /// In a fleet of workers: leases, shared locations, checkpoints across processes.
    pub(crate) fleet: Option<Arc<Fleet>>,
    /// Where this process's own chunked uploads stand, for the next run.
    pub(crate) saved: SavedUploads,
    pub(crate) options: CopyOptions,
    /// What a drifted target gets: kept (the default) or overwritten.
    pub(crate) drift: Arc<DriftPolicy>,
    /// What travels with each image (nothing by default).
    pub(crate) attach: Arc<Attach>,
    /// Tells copies to stop at a checkpoint.
    pub(crate) stop: StopSignal,
    /// Where people watch the copies in flight.
    pub(crate) activity: Option<Arc<Activity>>,
    /// The platforms of an index copied when a copy does not choose (all when `None`).
    pub(crate) platforms: Option<Platforms>,
    /// What a target that refuses a sparse index gets.
    pub(crate) on_sparse_refused: OnSparseRefused,
    /// Asked before an image is written (`--policy-hook`).
    pub(crate) policy: Option<Arc<crate::copy::policy::PolicyHook>>,
    /// Signs a statement of each copy (`--attest`).
    pub(crate) attester: Option<Arc<crate::copy::attest::Attester>>,
}

impl Parts {
    /// A process's parts over `client`, with `mounts` and `options`, nothing else set.
    pub(crate) fn new(client: RegistryClient, options: CopyOptions, mounts: MountIndex) -> Self {
        Self {
            client,
            mounts: Arc::new(mounts),
            record: Arc::default(),
            flights: Arc::default(),
            fleet: None,
            saved: SavedUploads::nowhere(),
            options,
            drift: Arc::default(),
            attach: Arc::default(),
            stop: StopSignal::new(),
            activity: None,
            platforms: None,
            on_sparse_refused: OnSparseRefused::default(),
            policy: None,
            attester: None,
        }
    }
}
