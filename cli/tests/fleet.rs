//! The fleet acts as one (real RabbitMQ, real registries, bytes counted by a request-buffering
//! front before the target): three worker processes send a shared base to a fresh registry
//! once and mount it everywhere else; a worker killed with `kill -9` halfway through a 1 GiB
//! blob leaves its upload to another, which takes the lease within seconds and sends only what
//! the registry did not have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufReader;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use image_mirror_common::queue::amqp::AmqpBroker;
use image_mirror_common::queue::topology::Topology;
use image_mirror_common::{JobEvent, Outcome};
use image_mirror_testkit::front::Hook;
use image_mirror_testkit::http::{Logged, Reply};
use image_mirror_testkit::images::{self, Blob, Format, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image_lacking;
use image_mirror_testkit::{process, rabbitmq, skopeo, Front, FrontOptions, Registry};

const MIB: usize = 1024 * 1024;
/// The engine's chunk size for large blobs.
const CHUNK: u64 = 16 * MIB as u64;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// The world of one test: a broker prefix, a folder, and the environment of every process.
struct Fleet {
    url: String,
    prefix: String,
    dir: tempfile::TempDir,
    insecure: String,
}

impl Fleet {
    fn new(test: &str, hosts: &[String]) -> Self {
        Self {
            url: rabbitmq::amqp_url(),
            prefix: format!("test.fleet.{test}.{}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
            insecure: hosts.join(","),
        }
    }

    fn command(&self, cache: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.current_dir(self.dir.path())
            .env("AMQP_URL", &self.url)
            .env("IMAGE_MIRROR_QUEUE_PREFIX", &self.prefix)
            .env("IMAGE_MIRROR_INSECURE_REGISTRIES", &self.insecure)
            .env("DOCKER_CONFIG", self.dir.path())
            // Each worker its own blob location cache, as on separate machines.
            .env("IMAGE_MIRROR_CACHE_DIR", self.dir.path().join(cache));
        c
    }

    /// A worker process, once it consumes.
    fn worker(&self, name: &str, extra: &[&str]) -> Child {
        let mut child = self
            .command(name)
            .args(["worker", "--concurrency", "2"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut logs = BufReader::new(child.stderr.take().unwrap());
        process::wait_for_line(&mut logs, "worker started", name);
        process::drain(logs);
        child
    }

    fn publish(&self, list: &str) {
        std::fs::write(self.dir.path().join("images-list"), list).unwrap();
        let out = self
            .command("producer")
            .args(["producer", "sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }

    async fn broker(&self) -> AmqpBroker {
        AmqpBroker::connect(&self.url, Topology::new(&self.prefix))
            .await
            .unwrap()
    }
}

/// Waits for `n` completion events; each must say copied.
async fn copied(broker: &AmqpBroker, n: usize) {
    let mut events = broker
        .consume(&broker.topology().committer(), 16)
        .await
        .unwrap();
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(180), events.next())
            .await
            .expect("an event within 3 minutes")
            .unwrap()
            .unwrap();
        let event = JobEvent::from_json(&d.body).unwrap();
        assert_eq!(event.outcome, Outcome::Copied, "{event:?}");
        d.ack().await.unwrap();
    }
}

fn stop(mut worker: Child) {
    process::terminate(&worker);
    assert!(worker.wait().unwrap().success());
}

/// Request body bytes of blob uploads the front received.
fn upload_bytes(requests: &[Logged]) -> u64 {
    requests
        .iter()
        .filter(|r| r.target.contains("/blobs/uploads/"))
        .map(|r| r.body_len as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_send_a_shared_base_to_a_fresh_registry_once() {
    let src = Registry::start();
    let base = Blob::new(OCI_LAYER, images::random_bytes(1801, 256 * MIB));
    let mut distinct = base.bytes.len() as u64;
    let lines: Vec<u64> = (0..6).collect();
    for i in &lines {
        let i = *i;
        let own = Blob::new(OCI_LAYER, images::random_bytes(1810 + i, 64 * 1024));
        let image = images::single_with_layers(
            Format::Oci,
            &Platform::LINUX_AMD64,
            vec![base.clone(), own],
        );
        distinct += image
            .blobs
            .iter()
            .filter(|b| b.digest != base.digest)
            .map(|b| b.bytes.len() as u64)
            .sum::<u64>();
        push_image_lacking(&src.url(), "shared/app", &format!("v{i}"), &image).await;
    }
    drop(base);
    let dst = Registry::start();
    let front = Front::start(dst.host(), FrontOptions::default());
    let fleet = Fleet::new("base", &[src.host().to_owned(), front.host()]);
    let list: String = lines
        .iter()
        .map(|i| {
            format!(
                "{}/shared/app {}/mirror/app{i} v{i}\n",
                src.host(),
                front.host()
            )
        })
        .collect();
    let workers: Vec<Child> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| fleet.worker(w, &[]))
        .collect();
    fleet.publish(&list);
    let broker = fleet.broker().await;
    copied(&broker, 6).await;

    // Every blob crossed the wire to the registry once: the base once, mounted five times.
    let sent = upload_bytes(&front.requests());
    assert_eq!(sent, distinct, "{} MiB sent", sent / MIB as u64);
    for i in &lines {
        assert_eq!(
            skopeo::manifest_digest(&format!("{}/mirror/app{i}:v{i}", dst.host())),
            skopeo::manifest_digest(&format!("{}/shared/app:v{i}", src.host()))
        );
    }
    for w in workers {
        stop(w);
    }
    broker.delete_topology().await.unwrap();
}

/// A front hook that holds the first chunk of `blob` starting at or past `from` (the front
/// has taken it whole, the registry never sees it), saying so once; and logs when each
/// request came.
struct HoldHalfway {
    held: mpsc::Receiver<u64>,
    seen: Arc<Mutex<Vec<(Instant, String, String)>>>,
}

fn hold_halfway(from: u64) -> (Hook, HoldHalfway) {
    let (tx, held) = mpsc::channel();
    let tx = Mutex::new(tx);
    let done = AtomicBool::new(false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let hook: Hook = Arc::new(move |request| {
        log.lock().unwrap().push((
            Instant::now(),
            request.method.clone(),
            request.target.clone(),
        ));
        let start = request
            .header("content-range")
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())?;
        if request.method == "PATCH" && start >= from && !done.swap(true, Ordering::SeqCst) {
            let _ = tx.lock().unwrap().send(start);
            return Some(Reply::Hang);
        }
        None
    });
    (hook, HoldHalfway { held, seen })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_halfway_through_a_1_gib_blob_leaves_the_rest_to_another() {
    let size = 1024 * MIB;
    let src = Registry::start();
    let layer = Blob::new(OCI_LAYER, images::random_bytes(1820, size));
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image_lacking(&src.url(), "big/app", "v1", &image).await;
    drop(image);
    let dst = Registry::start();
    let (hook, halfway) = hold_halfway(size as u64 / 2);
    let front = Front::start(
        dst.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    let fleet = Fleet::new("kill", &[src.host().to_owned(), front.host()]);
    let mut first = fleet.worker("first", &[]);
    fleet.publish(&format!(
        "{}/big/app {}/mirror/big v1\n",
        src.host(),
        front.host()
    ));
    // The first worker is halfway: the chunk it sent last is held by the front.
    let held_at = halfway
        .held
        .recv_timeout(Duration::from_secs(120))
        .expect("the upload reached halfway");
    let second = fleet.worker("second", &[]);
    first.kill().unwrap();
    let killed = Instant::now();
    first.wait().unwrap();

    let broker = fleet.broker().await;
    copied(&broker, 1).await;
    assert_eq!(
        skopeo::manifest_digest(&format!("{}/mirror/big:v1", dst.host())),
        skopeo::manifest_digest(&format!("{}/big/app:v1", src.host()))
    );
    // The second worker took the lease and asked the registry where the upload stood, within
    // seconds of the kill.
    let asked = halfway
        .seen
        .lock()
        .unwrap()
        .iter()
        .find(|(at, method, target)| {
            *at > killed && method == "GET" && target.contains("/blobs/uploads/")
        })
        .map(|(at, ..)| at.duration_since(killed))
        .expect("the second worker resumed the upload");
    assert!(
        asked < Duration::from_secs(10),
        "lease taken after {asked:?}"
    );
    // It went on from where the registry stood, the held chunk's start: that chunk is all
    // that crossed twice.
    let requests = front.requests();
    let resumed = requests
        .iter()
        .filter(|r| r.method == "PATCH")
        .filter_map(|r| {
            r.header("content-range")?
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .filter(|start| *start == held_at)
        .count();
    assert_eq!(
        resumed, 2,
        "the held chunk, then the same chunk from the second worker"
    );
    let sent: u64 = requests
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.body_len as u64)
        .sum();
    assert!(
        sent <= size as u64 + CHUNK,
        "{} MiB sent for a 1024 MiB blob",
        sent / MIB as u64
    );
    stop(second);
    broker.delete_topology().await.unwrap();
}
