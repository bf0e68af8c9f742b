//! A distributed deployment in miniature: worker processes of a given `image-mirror` binary
//! on one RabbitMQ prefix, `producer sync` to publish an images-list, and the completion
//! events read back. Each worker has a blob location cache of its own, as on separate
//! machines.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, Stdio};
use std::time::Duration;

use image_mirror_common::JobEvent;
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;

use crate::process::{self, Running, SpawnRunning};
use crate::rabbitmq;

/// Worker processes on one broker prefix, and a folder for their files.
pub struct Deployment {
    binary: PathBuf,
    url: String,
    prefix: String,
    dir: tempfile::TempDir,
    insecure: String,
}

impl Deployment {
    /// A deployment of `binary` under a prefix unique to `name`, allowed plain HTTP to
    /// `hosts`.
    pub fn new(binary: &Path, name: &str, hosts: &[String]) -> Self {
        Self::on_broker(binary, name, hosts, &rabbitmq::amqp_url())
    }

    /// A deployment as [`new`](Self::new) makes, on the broker at `url` (the private node,
    /// for a scenario that restarts it).
    pub fn on_broker(binary: &Path, name: &str, hosts: &[String], url: &str) -> Self {
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self {
            binary: binary.to_owned(),
            url: url.to_owned(),
            prefix: format!("test.{name}.{}.{unique}", std::process::id()),
            dir: tempfile::tempdir().expect("a folder"),
            insecure: hosts.join(","),
        }
    }

    /// The deployment's folder: the working folder of its processes (images-list, caches).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The queue names' prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The binary with the deployment's environment; `cache` names the blob location cache.
    pub fn command(&self, cache: &str) -> Command {
        let mut c = Command::new(&self.binary);
        c.current_dir(self.dir.path())
            .env("AMQP_URL", &self.url)
            .env("IMAGE_MIRROR_QUEUE_PREFIX", &self.prefix)
            .env("IMAGE_MIRROR_INSECURE_REGISTRIES", &self.insecure)
            .env("DOCKER_CONFIG", self.dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", self.dir.path().join(cache));
        c
    }

    /// A worker process named `name` (two jobs at a time), returned once it consumes.
    pub fn worker(&self, name: &str, extra: &[&str]) -> Running {
        let (child, logs) = self.worker_logged(name, extra);
        process::drain(logs);
        child
    }

    /// A worker as [`worker`](Self::worker) does, with the rest of its log to read (read it
    /// to its end, or drain it, so that the worker never blocks writing).
    pub fn worker_logged(&self, name: &str, extra: &[&str]) -> (Running, BufReader<ChildStderr>) {
        let mut child = self
            .command(name)
            .args(["worker", "--concurrency", "2"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .running();
        let mut logs = BufReader::new(child.stderr.take().expect("stderr"));
        process::wait_for_line(&mut logs, "worker started", name);
        (child, logs)
    }

    /// Writes `list` as images-list and publishes its jobs with `producer sync`.
    pub fn publish(&self, list: &str) {
        std::fs::write(self.dir.path().join("images-list"), list).expect("write images-list");
        let out = self
            .command("producer")
            .args(["producer", "sync"])
            .output()
            .expect("run producer sync");
        assert!(
            out.status.success(),
            "producer sync: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The next `n` completion events (acknowledged), within `within` each.
    pub async fn events(&self, n: usize, within: Duration) -> Vec<JobEvent> {
        let broker = self.broker().await;
        let mut events = broker
            .consume(&broker.topology().committer(), 16)
            .await
            .expect("consume events");
        let mut out = Vec::new();
        for _ in 0..n {
            let d = tokio::time::timeout(within, events.next())
                .await
                .expect("an event in time")
                .expect("the event stream")
                .expect("an event");
            out.push(JobEvent::from_json(&d.body).expect("an event"));
            d.ack().await.expect("ack");
        }
        out
    }

    async fn broker(&self) -> AmqpBroker {
        AmqpBroker::connect(&self.url, Topology::new(&self.prefix))
            .await
            .expect("connect to RabbitMQ")
    }

    /// Deletes the deployment's queues and exchanges.
    pub async fn tear_down(&self) {
        self.broker()
            .await
            .delete_topology()
            .await
            .expect("delete the topology");
    }
}

/// Stops `worker` as an orchestrator does (SIGTERM); it must exit cleanly.
pub fn stop(mut worker: Running) {
    process::terminate(&worker);
    assert!(worker.wait().expect("wait for the worker").success());
}
