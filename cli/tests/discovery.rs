//! Tag discovery from the command line: `tags`, `run --discover` and `producer discover`,
//! against a GitHub API fake (wiremock), real registries and a real RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use image_mirror_common::{MirrorJob, Requester};
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::process;
use image_mirror_testkit::process::SpawnRunning;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, skopeo, Registry};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghp_discoveryTestToken0123456789";

struct World {
    src: Registry,
    dst: Registry,
    github: MockServer,
    dir: tempfile::TempDir,
    /// Images pushed to the source, by `repo:tag`.
    images: Vec<(String, Image)>,
}

fn release(tag: &str, prerelease: bool) -> Value {
    json!({"tag_name": tag, "draft": false, "prerelease": prerelease})
}

async fn github_get(github: &MockServer, route: &str, body: Value) {
    Mock::given(method("GET"))
        .and(path(route))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(github)
        .await;
}

/// Source images, a GitHub with releases, and an images-list that knows some of the tags.
async fn world() -> World {
    let src = Registry::start();
    let dst = Registry::start();
    let github = MockServer::start().await;
    let mut pushed = Vec::new();
    let tags = [
        ("team/etcd", "v3.5.10"),
        ("team/etcd", "v3.5.11"),
        ("team/etcd", "v3.5.12"),
        ("team/flannel", "v0.26.6"),
        ("team/flannel", "v0.26.7"),
        ("team/traefik", "2.11.0"),
        ("team/traefik", "3.0.0"),
        ("team/traefik", "3.1.2"),
        ("team/traefik", "latest"),
        ("team/longhorn-manager", "v1.3.0"),
        ("team/longhorn-manager", "v1.4.0"),
    ];
    for (i, (repo, tag)) in tags.iter().enumerate() {
        let image = images::oci_manifest(900 + i as u64);
        push_image(&src.url(), repo, tag, &image).await;
        pushed.push((format!("{repo}:{tag}"), image));
    }
    github_get(
        &github,
        "/repos/o/etcd/releases",
        json!([
            release("v3.6.0-rc.0", true),
            release("v3.5.12", false),
            release("v3.5.11", false),
            release("v3.5.10", false)
        ]),
    )
    .await;
    github_get(
        &github,
        "/repos/o/flannel/releases/latest",
        release("v0.26.7", false),
    )
    .await;
    github_get(
        &github,
        "/repos/o/longhorn/releases",
        json!([release("v1.4.0", false), release("v1.3.0", false)]),
    )
    .await;
    let file = format!(
        "{s}/team/longhorn-manager:v1.4.0\n\n{s}/team/longhorn-ui:v1.4.0\n",
        s = src.host()
    );
    Mock::given(method("GET"))
        .and(path("/repos/o/longhorn/contents/deploy/images.txt"))
        .and(query_param("ref", "v1.4.0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "type": "file",
            "encoding": "base64",
            "content": base64_lines(file.as_bytes()),
        })))
        .mount(&github)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (src.host(), dst.host());
    let list = format!(
        "# mirrored images\n\
         {s}/team/etcd {d}/mirror/etcd v3.5.10\n\
         {s}/team/flannel {d}/mirror/flannel v0.26.6\n\
         {s}/team/longhorn-manager {d}/mirror/longhorn-manager v1.3.0\n\
         {s}/team/traefik {d}/mirror/traefik 3.0.0\n"
    );
    std::fs::write(dir.path().join("images-list"), list).unwrap();
    World {
        src,
        dst,
        github,
        dir,
        images: pushed,
    }
}

/// GitHub's contents API wraps base64 at 60 characters.
fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    text.as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned() + "\n")
        .collect()
}

impl World {
    fn config(&self, rules: Value) {
        std::fs::write(self.dir.path().join("config.json"), rules.to_string()).unwrap();
    }

    /// Rules shaped like the real config.json: every kind but helm-latest (its own test runs
    /// the real helm), and one kind this version does not know.
    fn real_shaped_config(&self) {
        let s = self.src.host();
        self.config(json!({
            "etcd": {
                "images": [format!("{s}/team/etcd")],
                "versionSource": "github-releases:o/etcd",
                "versionConstraint": ">3.5.10"
            },
            "flannel": {
                "images": [format!("{s}/team/flannel")],
                "versionSource": "github-latest-release:o/flannel"
            },
            "calico-operator": {
                "versionSource": "gitlab-releases:projectcalico/calico"
            },
            "traefik3": {
                "images": [format!("{s}/team/traefik")],
                "versionSource": "registry",
                "versionFilter": "^3\\.[0-9]+\\.[0-9]+$",
                "latest": true
            },
            "longhorn": {
                "imagesFilePath": "deploy/images.txt",
                "versionSource": "github-tagged-images-file:o/longhorn",
                "versionConstraint": ">=1.4.0"
            }
        }));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.current_dir(self.dir.path())
            .arg("--insecure-registry")
            .arg(format!("{},{}", self.src.host(), self.dst.host()))
            .env("DOCKER_CONFIG", self.dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", self.dir.path().join("cache"))
            .env("GITHUB_API_URL", self.github.uri())
            .env("GITHUB_TOKEN", TOKEN)
            .env_remove("AMQP_URL")
            .args(args);
        c
    }

    fn list(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("images-list")).unwrap()
    }

    fn image(&self, repo_tag: &str) -> &Image {
        &self.images.iter().find(|(k, _)| k == repo_tag).unwrap().1
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_prints_what_each_key_finds_as_json() {
    let w = world().await;
    w.real_shaped_config();
    let out = w.command(&["tags"]).output().unwrap();
    let all = text(&out);
    assert!(!all.contains(TOKEN), "the token leaked: {all}");
    // longhorn-ui is in the images file but not in images-list: a new image, proposed with
    // its derived target (the target registry would create that repository on push).
    assert_eq!(out.status.code(), Some(0), "{all}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (s, d) = (w.src.host(), w.dst.host());
    let new = |image: &str, tag: &str| json!({"source": format!("{s}/team/{image}"), "target": format!("{d}/mirror/{image}"), "tag": tag});
    let expected = json!([
        {
            "key": "etcd",
            "source": "github-releases:o/etcd",
            "images": [format!("{s}/team/etcd")],
            "found": ["v3.5.12", "v3.5.11"],
            "new": [new("etcd", "v3.5.12"), new("etcd", "v3.5.11")],
            "errors": [],
            "unsupported": null
        },
        {
            "key": "flannel",
            "source": "github-latest-release:o/flannel",
            "images": [format!("{s}/team/flannel")],
            "found": ["v0.26.7"],
            "new": [new("flannel", "v0.26.7")],
            "errors": [],
            "unsupported": null
        },
        {
            "key": "calico-operator",
            "source": "gitlab-releases:projectcalico/calico",
            "images": [],
            "found": [],
            "new": [],
            "errors": [],
            "unsupported": "gitlab-releases"
        },
        {
            "key": "traefik3",
            "source": "registry",
            "images": [format!("{s}/team/traefik")],
            "found": ["3.1.2"],
            "new": [new("traefik", "3.1.2")],
            "errors": [],
            "unsupported": null
        },
        {
            "key": "longhorn",
            "source": "github-tagged-images-file:o/longhorn",
            "images": [format!("{s}/team/longhorn-manager"), format!("{s}/team/longhorn-ui")],
            "found": [format!("{s}/team/longhorn-manager:v1.4.0"), format!("{s}/team/longhorn-ui:v1.4.0")],
            "new": [
                new("longhorn-manager", "v1.4.0"),
                json!({"source": format!("{s}/team/longhorn-ui"), "target": format!("{d}/mirror/mirrored-team-longhorn-ui"), "tag": "v1.4.0"})
            ],
            "errors": [],
            "unsupported": null
        }
    ]);
    assert_eq!(got, expected, "{all}");
    // Nothing was published or written: the new repository was only asked whether it would
    // take a push (an upload session opened and cancelled).
    let writes: Vec<String> = w
        .dst
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT") || r.starts_with("PATCH"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    // One key by name; a missing GitHub repository fails that key only.
    w.config(json!({
        "gone": {"images": [format!("{s}/team/etcd")], "versionSource": "github-releases:o/gone"},
        "flannel": {"images": [format!("{s}/team/flannel")], "versionSource": "github-latest-release:o/flannel"}
    }));
    let out = w.command(&["tags"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = got[0]["errors"].as_array().unwrap();
    assert!(
        errors[0]
            .as_str()
            .unwrap()
            .contains("list releases of o/gone: 404"),
        "{got}"
    );
    assert_eq!(got[1]["new"][0]["tag"], "v0.26.7");
    let out = w.command(&["tags", "flannel"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got.as_array().unwrap().len(), 1);
    let out = w.command(&["tags", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no key \"nope\""), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_discover_mirrors_new_tags_and_records_them_in_order() {
    let w = world().await;
    let s = w.src.host();
    w.config(json!({
        "etcd": {
            "images": [format!("{s}/team/etcd")],
            "versionSource": "github-releases:o/etcd",
            "versionConstraint": ">3.5.10"
        },
        "traefik3": {
            "images": [format!("{s}/team/traefik")],
            "versionSource": "registry",
            "versionFilter": "^3\\.[0-9]+\\.[0-9]+$",
            "latest": true
        },
        "cilium": {"versionSource": "gitlab-releases:cilium/cilium"}
    }));
    let before = w.list();
    let out = w.command(&["run", "--discover"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("summary: 3 copied, 0 already present, 0 failed"),
        "{t}"
    );
    let d = w.dst.host();
    let expected = before
        .replace(
            &format!("{s}/team/etcd {d}/mirror/etcd v3.5.10\n"),
            &format!(
                "{s}/team/etcd {d}/mirror/etcd v3.5.10\n\
                 {s}/team/etcd {d}/mirror/etcd v3.5.11\n\
                 {s}/team/etcd {d}/mirror/etcd v3.5.12\n"
            ),
        )
        .replace(
            &format!("{s}/team/traefik {d}/mirror/traefik 3.0.0\n"),
            &format!(
                "{s}/team/traefik {d}/mirror/traefik 3.0.0\n\
                 {s}/team/traefik {d}/mirror/traefik 3.1.2\n"
            ),
        );
    assert_eq!(w.list(), expected);
    for (repo, tag) in [
        ("etcd", "v3.5.11"),
        ("etcd", "v3.5.12"),
        ("traefik", "3.1.2"),
    ] {
        assert_eq!(
            &skopeo::manifest_digest(&format!("{d}/mirror/{repo}:{tag}")),
            w.image(&format!("team/{repo}:{tag}")).digest()
        );
    }
    let sorted = w.command(&["sort", "--check"]).output().unwrap();
    assert_eq!(sorted.status.code(), Some(0), "{}", text(&sorted));

    // Again: nothing new to find, nothing written.
    let out = w.command(&["run", "--discover"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("0 jobs"), "{t}");
    assert_eq!(w.list(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_discover_publishes_jobs_to_record_and_survives_a_failing_key() {
    let w = world().await;
    let s = w.src.host();
    w.config(json!({
        "gone": {"images": [format!("{s}/team/etcd")], "versionSource": "github-latest-release:o/gone"},
        "traefik3": {
            "images": [format!("{s}/team/traefik")],
            "versionSource": "registry",
            "versionFilter": "^3\\.",
            "latest": true
        }
    }));
    let url = rabbitmq::amqp_url();
    let prefix = format!("test.discover.{}", std::process::id());
    let out = w
        .command(&[
            "--amqp-url",
            &url,
            "--queue-prefix",
            &prefix,
            "producer",
            "discover",
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("gone: GitHub get the latest release of o/gone: 404"),
        "{t}"
    );
    assert!(t.contains("1 new tags published"), "{t}");

    let broker = AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap();
    let jobs = broker.topology().jobs();
    let mut consumer = broker.consume(&jobs, 10).await.unwrap();
    let delivery = consumer.next().await.unwrap().unwrap();
    let job = MirrorJob::from_json(&delivery.body).unwrap();
    delivery.ack().await.unwrap();
    assert!(job.record);
    assert_eq!(job.origin, Requester::Discover("traefik3".into()));
    assert_eq!(job.tag.as_str(), "3.1.2");
    assert_eq!(
        job.target.to_string(),
        format!("{}/mirror/traefik", w.dst.host())
    );
    let depths = broker.depths().await.unwrap();
    assert_eq!(depths.iter().find(|d| d.name == jobs).unwrap().ready, 0);

    // --every: a round, a pause, another round, until SIGTERM; then exit 0.
    let mut child = w
        .command(&[
            "--amqp-url",
            &url,
            "--queue-prefix",
            &prefix,
            "producer",
            "discover",
            "--every",
            "1s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .running();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut rounds = 0;
    for line in std::io::BufRead::lines(stdout) {
        if line.unwrap().starts_with("next discovery in 1s") {
            rounds += 1;
            if rounds == 2 {
                break;
            }
        }
    }
    assert_eq!(rounds, 2);
    process::terminate(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    for _ in 0..2 {
        let d = consumer.next().await.unwrap().unwrap();
        assert_eq!(MirrorJob::from_json(&d.body).unwrap().id, job.id);
        d.ack().await.unwrap();
    }
    broker.delete_topology().await.unwrap();
}
