//! Copy scenarios: a corpus of multi-platform images sharing base layers, and one 1 GiB blob,
//! each copied by `image-mirror copy` and by `skopeo copy --all --preserve-digests` into
//! registries of their own.

use std::path::Path;

use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, Registry};

use crate::measure::{measure, measure_with_output, report, Usage};
use crate::{MIB, SKOPEO};

fn corpus() -> Vec<(String, Image)> {
    let platforms = Platform::four();
    // One base layer per platform, shared by every image, plus a small app layer each.
    let bases: Vec<Blob> = (0..platforms.len())
        .map(|i| Blob::new(OCI_LAYER, images::random_bytes(1000 + i as u64, 24 * MIB)))
        .collect();
    (0..20_u64)
        .map(|n| {
            let children = platforms
                .iter()
                .zip(&bases)
                .enumerate()
                .map(|(i, (p, base))| {
                    let app =
                        Blob::new(OCI_LAYER, images::random_bytes(n * 100 + i as u64, 3 * MIB));
                    (
                        p.clone(),
                        images::single_with_layers(Format::Oci, p, vec![base.clone(), app]),
                    )
                })
                .collect();
            (
                format!("corpus/app{n:02}"),
                images::index_of(Format::Oci, children),
            )
        })
        .collect()
}

fn copy_args_image_mirror(src: &str, dst: &str, hosts: [&str; 2]) -> Vec<String> {
    vec![
        "--insecure-registry".into(),
        hosts.join(","),
        "copy".into(),
        src.into(),
        dst.into(),
    ]
}

fn copy_args_skopeo(src: &str, dst: &str) -> Vec<String> {
    vec![
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--quiet".into(),
        "--src-tls-verify=false".into(),
        "--dest-tls-verify=false".into(),
        format!("docker://{src}"),
        format!("docker://{dst}"),
    ]
}

/// The corpus scenario.
pub async fn corpus_scenario(binary: &Path) {
    // image-mirror's blob location cache starts empty, as skopeo's knows none of these
    // fresh registries.
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();

    let src = Registry::start();
    let ours_dst = Registry::start();
    let theirs_dst = Registry::start();
    let corpus = corpus();
    let mut distinct: Vec<&Blob> = Vec::new();
    for (repo, image) in &corpus {
        push_image(&src.url(), repo, "v1", image).await;
        for b in &image.blobs {
            if !distinct.iter().any(|d| d.digest == b.digest) {
                distinct.push(b);
            }
        }
    }
    let corpus_bytes: usize = distinct.iter().map(|b| b.bytes.len()).sum();
    let gib = corpus_bytes as f64 / (1024.0 * MIB as f64);
    let (mut ours, mut theirs) = (Usage::default(), Usage::default());
    for (repo, image) in &corpus {
        let from = format!("{}/{repo}:v1", src.host());
        let (o, t) = (ours, theirs);
        let (usage, printed) = measure_with_output(
            binary,
            &copy_args_image_mirror(
                &from,
                &format!("{}/{repo}:v1", ours_dst.host()),
                [src.host(), ours_dst.host()],
            ),
            cache,
        );
        ours.add(usage);
        let phases = printed
            .lines()
            .find_map(|l| l.trim().strip_prefix("time"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        theirs.add(measure(
            Path::new(SKOPEO),
            &copy_args_skopeo(&from, &format!("{}/{repo}:v1", theirs_dst.host())),
            cache,
        ));
        eprintln!(
            "{repo}: image-mirror {:.3}s ({phases}), skopeo {:.3}s",
            ours.wall - o.wall,
            theirs.wall - t.wall
        );
        for dst in [&ours_dst, &theirs_dst] {
            let got = skopeo::manifest_digest(&format!("{}/{repo}:v1", dst.host()));
            assert_eq!(&got, image.digest(), "{repo} differs at {}", dst.host());
        }
    }
    report(
        &format!(
            "corpus: {} four-platform images sharing base layers, {:.0} MiB of distinct blobs, copied one after another",
            corpus.len(),
            corpus_bytes as f64 / MIB as f64
        ),
        ours,
        theirs,
        gib,
    );
}

/// The big blob scenario.
pub async fn big_blob_scenario(binary: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    let src = Registry::start();
    let ours_dst = Registry::start();
    let theirs_dst = Registry::start();
    let size = 1024 * MIB;
    let layer = Blob::new(OCI_LAYER, images::random_bytes(4242, size));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&src.url(), "big/blob", "v1", &image).await;
    drop(image.blobs);
    let from = format!("{}/big/blob:v1", src.host());
    let ours = measure(
        binary,
        &copy_args_image_mirror(
            &from,
            &format!("{}/big/blob:v1", ours_dst.host()),
            [src.host(), ours_dst.host()],
        ),
        cache,
    );
    let theirs = measure(
        Path::new(SKOPEO),
        &copy_args_skopeo(&from, &format!("{}/big/blob:v1", theirs_dst.host())),
        cache,
    );
    report("big blob: one image with a 1 GiB layer", ours, theirs, 1.0);
}
