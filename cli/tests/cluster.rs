//! A RabbitMQ cluster of three nodes that loses one: the producer, three workers and the
//! committer, given every node's URL, mirror 100 new tags while the node leading the jobs
//! queue is killed with `kill -9` in the middle of the run and later brought back. Every tag
//! lands digest-exact, each images-list line once, nothing is dead-lettered, and no role exits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufReader;
use std::process::Stdio;
use std::time::{Duration, Instant};

use image_mirror_testkit::images::{self, Blob, Format, Platform, OCI_LAYER};
use image_mirror_testkit::process::{self, Running, SpawnRunning};
use image_mirror_testkit::push::push_image_lacking;
use image_mirror_testkit::rabbitmq_cluster::Cluster;
use image_mirror_testkit::workers::Deployment;
use image_mirror_testkit::{crane, Registry};

const IMAGES: usize = 10;
const TAGS: usize = 10;

/// The lines of the deployment's images-list.
fn listed(d: &Deployment) -> Vec<String> {
    std::fs::read_to_string(d.dir().join("images-list"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until images-list holds `n` lines, within `within`.
fn wait_for_lines(d: &Deployment, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while listed(d).len() < n {
        assert!(
            Instant::now() < deadline,
            "{} lines of {n} after {within:?}",
            listed(d).len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn committer(d: &Deployment) -> Running {
    let mut child = d
        .command("committer")
        .args(["committer", "--batch-window", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .running();
    let mut logs = BufReader::new(child.stderr.take().unwrap());
    process::wait_for_line(&mut logs, "committer started", "committer");
    process::drain(logs);
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_on_a_cluster_rides_out_the_loss_of_the_jobs_queues_leader() {
    let cluster = Cluster::start();
    let (src, dst) = (Registry::start(), Registry::start());
    let base = Blob::new(OCI_LAYER, images::random_bytes(4100, 256 * 1024));
    let mut digests = Vec::new();
    for i in 0..IMAGES {
        for t in 0..=TAGS {
            let own = Blob::new(
                OCI_LAYER,
                images::random_bytes(4200 + (i * 20 + t) as u64, 64 * 1024),
            );
            let image = images::single_with_layers(
                Format::Oci,
                &Platform::LINUX_AMD64,
                vec![base.clone(), own],
            );
            push_image_lacking(
                &src.url(),
                &format!("cluster/app{i}"),
                &format!("v{t}"),
                &image,
            )
            .await;
            if t > 0 {
                digests.push((
                    format!("{}/mirror/app{i}:v{t}", dst.host()),
                    image.digest().clone(),
                ));
            }
        }
    }
    let hosts = [src.host().to_owned(), dst.host().to_owned()];
    let d = Deployment::on_broker(
        std::path::Path::new(env!("CARGO_BIN_EXE_image-mirror")),
        "cluster",
        &hosts,
        &cluster.urls(),
    );
    let first: String = (0..IMAGES)
        .map(|i| {
            format!(
                "{}/cluster/app{i} {}/mirror/app{i} v0\n",
                src.host(),
                dst.host()
            )
        })
        .collect();
    std::fs::write(d.dir().join("images-list"), first).unwrap();

    let mut roles = vec![committer(&d)];
    for w in 0..3 {
        roles.push(d.worker(&format!("w{w}"), &["--fleet", "on"]));
    }
    let images_arg: Vec<String> = (0..IMAGES)
        .map(|i| format!("{}/cluster/app{i}", src.host()))
        .collect();
    let tags: Vec<String> = (1..=TAGS).map(|t| format!("v{t}")).collect();
    let out = d
        .command("producer")
        .args([
            "add-tag",
            "--images",
            &images_arg.join(","),
            "--tags",
            &tags.join(","),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In the middle of the run, the node that leads the jobs queue goes.
    wait_for_lines(&d, IMAGES + 15, Duration::from_secs(120));
    let jobs = format!("{}.jobs", d.prefix());
    let leader = cluster.leader_of(&jobs).clone();
    cluster.kill(&leader);
    let recorded_at_kill = listed(&d).len() - IMAGES;
    assert!(
        recorded_at_kill < IMAGES * TAGS,
        "the run ended before the kill"
    );

    // The others go on without it; then it comes back.
    wait_for_lines(&d, IMAGES + recorded_at_kill + 20, Duration::from_secs(180));
    assert_ne!(&cluster.leader_of(&jobs).name, &leader.name, "a new leader");
    cluster.restart(&leader);
    wait_for_lines(&d, IMAGES + IMAGES * TAGS, Duration::from_secs(240));

    for role in &mut roles {
        assert!(role.try_wait().unwrap().is_none(), "a role exited");
    }
    let lines = listed(&d);
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        lines.len(),
        "a line is listed twice: {lines:?}"
    );
    assert_eq!(lines.len(), IMAGES + IMAGES * TAGS);
    for (at, digest) in &digests {
        assert_eq!(&crane::digest(at), digest, "{at}");
    }
    let dead: u64 = cluster
        .queue_lengths()
        .iter()
        .filter(|(name, _)| name.starts_with(d.prefix()) && name.contains(".dead"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(dead, 0, "messages were dead-lettered");
    for role in roles {
        process::terminate(&role);
    }
}
