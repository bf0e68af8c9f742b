//! Workers survive what fleets meet: a worker killed in the middle of a large blob, and a
//! broker that stops and starts again during a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use image_mirror_common::JobEvent;
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::process;
use image_mirror_testkit::process::{Running, SpawnRunning};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, skopeo, Registry};

struct Fleet {
    src: Registry,
    dst: Registry,
    dir: tempfile::TempDir,
    url: String,
    prefix: String,
}

impl Fleet {
    fn new(url: String, name: &str) -> Self {
        Self {
            src: Registry::start(),
            dst: Registry::start(),
            dir: tempfile::tempdir().unwrap(),
            url,
            prefix: format!("test.{name}.{}", std::process::id()),
        }
    }

    fn write_list(&self, repos: &[String]) {
        let mut lines: Vec<String> = repos
            .iter()
            .map(|r| format!("{}/{r} {}/mirror/{r} v1", self.src.host(), self.dst.host()))
            .collect();
        lines.sort();
        std::fs::write(self.dir.path().join("images-list"), lines.join("\n") + "\n").unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.arg("--images-list")
            .arg(self.dir.path().join("images-list"))
            .arg("--insecure-registry")
            .arg(format!("{},{}", self.src.host(), self.dst.host()))
            .args(["--amqp-url", &self.url, "--queue-prefix", &self.prefix])
            .env("DOCKER_CONFIG", self.dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", self.dir.path().join("cache"))
            .args(args);
        c
    }

    fn worker(&self) -> Running {
        self.command(&["worker", "--concurrency", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .running()
    }

    fn sync(&self) {
        let out = self.command(&["producer", "sync"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn broker(&self) -> AmqpBroker {
        AmqpBroker::connect(&self.url, Topology::new(&self.prefix))
            .await
            .unwrap()
    }
}

fn stop(mut worker: Running) {
    process::terminate(&worker);
    worker.wait().unwrap();
}

/// Events until every job named has one (the last one per job wins).
async fn events_for(broker: &AmqpBroker, jobs: usize) -> HashMap<String, JobEvent> {
    let t = broker.topology().clone();
    let mut consumer = broker.consume(&t.committer(), 64).await.unwrap();
    let mut events = HashMap::new();
    while events.len() < jobs {
        let d = consumer.next().await.unwrap().unwrap();
        let e = JobEvent::from_json(&d.body).unwrap();
        events.insert(e.job_id.clone(), e);
        d.ack().await.unwrap();
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_blob_leaves_the_job_to_another() {
    let fleet = Fleet::new(rabbitmq::amqp_url(), "kill9");
    let layer = Blob::new(OCI_LAYER, images::random_bytes(900, 192 * 1024 * 1024));
    let image: Image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&fleet.src.url(), "big/app", "v1", &image).await;
    fleet.write_list(&["big/app".to_owned()]);
    fleet.sync();

    let mut first = fleet.worker();
    // Once the upload is under way (a chunk reached the target), kill -9.
    assert!(
        fleet
            .dst
            .wait_for_request(|r| r.starts_with("PATCH"), Duration::from_secs(120)),
        "the upload never started"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        !fleet
            .dst
            .requests()
            .iter()
            .any(|r| r.starts_with("PUT") && r.contains("/manifests/")),
        "the first worker finished before it was killed"
    );

    let second = fleet.worker();
    let broker = fleet.broker().await;
    let events = tokio::time::timeout(Duration::from_secs(300), events_for(&broker, 1))
        .await
        .expect("the job never ended");
    stop(second);
    let event = events.values().next().unwrap();
    assert_eq!(event.digest.as_ref(), Some(image.digest()));
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/mirror/big/app:v1", fleet.dst.host())),
        image.digest()
    );
    broker.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_workers_ride_out_a_broker_restart() {
    // A node of the test's own, so that stopping it disturbs no other test.
    let (url, _exclusive) = rabbitmq::private_node_exclusive();
    let fleet = Fleet::new(url, "restart");
    let mut repos = Vec::new();
    let mut digests = HashMap::new();
    for (i, half) in ["first", "second"]
        .iter()
        .flat_map(|h| std::iter::repeat_n(h, 12))
        .enumerate()
    {
        let layer = Blob::new(OCI_LAYER, images::random_bytes(2000 + i as u64, 4 << 20));
        let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
        let repo = format!("{half}/img{i:02}");
        push_image(&fleet.src.url(), &repo, "v1", &image).await;
        digests.insert(repo.clone(), image.digest().clone());
        repos.push(repo);
    }
    fleet.write_list(&repos);
    let workers = [fleet.worker(), fleet.worker()];
    let out = fleet
        .command(&["producer", "sync", "--filter", "/first/"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Some of the first half is done, the rest in flight: the broker goes away.
    assert!(
        fleet.dst.wait_for_request(
            |r| r.starts_with("PUT") && r.contains("/manifests/"),
            Duration::from_secs(120)
        ),
        "no job finished"
    );
    rabbitmq::stop_private_node();
    // The second half is published while the broker is down: the producer waits for it, as
    // long as its connect timeout says.
    let producer = fleet
        .command(&[
            "producer",
            "sync",
            "--filter",
            "/second/",
            "--amqp-connect-timeout",
            "3m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .running();
    rabbitmq::start_private_node();
    let out = producer.into_inner().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let broker = fleet.broker().await;
    let events = tokio::time::timeout(Duration::from_secs(300), events_for(&broker, repos.len()))
        .await
        .expect("not every job ended after the restart");
    for worker in workers {
        stop(worker);
    }
    assert_eq!(events.len(), repos.len());
    for repo in &repos {
        let target = format!("{}/mirror/{repo}:v1", fleet.dst.host());
        assert_eq!(
            &skopeo::manifest_digest(&target),
            &digests[repo],
            "{target}"
        );
    }
    for event in events.values() {
        assert!(event.error.is_none(), "{event:?}");
    }
    broker.delete_topology().await.unwrap();
}
