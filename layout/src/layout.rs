//! An OCI image layout on disk (image-spec `image-layout.md`): `oci-layout`, `index.json`, and
//! every blob once under `blobs/<algorithm>/<hex>`, manifests included. Blobs are written to a
//! temporary file beside their place, their digest checked, then renamed: a blob in the layout
//! is always whole and always what its name says.

use std::path::{Path, PathBuf};

use image_mirror_common::Digest;
use serde::{Deserialize, Serialize};

use crate::error::LayoutError;

/// The `oci-layout` file's version.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// The media type of `index.json`.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The largest `index.json` (or manifest) read.
pub const MAX_JSON: u64 = 64 * 1024 * 1024;

/// A descriptor as `index.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// The manifest's media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its names (`org.opencontainers.image.ref.name`, `io.containerd.image.name`) and more.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Its platform, when a writer said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

/// An OCI image layout folder.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout at `root`: it must hold `oci-layout` (of a version this reads) and
    /// `index.json`.
    pub fn open(root: &Path) -> Result<Self, LayoutError> {
        let not = |why: String| LayoutError::NotALayout {
            path: root.to_owned(),
            why,
        };
        if !root.is_dir() {
            return Err(not("not a folder".into()));
        }
        let marker = root.join("oci-layout");
        let text = std::fs::read(&marker).map_err(|_| not("no oci-layout file".into()))?;
        let version: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| LayoutError::Invalid {
                path: marker.clone(),
                message: format!("not JSON: {e}"),
            })?;
        match version.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(v) if v.starts_with("1.") => {}
            other => {
                return Err(LayoutError::Invalid {
                    path: marker,
                    message: format!("imageLayoutVersion {other:?}: only 1.x is read"),
                })
            }
        }
        let layout = Self {
            root: root.to_owned(),
        };
        layout.index()?;
        Ok(layout)
    }

    /// A layout at `root`, made when it is not one yet (an existing one is kept: an export
    /// into it goes on from what it holds).
    pub fn create(root: &Path) -> Result<Self, LayoutError> {
        if root.join("oci-layout").exists() {
            return Self::open(root);
        }
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(LayoutError::io(&blobs))?;
        let marker = root.join("oci-layout");
        let body = serde_json::json!({"imageLayoutVersion": LAYOUT_VERSION}).to_string();
        std::fs::write(&marker, body).map_err(LayoutError::io(&marker))?;
        let layout = Self {
            root: root.to_owned(),
        };
        layout.write_index(&[])?;
        Ok(layout)
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// What `index.json` lists.
    pub fn index(&self) -> Result<Vec<IndexEntry>, LayoutError> {
        let path = self.index_path();
        let bytes = read_capped(&path, MAX_JSON)?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
            path: path.clone(),
            message: format!("not an image index: {e}"),
        })?;
        if index.schema_version != 2 {
            return Err(LayoutError::Invalid {
                path,
                message: format!("schemaVersion {}, expected 2", index.schema_version),
            });
        }
        Ok(index.manifests)
    }

    /// Writes `index.json` listing `entries`, atomically.
    pub fn write_index(&self, entries: &[IndexEntry]) -> Result<(), LayoutError> {
        let index = Index {
            schema_version: 2,
            media_type: Some(INDEX_MEDIA_TYPE.to_owned()),
            manifests: entries.to_vec(),
        };
        let bytes = serde_json::to_vec_pretty(&index).map_err(|e| LayoutError::Invalid {
            path: self.index_path(),
            message: e.to_string(),
        })?;
        write_atomically(&self.index_path(), &bytes)
    }

    /// Where the blob `digest` is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.encoded())
    }

    /// The size of the blob `digest`, when the layout holds it.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.blob_path(digest))
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// The bytes of a small blob (a manifest), at most [`MAX_JSON`].
    pub fn read_small(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        read_capped(&self.blob_path(digest), MAX_JSON)
    }

    /// Stores `bytes` as a blob, checked against `digest` (a mismatch is refused).
    pub fn put_small(&self, digest: &Digest, bytes: &[u8]) -> Result<(), LayoutError> {
        let path = self.blob_path(digest);
        if Digest::sha256_of(bytes) != *digest {
            return Err(LayoutError::Invalid {
                path,
                message: "the bytes do not match the digest".into(),
            });
        }
        if self.blob_size(digest).is_some() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    /// A folder for upload sessions, inside the layout (so that a finished upload is renamed
    /// into place, never copied).
    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join(".uploads")
    }
}

/// Reads at most `cap` bytes of `path`; a longer file is refused.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, LayoutError> {
    let len = std::fs::metadata(path)
        .map_err(LayoutError::io(path))?
        .len();
    if len > cap {
        return Err(LayoutError::Invalid {
            path: path.to_owned(),
            message: format!("{len} bytes, over the {cap}-byte cap"),
        });
    }
    std::fs::read(path).map_err(LayoutError::io(path))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(LayoutError::io(dir))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(LayoutError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(LayoutError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_layout_opens_and_keeps_blobs_once_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let bytes = b"{\"schemaVersion\":2}".to_vec();
        let digest = Digest::sha256_of(&bytes);
        layout.put_small(&digest, &bytes).unwrap();
        layout.put_small(&digest, &bytes).unwrap();
        assert_eq!(layout.blob_size(&digest), Some(bytes.len() as u64));
        assert!(layout
            .put_small(&Digest::sha256_of(b"other"), &bytes)
            .is_err());
        let reopened = Layout::open(dir.path()).unwrap();
        assert!(reopened.index().unwrap().is_empty());
    }

    #[test]
    fn what_is_not_a_layout_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = Layout::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("no oci-layout file"), "{e}");
        Layout::create(dir.path()).unwrap();
        std::fs::write(dir.path().join("index.json"), "{ not json").unwrap();
        let e = Layout::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("index.json"), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
