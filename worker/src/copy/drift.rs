//! Drift: a target tag that holds another digest than its source's (the upstream tag was moved,
//! or the target was written by something else). It is never overwritten by accident: the
//! default keeps the target and reports the entry as drifted, with both digests; overwriting is
//! a decision (`--on-drift overwrite`), and the old manifest can first be kept under a backup
//! tag (`--backup-tag '{tag}-{digest12}'`) so that nothing is lost.

use image_mirror_common::{Digest, Repository, Tag};
use image_mirror_registry::RegistryClient;

use crate::copy::error::CopyError;

/// What to do with a drifted target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDrift {
    /// Keep the target; report the entry as drifted.
    #[default]
    Keep,
    /// Copy the source over it.
    Overwrite,
}

/// How drifted targets are treated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftPolicy {
    /// Keep or overwrite.
    pub on_drift: OnDrift,
    /// Before overwriting, tag the old manifest with this.
    pub backup_tag: Option<BackupTag>,
}

/// A template for the tag that keeps a drifted target's old manifest: `{tag}` is the tag,
/// `{digest}` the old digest's hex, `{digest12}` its first 12 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupTag(String);

const PLACEHOLDERS: [&str; 3] = ["{tag}", "{digest12}", "{digest}"];

impl std::str::FromStr for BackupTag {
    type Err = String;

    fn from_str(template: &str) -> Result<Self, String> {
        let mut rest = template.to_owned();
        for p in PLACEHOLDERS {
            rest = rest.replace(p, "");
        }
        if let Some(open) = rest.find('{') {
            return Err(format!(
                "backup tag {template:?}: unknown placeholder at {:?} (use {{tag}}, {{digest}}, {{digest12}})",
                &rest[open..]
            ));
        }
        let tagged = template.contains("{tag}");
        let unique = template.contains("{digest12}") || template.contains("{digest}");
        if !tagged || !unique {
            return Err(format!(
                "backup tag {template:?} must hold {{tag}} and {{digest12}} or {{digest}}, so that each backup is a tag of its own"
            ));
        }
        let sample = Self(template.to_owned());
        let probe: Digest = Digest::sha256_of(b"backup tag probe");
        let latest: Tag = "latest".parse().map_err(|e| format!("{e}"))?;
        sample
            .render(&latest, &probe)
            .map_err(|e| format!("backup tag {template:?}: {e}"))?;
        Ok(sample)
    }
}

impl BackupTag {
    /// The backup tag of `tag` whose target held `old`.
    pub fn render(&self, tag: &Tag, old: &Digest) -> Result<Tag, String> {
        let hex = old.encoded();
        let text = self
            .0
            .replace("{tag}", tag.as_str())
            .replace("{digest12}", &hex[..hex.len().min(12)])
            .replace("{digest}", hex);
        text.parse::<Tag>()
            .map_err(|e| format!("{text:?} is not a valid tag: {e}"))
    }
}

/// Tags the manifest `old` that `repo:tag` holds with the policy's backup tag, before the tag
/// is overwritten. The manifest is read from the target and pushed back as it is.
pub(crate) async fn back_up(
    client: &RegistryClient,
    repo: &Repository,
    tag: &str,
    old: &Digest,
    template: &BackupTag,
) -> Result<Tag, CopyError> {
    let tag: Tag = tag
        .parse()
        .map_err(|e| CopyError::Invalid(format!("{repo}:{tag}: {e}")))?;
    let backup = template
        .render(&tag, old)
        .map_err(|e| CopyError::Invalid(format!("{repo}:{tag}: {e}")))?;
    let manifest = client.get_manifest(repo, old.as_str()).await?;
    client
        .put_manifest(repo, backup.as_str(), &manifest)
        .await?;
    tracing::info!(target = %repo, %tag, backup = %backup, old = %old, "kept the drifted target under a backup tag before overwriting it");
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_need_the_tag_and_the_digest() {
        let t: BackupTag = "{tag}-{digest12}".parse().unwrap();
        let old = Digest::sha256_of(b"old");
        let tag: Tag = "v1.2.3".parse().unwrap();
        let backup = t.render(&tag, &old).unwrap();
        assert_eq!(backup.as_str(), format!("v1.2.3-{}", &old.encoded()[..12]));
        assert!("{tag}-old".parse::<BackupTag>().is_err());
        assert!("backup-{digest12}".parse::<BackupTag>().is_err());
        assert!("{tag}-{sha}".parse::<BackupTag>().is_err());
        assert!("{tag}/{digest12}".parse::<BackupTag>().is_err());
    }
}
