//! `run --notify` as users run it: one CloudEvent per run with the right counts, signed with
//! the secret (which appears nowhere else); nothing for a clean run under the default
//! `failure` policy, one naming the failed entry and its class otherwise; a receiver that
//! never answers costs at most `--notify-timeout` and changes no exit status; `status --runs`
//! lists what happened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_mirror_notify::sign::{signature, SIGNATURE_HEADER};
use image_mirror_testkit::http::{Reply, Request, Response, Server};
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::Registry;

const SECRET: &str = "n0tify-s3cret-value";

fn image_mirror(dir: &Path, hosts: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(dir.join("images-list"))
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .args(args)
        .env("DOCKER_CONFIG", dir)
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env("IMAGE_MIRROR_NOTIFY_SECRET", SECRET)
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// A receiver answering every request with `reply`, and what it was sent.
fn receiver(hang: bool) -> (Server, Arc<Mutex<Vec<Request>>>) {
    let got: Arc<Mutex<Vec<Request>>> = Arc::default();
    let seen = Arc::clone(&got);
    let server = Server::start(move |request| {
        seen.lock().unwrap().push(request);
        let reply = if hang {
            Reply::Hang
        } else {
            Reply::Send(Response::new(202))
        };
        Box::pin(async move { reply })
    });
    (server, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_tells_once_signed_and_a_clean_run_under_failure_tells_nothing() {
    let (src, dst) = (Registry::start(), Registry::start());
    for i in 0..2 {
        push_image(
            &src.url(),
            &format!("team/app{i}"),
            "v1",
            &images::oci_manifest(7700 + i),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let line = |i: usize, tag: &str| {
        format!(
            "{}/team/app{i} {}/mirror/app{i} {tag}\n",
            src.host(),
            dst.host()
        )
    };
    std::fs::write(
        dir.path().join("images-list"),
        line(0, "v1") + &line(1, "v1"),
    )
    .unwrap();
    let hosts = [src.host(), dst.host()];
    let (server, got) = receiver(false);
    let url = format!("{}/hooks/mirror", server.url());

    let out = image_mirror(
        dir.path(),
        &hosts,
        &["-vv", "run", "--notify", &url, "--notify-on", "always"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(SECRET), "the secret was printed");
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1, "one event per run");
        let r = &got[0];
        assert_eq!(r.path(), "/hooks/mirror");
        assert_eq!(
            r.header(SIGNATURE_HEADER),
            Some(signature(SECRET.as_bytes(), &r.body).as_str())
        );
        let event: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "io.image-mirror.run.finished");
        assert_eq!(event["data"]["status"], "succeeded");
        assert_eq!(event["data"]["counts"]["copied"], 2);
        assert_eq!(event["data"]["counts"]["failed"], 0);
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    }

    // The default policy: a clean run (a no-op) sends nothing.
    let out = image_mirror(dir.path(), &hosts, &["run", "--notify", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(got.lock().unwrap().len(), 1, "a clean run told of itself");

    // One entry whose source tag does not exist: one event naming it and its class.
    std::fs::write(
        dir.path().join("images-list"),
        line(0, "v1") + &line(1, "v1") + &line(1, "v9"),
    )
    .unwrap();
    let out = image_mirror(dir.path(), &hosts, &["run", "--notify", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    let event: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(event["data"]["status"], "failed");
    assert_eq!(event["data"]["counts"]["failed"], 1);
    assert_eq!(event["data"]["counts"]["already_present"], 2);
    let failure = &event["data"]["failures"][0];
    assert_eq!(failure["class"], "not_found", "{failure}");
    assert!(
        failure["job"].as_str().unwrap().contains("app1:v9"),
        "{failure}"
    );
    drop(got);

    // What happened, without Grafana.
    let status = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args(["status", "--runs", "5", "--output", "json"])
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let runs: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[0]["status"], "failed", "newest first");
    assert_eq!(runs[2]["counts"]["copied"], 2);
    let status = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args(["status", "--runs"])
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("image-mirror run failed: 0 copied, 2 already present, 1 failed"),
        "{shown}"
    );
    assert!(shown.contains("(not_found)"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_costs_at_most_the_timeout_and_no_exit_status() {
    let (src, dst) = (Registry::start(), Registry::start());
    push_image(&src.url(), "team/app", "v1", &images::oci_manifest(7710)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("images-list"),
        format!("{}/team/app {}/mirror/app v1\n", src.host(), dst.host()),
    )
    .unwrap();
    let hosts = [src.host(), dst.host()];
    let (server, got) = receiver(true);
    let started = Instant::now();
    let out = image_mirror(
        dir.path(),
        &hosts,
        &[
            "run",
            "--notify",
            &server.url(),
            "--notify-on",
            "always",
            "--notify-timeout",
            "2s",
        ],
    );
    let took = started.elapsed();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(
        !got.lock().unwrap().is_empty(),
        "the receiver was never asked"
    );
    let warnings: Vec<&str> = t.lines().filter(|l| l.contains("not delivered")).collect();
    assert_eq!(warnings.len(), 1, "{t}");
    assert!(warnings[0].contains("http://127.0.0.1"), "{t}");
}

#[test]
fn a_notify_url_that_is_not_http_is_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("images-list"), "").unwrap();
    let out = image_mirror(
        dir.path(),
        &["127.0.0.1:1"],
        &["run", "--notify", "ftp://example.com/x"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--notify ftp://example.com"),
        "{}",
        text(&out)
    );
}

/// Waits until `got` holds a request whose body satisfies `found`, within `within`.
fn wait_for(
    got: &Mutex<Vec<Request>>,
    within: Duration,
    found: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some(event) = got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .find(|e| found(e))
        {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no such notice within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_tells_of_a_dead_lettered_job_and_the_committer_of_its_batch() {
    use image_mirror_testkit::workers::{stop, Deployment};
    let (src, dst) = (Registry::start(), Registry::start());
    push_image(&src.url(), "team/app", "v1", &images::oci_manifest(7720)).await;
    let hosts = [src.host().to_owned(), dst.host().to_owned()];
    let d = Deployment::new(
        Path::new(env!("CARGO_BIN_EXE_image-mirror")),
        "notify",
        &hosts,
    );
    let (server, got) = receiver(false);
    let url = server.url();
    let worker = d.worker("w", &["--notify", &url]);
    let mut committer = d
        .command("committer")
        .args([
            "committer",
            "--batch-window",
            "200ms",
            "--notify",
            &url,
            "--notify-on",
            "always",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    d.publish(&format!(
        "{0}/team/app {1}/mirror/app v1\n{0}/team/app {1}/mirror/app v404\n",
        src.host(),
        dst.host()
    ));
    let dead = wait_for(&got, Duration::from_secs(60), |e| {
        e["type"] == "io.image-mirror.job.dead-lettered"
    });
    assert_eq!(dead["data"]["class"], "not_found", "{dead}");
    assert!(
        dead["data"]["job"].as_str().unwrap().contains("v404"),
        "{dead}"
    );
    assert!(
        dead["source"]
            .as_str()
            .unwrap()
            .starts_with("/image-mirror/worker/"),
        "{dead}"
    );
    let batch = wait_for(&got, Duration::from_secs(60), |e| {
        e["type"] == "io.image-mirror.run.finished" && e["data"]["role"] == "committer"
    });
    assert!(
        batch["data"]["counts"]["copied"].as_u64().unwrap()
            + batch["data"]["counts"]["failed"].as_u64().unwrap()
            >= 1,
        "{batch}"
    );
    stop(worker);
    process_stop(&mut committer);
    d.tear_down().await;
}

fn process_stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
