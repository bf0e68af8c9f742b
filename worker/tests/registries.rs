//! The copy engine against registries that are not distribution: fronts that answer uploads
//! as GHCR, ECR, ACR and Harbor are publicly reported to (the testkit's `Quirk`, each with its
//! source), a registry that sets a chunk minimum, a registry in read-only mode; every copy
//! read back digest-exact with crane, and the bytes that crossed the front counted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{crane, Front, FrontOptions, Quirk, Registry};
use image_mirror_worker::{CopyEngine, CopyError};

mod support;

use support::{engine, reference, MIB};

/// The images every profile carries: a four-platform index over a shared 8 MiB base layer, a
/// 40 MiB single-layer image, and, when `big`, a 1 GiB single-layer image.
fn samples(seed: u64, big: bool) -> Vec<(&'static str, Image)> {
    let base = Blob::new(OCI_LAYER, images::random_bytes(seed, 8 * MIB as usize));
    let children = Platform::four()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let own = Blob::new(
                OCI_LAYER,
                images::random_bytes(seed + 1 + i as u64, 64 * 1024),
            );
            let child = images::single_with_layers(Format::Oci, &p, vec![base.clone(), own]);
            (p, child)
        })
        .collect();
    let mut out = vec![
        ("index", images::index_of(Format::Oci, children)),
        ("forty", single_layer(seed + 10, 40 * MIB)),
    ];
    if big {
        out.push(("gib", single_layer(seed + 20, 1024 * MIB)));
    }
    out
}

fn single_layer(seed: u64, size: u64) -> Image {
    let layer = Blob::new(
        OCI_LAYER,
        images::random_bytes(seed, usize::try_from(size).unwrap()),
    );
    images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer])
}

/// Every byte an image puts on the wire once: its blobs and manifests.
fn image_bytes(image: &Image) -> u64 {
    image.blob_bytes() as u64
        + image
            .manifests
            .iter()
            .map(|m| m.bytes.len() as u64)
            .sum::<u64>()
}

/// A source with the samples, a target registry behind a front with `quirk`, and an engine.
struct Profile {
    src: Registry,
    dst: Registry,
    front: Front,
    engine: CopyEngine,
    samples: Vec<(&'static str, Image)>,
}

async fn profile(quirk: Quirk, seed: u64, big: bool) -> Profile {
    let src = Registry::start();
    let dst = Registry::start();
    let samples = samples(seed, big);
    for (name, image) in &samples {
        push_image(&src.url(), &format!("up/{name}"), "v1", image).await;
    }
    let front = Front::start(dst.host(), FrontOptions::quirk(quirk));
    let engine = engine(&[src.host().to_owned(), front.host()]);
    Profile {
        src,
        dst,
        front,
        engine,
        samples,
    }
}

impl Profile {
    /// Copies every sample through the front into `repo_prefix/NAME`, and checks each with
    /// crane at the registry itself.
    async fn copy_all(&self, repo_prefix: &str) {
        for (name, image) in &self.samples {
            let from = reference(&format!("{}/up/{name}:v1", self.src.host()));
            let to = reference(&format!("{}/{repo_prefix}/{name}:v1", self.front.host()));
            let report = self
                .engine
                .copy(&from, &to)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&report.digest, image.digest(), "{name}");
            let at = format!("{}/{repo_prefix}/{name}:v1", self.dst.host());
            assert_eq!(&crane::digest(&at), image.digest(), "{name}: crane at {at}");
        }
    }

    fn total_bytes(&self) -> u64 {
        self.samples.iter().map(|(_, i)| image_bytes(i)).sum()
    }

    /// The body lengths of the upload requests that carried bytes.
    fn upload_bodies(&self) -> Vec<usize> {
        self.front
            .requests()
            .iter()
            .filter(|r| r.target.contains("/blobs/uploads/") && r.body_len > 0)
            .map(|r| r.body_len)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghcr_refuses_a_body_over_4_mib_once_and_every_later_request_fits() {
    let p = profile(Quirk::Ghcr, 9100, true).await;
    p.copy_all("mirror").await;
    // One refusal in the process: the index's 8 MiB base layer, sent whole; from then on the
    // registry's limit is known, for the 40 MiB and the 1 GiB blobs too.
    assert_eq!(p.front.quirk_refusals(), 1, "refusals");
    let bodies = p.upload_bodies();
    let over: Vec<_> = bodies.iter().filter(|b| **b as u64 > 4 * MIB).collect();
    assert_eq!(over.len(), 1, "requests over 4 MiB: {over:?}");
    assert!(
        p.engine
            .client()
            .upload_limits()
            .max_request(&p.front.host())
            <= Some(4 * MIB)
    );
    let extra = p.front.bytes_taken().saturating_sub(p.total_bytes());
    assert!(
        extra <= 8 * MIB,
        "{extra} bytes beyond the images' own: more than the one refused request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_answers_201_with_a_stuck_range_and_nothing_is_sent_twice() {
    let p = profile(Quirk::Ecr, 9200, true).await;
    p.copy_all("mirror").await;
    assert!(
        p.engine
            .client()
            .upload_limits()
            .range_is_stuck(&p.front.host()),
        "the stuck Range was never seen: the profile did not chunk"
    );
    assert_eq!(p.front.quirk_refusals(), 0);
    assert_eq!(
        p.front.bytes_taken(),
        p.total_bytes(),
        "every byte once, though the Range never moved past the first chunk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_and_harbor_answer_mounts_with_a_session_that_carries_the_bytes() {
    for (quirk, seed) in [(Quirk::Ecr, 9300), (Quirk::Harbor, 9400)] {
        let p = profile(quirk, seed, false).await;
        p.copy_all("team-a").await;
        let first = p.front.bytes_taken();
        // The same blobs into another repository: the mounts are answered 202, and the bytes
        // go up in the sessions they opened.
        p.copy_all("team-b").await;
        let mounts = p
            .front
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.target.contains("mount="))
            .count();
        assert!(mounts > 0, "{quirk:?}: no mount was asked for");
        let sessions = p
            .front
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.target.contains("/blobs/uploads/"))
            .count();
        let blobs: usize = p.samples.iter().map(|(_, i)| i.blobs.len()).sum();
        assert_eq!(sessions, 2 * blobs, "{quirk:?}: one session per blob sent");
        assert!(
            p.front.bytes_taken() <= 2 * first,
            "{quirk:?}: the second copy sent more than the first"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_kills_the_session_at_a_cut_and_the_blob_starts_over_once() {
    let cut_at = 20 * MIB;
    let p = profile(Quirk::Acr { cut_at }, 9500, false).await;
    p.copy_all("mirror").await;
    assert!(
        p.front.quirk_refusals() >= 1,
        "the dead session was never asked about"
    );
    // What was sent of the 40 MiB blob up to the end of the cut chunk went again, once.
    let chunk = image_mirror_registry::upload_limits::DEFAULT_CHUNK;
    let before_cut = cut_at.div_ceil(chunk) * chunk;
    let extra = p.front.bytes_taken().saturating_sub(p.total_bytes());
    assert!(
        extra <= before_cut,
        "{extra} bytes sent again, more than the {before_cut} before the cut"
    );
    assert!(extra > 0, "the cut never happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_advertised_chunk_minimum_is_honoured() {
    let min = 32 * MIB;
    let mut p = profile(Quirk::ChunkMin(min), 9600, false).await;
    // Chunks of 16 MiB (the default) asked for: the registry's minimum raises them.
    let hosts = [p.src.host().to_owned(), p.front.host()];
    p.engine = engine(&hosts);
    p.copy_all("mirror").await;
    assert_eq!(
        p.front.quirk_refusals(),
        0,
        "a chunk under the minimum was sent"
    );
    let patches: Vec<usize> = p
        .front
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.body_len)
        .collect();
    assert_eq!(
        patches,
        [32 * MIB as usize, 8 * MIB as usize],
        "the 40 MiB blob in chunks of the minimum"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_registry_is_a_target_that_refuses_writes() {
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions {
        read_only: true,
        ..RegistryOptions::default()
    });
    let image = images::oci_index(9700);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let engine = engine(&[src.host().to_owned(), dst.host().to_owned()]);
    let err = engine
        .copy(
            &reference(&format!("{}/up/app:v1", src.host())),
            &reference(&format!("{}/mirror/app:v1", dst.host())),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CopyError::ReadOnly { .. }), "{err:?}");
    assert_eq!(err.class(), "target_refused");
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(text.contains("refuses writes (read-only?)"), "{text}");
    assert!(text.contains("405"), "{text}");
}
