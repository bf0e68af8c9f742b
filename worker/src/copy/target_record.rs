//! What each target tag was last seen to hold, so that a run soon after another asks only the
//! sources: a target tag whose record, younger than its maximum age, names the digest the
//! source HEAD answers is up to date without a HEAD of its own.
//!
//! Only what a target itself answered is recorded: a HEAD of the tag, or the manifest a copy
//! pushed under it. A tag found up to date through the record is not recorded again, so an
//! entry ages from the last time the target was asked, and a tag changed or deleted at the
//! target behind the mirror's back is seen again once its entry is older than the maximum age.
//! A record that names another digest than the source's is never trusted: the target is asked.
//! The record is a cache: safe to lose, one `seconds registry repository tag digest` line per
//! observation, appended by a thread of its own; the last line of a tag wins.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use image_mirror_common::atomic_file::write_atomic;
use image_mirror_common::{Digest, Repository};

use crate::copy::appender::Appender;

/// How long a target tag's record is trusted by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Lines kept beyond one per tag before the file is compacted on load.
const COMPACT_SLACK: usize = 10_000;

/// A target tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TagKey {
    registry: String,
    repository: String,
    tag: String,
}

/// What a target tag was seen to hold, and when (seconds since the epoch).
#[derive(Debug, Clone)]
struct Seen {
    digest: Digest,
    at: u64,
}

/// What each target tag was last seen to hold; see the module's documentation.
#[derive(Debug)]
pub struct TargetRecord {
    max_age: Duration,
    known: Mutex<HashMap<TagKey, Seen>>,
    file: Option<Appender>,
}

impl Default for TargetRecord {
    fn default() -> Self {
        Self::off()
    }
}

impl TargetRecord {
    /// No record: every target tag is asked.
    pub fn off() -> Self {
        Self {
            max_age: Duration::ZERO,
            known: Mutex::default(),
            file: None,
        }
    }

    /// A record trusted for `max_age` (zero: off), kept in `path` (created when missing).
    /// Unreadable lines are skipped; a file that cannot be opened leaves the record in memory,
    /// with a warning.
    pub fn persistent(path: &Path, max_age: Duration) -> Self {
        if max_age.is_zero() {
            return Self::off();
        }
        let now = now();
        let (known, lines) = load(path, now, max_age);
        if lines > known.len() + COMPACT_SLACK {
            let text: String = known.iter().map(|(k, s)| line(k, s)).collect();
            if let Err(e) = write_atomic(path, text.as_bytes()) {
                tracing::warn!(path = %path.display(), error = %e, "could not compact the target tag record");
            }
        }
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(path));
        let file = match file {
            Ok(f) => Some(Appender::new(f, "target tag record")),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "target tag record unavailable; every target tag is asked");
                None
            }
        };
        Self {
            max_age,
            known: Mutex::new(known),
            file,
        }
    }

    /// The digest `repo:tag` was seen to hold, when that was less than the maximum age ago.
    pub(crate) fn held(&self, repo: &Repository, tag: &str) -> Option<Digest> {
        if self.max_age.is_zero() {
            return None;
        }
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let seen = known.get(&key(repo, tag))?;
        fresh(seen, now(), self.max_age).then(|| seen.digest.clone())
    }

    /// Records that the target answered that `repo:tag` holds `digest`.
    pub(crate) fn saw(&self, repo: &Repository, tag: &str, digest: &Digest) {
        if self.max_age.is_zero() {
            return;
        }
        let (key, seen) = (
            key(repo, tag),
            Seen {
                digest: digest.clone(),
                at: now(),
            },
        );
        let text = line(&key, &seen);
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        // The same answer again within a quarter of the age changes nothing worth a line.
        let unchanged = known.get(&key).is_some_and(|old| {
            old.digest == seen.digest && seen.at.saturating_sub(old.at) < self.max_age.as_secs() / 4
        });
        if unchanged {
            return;
        }
        known.insert(key, seen);
        drop(known);
        if let Some(file) = &self.file {
            file.append(text);
        }
    }
}

fn key(repo: &Repository, tag: &str) -> TagKey {
    TagKey {
        registry: repo.registry().to_owned(),
        repository: repo.path().to_owned(),
        tag: tag.to_owned(),
    }
}

fn line(key: &TagKey, seen: &Seen) -> String {
    format!(
        "{} {} {} {} {}\n",
        seen.at, key.registry, key.repository, key.tag, seen.digest
    )
}

fn fresh(seen: &Seen, now: u64, max_age: Duration) -> bool {
    // A time in the future (a clock set back) is not trusted either.
    seen.at <= now && now - seen.at < max_age.as_secs()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The fresh entries of the file at `path` and how many lines it had.
fn load(path: &Path, now: u64, max_age: Duration) -> (HashMap<TagKey, Seen>, usize) {
    let mut known = HashMap::new();
    let mut lines = 0_usize;
    let Ok(f) = File::open(path) else {
        return (known, lines);
    };
    for text in BufReader::new(f).lines().map_while(Result::ok) {
        lines += 1;
        let mut parts = text.split(' ');
        let (Some(at), Some(registry), Some(repository), Some(tag), Some(digest), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            continue;
        };
        let (Ok(at), Ok(digest)) = (at.parse::<u64>(), digest.parse::<Digest>()) else {
            continue;
        };
        let key = TagKey {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        };
        let seen = Seen { digest, at };
        if fresh(&seen, now, max_age) {
            known.insert(key, seen);
        } else {
            known.remove(&key);
        }
    }
    (known, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> Repository {
        "reg.test/org/app".parse().unwrap()
    }

    #[test]
    fn a_tag_seen_is_trusted_across_a_restart_until_its_age_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/target-tags");
        let d = Digest::sha256_of(b"manifest");
        let hour = Duration::from_secs(3600);
        TargetRecord::persistent(&path, hour).saw(&repo(), "v1", &d);
        let reopened = TargetRecord::persistent(&path, hour);
        assert_eq!(reopened.held(&repo(), "v1"), Some(d.clone()));
        assert_eq!(reopened.held(&repo(), "v2"), None);
        let other: Repository = "other.test/org/app".parse().unwrap();
        assert_eq!(reopened.held(&other, "v1"), None);

        // Seen two hours ago: no longer trusted.
        let old = now() - 7200;
        std::fs::write(&path, format!("{old} reg.test org/app v1 {d}\n")).unwrap();
        assert_eq!(
            TargetRecord::persistent(&path, hour).held(&repo(), "v1"),
            None
        );
    }

    #[test]
    fn the_last_answer_wins_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target-tags");
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let t = now();
        std::fs::write(
            &path,
            format!("{t} reg.test org/app v1 {a}\nnot a line\n{t} reg.test org/app v1 {b}\n{t} reg.test org/app v2 nodigest\n"),
        )
        .unwrap();
        let record = TargetRecord::persistent(&path, DEFAULT_MAX_AGE);
        assert_eq!(record.held(&repo(), "v1"), Some(b));
        assert_eq!(record.held(&repo(), "v2"), None);
    }

    #[test]
    fn off_trusts_nothing_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target-tags");
        let record = TargetRecord::persistent(&path, Duration::ZERO);
        record.saw(&repo(), "v1", &Digest::sha256_of(b"a"));
        assert_eq!(record.held(&repo(), "v1"), None);
        assert!(!path.exists());
    }
}
