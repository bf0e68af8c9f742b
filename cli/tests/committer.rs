//! `image-mirror committer`: completion events from a real RabbitMQ become images-list pull
//! requests on a GitHub stand-in (the one fake: GitHub cannot run here), or edits of the local
//! file; targets are verified in a real registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{ChildStdout, Command, Stdio};

use image_mirror_common::{
    Digest, ImagesList, JobEvent, MirrorJob, Outcome, Repository, Requester, Tag,
};
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_queue::{Broker, Message};
use image_mirror_testkit::github::FakeGithub;
use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::process;
use image_mirror_testkit::process::{Running, SpawnRunning};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, Registry};

const TOKEN: &str = "ghp_committerTestToken9876543210";
const UPSTREAM: &str = "upstream.example";

struct World {
    dst: Registry,
    dir: tempfile::TempDir,
    url: String,
    prefix: String,
    base: String,
    /// The mirrored images, `mirror/appN:v1.N.0` at the target.
    images: Vec<Image>,
    /// The `--github-repo` given to the committer.
    repo: String,
}

/// Five images already at the target, and a base images-list that lacks them.
async fn world(name: &str) -> World {
    let dst = Registry::start();
    let mut pushed = Vec::new();
    for i in 0..5_u64 {
        let image = images::oci_manifest(4000 + i);
        push_image(
            &dst.url(),
            &format!("mirror/app{i}"),
            &format!("v1.{i}.0"),
            &image,
        )
        .await;
        pushed.push(image);
    }
    let d = dst.host();
    let base = format!(
        "# header\n\
         {UPSTREAM}/team/app0 {d}/mirror/app0 v0.9.0\n\
         {UPSTREAM}/team/app2 {d}/mirror/app2 v1.10.0\n\
         {UPSTREAM}/team/zed {d}/mirror/zed v1\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("images-list"), &base).unwrap();
    World {
        dst,
        dir,
        url: rabbitmq::amqp_url(),
        prefix: format!("test.committer.{name}.{}", std::process::id()),
        base,
        images: pushed,
        repo: "acme/mirrors".into(),
    }
}

impl World {
    fn event(&self, i: usize, digest: &Digest) -> JobEvent {
        let source: Repository = format!("{UPSTREAM}/team/app{i}").parse().unwrap();
        let target: Repository = format!("{}/mirror/app{i}", self.dst.host())
            .parse()
            .unwrap();
        let tag: Tag = format!("v1.{i}.0").parse().unwrap();
        let job = MirrorJob::new(
            source,
            target,
            tag,
            true,
            Requester::Discover("apps".into()),
        );
        let mut event = JobEvent::for_job(&job, Outcome::Copied);
        event.digest = Some(digest.clone());
        event
    }

    fn good_events(&self) -> Vec<JobEvent> {
        (0..5)
            .map(|i| self.event(i, self.images[i].digest()))
            .collect()
    }

    /// The base file with the lines of `events` added, as `sort -V` orders them.
    fn expected(&self, base: &str, events: &[JobEvent]) -> String {
        let mut list = ImagesList::parse(base.as_bytes()).unwrap();
        for e in events {
            list.insert(e.entry());
        }
        String::from_utf8(list.to_bytes()).unwrap()
    }

    async fn broker(&self) -> Broker {
        Broker::Amqp(Box::new(
            AmqpBroker::connect(&self.url, Topology::new(&self.prefix))
                .await
                .unwrap(),
        ))
    }

    async fn publish(&self, broker: &Broker, events: &[JobEvent]) {
        for e in events {
            let message = Message {
                id: e.job_id.clone(),
                body: e.to_json(),
                headers: Default::default(),
            };
            broker
                .publish_event(&e.routing_key(), &message)
                .await
                .unwrap();
        }
    }

    fn committer(&self, github: Option<&FakeGithub>) -> (Running, BufReader<ChildStdout>) {
        self.committer_with_window(github, "2s")
    }

    fn committer_with_window(
        &self,
        github: Option<&FakeGithub>,
        window: &str,
    ) -> (Running, BufReader<ChildStdout>) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.current_dir(self.dir.path())
            .arg("--insecure-registry")
            .arg(self.dst.host())
            .args(["--amqp-url", &self.url, "--queue-prefix", &self.prefix])
            .env("DOCKER_CONFIG", self.dir.path())
            .env("GITHUB_TOKEN", TOKEN)
            .args(["committer", "--batch-window", window, "--max-batch", "50"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(g) = github {
            c.env("GITHUB_API_URL", g.uri()).args([
                "--github-repo",
                &self.repo,
                "--base-branch",
                "main",
            ]);
        }
        let mut child = c.running();
        let out = BufReader::new(child.stdout.take().unwrap());
        (child, out)
    }
}

/// The next line of the committer's stdout that starts with `prefix`.
fn line_starting(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the committer ended before printing {prefix:?}"
        );
        if line.starts_with(prefix) {
            return line.trim_end().to_owned();
        }
    }
}

fn stop(child: Running) -> String {
    process::terminate(&child);
    let out = child.into_inner().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn ready_events(broker: &Broker) -> u64 {
    let committer = broker.topology().committer();
    broker
        .depths()
        .await
        .unwrap()
        .iter()
        .find(|d| d.name == committer)
        .unwrap()
        .ready
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_events_make_one_pull_request_and_again_nothing_new() {
    let w = world("pr").await;
    let github = FakeGithub::start("acme", "mirrors", "main", "images-list", &w.base).await;
    let broker = w.broker().await;
    let events = w.good_events();
    w.publish(&broker, &events).await;

    let (child, mut out) = w.committer(Some(&github));
    let line = line_starting(&mut out, "batch of 5 events:");
    assert!(line.contains("opened pull request #1"), "{line}");
    {
        let s = github.state();
        assert_eq!(s.created_branches.len(), 1);
        assert_eq!(s.commits.len(), 1);
        assert_eq!(s.pulls.len(), 1);
        let (commit, pull) = (&s.commits[0], &s.pulls[0]);
        // The committed file, decoded from the request: the base plus exactly the 5 lines.
        assert_eq!(commit.content, w.expected(&w.base, &events));
        assert_eq!(commit.branch, s.created_branches[0]);
        assert_eq!(pull.head, s.created_branches[0]);
        assert_eq!(pull.base, "main");
        // app1, app3 and app4 are new images (their targets are not in the base list).
        assert_eq!(
            pull.title,
            format!(
                "Added image(s) {u}/team/app1:v1.1.0, {u}/team/app3:v1.3.0, {u}/team/app4:v1.4.0; \
                 added tag(s) v1.0.0, v1.2.0 for image(s) {u}/team/app0, {u}/team/app2",
                u = UPSTREAM
            )
        );
        for (i, e) in events.iter().enumerate() {
            let line = format!(
                "{UPSTREAM}/team/app{i}:v1.{i}.0 -> {}/mirror/app{i}@{}",
                w.dst.host(),
                e.digest.as_ref().unwrap()
            );
            assert!(pull.body.contains(&line), "{}", pull.body);
        }
        assert_eq!(pull.labels, vec!["image-mirror"]);
    }

    // The same events again: no second branch, commit or pull request.
    w.publish(&broker, &events).await;
    let line = line_starting(&mut out, "batch of 5 events:");
    assert!(line.contains("pull request #1"), "{line}");
    assert!(line.contains("already proposes these lines"), "{line}");
    let stderr = stop(child);
    assert!(!stderr.contains(TOKEN));
    {
        let s = github.state();
        assert_eq!(s.created_branches.len(), 1);
        assert_eq!(s.commits.len(), 1);
        assert_eq!(s.pulls.len(), 1);
    }
    assert_eq!(ready_events(&broker).await, 0, "events left unacknowledged");
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_that_changed_meanwhile_gets_the_lines_on_its_new_content() {
    let w = world("rebase").await;
    let github = FakeGithub::start("acme", "mirrors", "main", "images-list", &w.base).await;
    // Someone merges a line into the base right after the committer read it.
    let moved = format!(
        "{}{UPSTREAM}/team/app1 {}/mirror/app1 v1.0.5\n",
        w.base,
        w.dst.host()
    );
    let moved = w.expected(&moved, &[]);
    github.state().base_changes_after_read = Some(moved.clone());
    let broker = w.broker().await;
    let events = w.good_events();
    w.publish(&broker, &events).await;
    let (child, mut out) = w.committer(Some(&github));
    let line = line_starting(&mut out, "batch of 5 events:");
    assert!(line.contains("opened pull request #1"), "{line}");
    stop(child);
    {
        let s = github.state();
        assert_eq!(s.commits.len(), 1);
        assert_eq!(s.commits[0].content, w.expected(&moved, &events));
    }
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committer_killed_before_acking_leaves_the_same_pull_request() {
    let w = world("kill").await;
    let github = FakeGithub::start("acme", "mirrors", "main", "images-list", &w.base).await;
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    github.state().hold_labels = Some(held_tx);
    let broker = w.broker().await;
    let events = w.good_events();
    w.publish(&broker, &events).await;

    // The first committer opens the pull request; while it labels it, it is killed.
    let (mut first, _out) = w.committer(Some(&github));
    let number = held_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .unwrap();
    assert_eq!(number, 1);
    first.kill().unwrap();
    first.wait().unwrap();
    github.state().hold_labels = None;

    // The events come again to a new committer: the same pull request, nothing new.
    let (second, mut out) = w.committer(Some(&github));
    let line = line_starting(&mut out, "batch of 5 events:");
    assert!(line.contains("pull request #1"), "{line}");
    stop(second);
    {
        let s = github.state();
        assert_eq!(s.created_branches.len(), 1);
        assert_eq!(s.commits.len(), 1);
        assert_eq!(s.pulls.len(), 1);
        assert_eq!(s.commits[0].content, w.expected(&w.base, &events));
        assert_eq!(s.pulls[0].labels, vec!["image-mirror"]);
    }
    assert_eq!(ready_events(&broker).await, 0);
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_records_verified_lines_and_drops_forged_ones() {
    let w = world("local").await;
    let broker = w.broker().await;
    let good = w.event(0, w.images[0].digest());
    // Claims a digest the target does not hold.
    let forged = w.event(1, w.images[3].digest());
    // Not to be recorded: a sync job, and a failure.
    let mut sync = w.event(2, w.images[2].digest());
    sync.record = false;
    let mut failed = w.event(4, w.images[4].digest());
    failed.outcome = Outcome::Failed;
    let all = [good.clone(), forged, sync, failed];
    w.publish(&broker, &all).await;

    let (child, mut out) = w.committer(None);
    let line = line_starting(&mut out, "batch of 4 events:");
    assert!(line.contains("recorded 1 new line(s)"), "{line}");
    let stderr = stop(child);
    assert!(
        stderr.contains(&format!(
            "not recorded: {UPSTREAM}/team/app1:v1.1.0 -> {}/mirror/app1:v1.1.0: the event says {}, the target holds {}",
            w.dst.host(),
            w.images[3].digest(),
            w.images[1].digest()
        )),
        "{stderr}"
    );
    let list = std::fs::read_to_string(w.dir.path().join("images-list")).unwrap();
    assert_eq!(list, w.expected(&w.base, &[good]));
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_that_will_not_pass_stops_the_committer_and_keeps_the_events() {
    let mut w = world("refused").await;
    let github = FakeGithub::start("acme", "mirrors", "main", "images-list", &w.base).await;
    w.repo = "acme/missing".into();
    let broker = w.broker().await;
    w.publish(&broker, &w.good_events()).await;
    let (child, _out) = w.committer(Some(&github));
    let out = child.into_inner().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("GitHub read images-list of acme/missing at main: 404"),
        "{stderr}"
    );
    assert!(stderr.contains("back in the queue"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
    // Asked once: a 404 is not retried.
    let reads = github
        .requests()
        .await
        .iter()
        .filter(|r| r.starts_with("GET /repos/acme/missing/contents/images-list"))
        .count();
    assert_eq!(reads, 1);
    // The five events are still there: a new consumer gets each of them.
    let mut consumer = broker
        .consume(&broker.topology().committer(), 10)
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < 5 {
        let d = tokio::time::timeout(std::time::Duration::from_secs(60), consumer.next())
            .await
            .expect("events lost")
            .unwrap()
            .unwrap();
        ids.insert(JobEvent::from_json(&d.body).unwrap().job_id);
        d.ack().await.unwrap();
    }
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_batch_settles_it_and_stops() {
    let w = world("sigterm").await;
    let broker = w.broker().await;
    let good = w.event(0, w.images[0].digest());
    w.publish(&broker, std::slice::from_ref(&good)).await;
    // A window far longer than the test: only the signal can close this batch.
    let (mut child, mut out) = w.committer_with_window(None, "1h");
    let mut logs = BufReader::new(child.stderr.take().unwrap());
    process::wait_for_line(&mut logs, "batch opened", "the committer");
    process::terminate(&child);
    let line = line_starting(&mut out, "batch of 1 events:");
    assert!(line.contains("recorded 1 new line(s)"), "{line}");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let list = std::fs::read_to_string(w.dir.path().join("images-list")).unwrap();
    assert_eq!(list, w.expected(&w.base, &[good]));
    assert_eq!(ready_events(&broker).await, 0);
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_an_open_pull_request_proposes_is_never_proposed_again() {
    let w = world("once").await;
    let github = FakeGithub::start("acme", "mirrors", "main", "images-list", &w.base).await;
    let broker = w.broker().await;
    let events = w.good_events();
    let (child, mut out) = w.committer(Some(&github));

    // An open pull request proposes A, B and C.
    w.publish(&broker, &events[0..3]).await;
    let line = line_starting(&mut out, "batch of 3 events:");
    assert!(line.contains("opened pull request #1"), "{line}");

    // A and B again: nothing new, no branch, no pull request.
    w.publish(&broker, &events[0..2]).await;
    let line = line_starting(&mut out, "batch of 2 events:");
    assert!(
        line.contains("pull request #1 already proposes these lines"),
        "{line}"
    );
    assert_eq!(github.state().created_branches.len(), 1);
    assert_eq!(github.state().pulls.len(), 1);

    // B and D: D alone, in a pull request of its own.
    w.publish(&broker, &[events[1].clone(), events[3].clone()])
        .await;
    let line = line_starting(&mut out, "batch of 2 events:");
    assert!(line.contains("opened pull request #2"), "{line}");
    assert!(line.contains("adding 1 line(s)"), "{line}");
    stop(child);
    {
        let s = github.state();
        assert_eq!(s.pulls.len(), 2);
        assert_eq!(s.commits.len(), 2);
        assert_eq!(
            s.commits[1].content,
            w.expected(&w.base, &events[3..4]),
            "the second pull request adds D alone"
        );
        assert!(s.pulls[1].title.contains("v1.3.0"), "{}", s.pulls[1].title);
        assert!(!s.pulls[1].title.contains("v1.1.0"), "{}", s.pulls[1].title);
    }
    // Once #1 is closed, its lines may be proposed again.
    github.state().pulls[0].closed = true;
    let (child, mut out) = w.committer(Some(&github));
    w.publish(&broker, &events[0..1]).await;
    let line = line_starting(&mut out, "batch of 1 events:");
    assert!(line.contains("opened pull request #3"), "{line}");
    stop(child);
    assert_eq!(ready_events(&broker).await, 0);
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_read_goes_to_the_dead_letter_queue_with_why() {
    let w = world("unreadable").await;
    let broker = w.broker().await;
    let good = w.event(0, w.images[0].digest());
    w.publish(&broker, std::slice::from_ref(&good)).await;
    broker
        .publish_event(
            "job.copied",
            &Message {
                id: "garbage-1".into(),
                body: b"{not json".to_vec(),
                headers: Default::default(),
            },
        )
        .await
        .unwrap();
    let (child, mut out) = w.committer(None);
    let line = line_starting(&mut out, "batch of 2 events:");
    assert!(line.contains("recorded 1 new line(s)"), "{line}");
    let stderr = stop(child);
    assert!(stderr.contains("unreadable event"), "{stderr}");
    let mut dead = broker
        .consume(&broker.topology().events_dead(), 1)
        .await
        .unwrap();
    let d = tokio::time::timeout(std::time::Duration::from_secs(10), dead.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.body, b"{not json");
    let reason = d
        .headers
        .get(image_mirror_queue::topology::REASON_HEADER)
        .unwrap();
    assert!(
        reason.starts_with("unreadable event: malformed"),
        "{reason}"
    );
    d.ack().await.unwrap();
    assert_eq!(ready_events(&broker).await, 0);
    if let Broker::Amqp(b) = &broker {
        b.delete_topology().await.unwrap();
    }
}
