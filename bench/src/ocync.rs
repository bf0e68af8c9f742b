//! ocync (github.com/clowdhaus/ocync, built by `bench/ocync SRC`) beside image-mirror and
//! regsync, as their users run them, over TLS (ocync speaks only HTTPS): a private CA given to
//! every tool through `SSL_CERT_FILE`. The corpus synced cold, each tool into its own empty
//! registry; the same sync again (a no-op, the median of five: ocync with its cache, and with
//! its cache deleted);
//! every copy checked by digest. ocync is configured as its documentation says: one mapping
//! per repository with the exact tag, its default concurrency and cache, referrers off (none
//! are copied by the others).

use std::path::{Path, PathBuf};

use image_mirror_testkit::push::push_image;
use image_mirror_testkit::tls::TestCa;
use image_mirror_testkit::{crane, tools, Image, Registry, RegistryOptions};

use crate::measure::{measure, Usage};

/// Images synced at once by image-mirror and regsync (ocync keeps its own default).
const CONCURRENCY: usize = 16;

/// One tool's syncs: cold, then a no-op, and (ocync) a no-op without its cache.
struct Row {
    tool: &'static str,
    cold: Usage,
    warm: Usage,
    cold_cache_noop: Option<Usage>,
}

/// The ocync scenario.
pub async fn ocync_scenario(binary: &Path) {
    let ocync = tools::path("ocync");
    if !ocync.exists() {
        println!("\n### ocync\n\nnot built: run `bench/ocync PATH-TO-OCYNC-CHECKOUT` first");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    // Every tool (image-mirror, ocync's rustls, Go's crypto/x509, the test's pushes) trusts
    // the private CA through it.
    std::env::set_var("SSL_CERT_FILE", &ca.ca_cert);
    let tls = RegistryOptions::with_tls(&ca);
    let src = Registry::start_with(&tls);
    if std::env::var_os("BENCH_OCYNC_REAL_ONLY").is_some() {
        real_list_noop(binary, &ocync, &tls, dir.path()).await;
        return;
    }
    let corpus = crate::copy::corpus();
    for (repo, image) in &corpus {
        push_image(&src.url(), repo, "v1", image).await;
    }
    let mut rows = Vec::new();
    for tool in ["image-mirror", "ocync", "regsync"] {
        let dst = Registry::start_with(&tls);
        let work = dir.path().join(tool);
        std::fs::create_dir_all(&work).unwrap();
        let (program, args) = command(tool, binary, &src, &dst, &corpus, &work);
        let cold = measure(&program, &args, &work.join("cache"));
        check(&dst, &corpus, tool);
        // Tens of milliseconds: the median of five runs.
        let warm = median_of(5, || measure(&program, &args, &work.join("cache")));
        let cold_cache_noop = (tool == "ocync").then(|| {
            let _ = std::fs::remove_dir_all(work.join("ocync-cache"));
            measure(&program, &args, &work.join("cache"))
        });
        rows.push(Row {
            tool,
            cold,
            warm,
            cold_cache_noop,
        });
    }
    report(&rows, corpus.len());
    real_list_noop(binary, &ocync, &tls, dir.path()).await;
}

/// The real list (2,172 entries), already mirrored: each tool's no-op over TLS (ocync once
/// to fill its cache, then warm).
async fn real_list_noop(binary: &Path, ocync: &Path, tls: &RegistryOptions, dir: &Path) {
    let (src, dst) = (Registry::start_with(tls), Registry::start_with(tls));
    let (list, n) = crate::pipeline::mirrored_list(&src, &dst, dir).await;
    let text = std::fs::read_to_string(&list).unwrap();
    let entries: Vec<(String, String, String)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_owned(),
                f.next()?.to_owned(),
                f.next()?.to_owned(),
            ))
        })
        .collect();
    let cache = dir.join("real-cache");
    let args = [
        "-q",
        "run",
        "--workers",
        &CONCURRENCY.to_string(),
        "--images-list",
        list.to_str().unwrap(),
        "--config",
        dir.join("absent.json").to_str().unwrap(),
    ]
    .map(str::to_owned);
    let counted = Counted::new(&src, &dst);
    let ours = measure(binary, &args, &cache);
    let ours_requests = counted.since("image-mirror-cold");
    let counted = Counted::new(&src, &dst);
    let ours_warm = measure(binary, &args, &cache);
    let ours_warm_requests = counted.since("image-mirror-warm");
    let pairs: Vec<(String, String)> = entries
        .iter()
        .map(|(s, t, tag)| (format!("{s}:{tag}"), format!("{t}:{tag}")))
        .collect();
    let hosts = [src.host().to_owned(), dst.host().to_owned()];
    let regsync_config = crate::peers::regsync_config_over(&pairs, &hosts, CONCURRENCY, dir, true);
    let args = ["once", "-c", regsync_config.to_str().unwrap()].map(str::to_owned);
    let counted = Counted::new(&src, &dst);
    let regsync = measure(&tools::path("regsync"), &args, &cache);
    let regsync_requests = counted.since("regsync");
    let ocync_config = dir.join("real-ocync.yaml");
    let path = |r: &str| {
        r.split_once('/')
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default()
    };
    let paths: Vec<(String, String, String)> = entries
        .iter()
        .map(|(s, t, tag)| (path(s), path(t), tag.clone()))
        .collect();
    let yaml = config_yaml(
        src.host(),
        dst.host(),
        &paths,
        &dir.join("real-ocync-cache"),
    );
    std::fs::write(&ocync_config, yaml).unwrap();
    let args = ["sync", "-q", "-c", ocync_config.to_str().unwrap()].map(str::to_owned);
    let counted = Counted::new(&src, &dst);
    let ocync_cold = measure(ocync, &args, &cache);
    let ocync_cold_requests = counted.since("ocync-cold");
    let counted = Counted::new(&src, &dst);
    let ocync_warm = match std::env::var_os("BENCH_OCYNC_LOG") {
        // The warm run with its debug log kept (timestamps): what ocync waits on.
        Some(log) => {
            let script = format!(
                "exec {} sync -vv -c {} 2>&1",
                ocync.display(),
                ocync_config.display()
            );
            let sh = Path::new("/bin/sh");
            let args = ["-c".to_owned(), script];
            let (usage, out) = crate::measure::measure_with_output(sh, &args, &cache);
            std::fs::write(&log, out).unwrap();
            usage
        }
        None => measure(ocync, &args, &cache),
    };
    let ocync_warm_requests = counted.since("ocync-warm");
    println!(
        "\n### the real list's no-op over TLS: {n} entries already mirrored\n\n| tool | wall s | CPU s | peak RSS MiB | requests at the source | at the target |\n|---|---:|---:|---:|---:|---:|"
    );
    let rows = [
        ("image-mirror run, first", ours, ours_requests),
        (
            "image-mirror run, again (target record)",
            ours_warm,
            ours_warm_requests,
        ),
        ("regsync once", regsync, regsync_requests),
        ("ocync sync, cache empty", ocync_cold, ocync_cold_requests),
        ("ocync sync, warm cache", ocync_warm, ocync_warm_requests),
    ];
    for (tool, u, r) in rows {
        println!(
            "| {tool} | {:.2} | {:.2} | {:.1} | {} | {} |",
            u.wall, u.cpu, u.peak_rss_mib, r.source, r.target
        );
    }
    println!(
        "\nimage-mirror first / regsync once: {:.2}; / ocync warm: {:.2}; / ocync with its cache empty: {:.2}",
        ours.wall / regsync.wall,
        ours.wall / ocync_warm.wall,
        ours.wall / ocync_cold.wall
    );
    println!(
        "image-mirror again / regsync once: {:.2}; / ocync warm: {:.2}",
        ours_warm.wall / regsync.wall,
        ours_warm.wall / ocync_warm.wall,
    );
}

/// Requests two registries answered.
#[derive(Debug, Clone, Copy)]
struct Requests {
    source: usize,
    target: usize,
}

/// Counts the requests two registries answer from now on.
struct Counted<'a> {
    src: &'a Registry,
    dst: &'a Registry,
    at: Requests,
}

impl<'a> Counted<'a> {
    fn new(src: &'a Registry, dst: &'a Registry) -> Self {
        let at = Requests {
            source: src.requests().len(),
            target: dst.requests().len(),
        };
        Self { src, dst, at }
    }

    /// The requests each answered since [`Counted::new`], once a marker request named
    /// `marker`, sent after them, is in each one's log (the log is written on its own time).
    fn since(&self, marker: &str) -> Requests {
        for registry in [self.src, self.dst] {
            let url = format!("https://{}/v2/{marker}/tags/list", registry.host());
            let _ = std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", &url])
                .env(
                    "CURL_CA_BUNDLE",
                    std::env::var_os("SSL_CERT_FILE").unwrap_or_default(),
                )
                .status();
            assert!(
                registry
                    .wait_for_request(|r| r.contains(marker), std::time::Duration::from_secs(10)),
                "marker {marker} never logged"
            );
        }
        // The marker itself is not counted.
        Requests {
            source: self.src.requests().len() - self.at.source - 1,
            target: self.dst.requests().len() - self.at.target - 1,
        }
    }
}

/// ocync's configuration as its users write it: one mapping per repository pair of `entries`
/// (`(source path, target path, tag)`), its tags exact, its default concurrency and its cache
/// in `cache`, referrers off (none are copied by the others).
pub(crate) fn config_yaml(
    src: &str,
    dst: &str,
    entries: &[(String, String, String)],
    cache: &Path,
) -> String {
    let mut by_repo: std::collections::BTreeMap<(&str, &str), Vec<String>> =
        std::collections::BTreeMap::new();
    for (s, t, tag) in entries {
        by_repo.entry((s, t)).or_default().push(format!("{tag:?}"));
    }
    let mut yaml = format!(
        "global:\n  cache_dir: {}\nregistries:\n  src:\n    url: {src}\n  dst:\n    url: {dst}\n\
         defaults:\n  source: src\n  targets: dst\n  artifacts:\n    enabled: false\nmappings:\n",
        cache.display()
    );
    for ((from, to), tags) in by_repo {
        yaml.push_str(&format!(
            "  - from: {from}\n    to: {to}\n    tags:\n      include: [{}]\n",
            tags.join(", ")
        ));
    }
    yaml
}

/// The run of median wall time among `n` of `run`.
fn median_of(n: usize, mut run: impl FnMut() -> Usage) -> Usage {
    let mut runs: Vec<Usage> = (0..n).map(|_| run()).collect();
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    runs[runs.len() / 2]
}

/// The program and arguments of `tool` syncing the corpus from `src` into `dst`, its files
/// in `work`.
fn command(
    tool: &str,
    binary: &Path,
    src: &Registry,
    dst: &Registry,
    corpus: &[(String, Image)],
    work: &Path,
) -> (PathBuf, Vec<String>) {
    let entries: Vec<(String, String, String)> = corpus
        .iter()
        .map(|(repo, _)| (repo.clone(), repo.clone(), "v1".to_owned()))
        .collect();
    crate::ocync_fronts::sync_command(tool, binary, src.host(), dst.host(), &entries, work)
}

/// Every image of the corpus is at `dst` with its digest.
fn check(dst: &Registry, corpus: &[(String, Image)], tool: &str) {
    for (repo, image) in corpus {
        let at = format!("{}/{repo}:v1", dst.host());
        assert_eq!(&crane::digest(&at), image.digest(), "{tool}: {at}");
    }
}

fn report(rows: &[Row], images: usize) {
    println!(
        "\n### ocync: {images} four-platform images over TLS, synced cold into an empty registry, then again (a no-op)\n"
    );
    println!("| tool | cold wall s | cold CPU s | cold peak RSS MiB | no-op wall s | no-op CPU s | no-op, cache deleted, wall s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let cold_cache = r
            .cold_cache_noop
            .map_or_else(String::new, |u| format!("{:.2}", u.wall));
        println!(
            "| {} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {cold_cache} |",
            r.tool, r.cold.wall, r.cold.cpu, r.cold.peak_rss_mib, r.warm.wall, r.warm.cpu
        );
    }
    let Some(ours) = rows.iter().find(|r| r.tool == "image-mirror") else {
        return;
    };
    for r in rows.iter().filter(|r| r.tool != "image-mirror") {
        println!(
            "\nimage-mirror / {}: cold wall {:.2}, cold CPU {:.2}, no-op wall {:.2}",
            r.tool,
            ours.cold.wall / r.cold.wall,
            ours.cold.cpu / r.cold.cpu.max(0.001),
            ours.warm.wall / r.warm.wall
        );
    }
}
