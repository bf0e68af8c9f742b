//! The bandwidth budget (`--max-bandwidth`), measured where the bytes arrive: a front before
//! the target logs each upload request's body and when it came. A fleet of three workers moves
//! the fleet's cap together, and two hold it when the third is killed; `run` holds a host's cap
//! at the target and at the source; a bad rate is bad input naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image_mirror_testkit::http::Logged;
use image_mirror_testkit::images::{self, Blob, Format, Image, Platform, OCI_LAYER};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::workers::{stop, Deployment};
use image_mirror_testkit::{crane, Front, FrontOptions, Registry};

const MIB: usize = 1024 * 1024;

/// An image of one layer of `mib` MiB.
fn image(seed: u64, mib: usize) -> Image {
    let layer = Blob::new(OCI_LAYER, images::random_bytes(seed, mib * MIB));
    images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer])
}

/// Upload body bytes the front took in each second since `t0`.
fn per_second(requests: &[Logged], t0: Instant) -> Vec<f64> {
    let mut seconds = Vec::new();
    for r in requests
        .iter()
        .filter(|r| r.target.contains("/blobs/uploads/"))
    {
        let s = r.at.saturating_duration_since(t0).as_secs() as usize;
        if seconds.len() <= s {
            seconds.resize(s + 1, 0.0);
        }
        seconds[s] += r.body_len as f64;
    }
    seconds
}

/// The rate (bytes per second) of each whole window of `len` seconds in `seconds`, by its
/// start, the last (partial) second left out.
fn windows(seconds: &[f64], len: usize) -> Vec<(usize, f64)> {
    let whole = seconds.len().saturating_sub(1);
    (0..whole / len)
        .map(|w| {
            let sum: f64 = seconds[w * len..(w + 1) * len].iter().sum();
            (w * len, sum / len as f64)
        })
        .collect()
}

fn within(rate: f64, cap: f64, tolerance: f64) -> bool {
    (rate - cap).abs() <= cap * tolerance
}

/// The first upload request's arrival.
fn first_upload(front: &Front, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if let Some(r) = front
            .requests()
            .iter()
            .find(|r| r.target.contains("/blobs/uploads/") && r.body_len > 0)
        {
            return r.at;
        }
        assert!(Instant::now() < deadline, "no upload within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_move_the_fleets_cap_together_and_two_hold_it_when_one_is_killed() {
    let (src, dst) = (Registry::start(), Registry::start());
    let front = Front::start(dst.host(), FrontOptions::default());
    let cap = 20.0 * MIB as f64;
    let n = 26;
    let mut pushed = Vec::new();
    for i in 0..n {
        let img = image(9900 + i as u64, 48);
        push_image(&src.url(), &format!("bw/app{i}"), "v1", &img).await;
        pushed.push(img.digest().clone());
    }
    let hosts = [src.host().to_owned(), front.host()];
    let d = Deployment::new(
        Path::new(env!("CARGO_BIN_EXE_image-mirror")),
        "bandwidth",
        &hosts,
    );
    let chunk = format!("{}=2MiB", front.host());
    let args = [
        "--fleet",
        "on",
        "--max-bandwidth",
        "20MiB/s",
        "--blob-chunk",
        &chunk,
        "--blob-max",
        &chunk,
    ];
    let mut workers: Vec<_> = (0..3).map(|w| d.worker(&format!("w{w}"), &args)).collect();
    let list: String = (0..n)
        .map(|i| {
            format!(
                "{}/bw/app{i} {}/mirror/app{i} v1\n",
                src.host(),
                front.host()
            )
        })
        .collect();
    d.publish(&list);

    let t0 = first_upload(&front, Duration::from_secs(60));
    // `status` says who shares the cap and what moves.
    let status = d
        .command("status")
        .args(["status", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let said: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(said["bandwidth"]["workers"], 3, "{said}");
    assert_eq!(
        said["bandwidth"]["cap_bytes_per_second"],
        20 * MIB,
        "{said}"
    );
    assert!(said["bandwidth"]["moving"].as_u64().unwrap() >= 1, "{said}");
    // At 21 s one worker is killed; the two others hold the cap 15 s later.
    let kill_at = Duration::from_secs(21);
    std::thread::sleep(kill_at.saturating_sub(t0.elapsed()));
    let mut killed = workers.remove(0);
    killed.kill().unwrap();
    killed.wait().unwrap();
    // Until 52 s: the windows of 40 to 50 s after the kill's 15 s.
    std::thread::sleep(Duration::from_secs(52).saturating_sub(t0.elapsed()));
    let seconds = per_second(&front.requests(), t0);
    let windows = windows(&seconds, 10);
    let shown: Vec<String> = windows
        .iter()
        .map(|(s, r)| format!("{s}s: {:.1} MiB/s", r / MIB as f64))
        .collect();
    let checked: Vec<&(usize, f64)> = windows
        .iter()
        .filter(|(start, _)| *start >= 10 && (*start + 10 <= 21 || *start >= 36))
        .collect();
    eprintln!("the fleet's rate, by window: {shown:?}");
    assert!(checked.len() >= 2, "{shown:?}");
    for (start, rate) in checked {
        assert!(
            within(*rate, cap, 0.10),
            "the window at {start}s: {shown:?}"
        );
    }
    // Every image lands, digest-exact, once the cap lets it.
    d.events(n, Duration::from_secs(120)).await;
    for (i, digest) in pushed.iter().enumerate() {
        let at = format!("{}/mirror/app{i}:v1", dst.host());
        assert_eq!(&crane::digest(&at), digest, "{at}");
    }
    for w in workers {
        stop(w);
    }
    d.tear_down().await;
}

fn run(dir: &Path, hosts: &[String], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(dir.join("images-list"))
        .arg("--insecure-registry")
        .arg(hosts.join(","))
        .args(args)
        .env("DOCKER_CONFIG", dir)
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("AMQP_URL")
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .env_remove("IMAGE_MIRROR_MAX_BANDWIDTH")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_holds_a_hosts_cap_at_the_target_and_at_the_source() {
    let src = Registry::start();
    let (dst, other) = (Registry::start(), Registry::start());
    let front = Front::start(dst.host(), FrontOptions::default());
    for i in 0..4 {
        push_image(
            &src.url(),
            &format!("cap/app{i}"),
            "v1",
            &image(9950 + i, 24),
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = [src.host().to_owned(), front.host(), other.host().to_owned()];
    let list: String = (0..4)
        .map(|i| {
            format!(
                "{}/cap/app{i} {}/mirror/app{i} v1\n",
                src.host(),
                front.host()
            )
        })
        .collect();
    std::fs::write(dir.path().join("images-list"), list).unwrap();

    // The target's cap: 6 MiB/s for 96 MiB, measured in windows of 5 s at the front.
    let chunk = format!("{}=1MiB", front.host());
    let cap = format!("{}=6MiB/s", front.host());
    let started = Instant::now();
    let out = run(
        dir.path(),
        &hosts,
        &[
            "run",
            "--max-bandwidth",
            &cap,
            "--blob-chunk",
            &chunk,
            "--blob-max",
            &chunk,
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = started.elapsed().as_secs_f64();
    assert!(took > 96.0 / 6.0 * 0.9, "{took} s: the cap did not hold");
    let t0 = first_upload(&front, Duration::from_secs(1));
    let seconds = per_second(&front.requests(), t0);
    let windows = windows(&seconds, 5);
    let shown: Vec<String> = windows
        .iter()
        .map(|(s, r)| format!("{s}s: {:.2}", r / MIB as f64))
        .collect();
    let checked: Vec<_> = windows.iter().filter(|(s, _)| *s >= 5).collect();
    assert!(!checked.is_empty(), "{shown:?}");
    for (start, rate) in checked {
        assert!(
            within(*rate, 6.0 * MIB as f64, 0.10),
            "the window at {start}s: {shown:?}"
        );
    }

    // The source's cap bounds what is read from it: 96 MiB at 16 MiB/s into another target.
    let list: String = (0..4)
        .map(|i| {
            format!(
                "{}/cap/app{i} {}/again/app{i} v1\n",
                src.host(),
                other.host()
            )
        })
        .collect();
    std::fs::write(dir.path().join("images-list"), list).unwrap();
    let cap = format!("{}=16MiB/s", src.host());
    let started = Instant::now();
    let out = run(dir.path(), &hosts, &["run", "--max-bandwidth", &cap]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = started.elapsed().as_secs_f64();
    assert!(
        (96.0 / 16.0 * 0.9..=96.0 / 16.0 * 1.3).contains(&took),
        "{took} s for 96 MiB at 16 MiB/s"
    );
}

#[test]
fn a_bad_rate_is_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("images-list"), "").unwrap();
    for (bad, why) in [
        ("0", "more than zero"),
        ("-5MiB/s", "more than zero"),
        ("fast", "not a number"),
        ("10furlongs/s", "unknown unit"),
        ("ghcr.io=0", "more than zero"),
    ] {
        let flag = format!("--max-bandwidth={bad}");
        let out = run(dir.path(), &["127.0.0.1:1".to_owned()], &["run", &flag]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args(["copy", "a/b:c", "d/e:f"])
        .env("IMAGE_MIRROR_MAX_BANDWIDTH", "12 parsecs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("12 parsecs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_capped_below_the_stall_rule_completes() {
    // 32 KiB/s is less than the stall rule's 64 KiB in a 1 s window: the copy is slow because
    // of the cap, and never cut for it (the watchdog's side: `bandwidth.rs`'s unit tests).
    let (src, dst) = (Registry::start(), Registry::start());
    let img = {
        let layer = Blob::new(OCI_LAYER, images::random_bytes(9990, 128 * 1024));
        images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer])
    };
    push_image(&src.url(), "slow/app", "v1", &img).await;
    let (from, to) = (
        format!("{}/slow/app:v1", src.host()),
        format!("{}/slow/app:v1", dst.host()),
    );
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .args([
            "--insecure-registry",
            &format!("{},{}", src.host(), dst.host()),
        ])
        .args(["copy", &from, &to, "--stall-timeout", "1s"])
        .args(["--max-bandwidth", &format!("{}=32KiB/s", src.host())])
        .env_remove("IMAGE_MIRROR_MAX_BANDWIDTH")
        .output()
        .unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= 3.0, "{took} s: the cap did not hold");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("stalled"));
    assert_eq!(&crane::digest(&to), img.digest());
}
