//! Crash resume at any moment: a worker of the fleet is killed with `kill -9` at 20 moments
//! spread evenly over the upload of a 1 GiB blob (behind a request-buffering front, as nginx
//! is by default), and a second worker takes the job over; the bytes the front received
//! beyond the blob's own are what the kill cost. Against distribution 2.8 and 3.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_mirror_testkit::fleet::{self, upload_bytes, BIG};
use image_mirror_testkit::front::Hook;
use image_mirror_testkit::workers::{stop, Deployment};
use image_mirror_testkit::{Front, FrontOptions, Implementation, Registry, RegistryOptions};

use crate::MIB;

const SIZE: u64 = 1024 * MIB as u64;
const POINTS: u32 = 20;
const WITHIN: Duration = Duration::from_secs(600);
/// The engine's chunk: a kill that costs more than this started the blob over.
const CHUNK: u64 = 16 * MIB as u64;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// A front that notes when the first chunk of the upload arrived (whole: the front buffers).
fn front_noting_the_first_chunk(dst: &Registry) -> (Front, Arc<Mutex<Option<Instant>>>) {
    let first = Arc::new(Mutex::new(None));
    let noted = Arc::clone(&first);
    let hook: Hook = Arc::new(move |request| {
        if request.method == "PATCH" {
            noted.lock().unwrap().get_or_insert_with(Instant::now);
        }
        None
    });
    let front = Front::start(
        dst.host(),
        FrontOptions {
            hook: Some(hook),
            ..FrontOptions::default()
        },
    );
    (front, first)
}

/// What one run cost: bytes the front took for uploads, and the upload's time from its first
/// chunk to the job's event.
struct Run {
    sent: u64,
    upload: Duration,
}

/// Mirrors the 1 GiB image into a fresh registry of `implementation`; with `kill_after`,
/// kills the first worker that long after the first chunk arrived and lets a second finish.
async fn one_run(
    binary: &Path,
    src: &Registry,
    implementation: Implementation,
    kill_after: Option<Duration>,
) -> Run {
    let dst = Registry::start_with(&RegistryOptions {
        implementation,
        ..RegistryOptions::default()
    });
    let (front, first_chunk) = front_noting_the_first_chunk(&dst);
    let d = Deployment::new(
        binary,
        "bench-crash",
        &[src.host().to_owned(), front.host()],
    );
    let mut first = d.worker("first", &["--fleet", "on"]);
    d.publish(&format!(
        "{}/{BIG} {}/mirror/big v1\n",
        src.host(),
        front.host()
    ));
    // The kill schedule: polling the front's note, then a timed kill (a benchmark's driver).
    let started = loop {
        if let Some(t) = *first_chunk.lock().unwrap() {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let second = match kill_after {
        Some(after) => {
            tokio::time::sleep_until((started + after).into()).await;
            first.kill().unwrap();
            first.wait().unwrap();
            Some(d.worker("second", &["--fleet", "on"]))
        }
        None => None,
    };
    d.events(1, WITHIN).await;
    let upload = started.elapsed();
    if let Some(w) = second {
        stop(w);
    } else {
        stop(first);
    }
    d.tear_down().await;
    Run {
        sent: upload_bytes(&front.requests()),
        upload,
    }
}

fn median(sorted: &[u64]) -> u64 {
    sorted[sorted.len() / 2]
}

/// The crash-resume scenario.
pub async fn crash_resume_scenario(binary: &Path) {
    let src = Registry::start();
    fleet::push_big(&src, SIZE, 2900).await;
    println!("\n### crash resume: kill -9 at {POINTS} moments over a 1 GiB upload\n");
    for implementation in Implementation::ALL {
        let calibration = one_run(binary, &src, implementation, None).await;
        let span = calibration.upload;
        println!(
            "{implementation:?}: an uncut upload takes {:.2} s from its first chunk, {:.1} MiB sent\n",
            span.as_secs_f64(),
            mib(calibration.sent)
        );
        println!(
            "| kill at (ms after the first chunk) | of the upload | MiB sent again | resumed |"
        );
        println!("|---:|---:|---:|---|");
        let mut again = Vec::new();
        for k in 0..POINTS {
            let at = span.mul_f64((f64::from(k) + 0.5) / f64::from(POINTS));
            let run = one_run(binary, &src, implementation, Some(at)).await;
            let extra = run.sent.saturating_sub(SIZE);
            let how = if extra <= CHUNK {
                "where the registry stood"
            } else {
                "from the start"
            };
            println!(
                "| {} | {:.0}% | {:.1} | {how} |",
                at.as_millis(),
                100.0 * (f64::from(k) + 0.5) / f64::from(POINTS),
                mib(extra)
            );
            again.push(extra);
        }
        again.sort_unstable();
        let restarts = again.iter().filter(|b| **b > CHUNK).count();
        println!(
            "\n{implementation:?}: sent again, median {:.1} MiB, worst {:.1} MiB; {restarts} of {POINTS} kills started the blob over\n",
            mib(median(&again)),
            mib(*again.last().unwrap_or(&0))
        );
    }
}
