//! Why a source was not let through.

use image_mirror_registry::RegistryError;

/// A signature requirement not met, or its lookup failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrustError {
    /// Reading the signatures failed (after the registry client's retries).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// What was read is not what its descriptor says.
    #[error("{0}")]
    Invalid(String),
    /// No cosign signature of the source digest is trusted.
    #[error("{image}: not signed by a trusted key or identity ({detail}); not mirrored")]
    Unsigned {
        /// The source image, by digest.
        image: String,
        /// What was found.
        detail: String,
    },
}
