//! The house rules ARCHITECTURE.md states, held by the code itself: no function of a library
//! crate over 80 lines, and the binary holding wiring and the process's edges, not rules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// `(name, first line, lines)` of every function with a body in `text`.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let item = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) async fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .find_map(|p| line.strip_prefix(p));
        let Some(rest) = item else {
            i += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened, mut j) = (0_i64, false, i);
        while j < lines.len() {
            for c in lines[j].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                break;
            }
            if !opened && lines[j].trim_end().ends_with(';') {
                break;
            }
            j += 1;
        }
        if opened {
            out.push((name, i + 1, j - i + 1));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn no_function_of_a_library_crate_is_over_80_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut long = Vec::new();
    for krate in [
        "common",
        "common/registry",
        "common/queue",
        "common/github",
        "producer",
        "worker",
        "committer",
    ] {
        for file in sources(&root.join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (name, line, len) in functions(&text) {
                if len > 80 {
                    long.push(format!("{}:{line} {name} ({len} lines)", file.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "split into named steps:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_binary_wires_and_does_not_hold_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    // Making jobs and lines, asking registries, parsing images-list: the libraries' rules.
    let rules = [
        "MirrorJob::new(",
        "Entry {",
        "JobEvent::for_job(",
        ".manifest_digest(",
        "ImagesList::parse(",
        "with_registry(",
    ];
    let mut found = Vec::new();
    for file in sources(&root) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for rule in rules {
                if line.contains(rule) && !line.trim_start().starts_with("//") {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "rules in the binary:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_function_counter_counts() {
    let text =
        "fn a() {\n    x;\n}\n\npub(crate) async fn b(\n    y: u8,\n) -> u8 {\n    {\n    }\n}\n";
    assert_eq!(
        functions(text),
        vec![("a".to_owned(), 1, 3), ("b".to_owned(), 5, 6)]
    );
}
