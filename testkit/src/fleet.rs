//! The fleet's scenarios, shared by the tests and the benchmarks: images sharing a base
//! mirrored by several workers, and a large upload held halfway by a request-buffering front
//! while its worker is killed.

use std::path::Path;
use std::time::Duration;

use crate::front::{hold_chunk_from, HeldChunk};
use crate::http::Logged;
use crate::images::{self, Blob, Format, Platform, OCI_LAYER};
use crate::process::Running;
use crate::push::push_image_lacking;
use crate::registry::RegistryOptions;
use crate::workers::Deployment;
use crate::{Front, FrontOptions, Implementation, Registry};

/// The repository and tag of the large image [`push_big`] pushes.
pub const BIG: &str = "big/app";

/// Request body bytes of blob uploads among `requests`.
pub fn upload_bytes(requests: &[Logged]) -> u64 {
    requests
        .iter()
        .filter(|r| r.target.contains("/blobs/uploads/"))
        .map(|r| r.body_len as u64)
        .sum()
}

/// The start offset of an upload chunk (its `Content-Range`).
pub fn chunk_start(r: &Logged) -> Option<u64> {
    r.header("content-range")?.split('-').next()?.parse().ok()
}

/// Pushes `n` images sharing a base of `base_size` bytes to `src` as `shared/app:v0..`;
/// returns the bytes of their distinct blobs.
pub async fn push_sharing_base(src: &Registry, n: u64, base_size: usize, seed: u64) -> u64 {
    let (images, distinct) = images::sharing_base(n, base_size, seed);
    for (i, image) in images.iter().enumerate() {
        push_image_lacking(&src.url(), "shared/app", &format!("v{i}"), image).await;
    }
    distinct
}

/// The images-list mirroring `shared/app:v{i}` of `src` to `mirror/app{i}` at `target`.
pub fn sharing_base_list(src: &Registry, target: &str, n: u64) -> String {
    (0..n)
        .map(|i| format!("{}/shared/app {target}/mirror/app{i} v{i}\n", src.host()))
        .collect()
}

/// Pushes a one-layer image whose layer is `size` random bytes to `src` as [`BIG`]`:v1`.
pub async fn push_big(src: &Registry, size: u64, seed: u64) {
    let layer = Blob::new(OCI_LAYER, images::random_bytes(seed, size as usize));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image_lacking(&src.url(), BIG, "v1", &image).await;
}

/// A fresh target behind a front that holds the upload's chunk at half of its blob, a
/// deployment, and the first worker, halfway: its chunk in flight is held.
pub struct HeldUpload {
    /// The target registry.
    pub dst: Registry,
    /// The request-buffering front before it, counting what crosses.
    pub front: Front,
    /// The workers' deployment.
    pub fleet: Deployment,
    /// The worker whose chunk is held.
    pub first: Running,
    /// The held chunk's start offset.
    pub held_at: u64,
    /// Every request the front saw, with when.
    pub halfway: HeldChunk,
}

impl HeldUpload {
    /// Mirrors [`BIG`]`:v1` of `src` (a blob of `size` bytes) to `mirror/big` with a first
    /// worker started with `args`, and returns once its chunk at half the blob is held.
    pub fn start(binary: &Path, name: &str, src: &Registry, size: u64, args: &[&str]) -> Self {
        Self::start_on(Implementation::Distribution2, binary, name, src, size, args)
    }

    /// [`start`](Self::start) with a target registry of `implementation`.
    pub fn start_on(
        implementation: Implementation,
        binary: &Path,
        name: &str,
        src: &Registry,
        size: u64,
        args: &[&str],
    ) -> Self {
        let dst = Registry::start_with(&RegistryOptions::default().on(implementation));
        let (hook, halfway) = hold_chunk_from(size / 2);
        let front = Front::start(
            dst.host(),
            FrontOptions {
                hook: Some(hook),
                ..FrontOptions::default()
            },
        );
        let fleet = Deployment::new(binary, name, &[src.host().to_owned(), front.host()]);
        let first = fleet.worker("first", args);
        fleet.publish(&format!(
            "{}/{BIG} {}/mirror/big v1\n",
            src.host(),
            front.host()
        ));
        let held_at = halfway
            .held
            .recv_timeout(Duration::from_secs(300))
            .expect("the upload reached halfway");
        Self {
            dst,
            front,
            fleet,
            first,
            held_at,
            halfway,
        }
    }
}
