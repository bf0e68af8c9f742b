//! How far the blobs of one copy have got, so that a child manifest can go up as soon as its
//! own blobs are in the target, while the other platforms' blobs are still on their way.
//!
//! A manifest may go up only once every blob of the whole image has had its bytes checked
//! against its digest (or is already in the target): a corrupt blob anywhere still means no
//! manifest at all reaches the target.

use std::collections::HashSet;
use std::sync::Mutex;

use image_mirror_common::Digest;
use tokio::sync::watch;

/// Blob states of one copy, shared by the walk, the transfers and the manifest pushes.
pub(crate) struct BlobStates {
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

#[derive(Default)]
struct State {
    /// Every blob handed to the transfers so far.
    listed: HashSet<Digest>,
    /// Blobs whose bytes matched their digest, or that the target already had.
    checked: HashSet<Digest>,
    /// Blobs the target holds in the copy's repository.
    stored: HashSet<Digest>,
    /// The walk has listed every blob.
    walked: bool,
}

impl BlobStates {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(()),
        }
    }

    /// A blob was handed to the transfers.
    pub(crate) fn listed(&self, digest: &Digest) {
        self.update(|s| {
            s.listed.insert(digest.clone());
        });
    }

    /// The walk has listed every blob of the image.
    pub(crate) fn walked(&self) {
        self.update(|s| s.walked = true);
    }

    /// A blob's bytes matched its digest (it may still be on its way to the target).
    pub(crate) fn checked(&self, digest: &Digest) {
        self.update(|s| {
            s.checked.insert(digest.clone());
        });
    }

    /// A blob is in the target repository: sent, mounted, or found there.
    pub(crate) fn stored(&self, digest: &Digest) {
        self.update(|s| {
            s.checked.insert(digest.clone());
            s.stored.insert(digest.clone());
        });
    }

    /// Waits until a manifest listing `blobs` may go up: every blob of the image checked, and
    /// these in the target. Never returns while a blob is corrupt or missing; the copy's
    /// error ends the wait by dropping it.
    pub(crate) async fn ready_for(&self, blobs: &[Digest]) {
        let mut changes = self.changed.subscribe();
        loop {
            if self.is_ready_for(blobs) {
                return;
            }
            if changes.changed().await.is_err() {
                // Unreachable while `self` lives: it holds the sender.
                return;
            }
        }
    }

    fn is_ready_for(&self, blobs: &[Digest]) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.walked
            && s.listed.iter().all(|d| s.checked.contains(d))
            && blobs.iter().all(|d| s.stored.contains(d))
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut s);
        }
        self.changed.send_replace(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::from_sha256_bytes(&[n; 32])
    }

    #[test]
    fn a_manifest_waits_for_every_blob_checked_and_its_own_stored() {
        let p = BlobStates::new();
        let (a, b, c) = (digest(1), digest(2), digest(3));
        for d in [&a, &b, &c] {
            p.listed(d);
        }
        p.stored(&a);
        p.stored(&b);
        // c (another platform's) is unchecked; the walk may list more.
        assert!(!p.is_ready_for(&[a.clone(), b.clone()]));
        p.walked();
        assert!(!p.is_ready_for(&[a.clone(), b.clone()]));
        p.checked(&c);
        assert!(p.is_ready_for(&[a.clone(), b.clone()]));
        assert!(
            !p.is_ready_for(std::slice::from_ref(&c)),
            "c is checked, not stored"
        );
        p.stored(&c);
        assert!(p.is_ready_for(&[c]));
    }

    #[tokio::test]
    async fn a_waiting_manifest_wakes_when_the_last_blob_is_stored() {
        let p = std::sync::Arc::new(BlobStates::new());
        let a = digest(1);
        p.listed(&a);
        p.walked();
        let waiter = tokio::spawn({
            let (p, a) = (std::sync::Arc::clone(&p), a.clone());
            async move { p.ready_for(&[a]).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        p.stored(&a);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter woke")
            .expect("the waiter ran");
    }
}
