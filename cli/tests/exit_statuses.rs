//! Bad input exits 2 wherever it comes from: the command line, a file, or the environment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn image_mirror(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_image-mirror"));
    c.current_dir(dir)
        .env("DOCKER_CONFIG", dir.join("docker"))
        .env("IMAGE_MIRROR_CACHE_DIR", dir.join("cache"))
        .env_remove("AMQP_URL");
    c
}

#[test]
fn a_bad_github_api_url_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("images-list"),
        "a.example/x b.example/x v1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"x": {"images": ["a.example/x"], "versionSource": "github-releases:o/r"}}"#,
    )
    .unwrap();
    let out = image_mirror(dir.path())
        .arg("tags")
        .env("GITHUB_API_URL", "not a url at all")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("GITHUB_API_URL"), "{err}");
}

#[test]
fn an_unreadable_docker_config_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docker")).unwrap();
    std::fs::write(dir.path().join("docker/config.json"), "{ not json").unwrap();
    let out = image_mirror(dir.path())
        .args(["copy", "a.example/x:v1", "b.example/x:v1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn bad_retry_delays_are_bad_input_from_the_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let flag = image_mirror(dir.path())
        .args(["--retry-delays", "10s,soon", "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&flag.stderr);
    assert_eq!(flag.status.code(), Some(2), "{err}");
    assert!(err.contains("--retry-delays"), "{err}");
    assert!(err.contains("10s,soon"), "{err}");
    let env = image_mirror(dir.path())
        .arg("run")
        .env("IMAGE_MIRROR_RETRY_DELAYS", "0s")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&env.stderr);
    assert_eq!(env.status.code(), Some(2), "{err}");
    assert!(err.contains("zero"), "{err}");
}
