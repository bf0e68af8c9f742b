//! Talking to OCI distribution registries: credentials, auth, retries, manifests, blobs and
//! uploads, over one shared HTTP client. Registry quirks stay in this module; the rest of the
//! code speaks in references, digests and manifests.
//!
//! Every request goes through the private transport, which alone decides where a request may
//! go and whether it carries credentials (`origin`), reads every answer within a cap and every
//! request within a deadline (`body`), and remembers hosts that cannot be reached. Docker
//! Hub's web API ([`dockerhub`]), asked whether a repository exists, is here too.

mod auth;
mod authorization;
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
