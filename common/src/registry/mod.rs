//! Talking to OCI distribution registries: credentials, auth, retries, manifests, blobs and
//! uploads, over one shared HTTP client. Registry quirks stay in this module; the rest of the
//! code speaks in references, digests and manifests.

pub mod blob;
pub mod challenge;
pub mod client;
pub mod credentials;
pub mod error;
pub mod manifest;
pub mod retry;
pub mod tags;
pub mod token;
mod trust;

pub use blob::{BlobDownload, Mount, Upload};
pub use client::{ClientOptions, RegistryClient, UploadSlot};
pub use credentials::{Credential, DockerConfig};
pub use error::{ErrorClass, RegistryError};
pub use manifest::{Descriptor, Manifest, ManifestKind, MAX_MANIFEST_BYTES};
pub use retry::RetryPolicy;
pub use token::Scope;
