//! One job is one trace: producer, worker and committer, each started on its own connection to
//! a real RabbitMQ, hand the W3C trace context on in message headers, and an in-memory span
//! exporter sees a single trace with the documented span tree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use image_mirror_committer::{run_committer, BatchOptions, BatchResult, Committer, Recorder};
use image_mirror_common::{MirrorJob, Repository, Requester, Tag};
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_queue::Broker;
use image_mirror_registry::{ClientOptions, DockerConfig, RegistryClient};
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, Registry};
use image_mirror_worker::{run_worker, CopyEngine, CopyOptions, WorkerOptions};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

fn client(hosts: &[&str]) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        insecure_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        docker_config: DockerConfig::default(),
        ..ClientOptions::default()
    })
    .unwrap()
}

async fn connect(url: &str, prefix: &str) -> Broker {
    Broker::Amqp(Box::new(
        AmqpBroker::connect(url, Topology::new(prefix))
            .await
            .unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_trace_from_producer_to_committer() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let (src, dst) = (Registry::start(), Registry::start());
    let image = images::oci_index(8100);
    push_image(&src.url(), "team/app", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(
        &list,
        format!("{}/team/app {}/mirror/app v0\n", src.host(), dst.host()),
    )
    .unwrap();
    let url = rabbitmq::amqp_url();
    let prefix = format!("test.trace.{}", std::process::id());

    // The producer: its own connection, publishes one job to be recorded.
    let producer = connect(&url, &prefix).await;
    let source: Repository = format!("{}/team/app", src.host()).parse().unwrap();
    let target: Repository = format!("{}/mirror/app", dst.host()).parse().unwrap();
    let tag: Tag = "v1".parse().unwrap();
    let job = MirrorJob::new(source, target, tag, true, Requester::AddTag);
    image_mirror_producer::publish(&producer, std::slice::from_ref(&job))
        .await
        .unwrap();

    // The worker: another connection.
    let worker_broker = Arc::new(connect(&url, &prefix).await);
    let engine = CopyEngine::new(client(&[src.host(), dst.host()]), CopyOptions::default());
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(
        worker_broker,
        engine,
        WorkerOptions::default(),
        async {
            let _ = worker_stopped.await;
        },
    ));

    // The committer: a third connection; it stops after its first batch.
    let committer_broker = connect(&url, &prefix).await;
    let mut consumer = committer_broker
        .consume(&committer_broker.topology().committer(), 10)
        .await
        .unwrap();
    let (batch_done, batch_seen) = tokio::sync::oneshot::channel::<usize>();
    let mut batch_done = Some(batch_done);
    let registry = client(&[dst.host()]);
    let destination = Recorder::Local(list.clone());
    let setup = Committer {
        broker: &committer_broker,
        registry: &registry,
        destination: &destination,
        batch: BatchOptions {
            window: Duration::from_millis(200),
            max: 10,
            total: None,
        },
    };
    let committer = run_committer(
        &setup,
        &mut consumer,
        async {
            let _ = batch_seen.await;
        },
        |outcome| {
            if let BatchResult::Written(added) = &outcome.result {
                if let Some(tx) = batch_done.take() {
                    let _ = tx.send(added.len());
                }
            }
        },
    );
    tokio::time::timeout(Duration::from_secs(120), committer)
        .await
        .expect("the job never reached the committer")
        .unwrap();
    let _ = stop_worker.send(());
    worker.await.unwrap().unwrap();
    assert!(std::fs::read_to_string(&list)
        .unwrap()
        .contains("mirror/app v1"));
    provider.force_flush().unwrap();

    let spans: Vec<SpanData> = exporter.get_finished_spans().unwrap();
    let by_name =
        |name: &str| -> Vec<&SpanData> { spans.iter().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &SpanData {
        let found = by_name(name);
        assert_eq!(found.len(), 1, "spans named {name}: {found:?}");
        found[0]
    };
    let publish = one("producer.publish");
    let job_span = one("worker.job");
    let event = one("worker.publish_event");
    let batch = one("committer.batch");
    let record = one("committer.record");
    let resolve = one("copy.resolve");
    let blobs = by_name("copy.blob");
    let manifests = by_name("copy.manifest");
    assert_eq!(blobs.len(), image.blobs.len());
    assert_eq!(manifests.len(), image.manifests.len());

    let trace: TraceId = publish.span_context.trace_id();
    let of_trace: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    assert_eq!(
        of_trace.len(),
        spans.len(),
        "every span is in the job's trace"
    );

    let parent_of: HashMap<&str, SpanId> = [
        ("producer.publish", publish.parent_span_id),
        ("worker.job", job_span.parent_span_id),
        ("worker.publish_event", event.parent_span_id),
        ("committer.batch", batch.parent_span_id),
        ("committer.record", record.parent_span_id),
        ("copy.resolve", resolve.parent_span_id),
    ]
    .into_iter()
    .collect();
    assert_eq!(parent_of["producer.publish"], SpanId::INVALID, "the root");
    assert_eq!(parent_of["worker.job"], publish.span_context.span_id());
    assert_eq!(parent_of["copy.resolve"], job_span.span_context.span_id());
    assert_eq!(
        parent_of["worker.publish_event"],
        job_span.span_context.span_id()
    );
    assert_eq!(parent_of["committer.batch"], event.span_context.span_id());
    assert_eq!(parent_of["committer.record"], event.span_context.span_id());
    for s in blobs.iter().chain(manifests.iter()) {
        assert_eq!(
            s.parent_span_id,
            job_span.span_context.span_id(),
            "{}",
            s.name
        );
    }
    let attr = |s: &SpanData, key: &str| -> Option<String> {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr(job_span, "job.outcome").as_deref(), Some("copied"));
    assert_eq!(attr(job_span, "job.id").as_deref(), Some(job.id.as_str()));
    assert!(blobs
        .iter()
        .all(|b| attr(b, "action").as_deref() == Some("copied")));
    assert_eq!(attr(record, "verdict").as_deref(), Some("holds"));
    if let Broker::Amqp(b) = &committer_broker {
        b.delete_topology().await.unwrap();
    }
}
