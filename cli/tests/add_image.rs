//! New images: `add-image` (targets derived by the `mirrored-` rule, checks that refuse and
//! change nothing), `check` of new target repositories (Docker Hub through its API, a
//! stand-in; registries real), and a target that refuses pushes in a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use image_mirror_common::ImagesList;
use image_mirror_producer::NewImages;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{skopeo, Policy, Registry, TokenServer};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CREDS: &str = "mirror:new-images-5d";

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn the_fixture_list_follows_the_mirrored_rule_for_1810_entries() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rancher/images-list");
    let list = ImagesList::load(&fixture).unwrap();
    let rule = NewImages::for_list(&list, None).unwrap();
    assert_eq!(
        (rule.registry.as_str(), rule.org.as_str()),
        ("docker.io", "rancher")
    );
    let following = list
        .entries()
        .filter(|e| rule.target(&e.source).unwrap() == e.target)
        .count();
    assert_eq!(following, 1810);
    assert_eq!(list.len(), 2172);
}

/// A source registry, a token-auth target registry (`team/locked` takes no push), and an
/// images-list whose targets are in the target registry under `team`.
struct World {
    src: Registry,
    _tokens: TokenServer,
    dst: Registry,
    token_host: String,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let src = Registry::start();
    push_image(&src.url(), "up/old", "v1", &images::oci_manifest(1801)).await;
    push_image(&src.url(), "up/web", "v2", &images::oci_index(1802)).await;
    push_image(
        &src.url(),
        "vendor/tools/cli",
        "1.0",
        &images::oci_manifest(1803),
    )
    .await;
    push_image(&src.url(), "up/locked", "v1", &images::oci_manifest(1804)).await;
    let (user, password) = CREDS.split_once(':').unwrap();
    let mut policy = Policy::user(user, password);
    policy.no_push.insert("team/mirrored-up-locked".into());
    let tokens = TokenServer::start(policy);
    let dst = Registry::start_with(&RegistryOptions::with_token(&tokens));
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (src.host(), dst.host());
    std::fs::write(
        dir.path().join("images-list"),
        format!("# header\n{s}/up/old {d}/team/old v1\n"),
    )
    .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(CREDS);
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    std::fs::write(
        dir.path().join("docker/config.json"),
        format!(r#"{{"auths": {{"{d}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    World {
        token_host: tokens.host(),
        src,
        _tokens: tokens,
        dst,
        dir,
    }
}

impl World {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.current_dir(self.dir.path())
            .arg("--insecure-registry")
            .arg(format!(
                "{},{},{}",
                self.src.host(),
                self.dst.host(),
                self.token_host
            ))
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("IMAGE_MIRROR_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("AMQP_URL")
            .env_remove("FULL_IMAGES")
            .args(args);
        c
    }

    fn add_image(&self, images: &str) -> Output {
        self.command(&["add-image"])
            .env("FULL_IMAGES", images)
            .output()
            .unwrap()
    }

    fn list(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("images-list")).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_image_refuses_each_bad_request_and_otherwise_mirrors_and_records_in_order() {
    let w = world().await;
    let (s, d) = (w.src.host(), w.dst.host());
    let before = w.list();
    for (images, says) in [
        (
            format!("{s}/up/old:v1"),
            format!("{s}/up/old:v1 is already in images-list"),
        ),
        (
            format!("{s}/up/web:v9"),
            format!("{s}/up/web:v9 does not exist at the source"),
        ),
        (
            format!("{s}/up/locked:v1"),
            format!("{d}/team/mirrored-up-locked does not exist or refuses pushes"),
        ),
        (format!("{s}/up/web"), "name a tag".to_owned()),
    ] {
        let out = w.add_image(&images);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{images}: {t}");
        assert!(t.contains(&says), "{images}: {t}");
        assert!(t.contains("add-image: nothing was added"), "{t}");
        assert_eq!(w.list(), before, "{images} changed images-list");
    }
    // Two good ones (five path segments, and an index), one bad: nothing is added.
    let out = w.add_image(&format!(
        "{s}/vendor/tools/cli:1.0,{s}/up/web:v2,{s}/up/web:v9"
    ));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(w.list(), before);

    let out = w.add_image(&format!("{s}/vendor/tools/cli:1.0,{s}/up/web:v2"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("recorded 2 new line(s)"), "{t}");
    assert_eq!(
        w.list(),
        format!(
            "# header\n{s}/up/old {d}/team/old v1\n{s}/up/web {d}/team/mirrored-up-web v2\n\
             {s}/vendor/tools/cli {d}/team/mirrored-vendor-tools-cli 1.0\n"
        )
    );
    let at = format!("{d}/team/mirrored-up-web:v2");
    assert_eq!(
        skopeo::manifest_digest_as(&at, CREDS),
        skopeo::manifest_digest(&format!("{s}/up/web:v2"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_a_target_that_refuses_pushes_names_it_and_mirrors_the_rest() {
    let w = world().await;
    let (s, d) = (w.src.host(), w.dst.host());
    std::fs::write(
        w.dir.path().join("images-list"),
        format!(
            "{s}/up/locked {d}/team/mirrored-up-locked v1\n{s}/up/old {d}/team/old v1\n\
             {s}/up/web {d}/team/mirrored-up-web v2\n"
        ),
    )
    .unwrap();
    let out = w.command(&["run"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("2 copied, 0 already present, 1 failed (1 target_refused)"),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "target_refused: {d}/team/mirrored-up-locked: the target repository does not exist or refuses pushes"
        )),
        "{t}"
    );
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_a_new_target_repository_until_it_exists() {
    let w = world().await;
    let dir = w.dir.path();
    let (s, d) = (w.src.host(), w.dst.host());
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "images-list"]);
    git(dir, &["commit", "-q", "-m", "base"]);
    let hub = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/namespaces/rancher/repositories/mirrored-up-web/"))
        .respond_with(
            ResponseTemplate::new(404).set_body_string(r#"{"message":"object not found"}"#),
        )
        .up_to_n_times(1)
        .mount(&hub)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/namespaces/rancher/repositories/mirrored-up-web/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"name":"mirrored-up-web"}"#))
        .mount(&hub)
        .await;
    // A new image on Docker Hub, and one in the (real) target registry that takes no push.
    std::fs::write(
        dir.join("images-list"),
        format!("# header\n{s}/up/old {d}/team/old v1\n{s}/up/web rancher/mirrored-up-web v2\n"),
    )
    .unwrap();
    let check = || {
        w.command(&["--docker-hub-api", &hub.uri(), "check", "--base", "main"])
            .output()
            .unwrap()
    };
    let out = check();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("the Docker Hub repository does not exist: create docker.io/rancher/mirrored-up-web first"),
        "{t}"
    );
    // Someone created it on Docker Hub: the check passes.
    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    std::fs::write(
        dir.join("images-list"),
        format!(
            "# header\n{s}/up/locked {d}/team/mirrored-up-locked v1\n{s}/up/old {d}/team/old v1\n"
        ),
    )
    .unwrap();
    let out = check();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "missing  {d}/team/mirrored-up-locked does not exist or refuses pushes"
        )),
        "{t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_target_repositories_are_checked_where_they_are_pushed_to() {
    let w = world().await;
    let (s, d) = (w.src.host(), w.dst.host());
    let hub_down = ["--docker-hub-api", "http://127.0.0.1:9"];
    std::fs::write(
        w.dir.path().join("images-list"),
        format!("{s}/up/old rancher/old v1\n"),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut c = w.command(&hub_down);
        c.args(extra)
            .args(["add-image", "--images"])
            .arg(format!("{s}/up/web:v2"));
        c.output().unwrap()
    };
    // The listed target is on Docker Hub, whose API cannot be reached: nothing is added.
    let out = run(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("docker.io/rancher/mirrored-up-web: could not be checked"),
        "{t}"
    );
    // Pushed elsewhere by --dest-registry: that registry is asked, and the line is recorded
    // with its listed target.
    let out = run(&["--dest-registry", d]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        w.list()
            .contains(&format!("{s}/up/web rancher/mirrored-up-web v2\n")),
        "{}",
        w.list()
    );
    assert_eq!(
        skopeo::manifest_digest_as(&format!("{d}/rancher/mirrored-up-web:v2"), CREDS),
        skopeo::manifest_digest(&format!("{s}/up/web:v2"))
    );
}
