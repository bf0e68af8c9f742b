//! `check`, the pull-request check of the original tool: which lines images-list has now and
//! did not have at a base revision, and whether each names a source tag that exists. The
//! "source tag exists" rule of `add-tag` is this one too.

use futures_util::{stream, StreamExt};
use image_mirror_common::registry::RegistryClient;
use image_mirror_common::{Digest, Entry, ImagesList};

/// What the source says about an entry's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTag {
    /// It exists, with this digest.
    Exists(Digest),
    /// It does not exist.
    Missing,
    /// It could not be asked (the registry's error).
    Unknown(String),
}

/// The entries of `current` that `base` lacks (all of them without a base).
pub fn added_since<'a>(base: Option<&ImagesList>, current: &'a ImagesList) -> Vec<&'a Entry> {
    current
        .entries()
        .filter(|e| base.is_none_or(|b| !b.contains(e)))
        .collect()
}

/// Whether each entry's source tag exists, asked with a HEAD (no pull), a few at a time.
pub async fn source_tags(registry: &RegistryClient, entries: &[&Entry]) -> Vec<SourceTag> {
    stream::iter(entries.iter())
        .map(|e| async move {
            match registry.manifest_digest(&e.source, e.tag.as_str()).await {
                Ok(Some(digest)) => SourceTag::Exists(digest),
                Ok(None) => SourceTag::Missing,
                Err(e) => SourceTag::Unknown(e.to_string()),
            }
        })
        .buffered(8)
        .collect()
        .await
}
