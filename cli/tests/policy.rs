//! `--policy-hook`: allow, deny, defer, a hook that times out and one that answers garbage,
//! each as documented, in `run` and in the fleet; nothing of a refused image is written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use image_mirror_common::Outcome;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::workers::{stop, Deployment};
use image_mirror_testkit::Registry;

/// A hook script in `dir` named `name`: it keeps its input beside it and runs `body`.
fn hook(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let input = dir.join(format!("{name}.input.json"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\ncat > '{}'\n{body}\n", input.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn run(dir: &Path, hosts: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(dir.join("images-list"))
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .args(["run", "--output", "json"])
        .args(args)
        .env("DOCKER_CONFIG", dir)
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// The writes (anything but GET and HEAD) `registry` has logged.
fn writes(registry: &Registry) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| !r.starts_with("GET") && !r.starts_with("HEAD"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_answer_of_the_hook_does_as_documented_in_run() {
    let (src, dst) = (Registry::start(), Registry::start());
    let image = images::oci_manifest_labelled(
        6600,
        &[(
            "org.opencontainers.image.source",
            "https://github.com/acme/app",
        )],
    );
    push_image(&src.url(), "team/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("images-list"),
        format!("{}/team/app {}/mirror/app v1\n", src.host(), dst.host()),
    )
    .unwrap();
    let hosts = [src.host(), dst.host()];
    let with = |path: &Path, extra: &[&str]| {
        let mut args = vec!["--policy-hook", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(dir.path(), &hosts, &args);
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
        (out, doc)
    };
    let failure = |doc: &serde_json::Value| doc["events"][0]["error"].clone();

    // Deny: policy_denied, with the reason; nothing written, not retried.
    let deny = hook(
        dir.path(),
        "deny",
        r#"echo '{"decision": "deny", "reason": "no unscanned images"}'"#,
    );
    let (out, doc) = with(&deny, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(failure(&doc)["class"], "policy_denied", "{doc}");
    assert!(
        failure(&doc)["message"]
            .as_str()
            .unwrap()
            .contains("no unscanned images"),
        "{doc}"
    );
    assert_eq!(writes(&dst), 0, "a denied image was written");
    assert_eq!(doc["summary"]["policy_decisions"]["deny"], 1, "{doc}");
    let told: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("deny.input.json")).unwrap())
            .unwrap();
    assert_eq!(told["digest"], image.digest().to_string());
    assert_eq!(told["source"], format!("{}/team/app:v1", src.host()));
    assert_eq!(told["targets"][0], format!("{}/mirror/app:v1", dst.host()));
    assert_eq!(
        told["labels"]["org.opencontainers.image.source"], "https://github.com/acme/app",
        "{told}"
    );

    // Defer: deferred, nothing written.
    let defer = hook(
        dir.path(),
        "defer",
        r#"echo '{"decision": "defer", "reason": "scan pending"}'"#,
    );
    let (out, doc) = with(&defer, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(doc["events"][0]["outcome"], "deferred", "{doc}");
    assert_eq!(doc["summary"]["policy_decisions"]["defer"], 1, "{doc}");
    assert!(text(&out).contains("scan pending"), "{}", text(&out));
    assert_eq!(writes(&dst), 0);

    // A hook that answers garbage, or too late: closed by default, naming why and its stderr.
    let garbage = hook(
        dir.path(),
        "garbage",
        "echo 'the scanner is down' >&2; echo 'not json'",
    );
    let (out, doc) = with(&garbage, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = failure(&doc)["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("stderr: the scanner is down") && message.contains("closed"),
        "{message}"
    );
    let slow = hook(
        dir.path(),
        "slow",
        "sleep 30; echo '{\"decision\": \"allow\"}'",
    );
    let started = std::time::Instant::now();
    let (out, doc) = with(&slow, &["--policy-hook-timeout", "1s"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the timeout did not hold"
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        failure(&doc)["message"]
            .as_str()
            .unwrap()
            .contains("no answer within 1 s"),
        "{doc}"
    );
    assert_eq!(writes(&dst), 0);

    // Open: a failing hook lets the image through, with a warning.
    let (out, _) = with(&garbage, &["--policy-hook-fail", "open"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("--policy-hook-fail open lets"),
        "{}",
        text(&out)
    );

    // Allow: copied; and a no-op does not ask the hook at all.
    std::fs::write(
        dir.path().join("images-list"),
        format!("{}/team/app {}/mirror/again v1\n", src.host(), dst.host()),
    )
    .unwrap();
    let allow = hook(dir.path(), "allow", r#"echo '{"decision": "allow"}'"#);
    let (out, doc) = with(&allow, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(doc["events"][0]["outcome"], "copied", "{doc}");
    assert_eq!(doc["events"][0]["policy"], "allow", "{doc}");
    assert_eq!(doc["summary"]["policy_decisions"]["allow"], 1, "{doc}");
    std::fs::remove_file(dir.path().join("allow.input.json")).unwrap();
    let (out, _) = with(&allow, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !dir.path().join("allow.input.json").exists(),
        "a no-op asked the hook"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_fleet_each_answer_of_the_hook_does_as_documented() {
    let (src, dst) = (Registry::start(), Registry::start());
    push_image(&src.url(), "team/app", "v1", &images::oci_manifest(6610)).await;
    let hosts = [src.host().to_owned(), dst.host().to_owned()];
    let d = Deployment::new(
        Path::new(env!("CARGO_BIN_EXE_image-mirror")),
        "policy",
        &hosts,
    );
    let deny = hook(
        d.dir(),
        "deny",
        r#"echo '{"decision": "deny", "reason": "blocked"}'"#,
    );
    let publish = |repo: &str| {
        d.publish(&format!(
            "{}/team/app {}/mirror/{repo} v1\n",
            src.host(),
            dst.host()
        ));
    };
    let worker = d.worker("w", &["--policy-hook", deny.to_str().unwrap()]);
    publish("app");
    let events = d.events(1, Duration::from_secs(60)).await;
    let error = events[0].error.clone().unwrap();
    assert_eq!(error.class, "policy_denied");
    assert_eq!(events[0].attempts, 1, "a denial is not retried");
    assert_eq!(writes(&dst), 0);
    stop(worker);

    let defer = hook(
        d.dir(),
        "defer",
        r#"echo '{"decision": "defer", "reason": "later"}'"#,
    );
    let worker = d.worker("w2", &["--policy-hook", defer.to_str().unwrap()]);
    publish("app");
    // The job waits in a delay queue: `status` sees it there, and nothing was written.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = d
            .command("status")
            .args(["status", "--output", "json"])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let waiting: u64 = doc["queues"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["role"] == "retrying")
            .map(|q| q["ready"].as_u64().unwrap())
            .sum();
        if waiting == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deferred job is not in a delay queue: {doc}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(writes(&dst), 0);
    stop(worker);

    // A hook that answers garbage, or too late: denied (closed), with why; then one that
    // allows: copied, and its event says so.
    let garbage = hook(d.dir(), "garbage", "echo 'scanner down' >&2; echo nonsense");
    let slow = hook(
        d.dir(),
        "slow",
        "sleep 30; echo '{\"decision\": \"allow\"}'",
    );
    let allow = hook(d.dir(), "allow", r#"echo '{"decision": "allow"}'"#);
    let cases = [
        (&garbage, "garbage", "stderr: scanner down"),
        (&slow, "slow", "no answer within 1 s"),
        (&allow, "allowed", ""),
    ];
    for (i, (path, repo, why)) in cases.into_iter().enumerate() {
        let worker = d.worker(
            &format!("w{}", i + 3),
            &[
                "--policy-hook",
                path.to_str().unwrap(),
                "--policy-hook-timeout",
                "1s",
            ],
        );
        publish(repo);
        let events = d.events(1, Duration::from_secs(60)).await;
        if why.is_empty() {
            assert_eq!(events[0].outcome, Outcome::Copied, "{:?}", events[0]);
            assert_eq!(events[0].policy.as_deref(), Some("allow"));
            assert!(writes(&dst) > 0);
        } else {
            let error = events[0].error.clone().unwrap();
            assert_eq!(error.class, "policy_denied", "{repo}");
            assert!(
                error.message.contains(why) && error.message.contains("closed"),
                "{repo}: {}",
                error.message
            );
            assert_eq!(writes(&dst), 0, "{repo}");
        }
        stop(worker);
    }
    d.tear_down().await;
}
