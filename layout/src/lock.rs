//! `image-mirror.lock`, at a bundle's root: what the bundle stands for, whole. For each image
//! its source and target references, digest, media type and platforms, and the blobs it needs
//! with their sizes; for each manifest what it lists. A delta bundle carries the whole new lock
//! but only what the lock it follows (`--since`) did not hold.
//!
//! ```json
//! {"format": "image-mirror.lock/1",
//!  "images": [{"source": "quay.io/coreos/etcd:v3.5.21",
//!              "target": "registry.example.com/mirror/etcd:v3.5.21",
//!              "digest": "sha256:…", "media_type": "application/vnd.oci.image.index.v1+json",
//!              "platforms": ["linux/amd64"], "blobs": [{"digest": "sha256:…", "size": 123}]}],
//!  "manifests": {"sha256:…": {"media_type": "…", "size": 456,
//!                             "manifests": ["sha256:…"], "blobs": ["sha256:…"]}}}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use image_mirror_common::{Digest, PlatformSubset};
use serde::{Deserialize, Serialize};

use crate::error::LayoutError;
use crate::layout::{write_atomically, Layout};

/// The lock's format, checked when it is read.
pub const LOCK_FORMAT: &str = "image-mirror.lock/1";
/// The lock's file name at a bundle's root.
pub const LOCK_FILE: &str = "image-mirror.lock";

/// A blob and its size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sized {
    /// Its digest.
    pub digest: Digest,
    /// Bytes.
    pub size: u64,
}

/// One image of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedImage {
    /// Where it was read (`quay.io/coreos/etcd:v3.5.21`).
    pub source: String,
    /// The name the bundle gives it, the one a private registry serves.
    pub target: String,
    /// The digest of the manifest the bundle holds under that name.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its platforms (those kept, when only some were chosen).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// When only some platforms were chosen: the source's offer, and a rewritten digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_subset: Option<PlatformSubset>,
    /// Every blob the image needs (below each of its manifests).
    pub blobs: Vec<Sized>,
}

/// One manifest: what it lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedManifest {
    /// Its media type.
    pub media_type: String,
    /// Bytes.
    pub size: u64,
    /// The manifests it lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Digest>,
    /// The blobs it lists (config and layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<Digest>,
}

/// `image-mirror.lock`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// [`LOCK_FORMAT`].
    pub format: String,
    /// The images, in the order written.
    pub images: Vec<LockedImage>,
    /// Every manifest below them, by digest.
    pub manifests: BTreeMap<Digest, LockedManifest>,
    /// Every blob's size, by digest.
    #[serde(default)]
    pub blob_sizes: BTreeMap<Digest, u64>,
}

impl Lock {
    /// Reads a lock, refusing another format by name.
    pub fn load(path: &Path) -> Result<Self, LayoutError> {
        let bytes = std::fs::read(path).map_err(LayoutError::io(path))?;
        Self::parse(&bytes, path)
    }

    /// A lock from its bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, LayoutError> {
        let invalid = |message: String| LayoutError::Invalid {
            path: path.to_owned(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(LOCK_FORMAT) => {}
            other => {
                return Err(invalid(format!(
                    "format {other:?}: not an image-mirror lock ({LOCK_FORMAT})"
                )))
            }
        }
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
    }

    /// Writes the lock, atomically.
    pub fn write(&self, path: &Path) -> Result<(), LayoutError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| LayoutError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        write_atomically(path, &bytes)
    }

    /// Writes the lock into `layout`, at its root ([`LOCK_FILE`]).
    pub fn write_into(&self, layout: &Layout) -> Result<(), LayoutError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| LayoutError::Invalid {
            path: layout.root().join(LOCK_FILE),
            message: e.to_string(),
        })?;
        layout.put_file(LOCK_FILE, &bytes)
    }

    /// Every digest the bundle of this lock holds: manifests and blobs.
    pub fn holds(&self) -> BTreeSet<Digest> {
        self.manifests
            .keys()
            .chain(self.blob_sizes.keys())
            .cloned()
            .collect()
    }

    /// Records the manifest `top` and all below it, read from `layout`, or else from `base`
    /// (the lock a delta follows); the blobs the tree needs, with their sizes. A manifest
    /// below the top that neither holds is a platform left out (a sparse index).
    pub fn record_tree(
        &mut self,
        layout: &Layout,
        base: Option<&Lock>,
        top: &Digest,
    ) -> Result<Vec<Sized>, LayoutError> {
        let mut blobs = BTreeSet::new();
        let mut stack = vec![top.clone()];
        let mut seen = BTreeSet::new();
        while let Some(digest) = stack.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let manifest = match self.manifests.get(&digest) {
                Some(m) => m.clone(),
                None => match layout.read_small(&digest) {
                    Ok(bytes) => read_manifest(layout, &digest, &bytes, &mut self.blob_sizes)?,
                    Err(e) => match base.and_then(|b| b.manifests.get(&digest)) {
                        Some(m) => {
                            for blob in &m.blobs {
                                if let Some(size) = base.and_then(|b| b.blob_sizes.get(blob)) {
                                    self.blob_sizes.insert(blob.clone(), *size);
                                }
                            }
                            m.clone()
                        }
                        // Below the top, what is absent is a platform left out: the
                        // bundle holds a sparse index.
                        None if digest != *top => continue,
                        None => return Err(e),
                    },
                },
            };
            blobs.extend(manifest.blobs.iter().cloned());
            stack.extend(manifest.manifests.iter().cloned());
            self.manifests.insert(digest, manifest);
        }
        Ok(blobs
            .into_iter()
            .map(|digest| Sized {
                size: self.blob_sizes.get(&digest).copied().unwrap_or(0),
                digest,
            })
            .collect())
    }
}

/// What a manifest of `layout` lists; each blob's size from its descriptor.
fn read_manifest(
    layout: &Layout,
    digest: &Digest,
    bytes: &[u8],
    sizes: &mut BTreeMap<Digest, u64>,
) -> Result<LockedManifest, LayoutError> {
    let body: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| LayoutError::Invalid {
            path: layout.blob_path(digest),
            message: format!("manifest is not JSON: {e}"),
        })?;
    let digests = |list: Option<&Vec<serde_json::Value>>, sizes: &mut BTreeMap<Digest, u64>| {
        list.into_iter()
            .flatten()
            .filter_map(|d| {
                let digest: Digest = d["digest"].as_str()?.parse().ok()?;
                if let Some(size) = d["size"].as_u64() {
                    sizes.insert(digest.clone(), size);
                }
                Some(digest)
            })
            .collect::<Vec<_>>()
    };
    let manifests = digests(body["manifests"].as_array(), &mut BTreeMap::new());
    let mut blob_list: Vec<serde_json::Value> = Vec::new();
    if body["config"].is_object() {
        blob_list.push(body["config"].clone());
    }
    blob_list.extend(body["layers"].as_array().cloned().unwrap_or_default());
    let blobs = digests(Some(&blob_list), sizes);
    Ok(LockedManifest {
        media_type: crate::catalog::sniff_media_type(bytes).unwrap_or_default(),
        size: bytes.len() as u64,
        manifests,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_of_another_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, r#"{"format": "hauler/1", "images": []}"#).unwrap();
        let e = Lock::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("image-mirror.lock") && e.contains("hauler/1"),
            "{e}"
        );
        let lock = Lock {
            format: LOCK_FORMAT.into(),
            ..Lock::default()
        };
        lock.write(&path).unwrap();
        assert_eq!(Lock::load(&path).unwrap(), lock);
    }
}
