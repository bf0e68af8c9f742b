//! Where blobs are known to live in target registries, so that a blob already pushed to one
//! repository is mounted into the next instead of sent again.

use std::collections::HashMap;
use std::sync::Mutex;

use image_mirror_common::{Digest, Repository};

/// `(registry, digest) -> repository path` for blobs seen in target registries.
#[derive(Debug, Default)]
pub struct MountIndex {
    known: Mutex<HashMap<(String, Digest), String>>,
}

impl MountIndex {
    /// Remembers that `repo` holds `digest`.
    pub fn record(&self, repo: &Repository, digest: &Digest) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(
            (repo.registry().to_owned(), digest.clone()),
            repo.path().to_owned(),
        );
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
        let index = MountIndex::default();
        let d = Digest::sha256_of(b"layer");
        let a: Repository = "reg.test/org/a".parse().unwrap();
        let b: Repository = "reg.test/org/b".parse().unwrap();
        let elsewhere: Repository = "other.test/org/b".parse().unwrap();
        assert_eq!(index.source_for(&b, &d), None);
        index.record(&a, &d);
        assert_eq!(index.source_for(&b, &d), Some(a.clone()));
        assert_eq!(index.source_for(&a, &d), None);
        assert_eq!(index.source_for(&elsewhere, &d), None);
    }
}
