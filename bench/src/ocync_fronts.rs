//! ocync beside image-mirror and the Go peers where the testkit's fronts stand before the
//! registries, over TLS (ocync speaks only HTTPS): a TLS terminator before each front, the
//! registries answering relative `Location`s. Three rows, each tool into a registry of its own
//! and every copy checked by digest:
//!
//! - **latency**: fronts adding 25 ms before every request at the source and the target; 8
//!   four-platform images synced in one invocation, then a no-op over 100 entries already
//!   mirrored (image-mirror twice: its target record empty, then filled; ocync with its cache
//!   empty and warm), the requests each front answered counted;
//! - **ghcr**: the 1 GiB image into a front answering as GHCR does (bodies over 4 MiB refused
//!   with 416); bytes sent and refusals counted there;
//! - **pulls**: 50 entries (10 four-platform indexes, 40 single manifests) through a metering
//!   front counting manifest GETs as Docker Hub counts pulls: the first sync, then a no-op.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::tls::TestCa;
use image_mirror_testkit::tls_front::TlsFront;
use image_mirror_testkit::{crane, tools, Front, FrontOptions, Quirk, Registry, RegistryOptions};

use crate::measure::{measure, try_measure_within, Usage};
use crate::MIB;

/// Images synced at once by image-mirror and regsync (ocync keeps its own default).
const CONCURRENCY: usize = 16;

/// A registry behind a front behind TLS: what the tools are given is `tls.host()`.
struct Fronted {
    registry: Registry,
    front: Front,
    tls: TlsFront,
}

impl Fronted {
    fn start(options: FrontOptions, ca: &TestCa) -> Self {
        let registry = Registry::start_with(&RegistryOptions {
            relative_urls: true,
            ..RegistryOptions::default()
        });
        let front = Front::start(registry.host(), options);
        let tls = TlsFront::start(&front.host(), ca);
        Self {
            registry,
            front,
            tls,
        }
    }

    fn host(&self) -> String {
        self.tls.host()
    }
}

/// One sync of `entries` (`(source repo, target repo, tag)`) from `src` to `dst` by `tool`,
/// its files in `work`: the program and its arguments.
pub(crate) fn sync_command(
    tool: &str,
    binary: &Path,
    src: &str,
    dst: &str,
    entries: &[(String, String, String)],
    work: &Path,
) -> (PathBuf, Vec<String>) {
    std::fs::create_dir_all(work).unwrap();
    match tool {
        "image-mirror" => {
            let lines: Vec<String> = entries
                .iter()
                .map(|(s, t, tag)| format!("{src}/{s} {dst}/{t} {tag}"))
                .collect();
            let list = work.join("images-list");
            std::fs::write(&list, lines.join("\n") + "\n").unwrap();
            let absent = work.join("absent.json");
            let args = [
                "-q",
                "run",
                "--workers",
                &CONCURRENCY.to_string(),
                "--images-list",
                list.to_str().unwrap(),
                "--config",
                absent.to_str().unwrap(),
            ];
            (binary.to_owned(), args.map(str::to_owned).to_vec())
        }
        "ocync" => {
            let config = work.join("ocync.yaml");
            std::fs::write(
                &config,
                crate::ocync::config_yaml(src, dst, entries, &work.join("ocync-cache")),
            )
            .unwrap();
            let args = ["sync", "-q", "-c", config.to_str().unwrap()];
            (tools::path("ocync"), args.map(str::to_owned).to_vec())
        }
        _ => {
            let pairs: Vec<(String, String)> = entries
                .iter()
                .map(|(s, t, tag)| (format!("{src}/{s}:{tag}"), format!("{dst}/{t}:{tag}")))
                .collect();
            let hosts = [src.to_owned(), dst.to_owned()];
            let config = crate::peers::regsync_config_over(&pairs, &hosts, CONCURRENCY, work, true);
            let args = ["once", "-c", config.to_str().unwrap()];
            (tools::path("regsync"), args.map(str::to_owned).to_vec())
        }
    }
}

/// One measured row: a tool, what it used, the requests each front answered.
struct Row {
    what: String,
    usage: Usage,
    source_requests: usize,
    target_requests: usize,
}

fn measured(what: String, src: &Fronted, dst: &Fronted, run: impl FnOnce() -> Usage) -> Row {
    let (s, t) = (src.front.requests().len(), dst.front.requests().len());
    let usage = run();
    Row {
        what,
        usage,
        source_requests: src.front.requests().len() - s,
        target_requests: dst.front.requests().len() - t,
    }
}

fn print_rows(title: &str, rows: &[Row]) {
    println!("\n### {title}\n");
    println!("| tool | wall s | CPU s | peak RSS MiB | requests at the source | at the target |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.1} | {} | {} |",
            r.what,
            r.usage.wall,
            r.usage.cpu,
            r.usage.peak_rss_mib,
            r.source_requests,
            r.target_requests
        );
    }
}

/// The scenario.
pub async fn ocync_fronts_scenario(binary: &Path) {
    if !tools::path("ocync").exists() {
        println!("\n### ocync behind fronts\n\nnot built: run `bench/ocync PATH-TO-OCYNC-CHECKOUT` first");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    std::env::set_var("SSL_CERT_FILE", &ca.ca_cert);
    latency(binary, &ca, dir.path()).await;
    ghcr(binary, &ca, dir.path()).await;
    pulls(binary, &ca, dir.path()).await;
}

const TOOLS: [&str; 3] = ["image-mirror", "ocync", "regsync"];

fn latency_front() -> FrontOptions {
    FrontOptions {
        latency: Some(Duration::from_millis(25)),
        ..FrontOptions::default()
    }
}

async fn latency(binary: &Path, ca: &TestCa, dir: &Path) {
    // 8 four-platform images, each tool into a target of its own.
    let src = Fronted::start(latency_front(), ca);
    let corpus: Vec<(String, Image)> = crate::copy::corpus().into_iter().take(8).collect();
    for (repo, image) in &corpus {
        push_image(&src.registry.url(), repo, "v1", image).await;
    }
    let entries: Vec<(String, String, String)> = corpus
        .iter()
        .map(|(repo, _)| (repo.clone(), repo.clone(), "v1".to_owned()))
        .collect();
    let mut rows = Vec::new();
    for tool in TOOLS {
        let dst = Fronted::start(latency_front(), ca);
        let work = dir.join(format!("latency-{tool}"));
        let (program, args) = sync_command(tool, binary, &src.host(), &dst.host(), &entries, &work);
        rows.push(measured(tool.to_owned(), &src, &dst, || {
            measure(&program, &args, &work.join("cache"))
        }));
        for (repo, image) in &corpus {
            let at = format!("{}/{repo}:v1", dst.registry.host());
            assert_eq!(&crane::digest(&at), image.digest(), "{tool}: {at}");
        }
    }
    print_rows(
        "25 ms before every request, over TLS: 8 four-platform images synced",
        &rows,
    );

    // A no-op over 100 entries both registries hold.
    let (src, dst) = (
        Fronted::start(latency_front(), ca),
        Fronted::start(latency_front(), ca),
    );
    let mut entries = Vec::new();
    for i in 0..100_u64 {
        let image = images::oci_manifest(9500 + i);
        let repo = format!("noop/app{i:03}");
        push_image(&src.registry.url(), &repo, "v1", &image).await;
        push_image(&dst.registry.url(), &repo, "v1", &image).await;
        entries.push((repo.clone(), repo, "v1".to_owned()));
    }
    let mut rows = Vec::new();
    for tool in TOOLS {
        let work = dir.join(format!("noop-{tool}"));
        let (program, args) = sync_command(tool, binary, &src.host(), &dst.host(), &entries, &work);
        let run = || measure(&program, &args, &work.join("cache"));
        match tool {
            "image-mirror" => {
                rows.push(measured("image-mirror run, first".into(), &src, &dst, run));
                rows.push(measured(
                    "image-mirror run, again (target record)".into(),
                    &src,
                    &dst,
                    run,
                ));
            }
            "ocync" => {
                rows.push(measured("ocync sync, cache empty".into(), &src, &dst, run));
                rows.push(measured("ocync sync, warm cache".into(), &src, &dst, run));
            }
            _ => rows.push(measured("regsync once".into(), &src, &dst, run)),
        }
    }
    print_rows(
        "25 ms before every request, over TLS: a no-op over 100 entries",
        &rows,
    );
}

async fn ghcr(binary: &Path, ca: &TestCa, dir: &Path) {
    let src = Fronted::start(FrontOptions::default(), ca);
    let layer = Blob::new(OCI_LAYER, images::random_bytes(4848, 1024 * MIB));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&src.registry.url(), "big/blob", "v1", &image).await;
    println!(
        "\n### GHCR's profile, over TLS: the 1 GiB image into a front refusing bodies over 4 MiB\n"
    );
    println!("| tool | wall s | CPU s | peak RSS MiB | MiB sent | refused requests |");
    println!("|---|---|---:|---:|---:|---:|");
    for tool in ["image-mirror", "ocync", "regctl"] {
        let dst = Fronted::start(FrontOptions::quirk(Quirk::Ghcr), ca);
        let work = dir.join(format!("ghcr-{tool}"));
        std::fs::create_dir_all(&work).unwrap();
        let (from, to) = (
            format!("{}/big/blob:v1", src.host()),
            format!("{}/big/blob:v1", dst.host()),
        );
        let (program, args) = match tool {
            "image-mirror" => (
                binary.to_owned(),
                vec!["-q".into(), "copy".into(), from, to],
            ),
            "regctl" => (
                crate::peers::regctl(),
                vec!["image".into(), "copy".into(), from, to],
            ),
            _ => {
                let entries = [(
                    "big/blob".to_owned(),
                    "big/blob".to_owned(),
                    "v1".to_owned(),
                )];
                sync_command("ocync", binary, &src.host(), &dst.host(), &entries, &work)
            }
        };
        match try_measure_within(
            &program,
            &args,
            &work.join("cache"),
            Duration::from_secs(300),
        ) {
            Ok(u) => {
                let at = format!("{}/big/blob:v1", dst.registry.host());
                let exact = crane::digest(&at) == *image.digest();
                println!(
                    "| {tool} | {:.2} | {:.2} | {:.1} | {:.1} | {}{} |",
                    u.wall,
                    u.cpu,
                    u.peak_rss_mib,
                    dst.front.bytes_up() as f64 / MIB as f64,
                    dst.front.quirk_refusals(),
                    if exact { "" } else { " (digest differs)" }
                );
            }
            Err(e) => println!(
                "| {tool} | failed: {} | | | {:.1} | {} |",
                e.lines().next().unwrap_or("").replace('|', "/"),
                dst.front.bytes_up() as f64 / MIB as f64,
                dst.front.quirk_refusals()
            ),
        }
    }
}

async fn pulls(binary: &Path, ca: &TestCa, dir: &Path) {
    let src = Fronted::start(FrontOptions::default(), ca);
    let corpus = crate::economy::economy_corpus();
    for (repo, tag, image) in &corpus {
        push_image(&src.registry.url(), repo, tag, image).await;
    }
    let manifests: usize = corpus.iter().map(|(_, _, i)| i.manifests.len()).sum();
    let entries: Vec<(String, String, String)> = corpus
        .iter()
        .map(|(repo, tag, _)| (repo.clone(), repo.clone(), tag.clone()))
        .collect();
    println!(
        "\n### pulls at a metering front, over TLS: {} entries, {manifests} manifests\n",
        entries.len()
    );
    println!("| tool | first sync: pulls | HEADs | a no-op: pulls | HEADs | no-op, cache deleted: pulls |");
    println!("|---|---:|---:|---:|---:|---:|");
    for tool in TOOLS {
        let dst = Fronted::start(FrontOptions::default(), ca);
        let work = dir.join(format!("pulls-{tool}"));
        let (program, args) = sync_command(tool, binary, &src.host(), &dst.host(), &entries, &work);
        let count = |f: &dyn Fn()| {
            let (p, h) = (src.front.pulls(), src.front.heads());
            f();
            (src.front.pulls() - p, src.front.heads() - h)
        };
        let run = || {
            measure(&program, &args, &work.join("cache"));
        };
        let first = count(&run);
        for (repo, tag, image) in &corpus {
            assert_eq!(
                &crane::digest(&format!("{}/{repo}:{tag}", dst.registry.host())),
                image.digest(),
                "{tool}"
            );
        }
        let again = count(&run);
        let cold = (tool == "ocync").then(|| {
            let _ = std::fs::remove_dir_all(work.join("ocync-cache"));
            count(&run).0.to_string()
        });
        println!(
            "| {tool} | {} | {} | {} | {} | {} |",
            first.0,
            first.1,
            again.0,
            again.1,
            cold.unwrap_or_default()
        );
    }
}
