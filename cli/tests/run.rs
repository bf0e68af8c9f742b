//! `image-mirror run` (monolithic mode, in-memory queue) and `image-mirror worker` processes
//! over RabbitMQ, against real registries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::{Command, Output, Stdio};

use image_mirror_common::{JobEvent, Outcome};
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::{Topology, REASON_HEADER};
use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::process;
use image_mirror_testkit::process::SpawnRunning;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, skopeo, Registry};

struct Setup {
    src: Registry,
    dst: Registry,
    dir: tempfile::TempDir,
    images: Vec<(String, Image)>,
}

/// `n` images in a source registry and an images-list mapping them to a target registry.
async fn setup(n: u64) -> Setup {
    let src = Registry::start();
    let dst = Registry::start();
    let mut images = Vec::new();
    let mut lines = vec!["# test list".to_owned()];
    for i in 0..n {
        let image = if i % 3 == 0 {
            images::oci_index(500 + i)
        } else {
            images::oci_manifest(500 + i)
        };
        let repo = format!("team/app{i:02}");
        push_image(&src.url(), &repo, "v1.0", &image).await;
        lines.push(format!(
            "{}/{repo} {}/mirror/app{i:02} v1.0",
            src.host(),
            dst.host()
        ));
        images.push((repo, image));
    }
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("images-list"), lines.join("\n") + "\n").unwrap();
    Setup {
        src,
        dst,
        dir,
        images,
    }
}

fn image_mirror(setup: &Setup, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    c.arg("--images-list")
        .arg(setup.dir.path().join("images-list"))
        .arg("--insecure-registry")
        .arg(format!("{},{}", setup.src.host(), setup.dst.host()))
        .env("DOCKER_CONFIG", setup.dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", setup.dir.path().join("cache"))
        .env_remove("AMQP_URL")
        .args(args);
    c
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn assert_mirrored(setup: &Setup, i: usize) {
    let (_, image) = &setup.images[i];
    let at = format!("{}/mirror/app{i:02}:v1.0", setup.dst.host());
    assert_eq!(&skopeo::manifest_digest(&at), image.digest(), "{at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_a_broker_mirrors_the_list_and_reports_every_job() {
    let setup = setup(6).await;
    let report = setup.dir.path().join("report.json");
    let out = image_mirror(
        &setup,
        &[
            "run",
            "--workers",
            "3",
            "--report",
            report.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("summary: 6 copied, 0 already present, 0 failed"),
        "{t}"
    );
    for i in 0..6 {
        assert_mirrored(&setup, i);
    }
    let events: Vec<JobEvent> = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(events.len(), 6);
    assert!(events
        .iter()
        .all(|e| e.outcome == Outcome::Copied && e.digest.is_some()));

    // Again: nothing to do, nothing written.
    let writes = setup.dst.blob_writes();
    let out = image_mirror(&setup, &["run"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("summary: 0 copied, 6 already present, 0 failed"),
        "{t}"
    );
    // Not on a terminal: one plain line per job, no bar.
    assert!(t.contains("[6/6] already present"), "{t}");
    assert!(!t.contains("/6 jobs"), "{t}");
    assert_eq!(setup.dst.blob_writes(), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_a_terminal_draws_a_progress_bar() {
    let setup = setup(3).await;
    let run = image_mirror(&setup, &["run"]);
    let mut line = String::new();
    for part in std::iter::once(run.get_program()).chain(run.get_args()) {
        line.push_str(&format!("'{}' ", part.to_str().unwrap()));
    }
    // `script` gives the command a pseudo-terminal and copies what it draws to stdout.
    let mut under_tty = Command::new("script");
    under_tty.args(["-qec", &line, "/dev/null"]);
    for (k, v) in run.get_envs() {
        match v {
            Some(v) => under_tty.env(k, v),
            None => under_tty.env_remove(k),
        };
    }
    let out = under_tty.output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // The live display, and each finished job printed above it.
    assert!(t.contains("/3 jobs"), "{t}");
    assert!(t.contains("[3/3] copied"), "{t}");
    assert!(t.contains("summary: 3 copied"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_entry_fails_alone_and_is_named() {
    let setup = setup(4).await;
    let list = setup.dir.path().join("images-list");
    let bad = format!(
        "{}/team/missing {}/mirror/missing v9.9\n",
        setup.src.host(),
        setup.dst.host()
    );
    let mut content = std::fs::read_to_string(&list).unwrap();
    content.push_str(&bad);
    std::fs::write(&list, content).unwrap();

    let out = image_mirror(&setup, &["run"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("summary: 4 copied, 0 already present, 1 failed"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "failed: {}/team/missing:v9.9 -> ",
            setup.src.host()
        )) && t.contains("not_found"),
        "{t}"
    );
    for i in 0..4 {
        assert_mirrored(&setup, i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_lists_missing_targets_and_writes_nothing() {
    let setup = setup(3).await;
    // Mirror one of them first.
    let out = image_mirror(&setup, &["run", "--filter", "app01"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = setup.dst.requests().len();
    let out = image_mirror(&setup, &["run", "--dry-run"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("dry run: 2 missing, 0 differ, 1 up to date, 0 errors"),
        "{t}"
    );
    assert!(
        t.contains("missing  ") && t.contains("/team/app00:v1.0"),
        "{t}"
    );
    let writes: Vec<String> = setup.dst.requests()[before..]
        .iter()
        .filter(|r| !r.starts_with("GET") && !r.starts_with("HEAD"))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_three_worker_processes_mirror_thirty_images() {
    let setup = setup(30).await;
    // One job whose source tag does not exist: dead-lettered at once, with a failed event.
    let list = setup.dir.path().join("images-list");
    let mut content = std::fs::read_to_string(&list).unwrap();
    content.push_str(&format!(
        "{}/team/app00 {}/mirror/app00 v0.0.0-gone\n",
        setup.src.host(),
        setup.dst.host()
    ));
    std::fs::write(&list, content).unwrap();

    let url = rabbitmq::amqp_url();
    let prefix = format!("test.workers.{}", std::process::id());
    let with_broker = |args: &[&str]| {
        let mut c = image_mirror(&setup, &["--amqp-url", &url, "--queue-prefix", &prefix]);
        c.args(args);
        c
    };
    let out = with_broker(&["producer", "sync"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("published 31 jobs"), "{}", text(&out));

    let workers: Vec<_> = (0..3)
        .map(|_| {
            with_broker(&["worker", "--concurrency", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .running()
        })
        .collect();

    let broker = AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap();
    let t = Topology::new(&prefix);
    let mut events = broker.consume(&t.committer(), 64).await.unwrap();
    let mut seen = HashSet::new();
    let mut failed = Vec::new();
    while seen.len() < 31 {
        let d = events.next().await.unwrap().unwrap();
        let e = JobEvent::from_json(&d.body).unwrap();
        assert!(
            seen.insert(e.job_id.clone()),
            "two terminal events for {}",
            e.job_id
        );
        if e.outcome == Outcome::Failed {
            failed.push(e);
        }
        d.ack().await.unwrap();
    }
    for mut w in workers {
        process::terminate(&w);
        assert!(w.wait().unwrap().success());
    }
    for i in 0..30 {
        assert_mirrored(&setup, i);
    }
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].tag.as_str(), "v0.0.0-gone");
    assert_eq!(failed[0].attempts, 1, "a missing tag is not retried");
    assert_eq!(failed[0].error.as_ref().unwrap().class, "not_found");
    let mut dead = broker.consume(&t.dead(), 1).await.unwrap();
    let d = dead.next().await.unwrap().unwrap();
    assert!(d
        .headers
        .get(REASON_HEADER)
        .unwrap()
        .starts_with("not_found"));
    d.ack().await.unwrap();
    drop((events, dead));
    broker.delete_topology().await.unwrap();
}
