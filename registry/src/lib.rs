//! The OCI distribution protocol, as image-mirror speaks it to registries it does not trust.
//!
//! This crate owns every byte exchanged with a registry: credentials and the origin they may
//! travel to, token auth, manifests, blobs, uploads (whole, chunked, resumed), referrers and
//! tags, the limits of what a registry accepts ([`upload_limits`]), its rate limits and quota
//! ([`ratelimit`]), and the one retry policy of a request ([`retry`]). Registry quirks stay
//! here; the rest of the code speaks in references, digests and manifests.
//!
//! Every request leaves through the private transport, and only through it: it alone decides
//! where a request may go and whether it carries credentials (`origin`), waits for the
//! registry's gate (a host paused by a 429 or out of quota), holds a request slot, reads every
//! answer within a cap and every request within a deadline (`body`), retries what is
//! transient, and remembers hosts that cannot be reached. Docker Hub's web API
//! ([`dockerhub`]), asked whether a repository exists, goes through it too.

mod auth;
mod authorization;
pub mod bandwidth;
pub mod blob;
pub mod body;
mod call;
pub mod challenge;
pub mod client;
pub mod credentials;
pub mod dockerhub;
pub mod error;
#[cfg(fuzzing)]
pub mod fuzzing;
mod limits;
pub mod manifest;
mod options;
mod origin;
pub mod ratelimit;
mod realm;
pub mod referrers;
pub mod repository;
pub mod retry;
pub mod scope;
pub mod tags;
pub mod token;
mod transport;
mod trust;
mod unreachable;
pub mod upload_limits;

pub use auth::HELPER_TIMEOUT;
pub use blob::{BlobDownload, Mount, Upload};
pub use body::{StallRule, Stalled, Watchdog};
pub use client::RegistryClient;
pub use credentials::{Credential, DockerConfig};
pub use error::{ErrorClass, NetworkFailure, RegistryError, Unreachable};
pub use image_mirror_common::lesson::Lesson;
pub use limits::UploadSlot;
pub use manifest::{Descriptor, Manifest, ManifestHead, ManifestKind, MAX_MANIFEST_BYTES};
pub use options::ClientOptions;
pub use ratelimit::{QuotaView, RateLimitPolicy};
pub use repository::RepositoryStatus;
pub use retry::RetryPolicy;
pub use scope::Scope;
pub use transport::ClientStats;
pub use transport::MAX_REDIRECTS;
pub use upload_limits::{UploadLimits, UploadPlan, UploadSettings};
