//! Where a process's own chunked uploads stand, on disk: the upload state a single process
//! (`copy`, `run`, a worker without the fleet's lease) saves after every chunk the registry
//! confirmed, so that the next run of the same copy, after Ctrl-C or a crash, asks the
//! registry for that session and goes on from there instead of sending the blob again.
//!
//! One small JSON file per (registry, repository, blob) under the cache folder's `uploads/`,
//! replaced atomically; it goes when the blob lands or its upload is given up. A file older
//! than [`KEPT_FOR`] is ignored and removed (registries purge abandoned sessions after about
//! a week: distribution's `uploadpurging` default is 168 hours). Nothing secret is in it: the
//! session's `Location` on the registry and its offset.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use image_mirror_common::atomic_file::write_atomic;
use image_mirror_common::{Digest, Repository};
use serde::{Deserialize, Serialize};

/// How long a saved upload is worth asking the registry about.
pub const KEPT_FOR: Duration = Duration::from_secs(6 * 24 * 3600);

/// The folder of saved uploads, or none (nothing is saved).
#[derive(Debug, Clone, Default)]
pub struct SavedUploads {
    dir: Option<PathBuf>,
}

/// Where an upload stood when it was last saved: its session and the bytes the registry had
/// confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeftOff {
    pub(crate) location: String,
    pub(crate) offset: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    registry: String,
    repository: String,
    digest: String,
    location: String,
    offset: u64,
}

impl SavedUploads {
    /// Saved under `dir/uploads`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: Some(dir.join("uploads")),
        }
    }

    /// Not saved anywhere.
    pub fn nowhere() -> Self {
        Self::default()
    }

    fn file(&self, target: &Repository, digest: &Digest) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let key = format!("{} {} {digest}", target.registry(), target.path());
        let name = Digest::sha256_of(key.as_bytes());
        Some(dir.join(format!("{}.json", name.encoded())))
    }

    /// Where the upload of `digest` into `target` stood, if this machine saved it lately.
    pub(crate) fn get(&self, target: &Repository, digest: &Digest) -> Option<LeftOff> {
        let path = self.file(target, digest)?;
        let meta = std::fs::metadata(&path).ok()?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok());
        if age.is_some_and(|a| a > KEPT_FOR) {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        let same = record.registry == target.registry()
            && record.repository == target.path()
            && record.digest == digest.as_str();
        same.then_some(LeftOff {
            location: record.location,
            offset: record.offset,
        })
    }

    /// Saves that the upload of `digest` into `target` is at `offset` of session `location`.
    pub(crate) fn save(&self, target: &Repository, digest: &Digest, location: &str, offset: u64) {
        let Some(path) = self.file(target, digest) else {
            return;
        };
        let record = Record {
            registry: target.registry().to_owned(),
            repository: target.path().to_owned(),
            digest: digest.to_string(),
            location: location.to_owned(),
            offset,
        };
        let saved = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                write_atomic(&path, &bytes)
            });
        if let Err(e) = saved {
            tracing::debug!(path = %path.display(), error = %e, "could not save where the upload stands");
        }
    }

    /// The upload of `digest` into `target` ended (landed or given up): nothing to resume.
    pub(crate) fn forget(&self, target: &Repository, digest: &Digest) {
        if let Some(path) = self.file(target, digest) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_saved_is_found_for_that_blob_and_repository_only_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let saved = SavedUploads::in_dir(dir.path());
        let repo: Repository = "reg.test/org/app".parse().unwrap();
        let other: Repository = "reg.test/org/other".parse().unwrap();
        let digest = Digest::sha256_of(b"blob");
        assert_eq!(saved.get(&repo, &digest), None);
        saved.save(
            &repo,
            &digest,
            "http://reg.test/v2/org/app/blobs/uploads/u1",
            16,
        );
        saved.save(
            &repo,
            &digest,
            "http://reg.test/v2/org/app/blobs/uploads/u1?_state=2",
            32,
        );
        let left = saved.get(&repo, &digest).unwrap();
        assert_eq!(left.offset, 32);
        assert!(left.location.ends_with("_state=2"));
        assert_eq!(saved.get(&other, &digest), None);
        assert_eq!(saved.get(&repo, &Digest::sha256_of(b"else")), None);
        saved.forget(&repo, &digest);
        assert_eq!(saved.get(&repo, &digest), None);
        assert_eq!(SavedUploads::nowhere().get(&repo, &digest), None);
    }
}
