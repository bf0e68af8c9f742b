//! An OCI image layout on disk (image-spec `image-layout.md`): `oci-layout`, `index.json`, and
//! every blob once under `blobs/<algorithm>/<hex>`, manifests included. Blobs are written to a
//! temporary file beside their place, their digest checked, then renamed: a blob in the layout
//! is always whole and always what its name says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image_mirror_common::Digest;
use serde::{Deserialize, Serialize};

use crate::error::LayoutError;
use crate::parts::PartFiles;
use crate::tar::{TarIndex, TarWriter};

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

/// An OCI image layout: a folder, or one `.tar` file of its members.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    store: Arc<Store>,
}

/// Where a layout's members are.
#[derive(Debug)]
enum Store {
    /// A folder.
    Dir,
    /// A tar file (or its parts), read in place.
    TarRead(TarIndex, PartFiles),
    /// A tar file being written.
    TarWrite(Mutex<TarWriting>),
}

/// A tar being written: what it holds so far.
struct TarWriting {
    writer: TarWriter,
    blobs: HashMap<Digest, u64>,
    small: HashMap<Digest, Vec<u8>>,
}

impl std::fmt::Debug for TarWriting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TarWriting({} blobs)", self.blobs.len())
    }
}

/// The member name of a blob.
fn member(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.encoded())
}

impl Layout {
    /// The layout at `root`, a folder or a `.tar` file: it must hold `oci-layout` (of a
    /// version this reads) and `index.json`.
    pub fn open(root: &Path) -> Result<Self, LayoutError> {
        let not = |why: String| LayoutError::NotALayout {
            path: root.to_owned(),
            why,
        };
        let store = if root.is_dir() {
            Store::Dir
        } else if PartFiles::exist(root) {
            let files = PartFiles::open(root)?;
            Store::TarRead(TarIndex::read(&files)?, files)
        } else {
            return Err(not(
                "neither a folder, a tar file, nor the parts of one".into()
            ));
        };
        let layout = Self {
            root: root.to_owned(),
            store: Arc::new(store),
        };
        let marker = layout.member_path("oci-layout");
        let text = layout
            .read_member("oci-layout")
            .map_err(|_| not("no oci-layout file".into()))?;
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
        layout.index()?;
        Ok(layout)
    }

    /// A layout at `root`, made when it is not one yet. A folder that is a layout already is
    /// gone on with (an export into it writes only what it lacks); a path ending in `.tar`
    /// is a new tar file, written as a stream.
    pub fn create(root: &Path) -> Result<Self, LayoutError> {
        Self::create_split(root, None)
    }

    /// [`create`](Self::create); a tar in parts of at most `split` bytes when given.
    pub fn create_split(root: &Path, split: Option<u64>) -> Result<Self, LayoutError> {
        let marker = serde_json::json!({"imageLayoutVersion": LAYOUT_VERSION}).to_string();
        if root.extension().is_some_and(|e| e == "tar") {
            let mut writer = TarWriter::create(root, split)?;
            writer.append_bytes("oci-layout", marker.as_bytes())?;
            let writing = TarWriting {
                writer,
                blobs: HashMap::new(),
                small: HashMap::new(),
            };
            return Ok(Self {
                root: root.to_owned(),
                store: Arc::new(Store::TarWrite(Mutex::new(writing))),
            });
        }
        if root.join("oci-layout").exists() {
            return Self::open(root);
        }
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(LayoutError::io(&blobs))?;
        let path = root.join("oci-layout");
        std::fs::write(&path, marker).map_err(LayoutError::io(&path))?;
        let layout = Self {
            root: root.to_owned(),
            store: Arc::new(Store::Dir),
        };
        layout.write_index(&[])?;
        Ok(layout)
    }

    /// The folder or tar file.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How a member is named in messages.
    fn member_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The bytes of the small member `name` (at most [`MAX_JSON`]).
    fn read_member(&self, name: &str) -> Result<Vec<u8>, LayoutError> {
        let path = self.member_path(name);
        let missing = || LayoutError::io(&path)(std::io::ErrorKind::NotFound.into());
        match self.store.as_ref() {
            Store::Dir => read_capped(&path, MAX_JSON),
            Store::TarRead(index, files) => {
                let (at, size) = index.member(name).ok_or_else(missing)?;
                if size > MAX_JSON {
                    return Err(LayoutError::Invalid {
                        path,
                        message: format!("{size} bytes, over the {MAX_JSON}-byte cap"),
                    });
                }
                files.read_at(at, size)
            }
            Store::TarWrite(_) => Err(missing()),
        }
    }

    /// The bundle's lock ([`LOCK_FILE`](crate::LOCK_FILE)), when it has one.
    pub fn read_lock(&self) -> Result<Option<crate::Lock>, LayoutError> {
        match self.read_member(crate::LOCK_FILE) {
            Ok(bytes) => crate::Lock::parse(&bytes, &self.member_path(crate::LOCK_FILE)).map(Some),
            Err(LayoutError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The path of `index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.member_path("index.json")
    }

    /// What `index.json` lists.
    pub fn index(&self) -> Result<Vec<IndexEntry>, LayoutError> {
        let path = self.index_path();
        let bytes = self.read_member("index.json")?;
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

    /// Writes `index.json` listing `entries` (atomically in a folder).
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
        self.put_file("index.json", &bytes)
    }

    /// Writes the member `name` (a file beside `index.json`).
    pub fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), LayoutError> {
        match self.store.as_ref() {
            Store::Dir => write_atomically(&self.member_path(name), bytes),
            Store::TarWrite(w) => lock(w).writer.append_bytes(name, bytes),
            Store::TarRead(..) => Err(self.read_only()),
        }
    }

    /// Ends the writing: a tar gets its end, a folder loses its empty upload folder.
    pub fn finish(&self) -> Result<(), LayoutError> {
        let _ = std::fs::remove_dir(self.uploads_dir());
        match self.store.as_ref() {
            Store::TarWrite(w) => lock(w).writer.finish(),
            _ => Ok(()),
        }
    }

    fn read_only(&self) -> LayoutError {
        LayoutError::Invalid {
            path: self.root.clone(),
            message: "a tar bundle is read in place and not written to".into(),
        }
    }

    /// Where the blob `digest` is (or would be) in a folder; how it is named otherwise.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(member(digest))
    }

    /// The size of the blob `digest`, when the layout holds it.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        match self.store.as_ref() {
            Store::Dir => std::fs::metadata(self.blob_path(digest))
                .ok()
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len()),
            Store::TarRead(index, _) => index.member(&member(digest)).map(|(_, size)| size),
            Store::TarWrite(w) => lock(w).blobs.get(digest).copied(),
        }
    }

    /// The file (or parts), offset and size of the blob `digest`, to read it in place.
    pub fn blob_span(&self, digest: &Digest) -> Option<(PartFiles, u64, u64)> {
        match self.store.as_ref() {
            Store::Dir => {
                let size = self.blob_size(digest)?;
                let file = PartFiles::open(&self.blob_path(digest)).ok()?;
                Some((file, 0, size))
            }
            Store::TarRead(index, files) => index
                .member(&member(digest))
                .map(|(at, size)| (files.clone(), at, size)),
            Store::TarWrite(_) => None,
        }
    }

    /// The bytes of a small blob (a manifest), at most [`MAX_JSON`].
    pub fn read_small(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        if let Store::TarWrite(w) = self.store.as_ref() {
            return lock(w).small.get(digest).cloned().ok_or_else(|| {
                LayoutError::io(self.blob_path(digest))(std::io::ErrorKind::NotFound.into())
            });
        }
        self.read_member(&member(digest))
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
        match self.store.as_ref() {
            Store::Dir => write_atomically(&path, bytes),
            Store::TarWrite(w) => {
                let mut w = lock(w);
                w.writer.append_bytes(&member(digest), bytes)?;
                w.blobs.insert(digest.clone(), bytes.len() as u64);
                w.small.insert(digest.clone(), bytes.to_vec());
                Ok(())
            }
            Store::TarRead(..) => Err(self.read_only()),
        }
    }

    /// Takes the checked upload at `upload` (`size` bytes) as the blob `digest`: renamed
    /// into place in a folder, appended to a tar; the upload file is gone either way.
    pub fn land(&self, digest: &Digest, upload: &Path, size: u64) -> Result<(), LayoutError> {
        if self.blob_size(digest).is_some() {
            return std::fs::remove_file(upload).map_err(LayoutError::io(upload));
        }
        match self.store.as_ref() {
            Store::Dir => {
                let place = self.blob_path(digest);
                if let Some(dir) = place.parent() {
                    std::fs::create_dir_all(dir).map_err(LayoutError::io(dir))?;
                }
                std::fs::rename(upload, &place).map_err(LayoutError::io(&place))
            }
            Store::TarWrite(w) => {
                let mut w = lock(w);
                w.writer.append_file(&member(digest), upload, size)?;
                w.blobs.insert(digest.clone(), size);
                std::fs::remove_file(upload).map_err(LayoutError::io(upload))
            }
            Store::TarRead(..) => Err(self.read_only()),
        }
    }

    /// A folder for upload sessions: inside a folder layout (so that a finished upload is
    /// renamed into place, never copied), beside a tar.
    pub fn uploads_dir(&self) -> PathBuf {
        match self.store.as_ref() {
            Store::Dir => self.root.join(".uploads"),
            _ => {
                let mut name = self.root.as_os_str().to_owned();
                name.push(".uploads");
                PathBuf::from(name)
            }
        }
    }
}

fn lock(w: &Mutex<TarWriting>) -> std::sync::MutexGuard<'_, TarWriting> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
