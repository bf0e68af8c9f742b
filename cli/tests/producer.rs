//! `image-mirror producer sync` against a real RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use image_mirror_common::{ImagesList, MirrorJob};
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::process::SpawnRunning;
use image_mirror_testkit::rabbitmq;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/rancher")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_publishes_one_job_per_source_tag_to_every_target() {
    let url = rabbitmq::amqp_url();
    let prefix = format!("test.sync.{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(fixture("images-list"))
        .args(["--amqp-url", &url, "--queue-prefix", &prefix])
        .args([
            "--dest-registry",
            "a.example:5000,b.example",
            "--dest-org",
            "acme",
        ])
        .args(["producer", "sync"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // One job per source tag: the lines that mirror one source tag to several places share
    // it, and so do both registries.
    let list = ImagesList::parse(&std::fs::read(fixture("images-list")).unwrap()).unwrap();
    let entries = list.entries().len();
    let source_tags: HashSet<String> = list
        .entries()
        .map(|e| format!("{}:{}", e.source, e.tag))
        .collect();
    let jobs = source_tags.len();
    assert!(jobs < entries, "the fixture has lines sharing a source tag");
    assert!(
        text.contains(&format!(
            "published {jobs} jobs for {entries} entries ({} targets)",
            2 * entries
        )),
        "{text}"
    );

    let broker = AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap();
    let depths = broker.depths().await.unwrap();
    assert_eq!(depths[0].ready, jobs as u64);
    let mut consumer = broker
        .consume(&Topology::new(&prefix).jobs(), 500)
        .await
        .unwrap();
    let mut ids = HashSet::new();
    let mut sources = HashSet::new();
    for _ in 0..jobs {
        let d = consumer.next().await.unwrap().unwrap();
        let job = MirrorJob::from_json(&d.body).unwrap();
        assert_eq!(d.id, job.id);
        assert!(!job.record);
        assert!(sources.insert(format!("{}:{}", job.source, job.tag)));
        // Each listed target to both registries, the one after the other.
        let targets: Vec<String> = job.targets().iter().map(ToString::to_string).collect();
        assert!(
            targets.len() >= 2 && targets.len().is_multiple_of(2),
            "{targets:?}"
        );
        for pair in targets.chunks(2) {
            assert!(pair[0].starts_with("a.example:5000/acme/"), "{targets:?}");
            assert!(pair[1].starts_with("b.example/acme/"), "{targets:?}");
        }
        for id in job.event_ids() {
            assert!(ids.insert(id));
        }
        d.ack().await.unwrap();
    }
    assert_eq!(ids.len(), 2 * entries, "one event per line and registry");
    drop(consumer);
    broker.delete_topology().await.unwrap();
}

#[test]
fn producer_commands_without_a_broker_url_are_bad_usage() {
    for args in [
        &["producer", "sync"][..],
        &["producer", "add-tag", "--images", "a.io/x", "--tags", "v1"],
        &["producer", "add-image", "--images", "a.io/x:v1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
            .args(args)
            .arg("--images-list")
            .arg(fixture("images-list"))
            .env_remove("AMQP_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("needs --amqp-url"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_every_publishes_the_missing_on_schedule_and_stops_on_sigterm() {
    use image_mirror_testkit::push::push_image;
    use image_mirror_testkit::{images, process, Registry};

    let src = Registry::start();
    let dst = Registry::start();
    let image = images::oci_manifest(7300);
    push_image(&src.url(), "team/a", "v1", &image).await;
    push_image(&src.url(), "team/b", "v1", &image).await;
    push_image(&dst.url(), "mirror/a", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(
        &list,
        format!(
            "{s}/team/a {d}/mirror/a v1\n{s}/team/b {d}/mirror/b v1\n",
            s = src.host(),
            d = dst.host()
        ),
    )
    .unwrap();
    let url = rabbitmq::amqp_url();
    let prefix = format!("test.sync-every.{}", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(&list)
        .arg("--insecure-registry")
        .arg(format!("{},{}", src.host(), dst.host()))
        .args(["--amqp-url", &url, "--queue-prefix", &prefix])
        .args(["producer", "sync", "--missing", "--every", "1s"])
        .env("DOCKER_CONFIG", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .running();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut rounds, mut said) = (0, Vec::new());
    for line in std::io::BufRead::lines(stdout) {
        let line = line.unwrap();
        if line.starts_with("missing:") {
            said.push(line.clone());
        }
        if line.starts_with("next sync in 1s") {
            rounds += 1;
            if rounds == 2 {
                break;
            }
        }
    }
    assert_eq!(rounds, 2);
    process::terminate(&child);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "SIGTERM ends it cleanly"
    );
    assert!(
        said.iter().all(|l| {
            l.starts_with(
        "missing: 1 targets lack their tag, 1 present and left alone (2 target repositories read)"
    )
        }),
        "{said:?}"
    );

    let broker = AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap();
    // One job a round (two rounds, or three when the stop came late), each the missing one.
    let published = broker.depths().await.unwrap()[0].ready;
    assert!((2..=3).contains(&published), "{published} jobs published");
    let mut consumer = broker
        .consume(&Topology::new(&prefix).jobs(), 10)
        .await
        .unwrap();
    for _ in 0..published {
        let d = consumer.next().await.unwrap().unwrap();
        let job = MirrorJob::from_json(&d.body).unwrap();
        assert_eq!(job.target.to_string(), format!("{}/mirror/b", dst.host()));
        d.ack().await.unwrap();
    }
    drop(consumer);
    broker.delete_topology().await.unwrap();
}
