//! Ctrl-C in the middle of a long copy, as a person presses it: the process stops at a
//! checkpoint within seconds, says what it left and exits 130; the same copy run again goes on
//! from where the registry has the upload (distribution 3 keeps it), and no upload session is
//! left at the target once a run is over. Without a terminal, progress comes as a line at the
//! interval. The target sits behind a slow link (a throttling proxy) so that the blob takes
//! long enough to be interrupted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image_mirror_testkit::images::{self, Format};
use image_mirror_testkit::process::{Running, SpawnRunning};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{
    Blob, FaultProxy, Faults, Image, Implementation, Platform, Registry, RegistryOptions,
};

const MIB: u64 = 1024 * 1024;
/// The blob: 200 MiB, as a newcomer's large image layer.
const BLOB: u64 = 200 * MIB;
/// The slow link to the target: the blob takes about ten seconds.
const LINK: u64 = 20 * MIB;
/// Upload chunks (the default).
const CHUNK: u64 = 16 * MIB;

fn big_image() -> Image {
    let layer = Blob::new(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        images::random_bytes(4242, usize::try_from(BLOB).unwrap()),
    );
    images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer])
}

/// The sessions a distribution registry holds open, across its repositories: those with
/// bytes (a cancelled session's bytes go at once; distribution 3 leaves its empty hash-state
/// folder behind until its purge).
fn open_uploads(registry: &Registry) -> usize {
    let repos = registry.storage().join("docker/registry/v2/repositories");
    let mut count = 0;
    let mut dirs = vec![repos];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "_uploads") {
                count += std::fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|upload| upload.path().join("data").exists())
                    .count();
            } else if path.is_dir() && !path.ends_with("_layers") && !path.ends_with("_manifests") {
                dirs.push(path);
            }
        }
    }
    count
}

fn copy_command(cache: &Path, hosts: &str, src: &str, dst: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    c.args([
        "copy",
        "--insecure-registry",
        hosts,
        "--progress-interval",
        "1s",
    ])
    .args(extra)
    .args([src, dst])
    .env("IMAGE_MIRROR_CACHE_DIR", cache)
    .env("DOCKER_CONFIG", cache)
    .env_remove("RUST_LOG")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

fn interrupt(child: &Running) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits, up to `within`, for `ready`.
fn wait_until(within: Duration, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_at_a_checkpoint_and_the_next_run_goes_on_from_there() {
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::default().on(Implementation::Distribution3));
    let link = FaultProxy::start(
        dst.host(),
        Faults {
            upload_rate: Some(LINK),
            ..Faults::default()
        },
    );
    let image = big_image();
    push_image(&src.url(), "up/big", "v1", &image).await;
    let cache = tempfile::tempdir().unwrap();
    let hosts = format!("{},{}", src.host(), link.host());
    let from = format!("{}/up/big:v1", src.host());
    let to = format!("{}/mirror/big:v1", link.host());

    let mut first = copy_command(cache.path(), &hosts, &from, &to, &[]).running();
    let stderr = BufReader::new(first.stderr.take().unwrap());
    let lines =
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());
    // In the middle of the blob.
    wait_until(Duration::from_secs(60), "half the blob going up", || {
        link.bytes_up() > BLOB / 2
    });
    interrupt(&first);
    let asked = Instant::now();
    let status = first.wait().unwrap();
    let took = asked.elapsed();
    let sent_first = link.bytes_up();
    let stderr = lines.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr:#?}");
    assert!(took < Duration::from_secs(5), "it took {took:?} to stop");
    assert!(
        stderr.iter().any(|l| l.starts_with("interrupted:")),
        "no summary of what was left: {stderr:#?}"
    );
    // Without a terminal, a progress line each interval (1 s here) while the blob went up.
    let progress: Vec<&String> = stderr
        .iter()
        .filter(|l| l.starts_with("progress:"))
        .collect();
    assert!(progress.len() >= 2, "{stderr:#?}");
    assert!(progress[0].contains("1 in flight"), "{progress:?}");
    assert!(progress[0].contains("MiB"), "{progress:?}");
    assert_eq!(open_uploads(&dst), 1, "the upload is kept for the next run");

    let second = copy_command(cache.path(), &hosts, &from, &to, &[])
        .running()
        .into_inner()
        .wait_with_output()
        .unwrap();
    let text = String::from_utf8_lossy(&second.stdout).to_string()
        + &String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{text}");
    assert!(text.contains("copied:"), "{text}");
    // The bytes sent over both runs: the blob once, at most one chunk twice (and the
    // requests' heads and manifests).
    let again = link.bytes_up().saturating_sub(BLOB);
    assert!(
        again <= CHUNK + MIB,
        "{} MiB sent again (first run {} MiB)",
        again / MIB,
        sent_first / MIB
    );
    assert_eq!(open_uploads(&dst), 0, "an upload session was left behind");
    assert_eq!(
        &image_mirror_testkit::crane::digest(&format!("{}/mirror/big:v1", dst.host())),
        image.digest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_next_run_does_not_go_on_with_is_deleted_at_the_registry() {
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::default().on(Implementation::Distribution3));
    let link = FaultProxy::start(
        dst.host(),
        Faults {
            upload_rate: Some(LINK),
            ..Faults::default()
        },
    );
    push_image(&src.url(), "up/big", "v1", &big_image()).await;
    let cache = tempfile::tempdir().unwrap();
    let hosts = format!("{},{}", src.host(), link.host());
    let from = format!("{}/up/big:v1", src.host());
    let to = format!("{}/mirror/big:v1", link.host());
    let mut first = copy_command(cache.path(), &hosts, &from, &to, &[]).running();
    let stderr = image_mirror_testkit::process::drain(first.stderr.take().unwrap());
    wait_until(
        Duration::from_secs(60),
        "a third of the blob going up",
        || link.bytes_up() > BLOB / 3,
    );
    interrupt(&first);
    assert_eq!(
        first.wait().unwrap().code(),
        Some(130),
        "{}",
        stderr.join().unwrap()
    );
    assert_eq!(open_uploads(&dst), 1);
    // Now the blob goes in one request (a registry's limit set so): the saved session cannot
    // serve it, and is given up, deleted at the registry.
    let whole = format!("{}=1GiB", link.host());
    let second = copy_command(
        cache.path(),
        &hosts,
        &from,
        &to,
        &["-v", "--blob-max", &whole],
    )
    .running()
    .into_inner()
    .wait_with_output()
    .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{said}");
    assert_eq!(
        open_uploads(&dst),
        0,
        "the session given up is still there:\n{said}"
    );
}
