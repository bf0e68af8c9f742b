//! What a person meets first, tried as a newcomer would: a broker that does not answer is
//! said within a bound, never silence; `--log-format json` keeps every stderr line JSON; a
//! closed pipe ends the process quietly; a wrong password names the credentials consulted;
//! references in skopeo's form are read, others refused by name; a copy by digest says it
//! left the target untagged; and the conventions of command-line tools (version, completions,
//! a manual page, grouped help).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use image_mirror_testkit::images::{self, Format};
use image_mirror_testkit::process::{self, SpawnRunning};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{Blob, FaultProxy, Faults, Platform, Registry, RegistryOptions};

fn image_mirror() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    c.env_remove("RUST_LOG")
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .env_remove("DEST_REGISTRY_OVERRIDE");
    c
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[test]
fn a_broker_that_does_not_answer_is_said_within_the_bound() {
    let url = format!("amqp://mirror:pw-7c1d@127.0.0.1:{}/%2f", closed_port());
    let started = Instant::now();
    let out = image_mirror()
        .args(["status", "--amqp-url", &url, "--amqp-connect-timeout", "5s"])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(started.elapsed() < Duration::from_secs(5), "{t}");
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("mirror:***@127.0.0.1:"), "{t}");
    assert!(t.contains("nothing listens there"), "{t}");
    assert!(!t.contains("pw-7c1d"), "{t}");

    // A worker waits for it, saying so at each attempt, and stops on SIGTERM meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let mut worker = image_mirror()
        .args(["worker", "--amqp-url", &url, "--amqp-connect-timeout", "5s"])
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .running();
    let stderr = BufReader::new(worker.stderr.take().unwrap());
    let line = process::wait_for_line_within(
        stderr,
        "waiting for the broker at",
        "the worker",
        Duration::from_secs(10),
    );
    assert!(line.contains("attempt 1"), "{line}");
    assert!(line.contains("mirror:***@"), "{line}");
    assert!(!line.contains("pw-7c1d"), "{line}");
    process::terminate(&worker);
    assert_eq!(worker.wait().unwrap().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_every_stderr_line_of_a_failing_run_is_json() {
    let src = Registry::start();
    push_image(&src.url(), "up/app", "v1", &images::oci_manifest(5)).await;
    let dst = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let s = src.host();
    let gone = format!("127.0.0.1:{}", closed_port());
    std::fs::write(
        dir.path().join("images-list"),
        format!(
            "{gone}/up/app mirror/gone v1\n{s}/up/app mirror/app v1\n{s}/up/missing mirror/missing v1\n"
        ),
    )
    .unwrap();
    let out = image_mirror()
        .current_dir(dir.path())
        .args(["run", "--log-format", "json", "--dest-registry", dst.host()])
        .args(["--insecure-registry", &format!("{s},{},{gone}", dst.host())])
        .env("DOCKER_CONFIG", dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mut kinds = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nall of stderr:\n{stderr}"));
        if let Some(kind) = v.pointer("/fields/kind").and_then(|k| k.as_str()) {
            kinds.push(kind.to_owned());
        }
    }
    for kind in ["failed", "unreachable"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} line in {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_run_quietly() {
    let src = Registry::start();
    let dst = Registry::start();
    let link = FaultProxy::start(
        dst.host(),
        Faults {
            upload_rate: Some(2 * 1024 * 1024),
            ..Faults::default()
        },
    );
    let layer = Blob::new(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        images::random_bytes(77, 8 * 1024 * 1024),
    );
    let big = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&src.url(), "up/big", "v1", &big).await;
    push_image(&src.url(), "up/small", "v1", &images::oci_manifest(6)).await;
    let dir = tempfile::tempdir().unwrap();
    let s = src.host();
    std::fs::write(
        dir.path().join("images-list"),
        format!("{s}/up/big mirror/big v1\n{s}/up/small mirror/small v1\n"),
    )
    .unwrap();
    // `image-mirror run | head -1`
    let mut run = image_mirror()
        .current_dir(dir.path())
        .args(["run", "--workers", "1", "--dest-registry", &link.host()])
        .args(["--insecure-registry", &format!("{s},{}", link.host())])
        .env("DOCKER_CONFIG", dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .running();
    let stderr = process::drain(run.stderr.take().unwrap());
    let mut stdout = BufReader::new(run.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("2 jobs for 2 entries"), "{first}");
    drop(stdout);
    let closed = Instant::now();
    let status = run.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert!(closed.elapsed() < Duration::from_secs(10), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_at_the_target_is_authentication_naming_the_credentials() {
    let src = Registry::start();
    push_image(&src.url(), "up/app", "v1", &images::oci_manifest(8)).await;
    let dir = tempfile::tempdir().unwrap();
    let dst = Registry::start_with(&RegistryOptions::with_user(dir.path(), "mirror", "right"));
    let config = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("mirror:wrong-9f3e");
    std::fs::write(
        &config,
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, dst.host()),
    )
    .unwrap();
    let out = image_mirror()
        .args([
            "copy",
            "--insecure-registry",
            &format!("{},{}", src.host(), dst.host()),
        ])
        .arg(format!("{}/up/app:v1", src.host()))
        .arg(format!("{}/mirror/app:v1", dst.host()))
        .env("DOCKER_CONFIG", dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("authentication failed (HTTP 401)"), "{t}");
    assert!(
        t.contains(&format!(
            "the auths entry for {} in {}",
            dst.host(),
            config.display()
        )),
        "{t}"
    );
    assert!(!t.contains("create it"), "{t}");
    assert!(!t.contains("wrong-9f3e") && !t.contains(&auth), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_in_skopeo_s_form_are_read_and_others_refused_by_name() {
    let src = Registry::start();
    let image = images::oci_index(9);
    push_image(&src.url(), "up/app", "v1", &image).await;
    let dst = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let hosts = format!("{},{}", src.host(), dst.host());
    let copy = |from: String, to: String| {
        image_mirror()
            .args(["copy", "--insecure-registry", &hosts, &from, &to])
            .env("DOCKER_CONFIG", dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let out = copy(
        format!("docker://{}/up/app:v1", src.host()),
        format!("docker://{}/mirror/app:v1", dst.host()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for (from, named) in [
        (
            format!("http://{}/up/app:v1", src.host()),
            "http:// is not one",
        ),
        ("oci:/tmp/layout:v1".to_owned(), "the oci transport"),
        (
            "docker-archive:app.tar".to_owned(),
            "`docker save` tar file",
        ),
    ] {
        let out = copy(from.clone(), format!("{}/mirror/app:v2", dst.host()));
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{from}: {t}");
        assert!(t.contains(named), "{from}: {t}");
        assert!(!t.contains("invalid port"), "{from}: {t}");
    }
    // By digest alone: copied, and said to be untagged.
    let out = copy(
        format!("{}/up/app@{}", src.host(), image.digest()),
        format!("{}/mirror/bydigest", dst.host()),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("tag         none: the target holds it by digest only"),
        "{t}"
    );
}

#[test]
fn the_conventions_of_command_line_tools() {
    let version = image_mirror().arg("--version").output().unwrap();
    let v = text(&version);
    assert!(
        v.starts_with(&format!(
            "image-mirror {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{v}"
    );
    assert!(v.contains(", built 20"), "{v}");

    let help = text(&image_mirror().arg("--help").output().unwrap());
    let at = |h: &str| help.find(h).unwrap_or_else(|| panic!("no {h:?} in {help}"));
    assert!(at("Mirroring:") < at("The images-list:"), "{help}");
    assert!(
        at("The images-list:") < at("The fleet (over RabbitMQ):"),
        "{help}"
    );
    assert!(
        at("The fleet (over RabbitMQ):") < at("Operating:"),
        "{help}"
    );
    assert!(at("  copy ") < at("The images-list:"), "{help}");
    assert!(at("  worker ") > at("The fleet"), "{help}");

    for shell in ["bash", "zsh", "fish"] {
        let out = image_mirror()
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(
            script.contains("image-mirror") && script.contains("add-image"),
            "{shell}: {script}"
        );
    }
    let page = image_mirror().arg("man").output().unwrap();
    assert!(String::from_utf8_lossy(&page.stdout).contains(".TH image-mirror 1"));
    let dir = tempfile::tempdir().unwrap();
    let out = image_mirror()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for page in [
        "image-mirror.1",
        "image-mirror-copy.1",
        "image-mirror-producer-sync.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page} was not written");
    }
}
