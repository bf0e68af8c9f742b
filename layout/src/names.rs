//! What an image of a layout is called: the repository and tag a registry serves it under.
//!
//! Writers name an `index.json` entry differently, and this reads each of them:
//!
//! - `io.containerd.image.name`: a full reference (`registry.example.com/team/app:v1`), as
//!   image-mirror and containerd write it: its repository path and tag (the host is dropped:
//!   the importing side says where the images go);
//! - `org.opencontainers.image.ref.name` holding a reference (`team/app:v1`, as `skopeo copy
//!   … oci:DIR:team/app:v1` writes it): the same;
//! - `org.opencontainers.image.ref.name` holding a tag alone (`v1`, as regctl's `ocidir://`,
//!   `crane pull --format oci` with a tag and oras write it): the tag, in the repository the
//!   reader is told (`--repository`);
//! - no name: by digest alone, in that repository.

use crate::layout::IndexEntry;

/// The containerd annotation: a full reference.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation: a tag, or a reference.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where an image of a layout goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Named {
    /// The repository path (`team/app`), without a registry host.
    pub repository: String,
    /// Its tag; `None` for an image named by nothing (served by digest).
    pub tag: Option<String>,
}

/// Why an entry has no name a registry can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index.json entry {digest}: {why}")]
pub struct Unnamed {
    /// The entry's digest.
    pub digest: String,
    /// What is missing.
    pub why: String,
}

/// The name of `entry`; `repository` is where tag-only and unnamed entries go.
pub fn name_of(entry: &IndexEntry, repository: Option<&str>) -> Result<Named, Unnamed> {
    let unnamed = |why: &str| Unnamed {
        digest: entry.digest.to_string(),
        why: why.to_owned(),
    };
    let full = entry
        .annotations
        .get(CONTAINERD_NAME)
        .or_else(|| entry.annotations.get(REF_NAME).filter(|n| is_reference(n)));
    if let Some(full) = full {
        return split_reference(full).ok_or_else(|| unnamed(&format!("{full:?} is not IMAGE:TAG")));
    }
    let Some(repository) = repository else {
        let why = match entry.annotations.get(REF_NAME) {
            Some(tag) => {
                format!("named by its tag {tag:?} alone; say its repository with --repository")
            }
            None => "has no name; say its repository with --repository".to_owned(),
        };
        return Err(unnamed(&why));
    };
    Ok(Named {
        repository: repository.trim_matches('/').to_owned(),
        tag: entry.annotations.get(REF_NAME).cloned(),
    })
}

/// Whether a `ref.name` is a reference rather than a tag (a tag holds neither `/` nor `:`).
fn is_reference(name: &str) -> bool {
    name.contains('/') || name.contains(':')
}

/// `[host/]path:tag` (a `@digest` part dropped) as a repository path and a tag.
pub fn split_reference(full: &str) -> Option<Named> {
    let without_digest = full.split('@').next().unwrap_or(full);
    let (path, tag) = match without_digest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag.to_owned())),
        _ => (without_digest, None),
    };
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            parts.remove(0);
        }
    }
    let repository = parts.join("/");
    if repository.is_empty() || tag.as_deref() == Some("") {
        return None;
    }
    Some(Named { repository, tag })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_mirror_common::Digest;

    fn entry(annotations: &[(&str, &str)]) -> IndexEntry {
        IndexEntry {
            media_type: crate::layout::INDEX_MEDIA_TYPE.into(),
            digest: Digest::sha256_of(b"x"),
            size: 1,
            annotations: annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            platform: None,
        }
    }

    fn named(repository: &str, tag: Option<&str>) -> Named {
        Named {
            repository: repository.into(),
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn each_writers_names_are_read() {
        let containerd = entry(&[
            (CONTAINERD_NAME, "registry.example.com:5000/team/app:v1"),
            (REF_NAME, "v1"),
        ]);
        assert_eq!(
            name_of(&containerd, None),
            Ok(named("team/app", Some("v1")))
        );
        let skopeo = entry(&[(REF_NAME, "team/app:v2")]);
        assert_eq!(name_of(&skopeo, None), Ok(named("team/app", Some("v2"))));
        let regctl = entry(&[(REF_NAME, "v3")]);
        assert_eq!(
            name_of(&regctl, Some("team/other")),
            Ok(named("team/other", Some("v3")))
        );
        let e = name_of(&regctl, None).unwrap_err();
        assert!(e.to_string().contains("--repository"), "{e}");
        assert_eq!(name_of(&entry(&[]), Some("a/b")), Ok(named("a/b", None)));
        assert!(name_of(&entry(&[(CONTAINERD_NAME, "host.example/app:")]), None).is_err());
    }
}
