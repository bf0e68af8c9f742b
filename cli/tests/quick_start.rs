//! The README's quick start, run verbatim: its `$ ` lines in one shell, from the repository's
//! folder, with the built `image-mirror` first on the `PATH`, as a newcomer types them; what each
//! prints must be what the README shows (`…` stands for what differs from run to run: digests,
//! times, byte counts; finished jobs may end in any order).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A `$ ` line of the quick start and the lines shown under it.
struct Step {
    command: String,
    shown: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn quick_start() -> Vec<Step> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("<!-- quick start"))
        .skip(1);
    assert_eq!(
        lines.next(),
        Some("```console"),
        "the quick start is not a console block"
    );
    let mut steps: Vec<Step> = Vec::new();
    for line in lines.take_while(|l| !l.starts_with("```")) {
        match line.strip_prefix("$ ") {
            Some(command) => steps.push(Step {
                command: command.to_owned(),
                shown: Vec::new(),
            }),
            None => steps.last_mut().unwrap().shown.push(line.to_owned()),
        }
    }
    assert!(steps.len() >= 8, "{} steps", steps.len());
    steps
}

/// A job line's text without its counter (`[1/2] copied x` is `copied x`): jobs end in any
/// order.
fn without_counter(line: &str) -> &str {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((counter, rest)) if counter.trim().contains('/') => rest,
        _ => line,
    }
}

/// Whether `actual` is what `shown` shows, `…` standing for anything.
fn matches(shown: &str, actual: &str) -> bool {
    let (shown, actual) = (without_counter(shown), without_counter(actual));
    let parts: Vec<&str> = shown.split('…').collect();
    if parts.len() == 1 {
        return shown == actual;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if actual.len() < first.len() + last.len()
        || !actual.starts_with(first)
        || !actual.ends_with(last)
    {
        return false;
    }
    let mut rest = &actual[first.len()..actual.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Stops the sample registries even when the test fails half way.
struct Registries;

impl Drop for Registries {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/try-registries"))
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(root().join("target/try"));
    }
}

#[test]
fn the_quick_start_runs_verbatim_and_prints_what_the_readme_shows() {
    let steps = quick_start();
    let mut script = String::from("set -u\n");
    for (i, step) in steps.iter().enumerate() {
        script.push_str(&format!(
            "echo '@@@ {i}'\n{} 2>&1\necho \"@@@ status $?\"\n",
            step.command
        ));
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_image-mirror"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tempfile::tempdir().unwrap();
    let _registries = Registries;
    let mut shell = Command::new("bash");
    shell
        .arg("-c")
        .arg(&script)
        .current_dir(root())
        .env("PATH", path)
        .env("DOCKER_CONFIG", home.path())
        .env("IMAGE_MIRROR_CACHE_DIR", home.path().join("cache"));
    for (name, _) in std::env::vars() {
        let theirs = name.starts_with("IMAGE_MIRROR_")
            || [
                "AMQP_URL",
                "DEST_REGISTRY_OVERRIDE",
                "DEST_ORG_OVERRIDE",
                "RUST_LOG",
            ]
            .contains(&name.as_str());
        if theirs && name != "IMAGE_MIRROR_CACHE_DIR" {
            shell.env_remove(name);
        }
    }
    let out = shell.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut printed: Vec<Vec<String>> = Vec::new();
    let mut statuses: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(status) = line.strip_prefix("@@@ status ") {
            statuses.push(status.to_owned());
        } else if line.starts_with("@@@ ") {
            printed.push(Vec::new());
        } else if let Some(last) = printed.last_mut() {
            last.push(line.to_owned());
        }
    }
    assert_eq!(printed.len(), steps.len(), "{text}");
    for ((step, actual), status) in steps.iter().zip(&printed).zip(&statuses) {
        let said = format!("$ {}\n{}", step.command, actual.join("\n"));
        assert_eq!(status, "0", "{said}");
        assert_eq!(
            actual.len(),
            step.shown.len(),
            "printed other lines than the README shows:\n{said}\n--- shown:\n{}",
            step.shown.join("\n")
        );
        let mut unused: Vec<&String> = actual.iter().collect();
        for shown in &step.shown {
            let found = unused.iter().position(|a| matches(shown, a));
            match found {
                Some(i) => {
                    unused.remove(i);
                }
                None => panic!("{shown:?} is not what it printed:\n{said}"),
            }
        }
    }
}

#[test]
fn the_matcher_reads_ellipses_and_job_counters() {
    assert!(matches(
        "  digest      sha256:…",
        "  digest      sha256:abc"
    ));
    assert!(!matches("  digest      sha256:…", "  digest      md5:abc"));
    assert!(matches(
        "summary: 1 copied, 0 failed, … bytes sent, …",
        "summary: 1 copied, 0 failed, 20858 bytes sent, 0.1s"
    ));
    assert!(!matches("summary: 1 copied, …", "summary: 2 copied, 3"));
    assert!(matches("[1/2] copied a", "[2/2] copied a"));
    assert!(!matches("[1/2] copied a", "[2/2] copied b"));
    assert!(matches("stopped", "stopped"));
}
