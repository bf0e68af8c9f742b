//! `image-mirror sort` and `image-mirror validate` as users run them: on the real images-list,
//! and on every kind of bad input (exit 2, a message naming file and line or key, no file
//! changed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GOOD_CONFIG: &str =
    r#"{"traefik": {"images": ["library/traefik"], "versionSource": "registry"}}"#;
const GOOD_LIST: &str = "# header\nlibrary/traefik rancher/mirrored-library-traefik 3.3.5\n";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/rancher")
        .join(name)
}

fn image_mirror(list: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-mirror"))
        .arg("--images-list")
        .arg(list)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("IMAGE_MIRROR_IMAGES_LIST")
        .env_remove("IMAGE_MIRROR_CONFIG")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sort_check_passes_on_the_real_list() {
    let out = image_mirror(
        &fixture("images-list"),
        &fixture("config.json"),
        &["sort", "--check"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("2172 entries in sort -V order"));
}

#[test]
fn sort_check_names_the_first_line_out_of_order_and_sort_repairs_it() {
    let original = std::fs::read_to_string(fixture("images-list")).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    // Lines 100 and 200 (1-based) swap places: line 100 now holds a later entry, so line 101
    // is the first that sorts before its predecessor (as `sort -c` reports it).
    lines.swap(99, 199);
    let swapped = format!("{}\n", lines.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(&list, &swapped).unwrap();

    let out = image_mirror(&list, &fixture("config.json"), &["sort", "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let expected = format!(
        "{}:101: out of order: {:?} must come before line 100",
        list.display(),
        lines[100]
    );
    assert!(text(&out).contains(&expected), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&list).unwrap(),
        swapped,
        "--check wrote"
    );

    let out = image_mirror(&list, &fixture("config.json"), &["sort"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&list).unwrap(), original);
}

#[test]
fn validate_runs_every_kind_of_the_real_config() {
    let out = image_mirror(
        &fixture("images-list"),
        &fixture("config.json"),
        &["validate"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("22 rules"), "{t}");
    // helm-latest (calico-operator, cilium) and github-tagged-images-file (longhorn) run.
    for key in ["calico-operator", "cilium", "longhorn"] {
        assert!(!t.contains(&format!("  {key}: versionSource kind")), "{t}");
    }
}

/// A bad images-list line and what the error must say about it.
struct BadList {
    name: &'static str,
    content: &'static [u8],
    expect: &'static str,
}

/// A bad config.json and what the error must say about it.
struct BadConfig {
    name: &'static str,
    content: &'static [u8],
    expect: &'static str,
}

fn assert_refused(list: &Path, config: &Path, expect: &str, name: &str) {
    let before = (std::fs::read(list).unwrap(), std::fs::read(config).unwrap());
    for args in [&["validate"][..], &["sort"][..], &["sort", "--check"][..]] {
        let out = image_mirror(list, config, args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {t}");
        assert!(
            t.contains(expect),
            "{name} {args:?}: expected {expect:?} in {t}"
        );
    }
    let after = (std::fs::read(list).unwrap(), std::fs::read(config).unwrap());
    assert!(before == after, "{name}: a file changed");
    let entries = std::fs::read_dir(list.parent().unwrap()).unwrap().count();
    assert_eq!(entries, 2, "{name}: a stray file was left");
}

#[test]
fn each_bad_images_list_gives_exit_2_naming_file_and_line() {
    let cases = [
        BadList {
            name: "two fields",
            content: b"# h\nb/b rancher/b 1\nlibrary/traefik rancher/t\n",
            expect: "images-list:3: expected 3 fields (<source> <target> <tag>), found 2",
        },
        BadList {
            name: "four fields",
            content: b"# h\nb/b rancher/b 1 extra\n",
            expect: "images-list:2: expected 3 fields (<source> <target> <tag>), found 4",
        },
        BadList {
            name: "invalid reference",
            content: b"Quay.IO_/x rancher/b 1\n",
            expect: "images-list:1: invalid repository \"Quay.IO_/x\"",
        },
        BadList {
            name: "invalid tag",
            content: b"b/b rancher/b 1\nb/b rancher/b -1\n",
            expect: "images-list:2: invalid tag \"-1\"",
        },
        BadList {
            name: "duplicate",
            content: b"b/b rancher/b 1\nb/b rancher/b 2\ndocker.io/b/b  rancher/b 1\n",
            expect: "images-list:3: duplicate entry, first listed on line 1",
        },
        BadList {
            name: "not UTF-8",
            content: b"b/b rancher/b 1\nb/b rancher/b \xff\xfe\n",
            expect: "images-list:2: not valid UTF-8",
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("images-list");
        let config = dir.path().join("config.json");
        std::fs::write(&list, case.content).unwrap();
        std::fs::write(&config, GOOD_CONFIG).unwrap();
        assert_refused(&list, &config, case.expect, case.name);
    }
}

#[test]
fn each_bad_config_gives_exit_2_naming_file_and_key() {
    let cases = [
        BadConfig {
            name: "bad regex",
            content: br#"{"t": {"images": ["a/b"], "versionSource": "registry", "versionFilter": "^(v"}}"#,
            expect: "config.json: key t.versionFilter: \"^(v\" is not a valid regex",
        },
        BadConfig {
            name: "bad constraint",
            content: br#"{"t": {"images": ["a/b"], "versionSource": "registry", "versionConstraint": "> one"}}"#,
            expect: "config.json: key t.versionConstraint: \"> one\"",
        },
        BadConfig {
            name: "unknown key",
            content: br#"{"t": {"images": ["a/b"], "versionSource": "registry", "versionFiltr": "x"}}"#,
            expect: "config.json: key t.versionFiltr: unknown key (a rule's keys: images, versionSource",
        },
        BadConfig {
            name: "wrong JSON type",
            content: b"{\"t\": {\"images\": \"a/b\",\n \"versionSource\": \"registry\"}}",
            expect: "config.json: key t.images: invalid type: string \"a/b\", expected a sequence",
        },
        BadConfig {
            name: "latest neither bool nor boolean string",
            content: br#"{"t": {"images": ["a/b"], "versionSource": "registry", "latest": "yes"}}"#,
            expect: "config.json: key t.latest: expected true or false, found \"yes\"",
        },
        BadConfig {
            name: "not UTF-8",
            content: b"{\n\"t\": {\"images\": [\"a/b\xc3\"], \"versionSource\": \"registry\"}}",
            expect: "config.json:2: not valid UTF-8",
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("images-list");
        let config = dir.path().join("config.json");
        std::fs::write(&list, GOOD_LIST).unwrap();
        std::fs::write(&config, case.content).unwrap();
        // `sort` does not read config.json; validate does.
        let before = std::fs::read(&config).unwrap();
        let out = image_mirror(&list, &config, &["validate"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {t}", case.name);
        assert!(
            t.contains(case.expect),
            "{}: expected {:?} in {t}",
            case.name,
            case.expect
        );
        assert_eq!(std::fs::read(&config).unwrap(), before);
        assert_eq!(std::fs::read(&list).unwrap(), GOOD_LIST.as_bytes());
    }
}

#[test]
fn validate_reports_every_problem_of_both_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    let config = dir.path().join("config.json");
    std::fs::write(&list, "b/b rancher/b 1\nb/b rancher/b\nc/c rancher/c -1\n").unwrap();
    std::fs::write(
        &config,
        br#"{"a": {"images": "a/b", "versionSource": "registry", "typo": 1},
            "b": {"images": ["a/b"], "versionSource": "registry", "versionFilter": "^(v"},
            "c": {"images": ["a/b"]}}"#,
    )
    .unwrap();
    let out = image_mirror(&list, &config, &["validate"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    for expected in [
        "images-list:2:",
        "images-list:3:",
        "key a.images: invalid type",
        "key a.typo: unknown key",
        "key b.versionFilter",
        "key c.versionSource: missing",
    ] {
        assert!(t.contains(expected), "{expected:?} missing from {t}");
    }
}

#[test]
fn validate_reads_a_missing_config_json_as_no_rules() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images-list");
    std::fs::write(&list, GOOD_LIST).unwrap();
    let out = image_mirror(&list, &dir.path().join("config.json"), &["validate"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("images-list: 1 entries"), "{t}");
    assert!(t.contains("config.json: absent: no rules"), "{t}");
}

#[test]
fn a_missing_file_is_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("nope");
    let out = image_mirror(&list, &fixture("config.json"), &["sort", "--check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains(&list.display().to_string()));
}
