//! The `sort -V` comparator against the machine's GNU `sort -V` (C locale), on the real list
//! and on random lines from a hostile alphabet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use image_mirror_common::version_sort::sort_v;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn gnu_sort_v(lines: &[String]) -> Vec<String> {
    let mut child = Command::new("sort")
        .arg("-V")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("GNU sort runs");
    let mut input = lines.join("\n");
    input.push('\n');
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn ours(lines: &[String]) -> Vec<String> {
    let mut v = lines.to_vec();
    v.sort_by(|a, b| sort_v(a.as_bytes(), b.as_bytes()));
    v
}

fn assert_same_order(lines: &[String]) {
    let expected = gnu_sort_v(lines);
    let got = ours(lines);
    if let Some(i) = (0..expected.len()).find(|&i| expected[i] != got[i]) {
        panic!(
            "first difference at {i}: sort -V has {:?}, ours has {:?}",
            expected[i], got[i]
        );
    }
    assert_eq!(expected.len(), got.len());
}

#[test]
fn agrees_with_gnu_sort_on_the_real_list() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/rancher/images-list");
    let text = std::fs::read_to_string(path).unwrap();
    let mut entries: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert_eq!(entries.len(), 2172);
    entries.reverse();
    assert_same_order(&entries);
}

#[test]
fn agrees_with_gnu_sort_on_random_hostile_lines() {
    const ALPHABET: &[u8] =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_~/: ";
    // Digits weigh more, so that numeric runs (with leading zeros) are common.
    for seed in [1_u64, 2, 3] {
        let mut rng = StdRng::seed_from_u64(seed);
        let lines: Vec<String> = (0..10_000)
            .map(|_| {
                let len = rng.random_range(0..24);
                (0..len)
                    .map(|_| {
                        if rng.random_bool(0.35) {
                            char::from(b'0' + rng.random_range(0..10_u8))
                        } else {
                            char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])
                        }
                    })
                    .collect()
            })
            .collect();
        assert_same_order(&lines);
    }
}
