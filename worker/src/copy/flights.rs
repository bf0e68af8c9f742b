//! One upload of a blob at a time per target registry, within a process.
//!
//! Two copies that upload (or mount) the same blob into one repository at once make the
//! registry rewrite the blob's link file while a manifest push may be reading it. So the first
//! copy that needs blob X in registry R leads: it skips, mounts or sends X. The others follow:
//! they wait for its outcome, then skip X when it landed in their repository, or mount it from
//! there into theirs (leading that mount in turn). A leader that fails or is cancelled lets
//! the next one lead.

use std::collections::HashMap;
use std::sync::Mutex;

use image_mirror_common::{Digest, Repository};
use tokio::sync::watch;

/// How a flight ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Landed {
    /// The blob is in this repository.
    In(Repository),
    /// The leader failed: whoever waits tries for itself.
    Failed,
}

type Key = (String, Digest);

/// Flights in progress, by registry and digest.
#[derive(Default)]
pub(crate) struct Flights {
    open: Mutex<HashMap<Key, watch::Receiver<Option<Landed>>>>,
}

/// What a copy gets when it asks for a blob's flight.
pub(crate) enum Turn<'a> {
    /// Nobody else is at it: do it, then [`Lead::land`].
    Lead(Lead<'a>),
    /// Another copy is at it: wait for it.
    Follow(watch::Receiver<Option<Landed>>),
}

/// The right to move one blob into a registry; dropped without landing, it ends as failed.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    key: Key,
    done: watch::Sender<Option<Landed>>,
}

impl Flights {
    /// Leads the flight of `digest` into `target`'s registry, or follows the one under way.
    pub(crate) fn take(&self, target: &Repository, digest: &Digest) -> Turn<'_> {
        let key = (target.registry().to_owned(), digest.clone());
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = open.get(&key) {
            if rx.borrow().is_none() {
                return Turn::Follow(rx.clone());
            }
        }
        let (done, rx) = watch::channel(None);
        open.insert(key.clone(), rx);
        Turn::Lead(Lead {
            flights: self,
            key,
            done,
        })
    }

    /// Waits for the flight `rx` follows to end.
    pub(crate) async fn wait(mut rx: watch::Receiver<Option<Landed>>) -> Landed {
        match rx.wait_for(Option::is_some).await {
            Ok(landed) => landed.clone().unwrap_or(Landed::Failed),
            Err(_) => Landed::Failed,
        }
    }
}

impl Lead<'_> {
    /// Ends the flight: the blob is in `repo`, or (`None`) the leader failed.
    pub(crate) fn land(self, repo: Option<&Repository>) {
        let landed = repo.map_or(Landed::Failed, |r| Landed::In(r.clone()));
        self.finish(landed);
    }

    fn finish(&self, landed: Landed) {
        {
            let mut open = self.flights.open.lock().unwrap_or_else(|p| p.into_inner());
            open.remove(&self.key);
        }
        self.done.send_replace(Some(landed));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if self.done.borrow().is_none() {
            self.finish(Landed::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> Repository {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn one_leads_the_others_follow_and_learn_where_it_landed() {
        let flights = Flights::default();
        let d = Digest::sha256_of(b"blob");
        let a = repo("reg.test/org/a");
        let Turn::Lead(lead) = flights.take(&a, &d) else {
            panic!("the first asks leads");
        };
        let Turn::Follow(rx) = flights.take(&repo("reg.test/org/b"), &d) else {
            panic!("the second follows");
        };
        // Another registry is another flight.
        assert!(matches!(
            flights.take(&repo("other.test/org/a"), &d),
            Turn::Lead(_)
        ));
        let waiter = tokio::spawn(Flights::wait(rx));
        lead.land(Some(&a));
        assert_eq!(waiter.await.unwrap(), Landed::In(a.clone()));
        // Once landed, the next ask leads again (to skip or mount).
        assert!(matches!(flights.take(&a, &d), Turn::Lead(_)));
    }

    #[tokio::test]
    async fn a_leader_dropped_midway_lets_followers_try() {
        let flights = Flights::default();
        let d = Digest::sha256_of(b"blob");
        let a = repo("reg.test/org/a");
        let Turn::Lead(lead) = flights.take(&a, &d) else {
            panic!("lead");
        };
        let Turn::Follow(rx) = flights.take(&a, &d) else {
            panic!("follow");
        };
        drop(lead);
        assert_eq!(Flights::wait(rx).await, Landed::Failed);
        assert!(matches!(flights.take(&a, &d), Turn::Lead(_)));
    }
}
