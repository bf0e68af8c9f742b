//! What operators see: spans exported over OTLP/HTTP (to a collector stand-in on loopback),
//! the metrics and health endpoint of a running worker, and no secret anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use image_mirror_common::JobEvent;
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::images;
use image_mirror_testkit::ports::free_port;
use image_mirror_testkit::process;
use image_mirror_testkit::process::SpawnRunning;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::registry::RegistryOptions;
use image_mirror_testkit::{rabbitmq, Registry};
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An OTLP/HTTP collector stand-in: accepts JSON trace exports.
async fn collector() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&server)
        .await;
    server
}

/// A received span: service, trace, ids, parent, name, attributes.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
}

fn attribute_map(list: &Value) -> HashMap<String, String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let v = &kv["value"];
                    let text = v["stringValue"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    (kv["key"].as_str().unwrap_or_default().to_owned(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn received(server: &MockServer) -> (Vec<Span>, String) {
    let mut spans = Vec::new();
    let mut raw = String::new();
    for r in server.received_requests().await.unwrap() {
        raw.push_str(&String::from_utf8_lossy(&r.body));
        let body: Value = serde_json::from_slice(&r.body).expect("an OTLP/JSON body");
        for rs in body["resourceSpans"].as_array().unwrap() {
            let resource = attribute_map(&rs["resource"]["attributes"]);
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for s in ss["spans"].as_array().unwrap() {
                    spans.push(Span {
                        service: resource.get("service.name").cloned().unwrap_or_default(),
                        trace: s["traceId"].as_str().unwrap_or_default().to_owned(),
                        id: s["spanId"].as_str().unwrap_or_default().to_owned(),
                        parent: s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
                        name: s["name"].as_str().unwrap_or_default().to_owned(),
                        attributes: attribute_map(&s["attributes"]),
                    });
                }
            }
        }
    }
    (spans, raw)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// A list of `n` images in `src`, mirrored to `dst`.
async fn list_of(n: u64, src: &Registry, dst: &Registry, dir: &std::path::Path) {
    let mut lines = Vec::new();
    for i in 0..n {
        push_image(
            &src.url(),
            &format!("team/app{i}"),
            "v1",
            &images::oci_index(6000 + i),
        )
        .await;
        lines.push(format!(
            "{}/team/app{i} {}/mirror/app{i} v1",
            src.host(),
            dst.host()
        ));
    }
    std::fs::write(dir.join("images-list"), lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_collector_receives_the_spans_of_a_run() {
    let (src, dst) = (Registry::start(), Registry::start());
    let dir = tempfile::tempdir().unwrap();
    list_of(2, &src, &dst, dir.path()).await;
    let otlp = collector().await;
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .current_dir(dir.path())
        .args([
            "--insecure-registry",
            &format!("{},{}", src.host(), dst.host()),
        ])
        .arg("run")
        .env_remove("AMQP_URL")
        .env("DOCKER_CONFIG", dir.path())
        .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.uri())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_SERVICE_NAME", "mirror-under-test")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // Where the time went, per phase.
    assert!(t.contains("time in jobs"), "{t}");
    assert!(t.contains("blob transfer"), "{t}");

    let (spans, raw) = received(&otlp).await;
    assert!(
        raw.contains("deployment.environment"),
        "resource attributes missing"
    );
    assert!(spans.iter().all(|s| s.service == "mirror-under-test"));
    let named = |n: &str| spans.iter().filter(|s| s.name == n).count();
    assert_eq!(named("producer.publish"), 2);
    assert_eq!(named("worker.job"), 2);
    assert_eq!(named("worker.publish_event"), 2);
    assert_eq!(named("copy.resolve"), 2);
    assert!(named("copy.blob") >= 2 * 8, "{}", named("copy.blob"));
    assert!(
        named("copy.manifest") >= 2 * 5,
        "{}",
        named("copy.manifest")
    );
    // Each job is its own trace, rooted at its publish.
    for job in spans.iter().filter(|s| s.name == "worker.job") {
        let root = spans
            .iter()
            .find(|s| s.id == job.parent)
            .expect("the job's parent was exported");
        assert_eq!(root.name, "producer.publish");
        assert_eq!(root.trace, job.trace);
        assert_eq!(root.attributes["job.id"], job.attributes["job.id"]);
        assert_eq!(job.attributes["job.outcome"], "copied");
    }
    let traces: std::collections::HashSet<&str> = spans.iter().map(|s| s.trace.as_str()).collect();
    assert_eq!(traces.len(), 2);
}

/// `GET path` against the endpoint; the status line and the body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_counts_what_a_running_worker_does() {
    let (src, dst) = (Registry::start(), Registry::start());
    let dir = tempfile::tempdir().unwrap();
    list_of(3, &src, &dst, dir.path()).await;
    let url = rabbitmq::amqp_url();
    let prefix = format!("test.metrics.{}", std::process::id());
    let port = free_port();
    let base = |c: &mut Command| {
        c.current_dir(dir.path())
            .args([
                "--insecure-registry",
                &format!("{},{}", src.host(), dst.host()),
            ])
            .args(["--amqp-url", &url, "--queue-prefix", &prefix])
            .env("DOCKER_CONFIG", dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"));
    };
    let mut worker = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    base(&mut worker);
    let mut worker = worker
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .running();
    let mut logs = BufReader::new(worker.stderr.take().unwrap());
    process::wait_for_line(&mut logs, "serving /metrics", "the worker");
    process::drain(logs);

    let (status, _) = get(port, "/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (status, _) = get(port, "/readyz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (_, before) = get(port, "/metrics");
    assert_eq!(
        metric(&before, "image_mirror_jobs_total{outcome=\"copied\"}"),
        0.0
    );
    assert_eq!(
        metric(&before, "image_mirror_job_duration_seconds_count"),
        0.0
    );

    let mut producer = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    base(&mut producer);
    let out = producer.args(["producer", "sync"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let broker = AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap();
    let mut events = broker
        .consume(&broker.topology().committer(), 10)
        .await
        .unwrap();
    for _ in 0..3 {
        let d = events.next().await.unwrap().unwrap();
        JobEvent::from_json(&d.body).unwrap();
        d.ack().await.unwrap();
    }
    // While the worker still runs: the counters rose and the histogram is filled.
    let (status, after) = get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        metric(&after, "image_mirror_jobs_total{outcome=\"copied\"}"),
        3.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, "image_mirror_job_duration_seconds_count"),
        3.0,
        "{after}"
    );
    assert!(
        metric(
            &after,
            "image_mirror_job_duration_seconds_bucket{le=\"+Inf\"}"
        ) == 3.0
    );
    assert!(
        metric(&after, "image_mirror_bytes_copied_total") > 0.0,
        "{after}"
    );
    assert!(
        metric(&after, "image_mirror_blobs_total{action=\"copied\"}") > 0.0,
        "{after}"
    );
    // In flight until each job's ack, which may still be under way: between 0 and 3.
    let in_flight = metric(&after, "image_mirror_jobs_in_flight");
    assert!((0.0..=3.0).contains(&in_flight), "{after}");
    assert!(after.contains("# TYPE image_mirror_job_duration_seconds histogram"));
    let (status, _) = get(port, "/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    process::terminate(&worker);
    assert!(worker.wait().unwrap().success());
    broker.delete_topology().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_set_everywhere_appear_nowhere() {
    let password = "Registry-Pa55-7c1d9e";
    let token = "ghp_SecretGithubToken_5b8e2a";
    let auth_dir = tempfile::tempdir().unwrap();
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::with_user(
        auth_dir.path(),
        "robot",
        password,
    ));
    let dir = tempfile::tempdir().unwrap();
    list_of(2, &src, &dst, dir.path()).await;
    // One entry that cannot be mirrored: its error is searched too.
    let mut list = std::fs::read_to_string(dir.path().join("images-list")).unwrap();
    list.push_str(&format!(
        "{}/team/gone {}/mirror/gone v1\n",
        src.host(),
        dst.host()
    ));
    std::fs::write(dir.path().join("images-list"), list).unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("robot:{password}"));
    std::fs::write(
        dir.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{basic}"}}}}}}"#,
            dst.host()
        ),
    )
    .unwrap();
    // A discovery rule against a GitHub that refuses: its error is searched as well.
    let github = MockServer::start().await;
    std::fs::write(
        dir.path().join("rules.json"),
        format!(
            r#"{{"k": {{"images": ["{}/team/app0"], "versionSource": "github-latest-release:o/r"}}}}"#,
            src.host()
        ),
    )
    .unwrap();
    let otlp = collector().await;
    let url = rabbitmq::amqp_url();
    let amqp_password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(creds, _)| creds.split_once(':'))
        .map(|(_, p)| format!(":{p}@"))
        .expect("an AMQP URL with a password");
    let prefix = format!("test.secrets.{}", std::process::id());
    let report = dir.path().join("report.json");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_image-mirror"))
            .current_dir(dir.path())
            .args([
                "--insecure-registry",
                &format!("{},{}", src.host(), dst.host()),
            ])
            .args(["--amqp-url", &url, "--queue-prefix", &prefix])
            .args(args)
            .env("DOCKER_CONFIG", dir.path())
            .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
            .env("GITHUB_TOKEN", token)
            .env("GITHUB_API_URL", github.uri())
            .env("RUST_LOG", "debug")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.uri())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .output()
            .unwrap()
    };
    let mirrored = run(&["run", "--report", report.to_str().unwrap()]);
    assert_eq!(mirrored.status.code(), Some(1), "{}", text(&mirrored));
    assert!(
        text(&mirrored).contains("summary: 2 copied"),
        "{}",
        text(&mirrored)
    );
    let json_logs = run(&["--log-format", "json", "--config", "rules.json", "tags"]);
    assert_eq!(json_logs.status.code(), Some(1), "{}", text(&json_logs));
    let bad_broker = run(&[
        "--amqp-url",
        &url.replace(&amqp_password, ":wrong-amqp-password@")
            .replace("5672", "1"),
        "status",
    ]);
    assert_ne!(bad_broker.status.code(), Some(0));

    let (_, spans) = received(&otlp).await;
    assert!(!spans.is_empty(), "no spans were exported");
    let everything = [
        text(&mirrored),
        text(&json_logs),
        text(&bad_broker),
        std::fs::read_to_string(&report).unwrap(),
        spans,
    ]
    .join("\n");
    for secret in [
        password,
        basic.as_str(),
        token,
        amqp_password.as_str(),
        "wrong-amqp-password",
    ] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap()
        .delete_topology()
        .await
        .unwrap();
}

/// `/readyz` follows the broker connection: 503 while the broker is down, 200 once the
/// worker has reconnected. (A node of the test's own, so that stopping it disturbs no other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_connection() {
    let (url, _exclusive) = rabbitmq::private_node_exclusive();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("images-list"), "").unwrap();
    let port = free_port();
    let prefix = format!("test.readyz.{}", std::process::id());
    let mut worker = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .current_dir(dir.path())
        .args(["--amqp-url", &url, "--queue-prefix", &prefix])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}"), "worker"])
        .env("DOCKER_CONFIG", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .running();
    let mut logs = BufReader::new(worker.stderr.take().unwrap());
    process::wait_for_line(&mut logs, "worker started", "the worker");
    process::drain(logs);
    assert_eq!(get(port, "/readyz").0, "HTTP/1.1 200 OK");

    // The readiness answer changes when the connection does: wait for each change, bounded.
    let until = |status: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let (got, _) = get(port, "/readyz");
            if got == status {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "readyz stayed {got}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    rabbitmq::stop_private_node();
    until("HTTP/1.1 503 Service Unavailable");
    assert_eq!(
        get(port, "/healthz").0,
        "HTTP/1.1 200 OK",
        "alive all the same"
    );
    rabbitmq::start_private_node();
    until("HTTP/1.1 200 OK");

    process::terminate(&worker);
    assert!(worker.wait().unwrap().success());
    // A node just started may refuse to delete its quorum queues for a moment (INTERNAL_ERROR
    // while their Raft members come back): the cleanup is tried again.
    let mut left = 20;
    loop {
        let deleted = match AmqpBroker::connect(&url, Topology::new(&prefix)).await {
            Ok(broker) => broker.delete_topology().await,
            Err(e) => Err(e),
        };
        match deleted {
            Ok(()) => break,
            Err(e) if left > 0 => {
                left -= 1;
                eprintln!("cleanup again: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
