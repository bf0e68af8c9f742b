//! The chaos soak: 200 new tags (40 images × 5) added with `add-tag` and mirrored by three
//! worker processes and the committer on a RabbitMQ node of their own, while a driver injects
//! faults on a schedule drawn from a seed: `kill -9` of a worker at a random moment, two
//! broker restarts, one restart of the target registry, and cuts of every connection at a
//! fault front before the target (which buffers requests, as nginx does). A process that exits
//! is started again, as an orchestrator would. At the end: every tag digest-exact at the
//! target, every line in images-list exactly once, nothing dead-lettered.
//!
//! `SOAK_SEED=N bench/run soak` repeats a run's schedule.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use std::time::{Duration, Instant};

use image_mirror_testkit::images::{self, Blob, Format, Platform, OCI_LAYER};
use image_mirror_testkit::process::{Running, SpawnRunning};
use image_mirror_testkit::push::push_image_lacking;
use image_mirror_testkit::workers::Deployment;
use image_mirror_testkit::{process, rabbitmq, skopeo, FaultProxy, Faults, Registry};

use crate::MIB;

const IMAGES: usize = 40;
const TAGS: usize = 5;
const WORKERS: usize = 3;
/// Faults are drawn in this span after the jobs are published.
const SPAN: Duration = Duration::from_secs(30);
const WITHIN: Duration = Duration::from_secs(900);

/// A fault the driver injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `kill -9` of worker N.
    KillWorker(usize),
    /// The broker's application stopped, then started.
    RestartBroker,
    /// The target registry killed and started again (same storage and secret).
    RestartRegistry,
    /// Every connection at the target's fault front cut.
    Cut,
}

/// A fault at a moment after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Planned {
    at: Duration,
    fault: Fault,
}

/// splitmix64: a small generator, the same sequence for a seed on every machine.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The schedule of a seed: six worker kills, two broker restarts, one registry restart and
/// four cuts, at moments drawn over [`SPAN`], in time order.
fn schedule(seed: u64) -> Vec<Planned> {
    let mut draw = Draw(seed);
    let span = SPAN.as_millis() as u64;
    let mut faults: Vec<Fault> = (0..6)
        .map(|_| Fault::KillWorker(draw.below(WORKERS as u64) as usize))
        .collect();
    faults.extend([
        Fault::RestartBroker,
        Fault::RestartBroker,
        Fault::RestartRegistry,
    ]);
    faults.extend([Fault::Cut; 4]);
    let mut plan: Vec<Planned> = faults
        .into_iter()
        .map(|fault| Planned {
            at: Duration::from_millis(1000 + draw.below(span)),
            fault,
        })
        .collect();
    plan.sort_by_key(|p| p.at);
    plan
}

/// 40 images of 5 tags each: a shared 8 MiB base and 512 KiB of their own; every fifth image
/// has 48 MiB of its own instead (sent in chunks, so a kill can land in an upload).
async fn push_sources(src: &Registry) {
    let base = Blob::new(OCI_LAYER, images::random_bytes(3000, 8 * MIB));
    for i in 0..IMAGES {
        for t in 0..=TAGS {
            let own = if i % 5 == 0 { 48 * MIB } else { MIB / 2 };
            let seed = 3001 + (i * 10 + t) as u64;
            let layer = Blob::new(OCI_LAYER, images::random_bytes(seed, own));
            let image = images::single_with_layers(
                Format::Oci,
                &Platform::LINUX_AMD64,
                vec![base.clone(), layer],
            );
            push_image_lacking(
                &src.url(),
                &format!("soak/app{i}"),
                &format!("v{t}"),
                &image,
            )
            .await;
        }
    }
}

/// The deployment's long-running processes, started again when they exit.
struct Processes<'a> {
    d: &'a Deployment,
    workers: Vec<Option<Running>>,
    committer: Option<Running>,
    started: usize,
}

impl<'a> Processes<'a> {
    fn start(d: &'a Deployment) -> Self {
        let mut ps = Self {
            d,
            workers: (0..WORKERS).map(|_| None).collect(),
            committer: None,
            started: 0,
        };
        ps.supervise();
        ps.started = 0;
        ps
    }

    /// Starts again every process that has exited (a killed worker, one that gave up on the
    /// broker), as an orchestrator would; one that cannot start yet is tried at the next call.
    fn supervise(&mut self) {
        for w in 0..WORKERS {
            let name = format!("w{w}");
            let args = ["worker", "--concurrency", "2", "--fleet", "on"];
            let (d, started) = (self.d, &mut self.started);
            restart_if_gone(&mut self.workers[w], started, || {
                launch(d, &name, &args, "worker started")
            });
        }
        let d = self.d;
        restart_if_gone(&mut self.committer, &mut self.started, || {
            launch(
                d,
                "committer",
                &["committer", "--batch-window", "2s"],
                "committer started",
            )
        });
    }

    fn stop(self) {
        for mut c in self
            .workers
            .into_iter()
            .chain(std::iter::once(self.committer))
            .flatten()
        {
            process::terminate(&c);
            let _ = c.wait();
        }
    }
}

fn restart_if_gone(
    slot: &mut Option<Running>,
    started: &mut usize,
    launch: impl FnOnce() -> Option<Running>,
) {
    let gone = match slot {
        Some(c) => c.try_wait().ok().flatten().is_some(),
        None => true,
    };
    if gone {
        *slot = launch();
        if slot.is_some() {
            *started += 1;
        }
    }
}

/// Starts `args` of the deployment's binary, its log in the deployment's folder, and waits
/// (up to 30 s) for `ready` in it; `None` when it exited first or never said it.
fn launch(d: &Deployment, name: &str, args: &[&str], ready: &str) -> Option<Running> {
    let logs = d.dir().join("logs");
    std::fs::create_dir_all(&logs).expect("a log folder");
    let n = std::fs::read_dir(&logs).map(Iterator::count).unwrap_or(0);
    let log = logs.join(format!("{n:03}-{name}.log"));
    let mut child = d
        .command(name)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .running();
    let deadline = Instant::now() + Duration::from_secs(30);
    // A driver's poll of a log file, not a test's synchronisation.
    while Instant::now() < deadline {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains(ready)) {
            return Some(child);
        }
        if child.try_wait().ok().flatten().is_some() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            eprintln!("{name} did not start: {}", tail.join(" | "));
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The lines of the deployment's images-list.
fn listed(d: &Deployment) -> Vec<String> {
    std::fs::read_to_string(d.dir().join("images-list"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Messages in the deployment's dead-letter queues.
fn dead_letters(d: &Deployment) -> u64 {
    let table = rabbitmq::private_node_ctl(&["list_queues", "name", "messages", "--quiet"]);
    table
        .lines()
        .filter(|l| l.starts_with(d.prefix()) && l.contains(".dead"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Injects `fault`; what it touched, for the report.
fn inject(fault: Fault, ps: &mut Processes, dst: &mut Registry, front: &FaultProxy) -> String {
    match fault {
        Fault::KillWorker(n) => {
            if let Some(w) = ps.workers[n].as_mut() {
                let _ = w.kill();
                let _ = w.wait();
            }
            ps.supervise();
            format!("kill -9 worker w{n}, started again")
        }
        Fault::RestartBroker => {
            rabbitmq::stop_private_node();
            std::thread::sleep(Duration::from_secs(2));
            rabbitmq::start_private_node();
            "broker stopped 2 s, started".to_owned()
        }
        Fault::RestartRegistry => {
            dst.restart();
            "target registry killed and started".to_owned()
        }
        Fault::Cut => format!("{} connections cut", front.cut_all()),
    }
}

/// The soak scenario.
pub async fn soak_scenario(binary: &Path) {
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let plan = schedule(seed);
    println!("\n### soak: seed {seed}\n");
    let (url, _exclusive) = rabbitmq::private_node_exclusive();
    let src = Registry::start();
    push_sources(&src).await;
    let mut dst = Registry::start();
    let front = FaultProxy::start(
        dst.host(),
        Faults {
            buffer_requests: true,
            ..Faults::default()
        },
    );
    let d = Deployment::on_broker(binary, "soak", &[src.host().to_owned(), front.host()], &url);
    let first_lines: String = (0..IMAGES)
        .map(|i| {
            format!(
                "{}/soak/app{i} {}/mirror/app{i} v0\n",
                src.host(),
                front.host()
            )
        })
        .collect();
    std::fs::write(d.dir().join("images-list"), &first_lines).expect("write images-list");
    let mut ps = Processes::start(&d);
    let images: Vec<String> = (0..IMAGES)
        .map(|i| format!("{}/soak/app{i}", src.host()))
        .collect();
    let tags: Vec<String> = (1..=TAGS).map(|t| format!("v{t}")).collect();
    let added = d
        .command("add-tag")
        .args([
            "add-tag",
            "--images",
            &images.join(","),
            "--tags",
            &tags.join(","),
        ])
        .output()
        .expect("run add-tag");
    assert!(
        added.status.success(),
        "add-tag: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let started = Instant::now();

    println!("| at (s) | fault | lines recorded by then |\n|---:|---|---:|");
    for p in &plan {
        if let Some(wait) = p.at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        ps.supervise();
        let recorded = listed(&d).len().saturating_sub(IMAGES);
        let what = inject(p.fault, &mut ps, &mut dst, &front);
        println!("| {:.1} | {what} | {recorded} |", p.at.as_secs_f64());
    }
    let expected = IMAGES * (TAGS + 1);
    while listed(&d).len() < expected && started.elapsed() < WITHIN {
        ps.supervise();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    let lines = listed(&d);
    ps.supervise();
    let started_again = ps.started;
    ps.stop();

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for l in &lines {
        *seen.entry(l.as_str()).or_default() += 1;
    }
    let duplicates = seen.values().filter(|n| **n > 1).count();
    let mut exact = 0;
    for i in 0..IMAGES {
        for t in 1..=TAGS {
            let at_target = skopeo::manifest_digest(&format!("{}/mirror/app{i}:v{t}", dst.host()));
            let at_source = skopeo::manifest_digest(&format!("{}/soak/app{i}:v{t}", src.host()));
            if at_target == at_source {
                exact += 1;
            }
        }
    }
    let dead = dead_letters(&d);
    let kills = plan
        .iter()
        .filter(|p| matches!(p.fault, Fault::KillWorker(_)))
        .count();
    println!(
        "\nseed {seed}: {} tags added, {exact} digest-exact at the target, {} lines listed of {expected} \
         ({} lost, {duplicates} listed twice), {dead} dead-lettered; faults: {kills} kills, 2 broker \
         restarts, 1 registry restart, {} connections cut in 4 cuts; {started_again} processes \
         started again; {:.0} s",
        IMAGES * TAGS,
        lines.len(),
        expected.saturating_sub(seen.len()),
        front.cuts(),
        took.as_secs_f64()
    );
    d.tear_down().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_and_another_seed_another() {
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
        let plan = schedule(7);
        assert_eq!(plan.len(), 13);
        assert!(plan.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(plan.iter().all(|p| p.at < SPAN + Duration::from_secs(1)));
    }
}
