//! Pipeline scenarios: a no-op `image-mirror run` over a list the size of the real one against
//! a per-entry `skopeo inspect --raw` loop in the style of the original shell tool, and
//! publishing 10,000 jobs with confirms.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use image_mirror_common::images_list::ImagesList;
use image_mirror_common::version_sort::sort_v;
use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::images;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, Front, FrontOptions, Registry};

use crate::measure::{measure, measure_with_output, report_plain};

/// The real list this project's users start from.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rancher/images-list")
}

/// Every entry of the real list, with its source in `src` and its target in `dst` (both
/// holding the same image at the entry's tag), written as an images-list in `dir`.
pub(crate) async fn mirrored_list(src: &Registry, dst: &Registry, dir: &Path) -> (PathBuf, usize) {
    let list = ImagesList::load(&fixture()).unwrap();
    let mut lines = Vec::new();
    // Entries that share a source tag or a target tag (the real list has both: one source
    // mirrored to two targets, two sources feeding one target) must share one image, or no
    // run could be a no-op.
    let mut groups = Groups::default();
    for entry in list.entries() {
        let (s, t, tag) = (entry.source.path(), entry.target.path(), entry.tag.as_str());
        lines.push(format!("{}/{s} {}/{t} {tag}", src.host(), dst.host()));
        groups.join(&format!("s {s}:{tag}"), &format!("t {t}:{tag}"));
    }
    // One work item per repository, its tags pushed one after another: a registry refuses
    // concurrent pushes of the same blob into one repository.
    let mut repos: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for entry in list.entries() {
        let (s, t, tag) = (entry.source.path(), entry.target.path(), entry.tag.as_str());
        let seed = groups.root(&format!("s {s}:{tag}")) as u64;
        for (registry, repo) in [(src.url(), s), (dst.url(), t)] {
            repos
                .entry((registry, repo.to_owned()))
                .or_default()
                .insert(tag.to_owned(), seed);
        }
    }
    let work = Arc::new(std::sync::Mutex::new(repos.into_iter().collect::<Vec<_>>()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let work = Arc::clone(&work);
        tasks.spawn(async move {
            loop {
                let Some(((registry, repo), tags)) = work.lock().unwrap().pop() else {
                    return;
                };
                for (tag, seed) in tags {
                    push_image(&registry, &repo, &tag, &images::oci_manifest(7000 + seed)).await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    lines.sort_by(|a, b| sort_v(a.as_bytes(), b.as_bytes()));
    lines.dedup();
    let path = dir.join("images-list");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, lines.len())
}

/// Union-find over names.
#[derive(Default)]
struct Groups {
    ids: HashMap<String, usize>,
    parent: Vec<usize>,
}

impl Groups {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.parent.len();
        self.parent.push(id);
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn find(&mut self, mut id: usize) -> usize {
        while self.parent[id] != id {
            self.parent[id] = self.parent[self.parent[id]];
            id = self.parent[id];
        }
        id
    }

    fn join(&mut self, a: &str, b: &str) {
        let (a, b) = (self.id(a), self.id(b));
        let (ra, rb) = (self.find(a), self.find(b));
        self.parent[ra] = rb;
    }

    fn root(&mut self, name: &str) -> usize {
        let id = self.id(name);
        self.find(id)
    }
}

/// The original tool's check, per entry: read both manifests raw and compare.
pub const SKOPEO_LOOP: &str = r#"
while read -r src dst tag; do
  a=$(skopeo inspect --raw --tls-verify=false "docker://$src:$tag")
  b=$(skopeo inspect --raw --tls-verify=false "docker://$dst:$tag")
  [ "$a" = "$b" ] || { echo "differs: $src $dst $tag" >&2; exit 1; }
done < "$1"
"#;

/// The no-op run scenario.
pub async fn noop_run_scenario(binary: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (Registry::start(), Registry::start());
    let (list, n) = mirrored_list(&src, &dst, dir.path()).await;
    let hosts = format!("{},{}", src.host(), dst.host());
    let writes = dst.blob_writes();
    let args: Vec<String> = vec![
        "--images-list".into(),
        list.display().to_string(),
        "--insecure-registry".into(),
        hosts,
        "run".into(),
        "--workers".into(),
        "16".into(),
    ];
    let (ours, printed) = measure_with_output(binary, &args, &dir.path().join("cache"));
    assert_eq!(
        dst.blob_writes(),
        writes,
        "the no-op run wrote to the target"
    );
    assert!(
        printed.contains(&format!("summary: 0 copied, {n} already present, 0 failed")),
        "not a no-op run: {}",
        printed.lines().last().unwrap_or_default()
    );
    let script = dir.path().join("loop.sh");
    std::fs::write(&script, SKOPEO_LOOP).unwrap();
    let theirs = measure(
        Path::new("/bin/bash"),
        &[script.display().to_string(), list.display().to_string()],
        &dir.path().join("cache"),
    );
    report_plain(
        &format!(
            "no-op run: {n} entries already mirrored (local registries), `image-mirror run --workers 16` vs a `skopeo inspect --raw` loop over source and target"
        ),
        ours,
        theirs,
    );
}

/// The publish scenario.
pub async fn publish_scenario(binary: &Path) {
    const JOBS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..JOBS)
        .map(|i| {
            format!(
                "registry.example.com/team/app{:03} mirror.example.com/team/app{:03} v1.{}.0",
                i / 100,
                i / 100,
                i % 100
            )
        })
        .collect();
    lines.sort_by(|a, b| sort_v(a.as_bytes(), b.as_bytes()));
    let list = dir.path().join("images-list");
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let url = rabbitmq::amqp_url();
    let prefix = format!("bench.publish.{}", std::process::id());
    let started = std::time::Instant::now();
    let out = Command::new(binary)
        .arg("--images-list")
        .arg(&list)
        .args(["--amqp-url", &url, "--queue-prefix", &prefix])
        .args(["producer", "sync"])
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let broker = AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap();
    let depth = broker.depths().await.unwrap();
    let ready = depth
        .iter()
        .find(|d| d.name == broker.topology().jobs())
        .map_or(0, |d| d.ready);
    broker.delete_topology().await.unwrap();
    assert_eq!(ready, JOBS as u64, "not every job reached the queue");
    println!("\n### publish: {JOBS} jobs with publisher confirms (local RabbitMQ)\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| `producer sync` wall s (start-up, parse, connect, publish) | {wall:.2} |");
    println!(
        "| jobs per second, whole command | {:.0} |",
        JOBS as f64 / wall
    );
    println!("| the command's own report | {} |", text.trim());
}

/// The `--missing` scenario: a no-op of the real list through fronts adding 25 ms to every
/// request, HEADs at both ends for every entry against one tag list per target repository.
pub async fn missing_scenario(binary: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (Registry::start(), Registry::start());
    let (list, n) = mirrored_list(&src, &dst, dir.path()).await;
    let slow = || FrontOptions {
        latency: Some(crate::economy::ROUND_TRIP),
        ..FrontOptions::default()
    };
    let (src_front, dst_front) = (
        Front::start(src.host(), slow()),
        Front::start(dst.host(), slow()),
    );
    let text = std::fs::read_to_string(&list)
        .unwrap()
        .replace(
            &format!("{} ", src.host()),
            &format!("{} ", src_front.host()),
        )
        .replace(
            &format!("{}/", src.host()),
            &format!("{}/", src_front.host()),
        )
        .replace(
            &format!("{}/", dst.host()),
            &format!("{}/", dst_front.host()),
        );
    std::fs::write(&list, text).unwrap();
    let hosts = format!("{},{}", src_front.host(), dst_front.host());
    let mut rows = Vec::new();
    let mut registry_cpu = Vec::new();
    for (mode, extra) in [
        ("HEAD/HEAD (`run`)", None),
        ("`run --missing`", Some("--missing")),
    ] {
        let mut args: Vec<String> = vec![
            "--images-list".into(),
            list.display().to_string(),
            "--insecure-registry".into(),
            hosts.clone(),
            "run".into(),
            "--workers".into(),
            "16".into(),
        ];
        args.extend(extra.map(str::to_owned));
        let before = (src_front.requests().len(), dst_front.requests().len());
        let cpu_before = src.cpu_seconds() + dst.cpu_seconds();
        let (usage, printed) = measure_with_output(binary, &args, &dir.path().join("cache"));
        registry_cpu.push(src.cpu_seconds() + dst.cpu_seconds() - cpu_before);
        assert!(
            printed.contains("0 copied") && printed.contains("0 failed"),
            "not a no-op: {}",
            printed.lines().last().unwrap_or_default()
        );
        rows.push((
            mode,
            usage,
            src_front.requests().len() - before.0,
            dst_front.requests().len() - before.1,
        ));
    }
    let config = regsync_config(&list, &src_front.host(), &dst_front.host(), dir.path());
    for (mode, missing) in [
        ("`regsync once`", false),
        ("`regsync once --missing`", true),
    ] {
        let before = (src_front.requests().len(), dst_front.requests().len());
        let cpu_before = src.cpu_seconds() + dst.cpu_seconds();
        let usage = crate::peers::regsync_once(&config, missing, &dir.path().join("cache"));
        registry_cpu.push(src.cpu_seconds() + dst.cpu_seconds() - cpu_before);
        rows.push((
            mode,
            usage,
            src_front.requests().len() - before.0,
            dst_front.requests().len() - before.1,
        ));
    }
    println!(
        "\n### no-op of the real list ({n} entries), 25 ms before every request at both ends\n"
    );
    println!(
        "regsync: one `type: image` entry per line, `parallel: 16` and `reqConcurrent: 16` per \
         registry (image-mirror: `--workers 16`, 16 requests per host).\n"
    );
    println!("| mode | wall s | CPU s | both registries' CPU s | requests at the sources | requests at the targets |");
    println!("|---|---:|---:|---:|---:|---:|");
    for ((mode, u, s, t), reg) in rows.iter().zip(&registry_cpu) {
        println!(
            "| {mode} | {:.2} | {:.2} | {reg:.2} | {s} | {t} |",
            u.wall, u.cpu
        );
    }
    let ratio = |label: &str, ours: usize, theirs: usize| {
        let (a, b) = (&rows[ours], &rows[theirs]);
        println!(
            "| {label} | {:.3} | {:.2} | {} / {} | {:.3} |",
            a.1.wall / b.1.wall,
            a.1.cpu / b.1.cpu,
            a.2,
            b.2,
            a.3 as f64 / b.3 as f64
        );
    };
    ratio("`run --missing` / `run`", 1, 0);
    ratio("`run` / `regsync once`", 0, 2);
    ratio("`run --missing` / `regsync once --missing`", 1, 3);
}

/// regsync's configuration for `list`, as its users write one: an image entry per line,
/// plain HTTP to both registries, the same concurrency as image-mirror's.
fn regsync_config(list: &Path, src: &str, dst: &str, dir: &Path) -> PathBuf {
    let pairs: Vec<(String, String)> = std::fs::read_to_string(list)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (s, t, tag) = (f.next()?, f.next()?, f.next()?);
            Some((format!("{s}:{tag}"), format!("{t}:{tag}")))
        })
        .collect();
    crate::peers::regsync_config(&pairs, &[src.to_owned(), dst.to_owned()], 16, dir)
}
