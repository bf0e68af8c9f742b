//! What a process's copies are doing now, for people to watch: each copy in flight (source to
//! target) with the bytes of its blobs known so far and how many of them are in the target.
//! A blob counts as it goes up (the bytes handed to the upload, or hashed again when an upload
//! resumes at the registry's offset), whole when skipped or mounted, and back to where it
//! stands when an upload starts over. The copy engine writes here when given an [`Activity`];
//! a display reads [`Activity::snapshot`] as often as it draws.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The copies in flight of one process.
#[derive(Debug, Default)]
pub struct Activity {
    copies: Mutex<BTreeMap<u64, Arc<Track>>>,
    next: AtomicU64,
    /// Bytes of copies that ended (so that totals keep counting them).
    ended_done: AtomicU64,
    ended_total: AtomicU64,
}

/// One copy in flight, as a display sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyView {
    /// Which copy: the same for as long as it is in flight.
    pub id: u64,
    /// `source -> target`.
    pub label: String,
    /// Bytes of the blobs listed so far.
    pub total: u64,
    /// Of those, bytes in the target (sent, skipped or mounted).
    pub done: u64,
    /// When the copy began.
    pub started: Instant,
}

/// Bytes of all copies so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bytes {
    /// In the targets (sent, skipped or mounted).
    pub done: u64,
    /// Listed: what the copies found they had to bring.
    pub total: u64,
}

/// The byte counts of one copy.
#[derive(Debug)]
pub(crate) struct Track {
    label: String,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
}

/// A copy's place in the activity; it leaves when dropped.
#[derive(Debug)]
pub(crate) struct Watched {
    activity: Option<Arc<Activity>>,
    id: u64,
    track: Arc<Track>,
}

impl Activity {
    /// A new, empty activity.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every copy in flight, oldest first.
    pub fn snapshot(&self) -> Vec<CopyView> {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        copies
            .iter()
            .map(|(id, t)| CopyView {
                id: *id,
                label: t.label.clone(),
                total: t.total.load(Ordering::Relaxed),
                done: t.done.load(Ordering::Relaxed),
                started: t.started,
            })
            .collect()
    }

    /// Bytes in targets so far, and bytes listed so far, of copies in flight and ended.
    pub fn bytes(&self) -> Bytes {
        let copies = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        let (mut done, mut total) = (
            self.ended_done.load(Ordering::Relaxed),
            self.ended_total.load(Ordering::Relaxed),
        );
        for t in copies.values() {
            done += t.done.load(Ordering::Relaxed);
            total += t.total.load(Ordering::Relaxed);
        }
        Bytes { done, total }
    }

    /// A copy begins: it shows until the returned value is dropped.
    pub(crate) fn watch(self: &Arc<Self>, label: String) -> Watched {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let track = Arc::new(Track::new(label));
        self.copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::clone(&track));
        Watched {
            activity: Some(Arc::clone(self)),
            id,
            track,
        }
    }
}

impl Track {
    fn new(label: String) -> Self {
        Self {
            label,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Watched {
    /// A copy nobody watches (the engine was given no activity).
    pub(crate) fn unwatched() -> Self {
        Self {
            activity: None,
            id: 0,
            track: Arc::new(Track::new(String::new())),
        }
    }

    /// A blob of `size` bytes was listed for this copy: its meter.
    pub(crate) fn blob(&self, size: u64) -> Meter {
        self.track.total.fetch_add(size, Ordering::Relaxed);
        Meter {
            track: Arc::clone(&self.track),
            counted: AtomicU64::new(0),
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(activity) = &self.activity {
            activity
                .copies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
            activity
                .ended_done
                .fetch_add(self.track.done.load(Ordering::Relaxed), Ordering::Relaxed);
            activity
                .ended_total
                .fetch_add(self.track.total.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// Where one blob stands in its copy's count.
#[derive(Debug)]
pub(crate) struct Meter {
    track: Arc<Track>,
    counted: AtomicU64,
}

impl Meter {
    /// The blob's bytes up to `offset` are in the target (or on their way, as the upload
    /// goes); an upload that starts over goes back.
    pub(crate) fn at(&self, offset: u64) {
        let before = self.counted.swap(offset, Ordering::Relaxed);
        if offset >= before {
            self.track
                .done
                .fetch_add(offset - before, Ordering::Relaxed);
        } else {
            self.track
                .done
                .fetch_sub(before - offset, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_count_as_blobs_go_up_go_back_when_they_start_over_and_stay_counted_once_ended() {
        let activity = Activity::new();
        let copy = activity.watch("a -> b".into());
        let (one, two) = (copy.blob(100), copy.blob(50));
        one.at(40);
        two.at(50);
        let view = &activity.snapshot()[0];
        assert_eq!(
            (view.label.as_str(), view.total, view.done),
            ("a -> b", 150, 90)
        );
        one.at(10);
        assert_eq!(activity.snapshot()[0].done, 60);
        one.at(100);
        assert_eq!(
            activity.bytes(),
            Bytes {
                done: 150,
                total: 150
            }
        );
        drop(copy);
        assert!(activity.snapshot().is_empty());
        assert_eq!(
            activity.bytes(),
            Bytes {
                done: 150,
                total: 150
            },
            "an ended copy's bytes still count"
        );
    }
}
