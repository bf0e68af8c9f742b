//! Copy scenarios: a corpus of multi-platform images sharing base layers, and one 1 GiB blob,
//! each copied by `image-mirror copy` and by `skopeo copy --all --preserve-digests` into
//! registries of their own.

use std::path::{Path, PathBuf};

use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, Registry};

use crate::measure::{measure, measure_with_output, report_many, Usage};
use crate::{MIB, SKOPEO};

pub(crate) fn corpus() -> Vec<(String, Image)> {
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

pub(crate) fn copy_args_image_mirror(src: &str, dst: &str, hosts: [&str; 2]) -> Vec<String> {
    vec![
        "--insecure-registry".into(),
        hosts.join(","),
        "copy".into(),
        src.into(),
        dst.into(),
    ]
}

pub(crate) fn copy_args_skopeo(src: &str, dst: &str) -> Vec<String> {
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

/// What the corpus is copied with besides image-mirror: skopeo, or, with `BENCH_RIVAL` set to
/// the path of another image-mirror binary, that build (to compare two builds in the same
/// run, under the same conditions).
enum Rival {
    Skopeo,
    Build(PathBuf),
}

impl Rival {
    fn from_env() -> Self {
        std::env::var_os("BENCH_RIVAL").map_or(Self::Skopeo, |p| Self::Build(PathBuf::from(p)))
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Skopeo => "skopeo",
            Self::Build(_) => "rival build",
        }
    }

    fn program(&self) -> &Path {
        match self {
            Self::Skopeo => Path::new(SKOPEO),
            Self::Build(path) => path,
        }
    }

    fn args(&self, src: &str, dst: &str, hosts: [&str; 2]) -> Vec<String> {
        match self {
            Self::Skopeo => copy_args_skopeo(src, dst),
            Self::Build(_) => copy_args_image_mirror(src, dst, hosts),
        }
    }
}

/// Rounds of the corpus scenario, each into fresh target registries with an empty blob
/// location cache: the spread between rounds shows how far one number can be trusted.
const CORPUS_ROUNDS: usize = 3;

/// What one tool used over a corpus round, with what the registries spent serving it.
#[derive(Default, Clone, Copy)]
struct Side {
    tool: Usage,
    /// CPU seconds of the source and of the target registry while the tool ran.
    registries: [f64; 2],
}

impl Side {
    /// Runs one copy under `measure_with_output`, adding its usage and the registries' CPU.
    fn run(
        &mut self,
        program: &Path,
        args: &[String],
        cache: &Path,
        src: &Registry,
        dst: &Registry,
    ) -> String {
        let before = [src.cpu_seconds(), dst.cpu_seconds()];
        let (usage, printed) = measure_with_output(program, args, cache);
        self.tool.add(usage);
        self.registries[0] += src.cpu_seconds() - before[0];
        self.registries[1] += dst.cpu_seconds() - before[1];
        printed
    }
}

/// The corpus scenario: the corpus is pushed once, then copied by both tools in
/// [`CORPUS_ROUNDS`] rounds; which tool goes first for each image alternates between rounds.
pub async fn corpus_scenario(binary: &Path) {
    let src = Registry::start();
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
    let rival = Rival::from_env();
    let mut ratios = Vec::new();
    let mut peer_ratios = Vec::new();
    for round in 1..=CORPUS_ROUNDS {
        let (ours, theirs, peer) = corpus_round(binary, &rival, &src, &corpus, round % 2 == 0);
        report_many(
            &format!(
                "corpus, round {round} of {CORPUS_ROUNDS}: {} four-platform images sharing base layers, {:.0} MiB of distinct blobs, copied one after another",
                corpus.len(),
                corpus_bytes as f64 / MIB as f64
            ),
            &[
                ("image-mirror", ours.tool),
                (rival.name(), theirs.tool),
                ("regctl", peer.tool),
            ],
            gib,
        );
        report_registries(ours, rival.name(), theirs);
        ratios.push(ours.tool.wall / theirs.tool.wall);
        peer_ratios.push(ours.tool.wall / peer.tool.wall);
    }
    let listed: Vec<String> = peer_ratios.iter().map(|r| format!("{r:.2}")).collect();
    peer_ratios.sort_by(f64::total_cmp);
    println!(
        "\ncorpus wall time, image-mirror / regctl, per round: {} (median {:.2})",
        listed.join(", "),
        peer_ratios[peer_ratios.len() / 2]
    );
    bulk(binary, &src, &corpus, gib).await;
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "\ncorpus wall time, image-mirror / {}, per round: {} (median {:.2})",
        rival.name(),
        listed.join(", "),
        ratios[ratios.len() / 2]
    );
}

/// One round: both tools copy every image into target registries of their own, one image
/// after another, each copy checked with skopeo afterwards.
fn corpus_round(
    binary: &Path,
    rival: &Rival,
    src: &Registry,
    corpus: &[(String, Image)],
    rival_first: bool,
) -> (Side, Side, Side) {
    // image-mirror's blob location cache starts empty, as skopeo's knows none of these
    // fresh registries (a rival build gets an empty one of its own).
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    let rival_cache = tempfile::tempdir().unwrap();
    let rival_cache = match rival {
        Rival::Skopeo => cache,
        Rival::Build(_) => rival_cache.path(),
    };
    let ours_dst = Registry::start();
    let theirs_dst = Registry::start();
    let peer_dst = Registry::start();
    let (mut ours, mut theirs, mut peer) = (Side::default(), Side::default(), Side::default());
    for (repo, image) in corpus {
        let from = format!("{}/{repo}:v1", src.host());
        let (o, t) = (ours.tool.wall, theirs.tool.wall);
        let mut phases = String::new();
        let mut run_ours = |ours: &mut Side| {
            let printed = ours.run(
                binary,
                &copy_args_image_mirror(
                    &from,
                    &format!("{}/{repo}:v1", ours_dst.host()),
                    [src.host(), ours_dst.host()],
                ),
                cache,
                src,
                &ours_dst,
            );
            phases = printed
                .lines()
                .find_map(|l| l.trim().strip_prefix("time"))
                .unwrap_or_default()
                .trim()
                .to_owned();
        };
        let run_theirs = |theirs: &mut Side| {
            theirs.run(
                rival.program(),
                &rival.args(
                    &from,
                    &format!("{}/{repo}:v1", theirs_dst.host()),
                    [src.host(), theirs_dst.host()],
                ),
                rival_cache,
                src,
                &theirs_dst,
            );
        };
        let run_peer = |peer: &mut Side| {
            peer.run(
                &crate::peers::regctl(),
                &crate::peers::regctl_copy_args(
                    &from,
                    &format!("{}/{repo}:v1", peer_dst.host()),
                    &[src.host().to_owned(), peer_dst.host().to_owned()],
                ),
                rival_cache,
                src,
                &peer_dst,
            );
        };
        if rival_first {
            run_peer(&mut peer);
            run_theirs(&mut theirs);
            run_ours(&mut ours);
        } else {
            run_ours(&mut ours);
            run_theirs(&mut theirs);
            run_peer(&mut peer);
        }
        eprintln!(
            "{repo}: image-mirror {:.3}s ({phases}), {} {:.3}s",
            ours.tool.wall - o,
            rival.name(),
            theirs.tool.wall - t
        );
        for dst in [&ours_dst, &theirs_dst, &peer_dst] {
            let got = skopeo::manifest_digest(&format!("{}/{repo}:v1", dst.host()));
            assert_eq!(&got, image.digest(), "{repo} differs at {}", dst.host());
        }
    }
    (ours, theirs, peer)
}

/// The bulk run: every corpus image at once, `image-mirror run --workers 16` over an
/// images-list against `regsync once` (`parallel: 16`, 16 requests per registry), each into a
/// registry of its own, each copy checked by digest.
async fn bulk(binary: &Path, src: &Registry, corpus: &[(String, Image)], gib: f64) {
    let dir = tempfile::tempdir().unwrap();
    let (ours_dst, peer_dst) = (Registry::start(), Registry::start());
    let mut lines: Vec<String> = corpus
        .iter()
        .map(|(repo, _)| format!("{}/{repo} {}/{repo} v1", src.host(), ours_dst.host()))
        .collect();
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    let list = dir.path().join("images-list");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let ours = measure(
        binary,
        &[
            "--images-list".to_owned(),
            list.display().to_string(),
            "--insecure-registry".to_owned(),
            format!("{},{}", src.host(), ours_dst.host()),
            "run".to_owned(),
            "--workers".to_owned(),
            "16".to_owned(),
        ],
        &dir.path().join("cache"),
    );
    let pairs: Vec<(String, String)> = corpus
        .iter()
        .map(|(repo, _)| {
            (
                format!("{}/{repo}:v1", src.host()),
                format!("{}/{repo}:v1", peer_dst.host()),
            )
        })
        .collect();
    let hosts = [src.host().to_owned(), peer_dst.host().to_owned()];
    let config = crate::peers::regsync_config(&pairs, &hosts, 16, dir.path());
    let peer = crate::peers::regsync_once(&config, false, &dir.path().join("cache"));
    for (repo, image) in corpus {
        for dst in [&ours_dst, &peer_dst] {
            let got = skopeo::manifest_digest(&format!("{}/{repo}:v1", dst.host()));
            assert_eq!(&got, image.digest(), "{repo} differs at {}", dst.host());
        }
    }
    report_many(
        &format!(
            "bulk: all {} corpus images at once (`run --workers 16` / `regsync once`, parallel 16)",
            corpus.len()
        ),
        &[("image-mirror run", ours), ("regsync once", peer)],
        gib,
    );
}

/// Where the two cores went while each tool ran: the registries' CPU seconds next to the
/// tool's own, and their sum over the tool's wall time (2.0: both cores busy throughout).
fn report_registries(ours: Side, rival: &str, theirs: Side) {
    println!(
        "\n| while it ran | source registry CPU s | target registry CPU s | tool CPU s | all CPU s / wall s |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (tool, side) in [("image-mirror", ours), (rival, theirs)] {
        let [source, target] = side.registries;
        println!(
            "| {tool} | {source:.2} | {target:.2} | {:.2} | {:.2} |",
            side.tool.cpu,
            (source + target + side.tool.cpu) / side.tool.wall
        );
    }
}

/// A source registry holding `big/blob:v1`, one image with a 1 GiB layer of `seed`'s bytes:
/// the registry, the reference and the image's digest.
pub(crate) async fn big_image(seed: u64) -> (Registry, String, image_mirror_common::Digest) {
    let src = Registry::start();
    let layer = Blob::new(OCI_LAYER, images::random_bytes(seed, 1024 * MIB));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&src.url(), "big/blob", "v1", &image).await;
    let from = format!("{}/big/blob:v1", src.host());
    (src, from, image.digest().clone())
}

/// The big blob scenario: image-mirror, skopeo and regctl, each into a registry of its own,
/// each copy checked by digest.
pub async fn big_blob_scenario(binary: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    let (src, from, digest) = big_image(4242).await;
    let mut rows = Vec::new();
    for tool in ["image-mirror", "skopeo", "regctl"] {
        let dst = Registry::start();
        let to = format!("{}/big/blob:v1", dst.host());
        let hosts = [src.host().to_owned(), dst.host().to_owned()];
        let usage = match tool {
            "image-mirror" => measure(
                binary,
                &copy_args_image_mirror(&from, &to, [src.host(), dst.host()]),
                cache,
            ),
            "skopeo" => measure(Path::new(SKOPEO), &copy_args_skopeo(&from, &to), cache),
            _ => measure(
                &crate::peers::regctl(),
                &crate::peers::regctl_copy_args(&from, &to, &hosts),
                cache,
            ),
        };
        assert_eq!(skopeo::manifest_digest(&to), digest, "{tool}");
        rows.push((tool, usage));
    }
    report_many("big blob: one image with a 1 GiB layer", &rows, 1.0);
}
