//! Benchmarks `image-mirror copy` against `skopeo copy --all --preserve-digests` in one run,
//! on the same corpus between local registries, and prints wall time, CPU time, peak RSS and
//! the ratios. Run it with `bench/run`; it is not part of the tests.
//!
//! Scenarios:
//! - corpus: 20 four-platform images whose platforms share base layers, copied one after
//!   another, each tool into its own empty registry;
//! - big blob: one image with a 1 GiB layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, Registry};

const MIB: usize = 1024 * 1024;

/// What one tool used for a scenario.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    wall: f64,
    cpu: f64,
    peak_rss_mib: f64,
}

impl Usage {
    fn add(&mut self, other: Usage) {
        self.wall += other.wall;
        self.cpu += other.cpu;
        self.peak_rss_mib = self.peak_rss_mib.max(other.peak_rss_mib);
    }
}

/// Runs a command under GNU time and reads its CPU time and peak RSS.
fn measure(program: &Path, args: &[String], cache: &Path) -> Usage {
    let stats = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .env("IMAGE_MIRROR_CACHE_DIR", cache)
        .arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(stats.path())
        .arg(program)
        .args(args)
        .output()
        .expect("GNU time (Debian package `time`)");
    let wall = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(stats.path()).unwrap();
    let fields: Vec<f64> = text
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    Usage {
        wall,
        cpu: fields[0] + fields[1],
        peak_rss_mib: fields[2] / 1024.0,
    }
}

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

fn report(name: &str, ours: Usage, theirs: Usage, gib: f64) {
    println!("\n### {name}\n");
    println!("| tool | wall s | CPU s | CPU s per GiB | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    for (tool, u) in [("image-mirror", ours), ("skopeo", theirs)] {
        println!(
            "| {tool} | {:.2} | {:.2} | {:.2} | {:.1} |",
            u.wall,
            u.cpu,
            u.cpu / gib,
            u.peak_rss_mib
        );
    }
    println!(
        "| image-mirror / skopeo | {:.2} | {:.2} | {:.2} | {:.2} |",
        ours.wall / theirs.wall,
        ours.cpu / theirs.cpu,
        ours.cpu / theirs.cpu,
        ours.peak_rss_mib / theirs.peak_rss_mib
    );
}

#[tokio::main]
async fn main() {
    let binary = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/image-mirror"));
    let skopeo_bin = PathBuf::from("/usr/bin/skopeo");
    // image-mirror's blob location cache starts empty, as skopeo's knows none of these
    // fresh registries.
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();

    // Corpus.
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
        ours.add(measure(
            &binary,
            &copy_args_image_mirror(
                &from,
                &format!("{}/{repo}:v1", ours_dst.host()),
                [src.host(), ours_dst.host()],
            ),
            cache,
        ));
        theirs.add(measure(
            &skopeo_bin,
            &copy_args_skopeo(&from, &format!("{}/{repo}:v1", theirs_dst.host())),
            cache,
        ));
        eprintln!(
            "{repo}: image-mirror {:.3}s, skopeo {:.3}s",
            ours.wall - o.wall,
            theirs.wall - t.wall
        );
        for dst in [&ours_dst, &theirs_dst] {
            let got = skopeo::manifest_digest(&format!("{}/{repo}:v1", dst.host()));
            assert_eq!(&got, image.digest(), "{repo} differs at {}", dst.host());
        }
    }
    println!("# image-mirror vs skopeo, one run");
    if std::env::var_os("BENCH_CORPUS_ONLY").is_some() {
        report("corpus", ours, theirs, gib);
        return;
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
    drop((src, ours_dst, theirs_dst));

    // One 1 GiB blob.
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
        &binary,
        &copy_args_image_mirror(
            &from,
            &format!("{}/big/blob:v1", ours_dst.host()),
            [src.host(), ours_dst.host()],
        ),
        cache,
    );
    let theirs = measure(
        &skopeo_bin,
        &copy_args_skopeo(&from, &format!("{}/big/blob:v1", theirs_dst.host())),
        cache,
    );
    report("big blob: one image with a 1 GiB layer", ours, theirs, 1.0);
}
