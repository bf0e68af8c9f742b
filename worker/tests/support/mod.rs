//! What the copy engine's test files share: an engine over plain-HTTP hosts with fast
//! retries, references, a registry per implementation, a test run against both.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use image_mirror_common::ImageRef;
use image_mirror_registry::{ClientOptions, RegistryClient, RetryPolicy};
use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{Implementation, Registry};
use image_mirror_worker::{CopyEngine, CopyOptions};

pub const MIB: u64 = 1024 * 1024;

/// Retries a test waits little for.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        max_retries: 5,
    }
}

/// An engine that may reach `hosts` over plain HTTP.
pub fn engine(hosts: &[String]) -> CopyEngine {
    engine_with(hosts, CopyOptions::default())
}

/// [`engine`] with `options`.
pub fn engine_with(hosts: &[String], options: CopyOptions) -> CopyEngine {
    let client = RegistryClient::new(ClientOptions {
        insecure_hosts: hosts.to_vec(),
        retry: fast_retries(),
        ..ClientOptions::default()
    })
    .unwrap();
    CopyEngine::new(client, options)
}

pub fn reference(s: &str) -> ImageRef {
    s.parse().unwrap()
}

/// A registry of `implementation` without auth.
pub fn registry(implementation: Implementation) -> Registry {
    Registry::start_with(&RegistryOptions::default().on(implementation))
}

/// A single-platform image of one layer of `size` bytes.
pub fn big_image(seed: u64, size: u64) -> Image {
    let layer = Blob::new(
        OCI_LAYER,
        images::random_bytes(seed, usize::try_from(size).unwrap()),
    );
    images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer])
}

/// The test `$name(implementation)` once against each registry implementation, as
/// `$name::distribution_2` and `$name::distribution_3`.
#[macro_export]
macro_rules! on_both_registries {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distribution_2() {
                super::$name(image_mirror_testkit::Implementation::Distribution2).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distribution_3() {
                super::$name(image_mirror_testkit::Implementation::Distribution3).await;
            }
        }
    };
}
