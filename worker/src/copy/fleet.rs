//! The fleet acting as one: workers of one broker send each large blob to a registry once,
//! mount from each other's uploads, and take over each other's uploads where they stopped
//! (the broker's side is `image_mirror_queue::coordination`).
//!
//! Before sending a blob of at least [`LEASE_MIN`] bytes, the process's leader of that blob
//! ([`flights`](super::flights)) claims its lease in the target registry. Held by another
//! worker, it waits, bounded: woken when the fleet says where the blob landed (then it mounts
//! it), or trying the lease again every [`LEASE_POLL`] (a killed holder's lease is free at
//! once). Whoever takes a lease after waiting looks again whether the blob is there (the
//! holder may have landed it), and, for a blob sent in chunks, reads where the previous
//! holder's upload stood (resume it, see `upload.rs`). When the broker cannot be asked, a
//! worker sends alone, as outside a fleet.
//!
//! Every worker hears the fleet's locations stream from an hour back when it joins, and from
//! where it stopped when it listens again after a broken connection. The same stream carries
//! what a registry taught a worker of its uploads (a request limit, a stuck `Range`): each
//! worker tells the others what it learns and adopts what they learned, so that a limit costs
//! the fleet one refused request, not one per worker.

use std::sync::{Arc, Weak};
use std::time::Duration;

use image_mirror_common::{metrics, Digest, Repository};
use image_mirror_queue::coordination::{
    BlobLocation, BlobState, Coordinator, FleetNews, Lease, LocationFeed, ReadFrom,
};
use image_mirror_queue::QueueError;
use image_mirror_registry::{Lesson, RegistryClient, RetryPolicy};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::copy::mounts::MountIndex;

/// Blobs smaller than this are sent without a lease: sending one twice costs less than
/// asking the broker.
pub(crate) const LEASE_MIN: u64 = 1024 * 1024;
/// How often a lease held by another worker is tried again.
pub(crate) const LEASE_POLL: Duration = Duration::from_secs(1);
/// The longest wait for another worker's upload; then the blob is sent anyway.
const LEASE_WAIT_MAX: Duration = Duration::from_secs(30 * 60);

/// The pauses before listening to the fleet again after its stream broke: 0.5 s doubling
/// to 30 s, for as long as the fleet lives.
const LISTEN_AGAIN: RetryPolicy = RetryPolicy::new(
    Duration::from_millis(500),
    Duration::from_secs(30),
    usize::MAX,
);

/// How often a tag lease held by another worker is tried again (a tag write is short).
const TAG_POLL: Duration = Duration::from_millis(100);
/// The longest wait for another worker's write of a tag.
const TAG_WAIT_MAX: Duration = Duration::from_secs(60);

/// A blob in a registry, as the fleet names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlobKey {
    registry: String,
    digest: Digest,
}

/// This process's membership of the fleet.
pub(crate) struct Fleet {
    coordinator: Arc<Coordinator>,
    learned: broadcast::Sender<BlobKey>,
}

/// A blob's lease held by this worker, with what its previous holder left.
pub(crate) struct Holding {
    pub(crate) lease: Lease,
    /// Where the previous holder's chunked upload stood.
    pub(crate) state: Option<BlobState>,
    /// Another worker held the lease first: the blob may have landed meanwhile.
    pub(crate) waited: bool,
}

/// What claiming a blob's lease came to.
pub(crate) enum Claim {
    /// This worker holds the lease.
    Held(Box<Holding>),
    /// While waiting, the fleet said where the blob landed (the location index knows).
    Learned,
    /// No coordination: the broker could not be asked, or the wait was too long.
    Alone,
}

impl Fleet {
    /// Joins the fleet: hears where the other workers put blobs (into `mounts`) and what
    /// registries taught them (into `client`'s upload limits), from an hour back on; tells
    /// them what registries teach `client`.
    pub(crate) async fn join(
        coordinator: Coordinator,
        mounts: Arc<MountIndex>,
        client: &RegistryClient,
    ) -> Result<Arc<Self>, QueueError> {
        let coordinator = Arc::new(coordinator);
        let lessons = client.upload_limits().lessons();
        let feed = match coordinator.listen(ReadFrom::LookBack).await {
            Ok(feed) => Some(feed),
            Err(e) => {
                tracing::debug!(error = %e, "cannot hear the fleet yet; listening again in the background");
                None
            }
        };
        let (learned, _) = broadcast::channel(1024);
        let fleet = Arc::new(Self {
            coordinator,
            learned,
        });
        let hearing = Hearing {
            mounts,
            client: client.clone(),
        };
        tokio::spawn(listen(Arc::downgrade(&fleet), feed, hearing));
        tokio::spawn(teach(Arc::downgrade(&fleet), lessons));
        Ok(fleet)
    }

    /// Says that `repo` holds `digest` (in the background: nobody waits for it).
    pub(crate) fn announce(&self, repo: &Repository, digest: &Digest) {
        let location = location(repo, digest);
        let coordinator = Arc::clone(&self.coordinator);
        tokio::spawn(async move {
            if let Err(e) = coordinator.announce(&location).await {
                tracing::debug!(error = %e, "could not tell the fleet where a blob is");
            }
        });
    }

    /// Says that `repo` holds `digest`, and waits until it is said.
    pub(crate) async fn announce_now(&self, repo: &Repository, digest: &Digest) {
        if let Err(e) = self.coordinator.announce(&location(repo, digest)).await {
            tracing::debug!(error = %e, "could not tell the fleet where a blob is");
        }
    }

    /// The fleet's lease of a tag written by read-modify-write (a referrers fallback tag,
    /// `key` naming repository and tag), waiting while another worker holds it, up to
    /// [`TAG_WAIT_MAX`]. `None`: no coordination (the broker could not be asked, or the wait
    /// was too long), and the caller goes on under its process's lock alone.
    pub(crate) async fn lease_tag(&self, registry: &str, key: &str) -> Option<Lease> {
        let name = Digest::sha256_of(format!("tag {key}").as_bytes());
        let deadline = Instant::now() + TAG_WAIT_MAX;
        loop {
            match self.coordinator.try_lease(registry, &name).await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(TAG_POLL).await;
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::debug!(error = %e, tag = key, "no fleet lease for the tag");
                    return None;
                }
            }
        }
    }

    /// Claims the lease of `digest` in `target`'s registry, waiting while another worker
    /// holds it; reads the previous holder's checkpoint when the blob goes in `chunks`.
    pub(crate) async fn claim(
        &self,
        target: &Repository,
        digest: &Digest,
        mounts: &MountIndex,
        chunks: bool,
    ) -> Claim {
        let key = BlobKey {
            registry: target.registry().to_owned(),
            digest: digest.clone(),
        };
        let mut learned = self.learned.subscribe();
        let deadline = Instant::now() + LEASE_WAIT_MAX;
        let mut waiting = false;
        loop {
            match self.coordinator.try_lease(&key.registry, digest).await {
                Ok(Some(lease)) => {
                    let state = if chunks {
                        lease.state().await.unwrap_or_else(|e| {
                            tracing::debug!(error = %e, "could not read the blob's checkpoint");
                            None
                        })
                    } else {
                        None
                    };
                    return Claim::Held(Box::new(Holding {
                        lease,
                        state,
                        waited: waiting,
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, blob = %digest, "no fleet coordination; sending alone");
                    return Claim::Alone;
                }
            }
            if !waiting {
                waiting = true;
                metrics::LEASE_WAITS.inc(&[]);
                tracing::debug!(blob = %digest, registry = %key.registry, "another worker is sending this blob; waiting for it");
            }
            if Instant::now() >= deadline {
                tracing::info!(blob = %digest, registry = %key.registry, "waited {} min for another worker's upload; sending it too", LEASE_WAIT_MAX.as_secs() / 60);
                return Claim::Alone;
            }
            if heard(&mut learned, &key, target, mounts).await {
                return Claim::Learned;
            }
        }
    }
}

fn location(repo: &Repository, digest: &Digest) -> BlobLocation {
    BlobLocation {
        registry: repo.registry().to_owned(),
        repository: repo.path().to_owned(),
        digest: digest.clone(),
    }
}

/// Waits up to [`LEASE_POLL`] for the fleet to say where `key` landed.
async fn heard(
    learned: &mut broadcast::Receiver<BlobKey>,
    key: &BlobKey,
    target: &Repository,
    mounts: &MountIndex,
) -> bool {
    let tick = tokio::time::sleep(LEASE_POLL);
    tokio::pin!(tick);
    loop {
        tokio::select! {
            () = &mut tick => return false,
            got = learned.recv() => match got {
                Ok(k) if &k == key => return true,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if mounts.source_for(target, &key.digest).is_some()
                        || mounts.holds(target, &key.digest)
                    {
                        return true;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return false,
            },
        }
    }
}

/// Tells the fleet what registries teach this process, for as long as the fleet lives.
async fn teach(fleet: Weak<Fleet>, mut lessons: broadcast::Receiver<Lesson>) {
    loop {
        let lesson = match lessons.recv().await {
            Ok(lesson) => lesson,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(fleet) = fleet.upgrade() else {
            return;
        };
        if let Err(e) = fleet.coordinator.teach(&lesson).await {
            tracing::debug!(error = %e, registry = %lesson.registry, "could not tell the fleet what the registry taught");
        }
    }
}

/// Where what the fleet says goes.
struct Hearing {
    mounts: Arc<MountIndex>,
    client: RegistryClient,
}

impl Hearing {
    fn take(&self, fleet: &Fleet, news: FleetNews) {
        match news {
            FleetNews::Location(location) => {
                let repo = format!("{}/{}", location.registry, location.repository);
                if let Ok(repo) = repo.parse::<Repository>() {
                    self.mounts.record(&repo, &location.digest);
                    let _ = fleet.learned.send(BlobKey {
                        registry: location.registry,
                        digest: location.digest,
                    });
                }
            }
            FleetNews::UploadLimits { upload_limits } => {
                self.client.upload_limits().adopt(&upload_limits);
            }
        }
    }
}

/// Takes what the fleet says, for as long as the fleet lives; listens again after the
/// connection broke, from the news after the last one heard (from an hour back when it never
/// heard any).
async fn listen(fleet: Weak<Fleet>, mut feed: Option<LocationFeed>, hearing: Hearing) {
    let mut failures = 0;
    let mut resume = ReadFrom::LookBack;
    loop {
        if let Some(mut heard) = feed.take() {
            while let Some(news) = heard.next().await {
                let Some(fleet) = fleet.upgrade() else {
                    return;
                };
                hearing.take(&fleet, news);
            }
            resume = heard.resume();
        }
        let Some(f) = fleet.upgrade() else {
            return;
        };
        tokio::time::sleep(LISTEN_AGAIN.base_delay(failures + 1)).await;
        match f.coordinator.listen(resume).await {
            Ok(heard) => {
                feed = Some(heard);
                failures = 0;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot hear the fleet yet");
                failures += 1;
            }
        }
    }
}
