//! A registry's quota is the user's money: counted at a metering front in Docker Hub's style
//! (every manifest GET a pull, quota headers on every manifest answer, 429 at the limit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::process::SpawnRunning;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, Front, FrontOptions, Quota, Registry};

/// Images in a source registry behind a metering front, and an images-list of them.
struct Corpus {
    _src: Registry,
    front: Front,
    dir: tempfile::TempDir,
    /// `(repository, tag, image)` per entry.
    entries: Vec<(String, String, Image)>,
}

impl Corpus {
    /// `indexes` four-platform indexes (five manifests each) and `singles` single manifests.
    async fn new(seed: u64, indexes: u64, singles: u64, quota: Option<Quota>) -> Self {
        let src = Registry::start();
        let mut entries = Vec::new();
        for i in 0..indexes + singles {
            let image = if i < indexes {
                images::oci_index(seed + i)
            } else {
                images::oci_manifest(seed + i)
            };
            let repo = format!("team/app{i:02}");
            push_image(&src.url(), &repo, "v1.0", &image).await;
            entries.push((repo, "v1.0".to_owned(), image));
        }
        let front = Front::start(
            src.host(),
            FrontOptions {
                quota,
                ..FrontOptions::default()
            },
        );
        let corpus = Self {
            _src: src,
            front,
            dir: tempfile::tempdir().unwrap(),
            entries,
        };
        corpus.write_list();
        corpus
    }

    fn write_list(&self) {
        let mut lines: Vec<String> = self
            .entries
            .iter()
            .map(|(repo, tag, _)| {
                format!(
                    "{}/{repo} mirror.invalid/{} {tag}",
                    self.front.host(),
                    repo.replace('/', "-")
                )
            })
            .collect();
        lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
        std::fs::write(self.list(), lines.join("\n") + "\n").unwrap();
    }

    fn list(&self) -> PathBuf {
        self.dir.path().join("images-list")
    }

    /// Every manifest of every entry.
    fn manifests(&self) -> u64 {
        self.entries
            .iter()
            .map(|(_, _, i)| i.manifests.len() as u64)
            .sum()
    }

    /// `image-mirror run` into `targets` (each a `--dest-registry`).
    fn run(&self, targets: &[&str], extra: &[&str]) -> Output {
        let mut insecure = vec![self.front.host()];
        insecure.extend(targets.iter().map(|t| (*t).to_owned()));
        Command::new(env!("CARGO_BIN_EXE_image-mirror"))
            .arg("--images-list")
            .arg(self.list())
            .arg("--insecure-registry")
            .arg(insecure.join(","))
            .arg("--dest-registry")
            .arg(targets.join(","))
            .args(extra)
            .arg("run")
            .env("DOCKER_CONFIG", self.dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("AMQP_URL")
            .output()
            .unwrap()
    }

    /// Every entry is at `target`, digest-exact (skopeo).
    fn all_at(&self, target: &str) {
        for (repo, tag, image) in &self.entries {
            let at = format!("{target}/{}:{tag}", repo.replace('/', "-"));
            assert_eq!(&skopeo::manifest_digest(&at), image.digest(), "{at}");
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_mirror_pulls_each_manifest_once_and_a_rerun_pulls_nothing() {
    let corpus = Corpus::new(3000, 10, 40, None).await;
    let dst = Registry::start();
    let out = corpus.run(&[dst.host()], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(corpus.front.pulls(), corpus.manifests(), "{t}");
    assert!(
        t.contains(&format!(
            "{} {} pulls",
            corpus.front.host(),
            corpus.manifests()
        )),
        "{t}"
    );
    corpus.all_at(dst.host());

    // Nothing changed: HEADs only, not one pull.
    let heads = corpus.front.heads();
    let out = corpus.run(&[dst.host()], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("0 copied, 50 already present"), "{t}");
    assert_eq!(
        corpus.front.pulls(),
        corpus.manifests(),
        "the no-op run pulled: {t}"
    );
    assert_eq!(corpus.front.heads() - heads, 50, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_targets_read_the_source_once() {
    let corpus = Corpus::new(3100, 4, 8, None).await;
    let targets = [Registry::start(), Registry::start(), Registry::start()];
    let hosts: Vec<&str> = targets.iter().map(Registry::host).collect();
    let out = corpus.run(&hosts, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("36 copied, 0 already present, 0 failed"), "{t}");
    assert!(
        t.contains("(36 targets; each source read once for all)"),
        "{t}"
    );
    // The same pulls as one target, not three times as many.
    assert_eq!(corpus.front.pulls(), corpus.manifests(), "{t}");
    // And the blobs' bytes came down about once (each shared download feeds all three).
    let blob_bytes: u64 = corpus
        .entries
        .iter()
        .map(|(_, _, i)| i.blob_bytes() as u64)
        .sum();
    let down = corpus.front.bytes_down();
    assert!(
        down < blob_bytes * 3 / 2,
        "{down} bytes came down for {blob_bytes} bytes of blobs"
    );
    for host in hosts {
        corpus.all_at(host);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_mirroring_one_source_tag_to_two_places_read_it_once() {
    let corpus = Corpus::new(3150, 2, 4, None).await;
    // Each source tag on two lines, to two repositories.
    let mut lines: Vec<String> = corpus
        .entries
        .iter()
        .flat_map(|(repo, tag, _)| {
            let dashed = repo.replace('/', "-");
            [
                format!(
                    "{}/{repo} mirror.invalid/{dashed} {tag}",
                    corpus.front.host()
                ),
                format!(
                    "{}/{repo} mirror.invalid/again-{dashed} {tag}",
                    corpus.front.host()
                ),
            ]
        })
        .collect();
    lines.sort_by(|a, b| image_mirror_common::version_sort::sort_v(a.as_bytes(), b.as_bytes()));
    std::fs::write(corpus.list(), lines.join("\n") + "\n").unwrap();
    let target = Registry::start();
    let out = corpus.run(&[target.host()], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("6 jobs for 12 entries (12 targets"), "{t}");
    assert!(t.contains("12 copied, 0 already present, 0 failed"), "{t}");
    assert_eq!(
        corpus.front.pulls(),
        corpus.manifests(),
        "each source manifest pulled once, not once per line: {t}"
    );
    corpus.all_at(target.host());
    for (repo, tag, image) in &corpus.entries {
        let at = format!("{}/again-{}:{tag}", target.host(), repo.replace('/', "-"));
        assert_eq!(&skopeo::manifest_digest(&at), image.digest(), "{at}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tag_of_an_image_the_target_holds_pulls_nothing_from_the_source() {
    let mut corpus = Corpus::new(3200, 1, 0, None).await;
    let dst = Registry::start();
    let out = corpus.run(&[dst.host()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pulled = corpus.front.pulls();
    // The same index under a new tag upstream, added to images-list.
    let (repo, _, image) = corpus.entries[0].clone();
    push_image(&corpus._src.url(), &repo, "v1.0-again", &image).await;
    corpus.entries.push((repo, "v1.0-again".into(), image));
    corpus.write_list();
    let out = corpus.run(&[dst.host()], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("1 copied, 1 already present"), "{t}");
    assert_eq!(
        corpus.front.pulls(),
        pulled,
        "the new tag pulled from the source: {t}"
    );
    corpus.all_at(dst.host());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_per_short_window_is_spent_as_a_budget() {
    // 8 indexes and 24 single manifests: 64 pulls, against 20 per 8 s.
    let quota = Quota {
        limit: 20,
        window: Duration::from_secs(8),
    };
    let corpus = Corpus::new(3300, 8, 24, Some(quota)).await;
    assert_eq!(corpus.manifests(), 64);
    let dst = Registry::start();
    let out = corpus.run(&[dst.host()], &["--rate-limit-reserve", "2"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("32 copied, 0 already present, 0 failed"), "{t}");
    assert!(
        corpus.front.refused() <= 1,
        "{} refused: {t}",
        corpus.front.refused()
    );
    assert_eq!(corpus.front.pulls(), 64, "{t}");
    corpus.all_at(dst.host());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_spent_for_hours_defers_every_entry_at_once() {
    let quota = Quota {
        limit: 10,
        window: Duration::from_secs(6 * 3600),
    };
    let corpus = Corpus::new(3400, 2, 6, Some(quota)).await;
    // Someone else spent the quota.
    let (repo, tag, _) = &corpus.entries[7];
    corpus.front.spend(repo, tag, 10).await;
    let refused_before = corpus.front.refused();
    let dst = Registry::start();
    let started = Instant::now();
    let out = corpus.run(&[dst.host()], &[]);
    let t = text(&out);
    assert!(started.elapsed() < Duration::from_secs(60), "{t}");
    assert_eq!(out.status.code(), Some(1), "{t}");
    let deferred: Vec<&str> = t.lines().filter(|l| l.starts_with("deferred: ")).collect();
    assert_eq!(deferred.len(), corpus.entries.len(), "{t}");
    assert!(
        deferred
            .iter()
            .all(|l| l.contains("the pull rate limit (10 per 6h) is spent")),
        "{t}"
    );
    assert!(t.contains("0 failed, 8 deferred (rate limit)"), "{t}");
    assert!(corpus.front.refused() - refused_before <= 2, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_a_deferred_job_in_a_delay_queue_until_the_quota_is_back() {
    use image_mirror_common::{JobEvent, Outcome};
    use image_mirror_queue::amqp::AmqpBroker;
    use image_mirror_queue::topology::Topology;
    use image_mirror_testkit::{process, rabbitmq};
    use std::io::BufReader;
    use std::process::Stdio;

    let quota = Quota {
        limit: 3,
        window: Duration::from_secs(8),
    };
    let corpus = Corpus::new(3500, 0, 1, Some(quota)).await;
    let (repo, tag, _) = corpus.entries[0].clone();
    let dst = Registry::start();
    let url = rabbitmq::amqp_url();
    let prefix = format!("test.deferral.{}", std::process::id());
    let base = |c: &mut Command| {
        c.arg("--images-list")
            .arg(corpus.list())
            .arg("--insecure-registry")
            .arg(format!("{},{}", corpus.front.host(), dst.host()))
            .arg("--dest-registry")
            .arg(dst.host())
            .args(["--amqp-url", &url, "--queue-prefix", &prefix])
            .env("DOCKER_CONFIG", corpus.dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", corpus.dir.path().join("cache"));
    };
    let broker = AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap();
    // The quota is spent; it comes back 8 s from now, past the worker's longest wait.
    corpus.front.spend(&repo, &tag, 3).await;
    let mut worker = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    base(&mut worker);
    let mut worker = worker
        .args(["--rate-limit-max-wait", "1", "worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .running();
    let mut logs = BufReader::new(worker.stderr.take().unwrap());
    process::wait_for_line(&mut logs, "worker started", "the worker");
    let mut producer = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    base(&mut producer);
    let out = producer.args(["producer", "sync"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let line = process::wait_for_line(&mut logs, "job deferred", "the worker");
    assert!(
        line.contains("the pull rate limit (3 per 8s) is spent"),
        "{line}"
    );
    let logs = process::drain(logs);

    let mut events = image_mirror_queue::Broker::Amqp(Box::new(broker));
    let mut consumer = events
        .consume(&events.topology().committer(), 1)
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(90), consumer.next())
        .await
        .expect("the deferred job completed")
        .unwrap()
        .unwrap();
    let event = JobEvent::from_json(&d.body).unwrap();
    assert_eq!(event.outcome, Outcome::Copied);
    assert_eq!(event.attempts, 1, "a deferral is not an attempt");
    d.ack().await.unwrap();
    drop(consumer);
    process::terminate(&worker);
    worker.wait().unwrap();
    let logs = logs.join().unwrap();
    let depths = events.depths().await.unwrap();
    let dead = depths
        .iter()
        .find(|q| q.name == events.topology().dead())
        .unwrap();
    assert_eq!(dead.ready, 0, "{logs}");
    assert_eq!(corpus.front.refused(), 0, "{logs}");
    corpus.all_at(dst.host());
    if let image_mirror_queue::Broker::Amqp(b) = &mut events {
        b.delete_topology().await.unwrap();
    }
}
