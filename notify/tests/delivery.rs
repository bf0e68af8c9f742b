//! Delivery against a small HTTP receiver: signed bodies that verify, retries of 5xx, a bound
//! on a receiver that never answers, no redirect followed, the policy, and Slack's format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use image_mirror_common::retry::RetryPolicy;
use image_mirror_common::secret::Secret;
use image_mirror_notify::event::RUN_FINISHED;
use image_mirror_notify::sign::{signature, SIGNATURE_HEADER};
use image_mirror_notify::{
    slack, Counts, Format, JobProblem, Notice, Notifier, NotifyOn, NotifyOptions, RunFinished,
    RunStatus,
};
use image_mirror_testkit::http::{Reply, Request, Response, Server};

/// A receiver answering with `answers` in turn (the last one for every request after), and
/// what it was sent.
fn receiver(answers: Vec<Reply>) -> (Server, Arc<Mutex<Vec<Request>>>) {
    let got: Arc<Mutex<Vec<Request>>> = Arc::default();
    let seen = Arc::clone(&got);
    let answers = Arc::new(Mutex::new(answers));
    let server = Server::start(move |request| {
        seen.lock().unwrap().push(request);
        let mut answers = answers.lock().unwrap();
        let reply = if answers.len() > 1 {
            answers.remove(0)
        } else {
            match answers.first() {
                Some(Reply::Send(r)) => Reply::Send(Response::new(r.status)),
                Some(Reply::Hang) => Reply::Hang,
                _ => Reply::Send(Response::new(200)),
            }
        };
        Box::pin(async move { reply })
    });
    (server, got)
}

fn options(urls: Vec<String>) -> NotifyOptions {
    let mut o = NotifyOptions::new(urls, "run");
    o.on = NotifyOn::Always;
    o.retry = RetryPolicy::new(Duration::from_millis(50), Duration::from_millis(100), 3);
    o.attempt_timeout = Duration::from_secs(2);
    o.budget = Duration::from_secs(5);
    o
}

fn run(failures: usize) -> RunFinished {
    RunFinished {
        role: "run".into(),
        status: if failures > 0 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        },
        started: Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap(),
        duration_ms: 4200,
        counts: Counts {
            copied: 3,
            already_present: 10,
            failed: failures as u64,
            ..Counts::default()
        },
        bytes_sent: 1_048_576,
        failures: (0..failures)
            .map(|i| JobProblem {
                job: format!("docker.io/team/app{i}:v1 -> mirror.example/team/app{i}:v1"),
                class: "not_found".into(),
                message: format!("docker.io: manifest team/app{i}:v1 not found <&>"),
            })
            .collect(),
        drifted: Vec::new(),
        deferred: Vec::new(),
        new_images: vec!["docker.io/team/new mirror.example/team/new v2".into()],
        pull_request: None,
    }
}

#[tokio::test]
async fn a_signed_cloud_event_arrives_once_and_its_signature_verifies() {
    let (server, got) = receiver(vec![Reply::Send(Response::new(204))]);
    let mut o = options(vec![format!("{}/hook", server.url())]);
    o.secret = Some(Secret::new("s3cret-notify"));
    let notifier = Notifier::new(o).unwrap();
    let deliveries = notifier.send(&Notice::RunFinished(run(1))).await;
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].delivered, "{deliveries:?}");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    assert_eq!(
        r.header(SIGNATURE_HEADER),
        Some(signature(b"s3cret-notify", &r.body).as_str())
    );
    assert_ne!(
        r.header(SIGNATURE_HEADER),
        Some(signature(b"other", &r.body).as_str())
    );
    let event: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], RUN_FINISHED);
    assert_eq!(event["data"]["counts"]["failed"], 1);
    assert_eq!(event["data"]["failures"][0]["class"], "not_found");
    assert!(!String::from_utf8_lossy(&r.body).contains("s3cret-notify"));
}

#[tokio::test]
async fn two_server_errors_then_success_deliver_once() {
    let (server, got) = receiver(vec![
        Reply::Send(Response::new(500)),
        Reply::Send(Response::new(503)),
        Reply::Send(Response::new(200)),
    ]);
    let notifier = Notifier::new(options(vec![server.url()])).unwrap();
    let d = notifier.send(&Notice::RunFinished(run(0))).await;
    assert!(d[0].delivered, "{d:?}");
    assert_eq!(d[0].attempts, 3);
    assert_eq!(
        got.lock().unwrap().len(),
        3,
        "delivered once: the third attempt"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_costs_at_most_the_budget() {
    let (server, _got) = receiver(vec![Reply::Hang]);
    let mut o = options(vec![server.url()]);
    o.attempt_timeout = Duration::from_millis(500);
    o.budget = Duration::from_secs(2);
    let notifier = Notifier::new(o).unwrap();
    let started = Instant::now();
    let d = notifier.send(&Notice::RunFinished(run(1))).await;
    let took = started.elapsed();
    assert!(!d[0].delivered);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(
        d[0].error.as_deref().unwrap().contains("no answer"),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let (elsewhere, elsewhere_got) = receiver(vec![Reply::Send(Response::new(200))]);
    let (server, got) = receiver(vec![Reply::Send(
        Response::new(307).header("Location", format!("{}/stolen", elsewhere.url())),
    )]);
    let mut o = options(vec![server.url()]);
    o.secret = Some(Secret::new("k"));
    let notifier = Notifier::new(o).unwrap();
    let d = notifier.send(&Notice::RunFinished(run(1))).await;
    assert!(!d[0].delivered);
    assert!(d[0].error.as_deref().unwrap().contains("redirect"), "{d:?}");
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "a redirect is not tried again"
    );
    assert!(
        elsewhere_got.lock().unwrap().is_empty(),
        "the other host got the body"
    );
}

#[tokio::test]
async fn the_failure_policy_sends_a_failed_run_and_not_a_clean_one() {
    let (server, got) = receiver(vec![Reply::Send(Response::new(200))]);
    let mut o = options(vec![server.url()]);
    o.on = NotifyOn::Failure;
    let notifier = Notifier::new(o).unwrap();
    assert!(notifier.send(&Notice::RunFinished(run(0))).await.is_empty());
    assert_eq!(notifier.send(&Notice::RunFinished(run(1))).await.len(), 1);
    assert_eq!(got.lock().unwrap().len(), 1);
    assert!(!NotifyOn::Change.wants(&Notice::RunFinished(RunFinished {
        counts: Counts {
            already_present: 5,
            ..Counts::default()
        },
        ..run(0)
    })));
    assert!(NotifyOn::Change.wants(&Notice::RunFinished(run(0))));
}

#[tokio::test]
async fn slack_gets_a_message_in_slacks_format() {
    let (server, got) = receiver(vec![Reply::Send(Response::new(200))]);
    let mut o = options(vec![server.url()]);
    o.format = Format::Slack;
    Notifier::new(o)
        .unwrap()
        .send(&Notice::RunFinished(run(2)))
        .await;
    let got = got.lock().unwrap();
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    let m: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert!(m["text"].as_str().unwrap().contains("2 failed"));
}

#[test]
fn the_slack_message_of_a_failed_run_is_the_golden_one() {
    let message = slack::message(&Notice::RunFinished(run(2)));
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/slack-run-failed.json"
    );
    let rendered = serde_json::to_string_pretty(&message).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, &rendered).unwrap();
    }
    assert_eq!(rendered, std::fs::read_to_string(golden).unwrap());
}

#[test]
fn a_thousand_failures_stay_within_slacks_limits() {
    let mut long = run(1000);
    long.failures[0].message = "x".repeat(10_000);
    let message = slack::message(&Notice::RunFinished(long));
    let blocks = message["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50, "{} blocks", blocks.len());
    for b in blocks {
        if let Some(text) = b["text"]["text"].as_str() {
            let max = if b["type"] == "header" { 150 } else { 3000 };
            assert!(text.chars().count() <= max, "{}", b["type"]);
        }
    }
    let last = blocks.last().unwrap();
    assert!(
        last["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("980 more"),
        "{last}"
    );
    assert!(serde_json::to_vec(&message).unwrap().len() < 40_000);
}
