//! Registry economy: the pulls (manifest GETs, as Docker Hub counts them) each tool spends per
//! scenario, counted by a metering front before the source; and the corpus and a no-op run
//! through fronts that add 25 ms to every request (a round trip on a real link), both tools
//! through the same fronts.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, Front, FrontOptions, Registry};

use crate::measure::{measure, report_plain, run_ok};
use crate::SKOPEO;

/// `(repository, tag, image)`: 10 four-platform indexes and 40 single manifests.
pub(crate) fn economy_corpus() -> Vec<(String, String, Image)> {
    (0..50_u64)
        .map(|i| {
            let image = if i < 10 {
                images::oci_index(9000 + i)
            } else {
                images::oci_manifest(9000 + i)
            };
            (format!("eco/app{i:02}"), "v1.0".to_owned(), image)
        })
        .collect()
}

fn write_list(dir: &Path, front: &str, entries: &[(String, String, Image)]) -> String {
    let mut lines: Vec<String> = entries
        .iter()
        .map(|(repo, tag, _)| format!("{front}/{repo} mirror.invalid/{repo} {tag}"))
        .collect();
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    let path = dir.join("images-list");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

/// `image-mirror run` of the list into `targets`.
fn run_ours(binary: &Path, list: &str, front: &str, targets: &[&str], cache: &Path) {
    let insecure = std::iter::once(front)
        .chain(targets.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let args = vec![
        "--images-list".to_owned(),
        list.to_owned(),
        "--insecure-registry".to_owned(),
        insecure,
        "--dest-registry".to_owned(),
        targets.join(","),
        "run".to_owned(),
    ];
    measure(binary, &args, cache);
}

/// skopeo as the original tool ran it: one `skopeo copy --all --preserve-digests` per entry
/// and target.
fn skopeo_copies(entries: &[(String, String, Image)], front: &str, targets: &[&str]) {
    for (repo, tag, _) in entries {
        for target in targets {
            run_ok(
                Command::new(SKOPEO)
                    .args(["copy", "--all", "--preserve-digests", "--quiet"])
                    .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
                    .arg(format!("docker://{front}/{repo}:{tag}"))
                    .arg(format!("docker://{target}/{repo}:{tag}")),
            );
        }
    }
}

/// `skopeo sync` of each repository (every tag) to each target.
fn skopeo_syncs(entries: &[(String, String, Image)], front: &str, targets: &[&str]) {
    for (repo, _, _) in entries {
        for target in targets {
            let prefix = repo.rsplit_once('/').map_or("", |(p, _)| p);
            run_ok(
                Command::new(SKOPEO)
                    .args([
                        "sync",
                        "--all",
                        "--preserve-digests",
                        "--src",
                        "docker",
                        "--dest",
                        "docker",
                    ])
                    .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
                    .arg(format!("{front}/{repo}"))
                    .arg(format!("{target}/{prefix}")),
            );
        }
    }
}

/// `regsync once` of `entries` into each of `targets`, one `type: image` entry per entry and
/// target.
fn regsync_syncs(entries: &[(String, String, Image)], front: &str, targets: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let pairs: Vec<(String, String)> = entries
        .iter()
        .flat_map(|(repo, tag, _)| {
            targets
                .iter()
                .map(move |t| (format!("{front}/{repo}:{tag}"), format!("{t}/{repo}:{tag}")))
        })
        .collect();
    let hosts: Vec<String> = std::iter::once(front)
        .chain(targets.iter().copied())
        .map(str::to_owned)
        .collect();
    let config = crate::peers::regsync_config(&pairs, &hosts, 4, dir.path());
    crate::peers::regsync_once(&config, false, dir.path());
}

/// The pulls scenario.
pub async fn pulls_scenario(binary: &Path) {
    let src = Registry::start();
    let mut entries = economy_corpus();
    for (repo, tag, image) in &entries {
        push_image(&src.url(), repo, tag, image).await;
    }
    let manifests: usize = entries.iter().map(|(_, _, i)| i.manifests.len()).sum();
    let front = Front::start(src.host(), FrontOptions::default());
    let fh = front.host();
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), &fh, &entries);
    let tools = [
        "image-mirror run",
        "skopeo copy loop",
        "skopeo sync",
        "regsync once",
    ];
    let dsts: Vec<Registry> = (0..4).map(|_| Registry::start()).collect();
    let three: Vec<Vec<Registry>> = (0..4)
        .map(|_| (0..3).map(|_| Registry::start()).collect())
        .collect();
    let pulls = |f: &dyn Fn()| {
        let before = front.pulls();
        f();
        front.pulls() - before
    };
    let mut rows: Vec<(String, [u64; 4])> = Vec::new();
    let run_all = |entries: &[(String, String, Image)], list: &str, targets: [Vec<&str>; 4]| {
        let cache = tempfile::tempdir().unwrap();
        [
            pulls(&|| run_ours(binary, list, &fh, &targets[0], cache.path())),
            pulls(&|| skopeo_copies(entries, &fh, &targets[1])),
            pulls(&|| skopeo_syncs(entries, &fh, &targets[2])),
            pulls(&|| regsync_syncs(entries, &fh, &targets[3])),
        ]
    };
    let one = |i: usize| vec![dsts[i].host()];
    rows.push((
        format!(
            "first mirror ({} entries, {manifests} manifests)",
            entries.len()
        ),
        run_all(&entries, &list, [one(0), one(1), one(2), one(3)]),
    ));
    rows.push((
        "no-op rerun".to_owned(),
        run_all(&entries, &list, [one(0), one(1), one(2), one(3)]),
    ));
    let (repo, _, image) = entries[0].clone();
    push_image(&src.url(), &repo, "v1.0-retag", &image).await;
    let retag = vec![(repo, "v1.0-retag".to_owned(), image)];
    entries.extend(retag.clone());
    let list = write_list(dir.path(), &fh, &entries);
    rows.push((
        "a new tag of an index the target holds".to_owned(),
        [
            pulls(&|| run_ours(binary, &list, &fh, &one(0), dir.path())),
            pulls(&|| skopeo_copies(&retag, &fh, &one(1))),
            pulls(&|| skopeo_syncs(&retag, &fh, &one(2))),
            pulls(&|| regsync_syncs(&retag, &fh, &one(3))),
        ],
    ));
    fn hosts(set: &[Registry]) -> Vec<&str> {
        set.iter().map(Registry::host).collect()
    }
    let first_three: Vec<(String, String, Image)> = entries[..50].to_vec();
    let list3 = write_list(dir.path(), &fh, &first_three);
    rows.push((
        "first mirror to three targets".to_owned(),
        run_all(
            &first_three,
            &list3,
            [
                hosts(&three[0]),
                hosts(&three[1]),
                hosts(&three[2]),
                hosts(&three[3]),
            ],
        ),
    ));
    for (repo, tag, image) in &first_three {
        for set in &three {
            for dst in set {
                let got = skopeo::manifest_digest(&format!("{}/{repo}:{tag}", dst.host()));
                assert_eq!(&got, image.digest(), "{repo}:{tag} at {}", dst.host());
            }
        }
    }
    println!("\n### pulls: manifest GETs at the source (a Docker Hub-style metering front)\n");
    println!(
        "| scenario | {} | {} | {} | {} |",
        tools[0], tools[1], tools[2], tools[3]
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, p) in rows {
        println!("| {name} | {} | {} | {} | {} |", p[0], p[1], p[2], p[3]);
    }
    println!("\n(regsync: `parallel: 4`, image-mirror's default workers.)");
}

/// 25 ms before every request: one round trip.
pub(crate) const ROUND_TRIP: Duration = Duration::from_millis(25);

/// The latency scenario: 8 images of the corpus copied one after another, and a no-op run over
/// 100 entries, each tool through fronts that add [`ROUND_TRIP`] before the source and its
/// target.
pub async fn latency_scenario(binary: &Path) {
    let slow = || FrontOptions {
        latency: Some(ROUND_TRIP),
        ..FrontOptions::default()
    };
    let src = Registry::start();
    let corpus: Vec<(String, Image)> = (0..8_u64)
        .map(|i| (format!("lat/app{i}"), images::oci_index(9500 + i)))
        .collect();
    for (repo, image) in &corpus {
        push_image(&src.url(), repo, "v1", image).await;
    }
    let src_front = Front::start(src.host(), slow());
    let (ours_dst, theirs_dst, peer_dst) =
        (Registry::start(), Registry::start(), Registry::start());
    let (ours_front, theirs_front, peer_front) = (
        Front::start(ours_dst.host(), slow()),
        Front::start(theirs_dst.host(), slow()),
        Front::start(peer_dst.host(), slow()),
    );
    let cache = tempfile::tempdir().unwrap();
    let (mut ours, mut theirs, mut peer) = (0.0, 0.0, 0.0);
    for (repo, image) in &corpus {
        let from = format!("{}/{repo}:v1", src_front.host());
        let started = Instant::now();
        let args = vec![
            "--insecure-registry".to_owned(),
            format!("{},{}", src_front.host(), ours_front.host()),
            "copy".to_owned(),
            from.clone(),
            format!("{}/{repo}:v1", ours_front.host()),
        ];
        measure(binary, &args, cache.path());
        ours += started.elapsed().as_secs_f64();
        let started = Instant::now();
        run_ok(
            Command::new(SKOPEO)
                .args(["copy", "--all", "--preserve-digests", "--quiet"])
                .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
                .arg(format!("docker://{from}"))
                .arg(format!("docker://{}/{repo}:v1", theirs_front.host())),
        );
        theirs += started.elapsed().as_secs_f64();
        let hosts = [src_front.host(), peer_front.host()];
        let to = format!("{}/{repo}:v1", peer_front.host());
        peer += measure(
            &crate::peers::regctl(),
            &crate::peers::regctl_copy_args(&from, &to, &hosts),
            cache.path(),
        )
        .wall;
        for dst in [&ours_dst, &theirs_dst, &peer_dst] {
            let got = skopeo::manifest_digest(&format!("{}/{repo}:v1", dst.host()));
            assert_eq!(&got, image.digest());
        }
    }
    println!("\n### latency: 25 ms before every request, source and target\n");
    println!("| scenario | image-mirror wall s | skopeo wall s | regctl wall s | image-mirror / skopeo | image-mirror / regctl |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| corpus: {} four-platform images, one after another | {ours:.2} | {theirs:.2} | {peer:.2} | {:.2} | {:.2} |",
        corpus.len(),
        ours / theirs,
        ours / peer
    );
    noop_through_fronts(binary).await;
}

/// A no-op run over 100 entries (already mirrored) through slow fronts.
async fn noop_through_fronts(binary: &Path) {
    let slow = || FrontOptions {
        latency: Some(ROUND_TRIP),
        ..FrontOptions::default()
    };
    let (src, dst) = (Registry::start(), Registry::start());
    let mut lines = Vec::new();
    let (src_front, dst_front) = (
        Front::start(src.host(), slow()),
        Front::start(dst.host(), slow()),
    );
    for i in 0..100_u64 {
        let image = images::oci_manifest(9600 + i);
        let repo = format!("noop/app{i:03}");
        push_image(&src.url(), &repo, "v1", &image).await;
        push_image(&dst.url(), &repo, "v1", &image).await;
        lines.push(format!(
            "{}/{repo} {}/{repo} v1",
            src_front.host(),
            dst_front.host()
        ));
    }
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let args = vec![
        "--images-list".to_owned(),
        list.display().to_string(),
        "--insecure-registry".to_owned(),
        format!("{},{}", src_front.host(), dst_front.host()),
        "run".to_owned(),
        "--workers".to_owned(),
        "16".to_owned(),
    ];
    let ours = measure(binary, &args, &dir.path().join("cache"));
    let script = dir.path().join("loop.sh");
    std::fs::write(&script, crate::pipeline::SKOPEO_LOOP).unwrap();
    let theirs = measure(
        Path::new("/bin/bash"),
        &[script.display().to_string(), list.display().to_string()],
        &dir.path().join("cache"),
    );
    report_plain(
        "no-op run through the slow fronts: 100 entries already mirrored, `image-mirror run --workers 16` vs a `skopeo inspect --raw` loop",
        ours,
        theirs,
    );
    let pairs: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (s, t, tag) = (f.next()?, f.next()?, f.next()?);
            Some((format!("{s}:{tag}"), format!("{t}:{tag}")))
        })
        .collect();
    let config = crate::peers::regsync_config(
        &pairs,
        &[src_front.host(), dst_front.host()],
        16,
        dir.path(),
    );
    let peer = crate::peers::regsync_once(&config, false, &dir.path().join("cache"));
    println!(
        "\n| the same no-op | wall s | CPU s |\n|---|---:|---:|\n| image-mirror run | {:.2} | {:.2} |\n| regsync once (parallel 16) | {:.2} | {:.2} |\n| image-mirror / regsync | {:.2} | {:.2} |",
        ours.wall,
        ours.cpu,
        peer.wall,
        peer.cpu,
        ours.wall / peer.wall,
        ours.cpu / peer.cpu
    );
}
