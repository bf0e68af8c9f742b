//! The worker role: takes a [`MirrorJob`](image_mirror_common::MirrorJob), copies the image
//! byte for byte from source to target, and reports a
//! [`JobEvent`](image_mirror_common::JobEvent).
//!
//! It owns the copy engine (resolve, skip what the target has, stream blobs with resumption,
//! push manifests children first, verify the digest; only the chosen platforms of an index,
//! keeping its digest where the target allows a sparse index), the rules by which a fleet of workers
//! acts as one (one upload per blob, shared locations, taking over a stopped worker's upload),
//! and the loop that consumes jobs. A source's signature is checked by the trust crate
//! before anything of it is written. It never edits images-list.

pub mod copy;
mod job;
mod job_outcome;
pub mod job_runner;

pub use copy::{
    Activity, AttachOptions, Attached, Compared, Comparison, CopyAsks, CopyEngine, CopyError,
    CopyOptions, CopyOutcome, CopyReport, CopyView, Cost, OnSparseRefused, Phases, SavedUploads,
    StopSignal, TargetOutcome,
};
/// Who an image's signature must come from: `--require-signature`'s keys and
/// `--require-identity`'s identities (the trust crate verifies them).
pub use image_mirror_trust::{IdentityPolicy, Keyless, TrustPolicy, TrustedKeys, TrustedRoot};
pub use job::{Deferral, Handled, Mirror, WorkerOptions};
pub use job_runner::{handle, run_worker};
