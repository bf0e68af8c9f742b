//! What the hostile-registry test files share: the credentials the registry asks for, a
//! Docker config holding them, and the binary run under GNU time (its output and peak RSS).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use image_mirror_testkit::hostile::Auth;
use image_mirror_testkit::{HostileRegistry, Registry};

pub const USER: &str = "mirror";
pub const PASSWORD: &str = "push-rights-7c1d2e";
pub const MIB: u64 = 1024 * 1024;

pub fn basic() -> Auth {
    Auth::Basic {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

pub fn bearer() -> Auth {
    Auth::Bearer {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

/// A Docker config (in `dir/docker`) with credentials for `host`.
pub fn docker_config(dir: &Path, host: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::create_dir_all(dir.join("docker")).unwrap();
    std::fs::write(
        dir.join("docker/config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
}

/// Runs the binary under GNU time: its output, and its peak RSS in KiB.
pub fn image_mirror(args: &[&str], dir: &Path, insecure: &[String]) -> (Output, u64) {
    let rss_file = dir.join("rss");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--insecure-registry")
        .arg(insecure.join(","))
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("IMAGE_MIRROR_INSECURE_REGISTRIES")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let rss = std::fs::read_to_string(&rss_file)
        .unwrap_or_default()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (out, rss)
}

/// `copy HOSTILE/app:v1 DST/mirror/app:v1` after the global flags `globals`, plain HTTP
/// allowed to both: its output.
pub fn copy_app(hostile: &HostileRegistry, dst: &Registry, dir: &Path, globals: &[&str]) -> Output {
    let from = format!("{}/app:v1", hostile.host());
    let to = format!("{}/mirror/app:v1", dst.host());
    let mut args = globals.to_vec();
    args.extend(["copy", from.as_str(), to.as_str()]);
    image_mirror(&args, dir, &[hostile.host(), dst.host().to_owned()]).0
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every request that reached the other host carried no `Authorization`.
pub fn no_credentials_elsewhere(hostile: &HostileRegistry) {
    for r in hostile.requests_elsewhere() {
        assert_eq!(
            r.header("authorization"),
            None,
            "{} {} reached {} with credentials",
            r.method,
            r.target,
            hostile.other_host()
        );
    }
}

/// The registry itself did get credentials: the test is not passing for want of any.
pub fn credentials_were_used(hostile: &HostileRegistry) {
    assert!(
        hostile
            .requests()
            .iter()
            .any(|r| r.header("host") == Some(hostile.host().as_str())
                && r.header("authorization").is_some()),
        "no request to the registry itself carried credentials"
    );
}
