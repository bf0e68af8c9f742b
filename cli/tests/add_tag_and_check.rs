//! The original tools kept as commands: `add-tag` (IMAGES and TAGS) and `check` (the entries
//! a change adds must exist at the source), against real registries and a real git.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use image_mirror_testkit::front::{Front, FrontOptions};
use image_mirror_testkit::http::{Body, Response};
use image_mirror_testkit::images::{self, Image};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{skopeo, Registry};

struct World {
    src: Registry,
    dst: Registry,
    dir: tempfile::TempDir,
    v12: Image,
}

async fn world() -> World {
    let src = Registry::start();
    let dst = Registry::start();
    let v123 = images::oci_manifest(300);
    let v12 = images::oci_index(301);
    push_image(&src.url(), "team/app", "v1.2.3", &v123).await;
    push_image(&src.url(), "team/app", "v1.2", &v12).await;
    push_image(&src.url(), "team/dup", "v2", &images::oci_manifest(302)).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, d) = (src.host(), dst.host());
    std::fs::write(
        dir.path().join("images-list"),
        format!(
            "# header\n\
             {s}/team/app {d}/mirror/app v1.2.3\n\
             {s}/team/dup {d}/mirror/dup-a v1\n\
             {s}/team/dup {d}/mirror/dup-b v1\n"
        ),
    )
    .unwrap();
    World { src, dst, dir, v12 }
}

impl World {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.current_dir(self.dir.path())
            .arg("--insecure-registry")
            .arg(format!("{},{}", self.src.host(), self.dst.host()))
            .env("DOCKER_CONFIG", self.dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("AMQP_URL")
            .env_remove("IMAGES")
            .env_remove("TAGS")
            .args(args);
        c
    }

    fn add_tag(&self, images: &str, tags: &str) -> Output {
        self.command(&["add-tag"])
            .env("IMAGES", images)
            .env("TAGS", tags)
            .output()
            .unwrap()
    }

    fn list(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("images-list")).unwrap()
    }

    fn app(&self) -> String {
        format!("{}/team/app", self.src.host())
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_tag_refuses_each_bad_request_and_changes_nothing() {
    let w = world().await;
    let before = w.list();
    let s = w.src.host();
    let cases = [
        (
            format!("{s}/team/unknown"),
            "v1",
            format!("{s}/team/unknown is not in images-list"),
        ),
        (
            format!("{s}/team/dup"),
            "v2",
            format!("{s}/team/dup has several targets in images-list"),
        ),
        (
            w.app(),
            "v1.2.3",
            format!("{}:v1.2.3 is already in images-list", w.app()),
        ),
        (
            w.app(),
            "v9.9.9",
            format!("{}:v9.9.9 does not exist at the source", w.app()),
        ),
    ];
    for (images, tags, message) in &cases {
        let out = w.add_tag(images, tags);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{images} {tags}: {t}");
        assert!(t.contains(message.as_str()), "{images} {tags}: {t}");
        assert!(t.contains("nothing was added"), "{t}");
        assert_eq!(w.list(), before, "{images} {tags} changed images-list");
    }
    // One bad tag among good ones: nothing happens either.
    let out = w.add_tag(&w.app(), "v1.2,v9.9.9");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(w.list(), before);
    assert_eq!(
        w.dst.blob_writes(),
        0,
        "a refused request wrote to the target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_tag_matches_tags_exactly_then_mirrors_and_records() {
    let w = world().await;
    // `v1.2.3` is listed; `v1.2` is another tag, not a part of it.
    let out = w.add_tag(&w.app(), "v1.2");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("summary: 1 copied"), "{t}");
    let (s, d) = (w.src.host(), w.dst.host());
    assert_eq!(
        w.list(),
        format!(
            "# header\n\
             {s}/team/app {d}/mirror/app v1.2\n\
             {s}/team/app {d}/mirror/app v1.2.3\n\
             {s}/team/dup {d}/mirror/dup-a v1\n\
             {s}/team/dup {d}/mirror/dup-b v1\n"
        )
    );
    assert_eq!(
        &skopeo::manifest_digest(&format!("{d}/mirror/app:v1.2")),
        w.v12.digest()
    );
    // The flags work as the variables do; now v1.2 is listed.
    let out = w
        .command(&["add-tag", "--images", &w.app(), "--tags", "v1.2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("v1.2 is already in images-list"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_tag_records_through_the_committer_which_checks_the_target_digest() {
    // The line goes through the committer's path, as a fleet's does: after the copy, the
    // committer asks the target what the tag holds and records only what holds. A front
    // before the target answers that question (the second HEAD of the tag after its push;
    // the first is the worker's own check) with another digest: the copy is done, the line
    // is not written, and the run says why.
    let w = world().await;
    let pushed = Arc::new(AtomicBool::new(false));
    let heads_after_push = Arc::new(AtomicUsize::new(0));
    let lie = format!("sha256:{}", "e".repeat(64));
    let front = Front::start(
        w.dst.host(),
        FrontOptions {
            hook: Some(Arc::new({
                let (pushed, heads, lie) = (pushed.clone(), heads_after_push.clone(), lie.clone());
                move |r| {
                    if r.path() != "/v2/lying/app/manifests/v1.2" {
                        return None;
                    }
                    match r.method.as_str() {
                        "PUT" => pushed.store(true, Ordering::SeqCst),
                        "HEAD"
                            if pushed.load(Ordering::SeqCst)
                                && heads.fetch_add(1, Ordering::SeqCst) == 1 =>
                        {
                            let mut answer = Response::new(200);
                            answer.headers = vec![
                                ("Docker-Content-Digest".into(), lie.clone()),
                                (
                                    "Content-Type".into(),
                                    "application/vnd.oci.image.index.v1+json".into(),
                                ),
                            ];
                            answer.body = Body::Bytes(Vec::new());
                            return Some(answer.into());
                        }
                        _ => {}
                    }
                    None
                }
            })),
            ..FrontOptions::default()
        },
    );
    let before = w.list();
    let out = w
        .command(&[
            "--insecure-registry",
            &front.host(),
            "add-tag",
            "--images",
            &w.app(),
            "--tags",
            "v1.2",
            "--dest-registry",
            &front.host(),
            "--dest-org",
            "lying",
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("summary: 1 copied"), "{t}");
    assert!(t.contains("not recorded"), "{t}");
    assert!(t.contains(&format!("the target holds {lie}")), "{t}");
    assert_eq!(
        w.list(),
        before,
        "a line whose target does not hold it was written"
    );
    assert_eq!(heads_after_push.load(Ordering::SeqCst), 2, "{t}");
    // The copy itself is whole at the registry behind the front.
    assert_eq!(
        &skopeo::manifest_digest(&format!("{}/lying/app:v1.2", w.dst.host())),
        w.v12.digest()
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
async fn check_fails_on_added_lines_whose_source_tag_does_not_exist() {
    let w = world().await;
    let dir = w.dir.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "images-list"]);
    git(dir, &["commit", "-q", "-m", "base"]);
    let base = w.list();
    let (s, d) = (w.src.host(), w.dst.host());

    // Nothing added.
    let out = w.command(&["check", "--base", "main"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no entries added"), "{}", text(&out));

    // An added line whose tag exists.
    let good = base.replace(
        &format!("{s}/team/app {d}/mirror/app v1.2.3\n"),
        &format!("{s}/team/app {d}/mirror/app v1.2\n{s}/team/app {d}/mirror/app v1.2.3\n"),
    );
    std::fs::write(dir.join("images-list"), &good).unwrap();
    let out = w.command(&["check", "--base", "main"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("ok       {s}/team/app:v1.2 (sha256:")));
    git(dir, &["commit", "-q", "-am", "v1.2"]);

    // Committed with one that does not: compared with the commit before, it fails and is
    // named; the line that exists is still fine.
    let bad = good.replace(
        &format!("{s}/team/dup {d}/mirror/dup-a v1\n"),
        &format!("{s}/team/dup {d}/mirror/dup-a v1\n{s}/team/dup {d}/mirror/dup-a v3\n"),
    );
    std::fs::write(dir.join("images-list"), &bad).unwrap();
    git(dir, &["commit", "-q", "-am", "v3"]);
    let out = w.command(&["check", "--base", "HEAD~2"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "missing  {s}/team/dup:v3: the tag does not exist at the source"
        )),
        "{t}"
    );
    assert!(t.contains(&format!("ok       {s}/team/app:v1.2")), "{t}");
    assert!(
        t.contains("check: 2 entries added since HEAD~2, 1 failed"),
        "{t}"
    );

    // A base that is not a revision is bad input.
    let out = w.command(&["check", "--base", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_removed_line_a_target_tag_listed_twice_and_a_line_out_of_order() {
    let w = world().await;
    let dir = w.dir.path();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "images-list"]);
    git(dir, &["commit", "-q", "-m", "base"]);
    let base = w.list();
    let (s, d) = (w.src.host(), w.dst.host());

    // `check` of images-list written as `list`: it fails; what it printed.
    let failing_check = |list: &str| {
        std::fs::write(dir.join("images-list"), list).unwrap();
        let out = w.command(&["check", "--base", "main"]).output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        t
    };

    // A line removed.
    let t = failing_check(&base.replace(&format!("{s}/team/dup {d}/mirror/dup-b v1\n"), ""));
    assert!(
        t.contains(&format!(
            "removed  {s}/team/dup {d}/mirror/dup-b v1: the line is gone since main"
        )),
        "{t}"
    );

    // A target tag another source already writes: listed from two sources.
    let t = failing_check(&base.replace(
        &format!("{s}/team/app {d}/mirror/app v1.2.3\n"),
        &format!("{s}/team/app {d}/mirror/app v1.2.3\n{s}/team/dup {d}/mirror/app v1.2.3\n"),
    ));
    assert!(
        t.contains(&format!(
            "twice    {d}/mirror/app:v1.2.3: listed from {s}/team/app and from {s}/team/dup"
        )),
        "{t}"
    );

    // An added line out of sort -V order (its tag exists, so only the order is wrong).
    let t = failing_check(&base.replace(
        &format!("{s}/team/dup {d}/mirror/dup-b v1\n"),
        &format!("{s}/team/dup {d}/mirror/dup-b v1\n{s}/team/app {d}/mirror/app v1.2\n"),
    ));
    assert!(t.contains("order    "), "{t}");
    assert!(t.contains(":5: out of order:"), "{t}");
    assert!(t.contains(&format!("ok       {s}/team/app:v1.2")), "{t}");
}
