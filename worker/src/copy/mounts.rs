//! Where blobs are known to live in target registries, so that a blob already pushed to one
//! repository is mounted into the next instead of sent again.
//!
//! The index lives in memory and, when given a file, also on disk (one `registry digest
//! repository` line per blob, appended as blobs are seen, by a thread of its own so that no
//! copy waits on the disk), so that separate runs (one `copy` after another, workers
//! restarted) mount too. A stale line costs one refused mount, after which the bytes are sent
//! as usual.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image_mirror_common::atomic_file::write_atomic;
use image_mirror_common::{Digest, Repository};

use crate::copy::appender::Appender;

/// Lines kept before the file is compacted on load.
const COMPACT_OVER: usize = 200_000;

type Key = (String, Digest);

/// `(registry, digest) -> repository path` for blobs seen in target registries.
#[derive(Debug, Default)]
pub struct MountIndex {
    known: Mutex<HashMap<Key, String>>,
    file: Option<Appender>,
}

impl MountIndex {
    /// An index kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// An index backed by `path` (created when missing). Unreadable lines are skipped; a file
    /// that cannot be opened leaves the index in memory only, with a warning.
    pub fn persistent(path: &Path) -> Self {
        let mut known = HashMap::new();
        let mut lines = 0_usize;
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                lines += 1;
                let mut parts = line.split(' ');
                if let (Some(reg), Some(digest), Some(repo)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    if let Ok(d) = digest.parse::<Digest>() {
                        known.insert((reg.to_owned(), d), repo.to_owned());
                    }
                }
            }
        }
        if lines > COMPACT_OVER.max(known.len() * 2) {
            let mut text = String::new();
            for ((reg, digest), repo) in &known {
                text.push_str(&format!("{reg} {digest} {repo}\n"));
            }
            if let Err(e) = write_atomic(path, text.as_bytes()) {
                tracing::warn!(path = %path.display(), error = %e, "could not compact the blob location cache");
            }
        }
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(path));
        let file = match file {
            Ok(f) => Some(Appender::new(f, "blob location cache")),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "blob location cache unavailable; mounts use this run's knowledge only");
                None
            }
        };
        Self {
            known: Mutex::new(known),
            file,
        }
    }

    /// The default cache file: `blob-locations` in [`default_dir`](Self::default_dir).
    pub fn default_path() -> Option<PathBuf> {
        Self::default_dir().map(|d| d.join("blob-locations"))
    }

    /// The default cache folder: `$IMAGE_MIRROR_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/image-mirror`, else `~/.cache/image-mirror`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("IMAGE_MIRROR_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("image-mirror"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/image-mirror"))
            })
    }

    /// Remembers that `repo` holds `digest`.
    pub fn record(&self, repo: &Repository, digest: &Digest) {
        let key = (repo.registry().to_owned(), digest.clone());
        let changed = {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            known.insert(key, repo.path().to_owned()).as_deref() != Some(repo.path())
        };
        if let (true, Some(file)) = (changed, &self.file) {
            file.append(format!("{} {digest} {}\n", repo.registry(), repo.path()));
        }
    }

    /// Whether `repo` itself is the repository last known to hold `digest`.
    pub fn holds(&self, repo: &Repository, digest: &Digest) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(&(repo.registry().to_owned(), digest.clone()))
            .is_some_and(|path| path == repo.path())
    }

    /// Another repository of `repo`'s registry known to hold `digest`.
    pub fn source_for(&self, repo: &Repository, digest: &Digest) -> Option<Repository> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let path = known.get(&(repo.registry().to_owned(), digest.clone()))?;
        if path == repo.path() {
            return None;
        }
        format!("{}/{path}", repo.registry()).parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_other_repositories_of_the_same_registry_only() {
        let index = MountIndex::in_memory();
        let d = Digest::sha256_of(b"layer");
        let a: Repository = "reg.test/org/a".parse().unwrap();
        let b: Repository = "reg.test/org/b".parse().unwrap();
        let elsewhere: Repository = "other.test/org/b".parse().unwrap();
        assert_eq!(index.source_for(&b, &d), None);
        index.record(&a, &d);
        assert_eq!(index.source_for(&b, &d), Some(a.clone()));
        assert_eq!(index.source_for(&a, &d), None);
        assert_eq!(index.source_for(&elsewhere, &d), None);
        assert!(index.holds(&a, &d));
        assert!(!index.holds(&b, &d));
        assert!(!index.holds(&elsewhere, &d));
    }

    #[test]
    fn survives_a_restart_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/blob-locations");
        let d = Digest::sha256_of(b"layer");
        let a: Repository = "reg.test/org/a".parse().unwrap();
        let b: Repository = "reg.test/org/b".parse().unwrap();
        MountIndex::persistent(&path).record(&a, &d);
        std::fs::write(
            &path,
            format!("{}garbage line\n", std::fs::read_to_string(&path).unwrap()),
        )
        .unwrap();
        let reopened = MountIndex::persistent(&path);
        assert_eq!(reopened.source_for(&b, &d), Some(a));
    }
}
