//! Hosts that could not be reached, remembered for a while so that the requests after the
//! first failure fail at once with the same message instead of each waiting for its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::Unreachable;

/// Hosts known to be unreachable, until when.
#[derive(Default)]
pub(crate) struct UnreachableHosts {
    hosts: std::sync::Mutex<HashMap<String, (Instant, Unreachable)>>,
}

impl UnreachableHosts {
    pub(crate) fn get(&self, host: &str) -> Option<Unreachable> {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .get(host)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, why)| *why)
    }

    pub(crate) fn remember(&self, host: &str, why: Unreachable, cooldown: Duration) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.insert(host.to_owned(), (Instant::now() + cooldown, why));
    }

    pub(crate) fn forget(&self, host: &str) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.remove(host);
    }
}
