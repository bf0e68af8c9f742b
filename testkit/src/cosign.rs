//! The real cosign, offline, in a folder of its own: its home, Docker config and TUF cache are
//! the folder (no transparency log or TUF repository is reached), its key password given.

use std::path::Path;
use std::process::{Command, Output};

use crate::tools;

/// `cosign ARGS` in `dir`, its keys' password `password`.
pub fn run(dir: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(tools::path("cosign"))
        .args(args)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", password)
        .env("TUF_ROOT", dir.join("tuf"))
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir)
        .output()
        .expect("cosign runs (scripts/test installs it)")
}

/// `cosign ARGS` in `dir` with an empty password; panics with what it said when it fails.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, "", args);
    let said = text(&out);
    assert!(out.status.success(), "cosign {args:?}: {said}");
    said
}

/// Plain HTTP to the test's registries.
pub const HTTP: [&str; 2] = ["--allow-insecure-registry", "--allow-http-registry"];

/// The flags of a `cosign sign` or `attest` that writes, offline, in one of cosign's two forms:
/// cosign 2's legacy digest tags (no transparency log), or cosign 3's bundle referrers (with
/// `signing-config.json`, a signing config without services, in the folder).
pub fn writing_flags(legacy: bool) -> Vec<&'static str> {
    let mut flags = HTTP.to_vec();
    if legacy {
        flags.extend([
            "--new-bundle-format=false",
            "--use-signing-config=false",
            "--tlog-upload=false",
        ]);
    } else {
        flags.extend(["--signing-config", "signing-config.json"]);
    }
    flags
}

/// What a command wrote, stdout then stderr.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}
