//! Checking an event before its line is recorded: the target tag must resolve to the digest
//! the event reports (the source's, or the index rewritten for the chosen platforms when the
//! target refused the sparse one). A forged or stale event records nothing.

use image_mirror_common::{Digest, JobEvent};
use image_mirror_registry::{RegistryClient, RegistryError};

/// What the target registry says about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The target tag holds the event's digest.
    Holds(Digest),
    /// It does not: another digest, or nothing (`None`), or the event names no digest.
    Differs {
        /// What the event claims.
        claimed: Option<Digest>,
        /// What the target holds.
        found: Option<Digest>,
    },
}

/// Asks the target registry whether `event`'s target tag holds its digest.
pub async fn verify(registry: &RegistryClient, event: &JobEvent) -> Result<Verdict, RegistryError> {
    let found = registry
        .manifest_digest(&event.target, event.tag.as_str())
        .await?;
    let claimed = event
        .platform_subset
        .as_ref()
        .and_then(|s| s.rewritten_digest.as_ref())
        .or(event.digest.as_ref());
    Ok(match (claimed, found) {
        (Some(claimed), Some(found)) if claimed == &found => Verdict::Holds(found),
        (claimed, found) => Verdict::Differs {
            claimed: claimed.cloned(),
            found,
        },
    })
}
