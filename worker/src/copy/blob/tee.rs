//! One source read for several targets: when one copy writes to several registries, each blob
//! that more than one of them lacks is downloaded once and its pieces handed to every target
//! that asked for it.
//!
//! Each target answers once per blob: it needs the bytes ([`Supply::join`]) or not
//! ([`Supply::pass`]: skipped, mounted, or another copy's flight). The download starts once
//! every target has answered, or [`JOIN_WAIT`] after the first asked, whichever comes first;
//! a target that asks later reads the source by itself. A target that stops taking pieces for
//! a stall window is cut off and reads on by itself from where it was, so a slow target holds
//! the others back by one stall window at most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use image_mirror_common::{Digest, Repository};
use image_mirror_registry::Descriptor;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::copy::blob::source::SourceReader;
use crate::copy::parts::Parts;
use crate::copy::report::Counters;

/// How long the download of a blob waits for the other targets to ask for it.
pub const JOIN_WAIT: Duration = Duration::from_secs(5);
/// Pieces buffered per target.
const DEPTH: usize = 16;
/// Bytes read per piece.
const PIECE: usize = 256 * 1024;

/// A target's answer to the shared download of a blob: given once, when it knows whether it
/// needs the bytes ([`take`](Self::take) the supply to join it); a blob it did not need (or
/// failed on) passes when dropped.
pub(crate) struct Need(Option<Arc<Supply>>);

impl Need {
    /// The answer of a target to `supply`'s download, if there is one.
    pub(crate) fn to(supply: Option<Arc<Supply>>) -> Self {
        Self(supply)
    }

    /// The supply, to join it: the answer is given.
    pub(crate) fn take(&mut self) -> Option<Arc<Supply>> {
        self.0.take()
    }

    /// Answers now that the bytes are not needed (the blob comes by another copy's flight;
    /// should that fail, this target reads the source by itself).
    pub(crate) fn pass(&mut self) {
        if let Some(supply) = self.0.take() {
            supply.pass();
        }
    }
}

impl Drop for Need {
    fn drop(&mut self) {
        if let Some(supply) = self.0.take() {
            supply.pass();
        }
    }
}

/// The blobs of one copy to several targets, each with its shared download.
pub(crate) struct Supplies {
    targets: usize,
    blobs: Mutex<HashMap<Digest, Arc<Supply>>>,
}

impl Supplies {
    /// For a copy to `targets` targets (with one, nothing is shared).
    pub(crate) fn new(targets: usize) -> Self {
        Self {
            targets,
            blobs: Mutex::default(),
        }
    }

    /// The shared download of `digest`, when there are several targets.
    pub(crate) fn of(&self, digest: &Digest) -> Option<Arc<Supply>> {
        if self.targets < 2 {
            return None;
        }
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        Some(Arc::clone(blobs.entry(digest.clone()).or_insert_with(
            || {
                Arc::new(Supply {
                    state: Mutex::new(State {
                        expected: self.targets,
                        ..State::default()
                    }),
                    decided: Notify::new(),
                })
            },
        )))
    }
}

#[derive(Default)]
struct State {
    expected: usize,
    answered: usize,
    joiners: Vec<mpsc::Sender<Bytes>>,
    first_join: Option<Instant>,
    started: bool,
}

/// One blob's shared download.
pub(crate) struct Supply {
    state: Mutex<State>,
    decided: Notify,
}

impl Supply {
    /// This target does not need the bytes.
    pub(crate) fn pass(&self) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.answered += 1;
        }
        self.decided.notify_waiters();
    }

    /// This target needs the bytes: the pieces of the shared download, from byte 0, or `None`
    /// when it started without this target (read the source yourself).
    pub(crate) async fn join(
        &self,
        parts: &Parts,
        source: &Repository,
        blob: &Descriptor,
    ) -> Option<mpsc::Receiver<Bytes>> {
        let (tx, rx) = mpsc::channel(DEPTH);
        let deadline = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.started {
                return None;
            }
            s.answered += 1;
            s.joiners.push(tx);
            *s.first_join.get_or_insert_with(Instant::now) + JOIN_WAIT
        };
        self.decided.notify_waiters();
        loop {
            let decided = self.decided.notified();
            tokio::pin!(decided);
            decided.as_mut().enable();
            {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.started {
                    return Some(rx);
                }
                if s.answered >= s.expected || Instant::now() >= deadline {
                    s.started = true;
                    let joiners = std::mem::take(&mut s.joiners);
                    drop(s);
                    self.decided.notify_waiters();
                    if joiners.len() < 2 {
                        // Alone after all: read by yourself.
                        return None;
                    }
                    let (parts, source, blob) = (parts.clone(), source.clone(), blob.clone());
                    tokio::spawn(async move { pump(parts, source, blob, joiners).await });
                    return Some(rx);
                }
            }
            tokio::select! {
                () = decided => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// Reads the blob once and hands each piece to every target still taking them.
async fn pump(
    parts: Parts,
    source: Repository,
    blob: Descriptor,
    mut targets: Vec<mpsc::Sender<Bytes>>,
) {
    let counters = Counters::default();
    let stall = parts.client.stall_rule().window;
    let mut reader = SourceReader::new(&parts, &source, &blob, 0, &counters);
    let mut position = 0_u64;
    while position < blob.size && !targets.is_empty() {
        let want = usize::try_from(blob.size - position)
            .unwrap_or(PIECE)
            .min(PIECE);
        let Ok(piece) = reader.next(want).await else {
            // The targets read on by themselves and meet the failure there.
            return;
        };
        position += piece.len() as u64;
        let mut taking = Vec::with_capacity(targets.len());
        for tx in targets {
            if matches!(
                tokio::time::timeout(stall, tx.send(piece.clone())).await,
                Ok(Ok(()))
            ) {
                taking.push(tx);
            }
        }
        targets = taking;
    }
}
