//! The history of runs: appended, the last 100 kept, newest first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use image_mirror_notify::{Counts, RunFinished, RunHistory, RunStatus};

fn run(copied: u64) -> RunFinished {
    RunFinished {
        role: "run".into(),
        status: RunStatus::Succeeded,
        started: Utc::now(),
        duration_ms: 10,
        counts: Counts {
            copied,
            ..Counts::default()
        },
        bytes_sent: 0,
        failures: Vec::new(),
        drifted: Vec::new(),
        deferred: Vec::new(),
        new_images: Vec::new(),
        pull_request: None,
    }
}

#[test]
fn the_last_hundred_runs_are_kept_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let history = RunHistory::in_dir(&dir.path().join("cache"));
    assert!(history.last(5).unwrap().is_empty());
    for i in 0..105 {
        history.append(&run(i)).unwrap();
    }
    let all = history.all().unwrap();
    assert_eq!(all.len(), 100);
    assert_eq!(all[0].counts.copied, 5);
    let last = history.last(3).unwrap();
    let copied: Vec<u64> = last.iter().map(|r| r.counts.copied).collect();
    assert_eq!(copied, [104, 103, 102]);
}

#[test]
fn a_history_that_does_not_parse_is_an_error_naming_it_and_is_started_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.json");
    std::fs::write(&path, "not json").unwrap();
    let history = RunHistory::at(&path);
    let e = history.last(1).unwrap_err().to_string();
    assert!(e.contains("runs.json"), "{e}");
    history.append(&run(1)).unwrap();
    assert_eq!(history.last(5).unwrap().len(), 1);
}
