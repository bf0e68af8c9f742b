//! The fleet's cost to the broker: the fleet's own coordination code (`Coordinator`) driven
//! for 1,000, 10,000 and 50,000 distinct blobs (not real ones: only the broker is measured),
//! on a private RabbitMQ node restarted before each size. Three coordinators stand for three
//! workers; each blob is leased, its checkpoint read when it is large (one in ten, with two
//! checkpoints saved), announced, and let go as landed. Reports leases per second and the
//! node's memory (RSS, and `rabbitmqctl status`'s own breakdown) idle and after the blobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image_mirror_common::Digest;
use image_mirror_queue::coordination::{BlobLocation, Coordinator, ReadFrom};
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::rabbitmq;
use tokio::sync::Semaphore;

const SIZES: [usize; 3] = [1_000, 10_000, 50_000];
const WORKERS: usize = 3;
/// Blobs in flight per worker (a worker's blob concurrency).
const IN_FLIGHT: usize = 16;
const REGISTRY: &str = "registry.bench.test";
const MB: f64 = 1_000_000.0;
const PREFIX: &str = "bench-broker";

/// The broker's memory as its own status reports it, in bytes.
struct Breakdown {
    queue_procs: u64,
    stream_procs: u64,
    binary: u64,
}

fn breakdown() -> Breakdown {
    let json = rabbitmq::private_node_ctl(&["status", "--formatter", "json"]);
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    let memory = &status["memory"];
    let n = |key: &str| memory[key].as_u64().unwrap_or(0);
    Breakdown {
        queue_procs: n("queue_procs"),
        stream_procs: n("stream_queue_procs") + n("stream_queue_replica_reader_procs"),
        binary: n("binary"),
    }
}

/// The node's churn counters (`rabbit_core_metrics`' `connection_churn_metrics`).
#[derive(Debug, Clone, Copy, Default)]
struct Churn {
    channels_opened: u64,
    queues_declared: u64,
    queues_created: u64,
}

fn churn() -> Churn {
    let out = rabbitmq::private_node_ctl(&["eval", "ets:tab2list(connection_churn_metrics)."]);
    // [{Node, ConnCreated, ConnClosed, ChanCreated, ChanClosed, QDeclared, QCreated, QDeleted}]
    let fields: Vec<u64> = out
        .trim()
        .trim_matches(|c| c == '[' || c == ']' || c == '{' || c == '}' || c == '.')
        .split(',')
        .skip(1)
        .filter_map(|f| f.trim().trim_end_matches('}').parse().ok())
        .collect();
    assert_eq!(fields.len(), 7, "unexpected churn metrics: {out}");
    Churn {
        channels_opened: fields[2],
        queues_declared: fields[4],
        queues_created: fields[5],
    }
}

fn queues() -> usize {
    rabbitmq::private_node_ctl(&["list_queues", "--quiet", "--no-table-headers", "name"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

async fn one_blob(worker: &Coordinator, i: usize) {
    let digest = Digest::sha256_of(format!("bench blob {i}").as_bytes());
    let large = i.is_multiple_of(10);
    let lease = loop {
        match worker.try_lease(REGISTRY, &digest).await {
            Ok(Some(lease)) => break lease,
            Ok(None) => tokio::task::yield_now().await,
            Err(e) => panic!("lease of blob {i}: {e}"),
        }
    };
    if large {
        lease.state().await.expect("a checkpoint read");
        for offset in [16_u64 << 20, 32 << 20] {
            lease
                .save_upload("bench/app", "http://registry.bench.test/u", offset)
                .await
                .expect("a checkpoint saved");
        }
    }
    let location = BlobLocation {
        registry: REGISTRY.to_owned(),
        repository: "bench/app".to_owned(),
        digest,
    };
    worker.announce(&location).await.expect("an announcement");
    lease.landed().await.expect("a lease let go");
}

/// Leases per second for `blobs` blobs through three coordinators.
async fn drive(url: &str, blobs: usize) -> f64 {
    let topology = Topology::new(PREFIX);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let c = Coordinator::connect(url, topology.clone()).await.unwrap();
        workers.push(Arc::new(c));
    }
    // Each worker hears the fleet, as a worker does.
    let mut feeds = Vec::new();
    for w in &workers {
        feeds.push(w.listen(ReadFrom::LookBack).await.unwrap());
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, w) in workers.iter().enumerate() {
        let (w, permits) = (Arc::clone(w), Arc::new(Semaphore::new(IN_FLIGHT)));
        tasks.spawn(async move {
            let mut mine = tokio::task::JoinSet::new();
            for i in (n..blobs).step_by(WORKERS) {
                let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
                let w = Arc::clone(&w);
                mine.spawn(async move {
                    one_blob(&w, i).await;
                    drop(permit);
                });
            }
            while let Some(r) = mine.join_next().await {
                r.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let rate = blobs as f64 / started.elapsed().as_secs_f64();
    drop(feeds);
    for w in &workers {
        w.close().await;
    }
    rate
}

pub async fn broker_scenario() {
    println!("\n## broker: the fleet's coordination for distinct blobs, three workers");
    println!(
        "\n| blobs | leases/s | channels/lease | declarations/lease | queues created/lease \
         | queues after | RSS idle (MB) | RSS after (MB) | RSS added (MB) | queue procs (MB) \
         | stream procs (MB) | binary (MB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for blobs in SIZES {
        let url = rabbitmq::restart_private_node();
        // The node settles after its start before the idle reading.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle = rabbitmq::private_node_rss();
        let before = churn();
        let rate = drive(&url, blobs).await;
        let spent = churn();
        let per = |a: u64, b: u64| (b - a) as f64 / blobs as f64;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = rabbitmq::private_node_rss();
        let b = breakdown();
        println!(
            "| {blobs} | {rate:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.0} | {:.0} | {:.1} \
             | {:.1} | {:.1} |",
            per(before.channels_opened, spent.channels_opened),
            per(before.queues_declared, spent.queues_declared),
            per(before.queues_created, spent.queues_created),
            queues(),
            idle as f64 / MB,
            after as f64 / MB,
            (after as f64 - idle as f64) / MB,
            b.queue_procs as f64 / MB,
            b.stream_procs as f64 / MB,
            b.binary as f64 / MB,
        );
        // The locations stream is durable: gone before the next size starts.
        let c = Coordinator::connect(&url, Topology::new(PREFIX))
            .await
            .unwrap();
        c.delete_locations().await.unwrap();
        c.close().await;
    }
}
