//! How many requests go to one registry host at a time: a pool of request slots per host, and
//! a separate pool of upload slots (one per blob being sent), so that copies within one
//! registry cannot wait on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::RegistryError;

/// A slot in a host's pool of concurrent uploads; see
/// [`RegistryClient::upload_slot`](crate::RegistryClient::upload_slot).
pub struct UploadSlot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Pools of slots by host, each of `per_host` slots.
pub(crate) struct HostLimits {
    per_host: usize,
    requests: Mutex<HashMap<String, Arc<Semaphore>>>,
    uploads: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    pub(crate) fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            requests: Mutex::default(),
            uploads: Mutex::default(),
        }
    }

    /// A request slot for `registry`, held while a request and its answer are under way.
    pub(crate) async fn request_slot(
        &self,
        registry: &str,
    ) -> Result<OwnedSemaphorePermit, RegistryError> {
        self.acquire(&self.requests, registry).await
    }

    /// A slot in `registry`'s pool of blob uploads, held by one blob copy from its first byte
    /// to its last.
    pub(crate) async fn upload_slot(&self, registry: &str) -> Result<UploadSlot, RegistryError> {
        Ok(UploadSlot(self.acquire(&self.uploads, registry).await?))
    }

    async fn acquire(
        &self,
        pools: &Mutex<HashMap<String, Arc<Semaphore>>>,
        registry: &str,
    ) -> Result<OwnedSemaphorePermit, RegistryError> {
        let semaphore = {
            let mut limits = pools.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                limits
                    .entry(registry.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_host))),
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
