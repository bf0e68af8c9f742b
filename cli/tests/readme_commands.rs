//! Every command the README and the pages of docs/ show (each `$ ` line of their `console`
//! blocks) runs, in their order, against local registries, a real RabbitMQ and a GitHub
//! stand-in. Host names of the examples are mapped onto the local registries; a command whose
//! shown output is a failure must fail, every other one must succeed; long-running roles must
//! start and stop cleanly. The README's quick start is run verbatim by `quick_start.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;
use std::process::{Command, Stdio};

use image_mirror_queue::amqp::AmqpBroker;
use image_mirror_queue::topology::Topology;
use image_mirror_testkit::github::FakeGithub;
use image_mirror_testkit::images;
use image_mirror_testkit::process;
use image_mirror_testkit::process::SpawnRunning;
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{rabbitmq, Registry};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A `$ ` line of the README and the output shown under it.
struct Example {
    line: usize,
    /// `page:line`.
    command_at: String,
    command: String,
    output: Vec<String>,
}

fn examples(readme: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut in_console = false;
    let mut verbatim = false;
    for (i, line) in readme.lines().enumerate() {
        if line.starts_with("<!-- quick start") {
            verbatim = true;
            continue;
        }
        if line.starts_with("```") {
            in_console = line.trim() == "```console" && !verbatim;
            if line.trim() == "```" {
                verbatim = false;
            }
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            out.push(Example {
                line: i + 1,
                command_at: String::new(),
                command: cmd.to_owned(),
                output: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.output.push(line.to_owned());
        }
    }
    out
}

/// Whether the output the README shows is that of a failure.
fn shows_failure(output: &[String]) -> bool {
    output.iter().any(|l| {
        l.contains("out of order")
            || l.starts_with("add-tag: nothing was added")
            || l.starts_with("add-image: nothing was added")
            || l.split(", ")
                .last()
                .and_then(|t| t.strip_suffix(" failed"))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n > 0)
    })
}

async fn github_fake(base_list: &str) -> (MockServer, FakeGithub) {
    let releases = MockServer::start().await;
    let rel = |t: &str| json!({"tag_name": t, "draft": false, "prerelease": false});
    Mock::given(method("GET"))
        .and(path("/repos/etcd-io/etcd/releases"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([rel("v3.5.22"), rel("v3.5.21")])),
        )
        .mount(&releases)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/flannel-io/flannel/releases/latest"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rel("v0.26.7")))
        .mount(&releases)
        .await;
    let prs = FakeGithub::start("acme", "image-mirror", "main", "images-list", base_list).await;
    (releases, prs)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_the_readme_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let examples: Vec<Example> = pages
        .iter()
        .flat_map(|page| {
            let text = std::fs::read_to_string(page).unwrap();
            let name = page.file_name().unwrap().to_string_lossy().into_owned();
            examples(&text).into_iter().map(move |mut e| {
                e.command_at = format!("{name}:{}", e.line);
                e
            })
        })
        .collect();
    assert!(
        examples.len() >= 15,
        "only {} commands found",
        examples.len()
    );

    // Upstream images the examples name, in a local source registry.
    let (src, dst) = (Registry::start(), Registry::start());
    let (s, d) = (src.host().to_owned(), dst.host().to_owned());
    for (i, (repo, tag)) in [
        ("quay.io/coreos/etcd", "v3.5.21"),
        ("quay.io/coreos/etcd", "v3.5.22"),
        ("flannel/flannel", "v0.26.6"),
        ("flannel/flannel", "v0.26.7"),
        ("flannel/flannel", "v0.26.8"),
        ("library/traefik", "v3.3.6"),
    ]
    .iter()
    .enumerate()
    {
        push_image(&src.url(), repo, tag, &images::oci_index(9000 + i as u64)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let list = format!(
        "# images mirrored by this project\n\
         {s}/flannel/flannel rancher/mirrored-flannel-flannel v0.26.6\n\
         {s}/quay.io/coreos/etcd rancher/mirrored-coreos-etcd v3.5.21\n"
    );
    std::fs::write(dir.path().join("images-list"), &list).unwrap();
    std::fs::write(
        dir.path().join("other-list"),
        format!(
            "{s}/quay.io/coreos/etcd rancher/mirrored-coreos-etcd v3.5.21\n\
             {s}/flannel/flannel rancher/mirrored-flannel-flannel v0.26.6\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({
            "etcd": {"images": [format!("{s}/quay.io/coreos/etcd")], "versionSource": "github-releases:etcd-io/etcd", "versionConstraint": ">3.5.10"},
            "flannel": {"images": [format!("{s}/flannel/flannel")], "versionSource": "github-latest-release:flannel-io/flannel"}
        })
        .to_string(),
    )
    .unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "images-list"]);
    git(dir.path(), &["commit", "-q", "-m", "base"]);
    git(
        dir.path(),
        &["update-ref", "refs/remotes/origin/main", "HEAD"],
    );
    let (releases, prs) = github_fake(&list).await;
    let url = rabbitmq::amqp_url();
    let prefix = format!("test.readme.{}", std::process::id());

    // The examples' hosts, mapped onto the local ones.
    let mapping: Vec<(String, String)> = vec![
        ("amqp://mirror:secret@rabbitmq:5672/%2f".into(), url.clone()),
        (
            "--insecure-registry 127.0.0.1:5000".into(),
            format!("--insecure-registry {s},{d}"),
        ),
        ("127.0.0.1:5000".into(), d.clone()),
        ("registry.example.com".into(), d.clone()),
        ("quay.io/".into(), format!("{s}/quay.io/")),
        (" traefik:".into(), format!(" {s}/library/traefik:")),
        ("flannel/flannel".into(), format!("{s}/flannel/flannel")),
    ];
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    for ex in &examples {
        let mut cmd = ex.command.clone();
        for (from, to) in &mapping {
            cmd = cmd.replace(from, to);
        }
        let mut words: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
        if words[0] == "export" {
            let (k, v) = words[1].split_once('=').unwrap();
            exported.insert(k.to_owned(), v.to_owned());
            continue;
        }
        let mut env: BTreeMap<String, String> = exported.clone();
        while let Some((k, v)) = words[0].split_once('=') {
            env.insert(k.to_owned(), v.to_owned());
            words.remove(0);
        }
        assert_eq!(
            words[0], "image-mirror",
            "{}: {}",
            ex.command_at, ex.command
        );
        let args = &words[1..];
        let needs_broker = args
            .iter()
            .any(|a| ["producer", "worker", "status", "committer"].contains(&a.as_str()));
        let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
        c.current_dir(dir.path())
            .args(args)
            .env_remove("AMQP_URL")
            .env("IMAGE_MIRROR_INSECURE_REGISTRIES", format!("{s},{d}"))
            .env("DEST_REGISTRY_OVERRIDE", &d)
            .env("IMAGE_MIRROR_QUEUE_PREFIX", &prefix)
            .env("IMAGE_MIRROR_CACHE_DIR", dir.path().join("cache"))
            .env("DOCKER_CONFIG", dir.path())
            .env("GITHUB_TOKEN", "ghp_readme")
            .env(
                "GITHUB_API_URL",
                if args.iter().any(|a| a == "committer") {
                    prs.uri()
                } else {
                    releases.uri()
                },
            )
            .envs(&env);
        if needs_broker {
            c.env("AMQP_URL", env.get("AMQP_URL").unwrap_or(&url));
        }
        let what = format!("{}: {}", ex.command_at, ex.command);
        let long_running = args.iter().any(|a| a == "worker" || a == "committer");
        if long_running {
            // A role: it must come up, then stop cleanly on SIGTERM.
            let mut child = c.stdout(Stdio::null()).stderr(Stdio::piped()).running();
            let role = args
                .iter()
                .find(|a| *a == "worker" || *a == "committer")
                .unwrap();
            let mut logs = BufReader::new(child.stderr.take().unwrap());
            process::wait_for_line(&mut logs, &format!("{role} started"), &what);
            process::terminate(&child);
            let rest = process::drain(logs);
            let code = child.wait().unwrap().code();
            let rest = rest.join().unwrap();
            assert_eq!(code, Some(0), "{what}\n{rest}");
            continue;
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let expected = if shows_failure(&ex.output) { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "{what}\n{text}");
    }
    AmqpBroker::connect(&url, Topology::new(&prefix))
        .await
        .unwrap()
        .delete_topology()
        .await
        .unwrap();
}
