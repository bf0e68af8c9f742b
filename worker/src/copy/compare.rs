//! What a copy would do, reading only (`run --dry-run`): the source's digest and how the
//! target's tag stands against it, from one `HEAD` at each end, asked together.

use image_mirror_common::{Digest, ImageRef};
use image_mirror_registry::RegistryError;

use crate::copy::{CopyEngine, CopyError};

/// How a target stands against its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The target has the source digest.
    UpToDate {
        /// The digest at both ends.
        digest: Digest,
    },
    /// The target tag does not exist.
    Missing {
        /// The source digest.
        source: Digest,
    },
    /// The target tag points elsewhere.
    Differs {
        /// The source digest.
        source: Digest,
        /// What the target holds.
        target: Digest,
    },
}

impl CopyEngine {
    /// What a copy would do, reading only: the source digest and whether the target has it.
    pub async fn compare(
        &self,
        source: &ImageRef,
        target: &ImageRef,
    ) -> Result<Comparison, CopyError> {
        let reference = target
            .tag()
            .or(source.tag())
            .map(ToString::to_string)
            .unwrap_or_else(|| source.reference());
        let source_reference = source.reference();
        let (src, dst) = tokio::join!(
            self.client
                .manifest_digest(source.repository(), &source_reference),
            self.client.manifest_digest(target.repository(), &reference)
        );
        let src = src?.ok_or_else(|| {
            CopyError::Registry(RegistryError::NotFound {
                registry: source.repository().registry().to_owned(),
                operation: format!(
                    "HEAD manifest {}:{}",
                    source.repository().path(),
                    source.reference()
                ),
            })
        })?;
        Ok(match dst? {
            None => Comparison::Missing { source: src },
            Some(d) if d == src => Comparison::UpToDate { digest: src },
            Some(d) => Comparison::Differs {
                source: src,
                target: d,
            },
        })
    }
}
