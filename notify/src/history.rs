//! The last runs' summaries, so that "what happened last night" has an answer without Grafana:
//! `run`, `import` and the producer's passes append theirs to `runs.json` in the cache folder
//! (the last [`KEPT`], oldest first, written whole and atomically); `status --runs` reads it.
//! The fleet's committer appends each batch it settles to its own.

use std::path::{Path, PathBuf};

use image_mirror_common::atomic_file::write_atomic;

use crate::event::RunFinished;
use crate::NotifyError;

/// Runs kept.
pub const KEPT: usize = 100;

/// The history file.
#[derive(Debug, Clone)]
pub struct RunHistory {
    path: PathBuf,
}

impl RunHistory {
    /// The history at `path`.
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    /// The history file in the cache folder `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self::at(&dir.join("runs.json"))
    }

    /// Every run kept, oldest first; none when the file does not exist. A file that does not
    /// parse is an error naming it.
    pub fn all(&self) -> Result<Vec<RunFinished>, NotifyError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(e.to_string())),
        };
        serde_json::from_str(&text).map_err(|e| self.error(e.to_string()))
    }

    /// The last `n` runs, newest first.
    pub fn last(&self, n: usize) -> Result<Vec<RunFinished>, NotifyError> {
        let mut all = self.all()?;
        all.reverse();
        all.truncate(n);
        Ok(all)
    }

    /// Appends `run`, keeping the last [`KEPT`]. A history that does not parse is started
    /// afresh (it is a convenience, never the record of the mirror).
    pub fn append(&self, run: &RunFinished) -> Result<(), NotifyError> {
        let mut all = self.all().unwrap_or_default();
        all.push(run.clone());
        let excess = all.len().saturating_sub(KEPT);
        all.drain(..excess);
        let json = serde_json::to_vec_pretty(&all).map_err(|e| self.error(e.to_string()))?;
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.error(e.to_string()))?;
        }
        write_atomic(&self.path, &json).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, why: String) -> NotifyError {
        NotifyError::History {
            path: self.path.display().to_string(),
            why,
        }
    }
}
