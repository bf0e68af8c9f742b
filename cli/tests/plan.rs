//! `image-mirror plan`: what a run will cost, checked against what the run then costs where it
//! is counted (the upload bytes a front before the target takes, the manifest GETs a metering
//! front before the source counts), and nothing once the run is done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use image_mirror_testkit::images::{self, Format, Platform};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{Front, FrontOptions, Quota, Registry};
use serde_json::Value;

fn image_mirror(dir: &Path, hosts: &[String], args: &[&str]) -> Output {
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
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn plan(dir: &Path, hosts: &[String]) -> Value {
    let out = image_mirror(
        dir,
        hosts,
        &["plan", "--output", "json", "--max-bandwidth", "10MiB/s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Upload body bytes the front took.
fn uploaded(front: &Front) -> u64 {
    front
        .requests()
        .iter()
        .filter(|r| r.target.contains("/blobs/uploads/"))
        .map(|r| r.body_len as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_costs_what_the_run_then_costs_and_nothing_after_it() {
    let (src, dst) = (Registry::start(), Registry::start());
    let (source, target) = (
        Front::start(
            src.host(),
            FrontOptions {
                quota: Some(Quota {
                    limit: 1000,
                    window: std::time::Duration::from_secs(6 * 3600),
                }),
                ..FrontOptions::default()
            },
        ),
        Front::start(dst.host(), FrontOptions::default()),
    );
    let mut lines = Vec::new();
    // Half already at the target: four images, one of them an index.
    for i in 0..4_u64 {
        let image = if i == 0 {
            images::oci_index(8800)
        } else {
            images::oci_manifest(8800 + i)
        };
        push_image(&src.url(), &format!("held/app{i}"), "v1", &image).await;
        push_image(&dst.url(), &format!("mirror/held{i}"), "v1", &image).await;
        lines.push(format!(
            "{}/held/app{i} {}/mirror/held{i} v1",
            source.host(),
            target.host()
        ));
    }
    // The rest share a 4 MiB base, and one is a two-platform index of them.
    let (shared, _) = images::sharing_base(4, 4 * 1024 * 1024, 8850);
    for (i, image) in shared.iter().enumerate().take(3) {
        push_image(&src.url(), &format!("new/app{i}"), "v1", image).await;
        lines.push(format!(
            "{}/new/app{i} {}/mirror/new{i} v1",
            source.host(),
            target.host()
        ));
    }
    let index = images::index_of(
        Format::Oci,
        vec![
            (Platform::LINUX_AMD64, shared[3].clone()),
            (Platform::LINUX_ARM64, shared[0].clone()),
        ],
    );
    push_image(&src.url(), "new/multi", "v1", &index).await;
    lines.push(format!(
        "{}/new/multi {}/mirror/multi v1",
        source.host(),
        target.host()
    ));
    lines.sort();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("images-list"), lines.join("\n") + "\n").unwrap();
    let hosts = [source.host(), target.host()];

    let before = plan(dir.path(), &hosts);
    let totals = &before["totals"];
    assert_eq!(totals["to_copy"], 4, "{before}");
    assert_eq!(totals["up_to_date"], 4, "{before}");
    let planned_bytes = totals["bytes_sent"].as_u64().unwrap();
    assert!(
        totals["bytes_mounted"].as_u64().unwrap() >= 4 * 1024 * 1024,
        "the shared base is mounted: {before}"
    );
    assert!(totals["seconds_at_cap"].as_f64().unwrap() > 0.0, "{before}");
    let at_source = before["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["registry"] == source.host())
        .cloned()
        .unwrap();
    let planned_pulls = at_source["pulls"].as_u64().unwrap();
    // The budget the source reports, after the plan's own pulls.
    assert_eq!(at_source["limit"], 1000, "{at_source}");
    assert_eq!(
        at_source["remaining"].as_u64().unwrap(),
        1000 - source.pulls(),
        "{at_source}"
    );

    let (pulls_before, bytes_before) = (source.pulls(), uploaded(&target));
    let out = image_mirror(dir.path(), &hosts, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_bytes = uploaded(&target) - bytes_before;
    let run_pulls = source.pulls() - pulls_before;
    let off = (run_bytes as f64 - planned_bytes as f64).abs() / planned_bytes as f64;
    assert!(
        off <= 0.01,
        "planned {planned_bytes} bytes, the run sent {run_bytes}"
    );
    assert_eq!(
        planned_pulls, run_pulls,
        "planned pulls against the run's manifest GETs"
    );

    let after = plan(dir.path(), &hosts);
    assert_eq!(after["totals"]["bytes_sent"], 0, "{after}");
    assert_eq!(after["totals"]["to_copy"], 0, "{after}");
    assert_eq!(after["totals"]["up_to_date"], 8, "{after}");

    // run --dry-run ends with the plan's totals.
    let out = image_mirror(dir.path(), &hosts, &["run", "--dry-run"]);
    assert!(
        text(&out).contains("plan: 0 to copy, 8 up to date; 0.0 MiB to send"),
        "{}",
        text(&out)
    );
}
