//! How many requests go to one registry host at a time: a pool of request slots per host, and
//! a separate pool of upload slots (one per blob being sent), so that copies within one
//! registry cannot wait on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::RegistryClient;
use crate::error::RegistryError;

/// A slot in a host's pool of concurrent uploads; see [`RegistryClient::upload_slot`].
pub struct UploadSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Pools of slots by host.
#[derive(Default)]
pub(crate) struct HostLimits {
    requests: Mutex<HashMap<String, Arc<Semaphore>>>,
    uploads: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    async fn acquire(
        pools: &Mutex<HashMap<String, Arc<Semaphore>>>,
        registry: &str,
        limit: usize,
    ) -> Result<OwnedSemaphorePermit, RegistryError> {
        let semaphore = {
            let mut limits = pools.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                limits
                    .entry(registry.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1)))),
            )
        };
        semaphore
            .acquire_owned()
            .await
            .map_err(|_| RegistryError::Protocol {
                registry: registry.to_owned(),
                operation: "acquire a request slot".into(),
                message: "the client is shutting down".into(),
            })
    }
}

impl RegistryClient {
    /// A request slot for `registry`, held while a request and its answer are under way.
    pub(crate) async fn permit(
        &self,
        registry: &str,
    ) -> Result<OwnedSemaphorePermit, RegistryError> {
        HostLimits::acquire(
            &self.limits().requests,
            registry,
            self.options().max_requests_per_host,
        )
        .await
    }

    /// A slot in `registry`'s pool of blob uploads, held by one blob copy from its first byte
    /// to its last. Uploads have their own pool, taken before the source is read: a copy holds
    /// its upload slot, then a request slot for its download, always in that order, and lets
    /// go of the download before its other requests, so copies within one registry cannot wait
    /// on each other.
    pub async fn upload_slot(&self, registry: &str) -> Result<UploadSlot, RegistryError> {
        Ok(UploadSlot(
            HostLimits::acquire(
                &self.limits().uploads,
                registry,
                self.options().max_requests_per_host,
            )
            .await?,
        ))
    }
}
