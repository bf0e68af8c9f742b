//! Running a tool under GNU time, and the tables of what it used.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// What one tool used for a scenario.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub wall: f64,
    pub cpu: f64,
    pub peak_rss_mib: f64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.wall += other.wall;
        self.cpu += other.cpu;
        self.peak_rss_mib = self.peak_rss_mib.max(other.peak_rss_mib);
    }
}

/// Runs `command`, which must succeed (else its output is the panic).
pub fn run_ok(command: &mut std::process::Command) -> std::process::Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command under GNU time and reads its CPU time and peak RSS.
pub fn measure(program: &Path, args: &[String], cache: &Path) -> Usage {
    measure_with_output(program, args, cache).0
}

/// Like [`measure`], and returns what the command printed on stdout.
pub fn measure_with_output(program: &Path, args: &[String], cache: &Path) -> (Usage, String) {
    match run_measured(program, args, cache) {
        Ok(done) => done,
        Err(e) => panic!("{} {args:?} failed: {e}", program.display()),
    }
}

/// Like [`measure`] for a command that may fail: what it printed when it did.
pub fn try_measure(program: &Path, args: &[String], cache: &Path) -> Result<Usage, String> {
    run_measured(program, args, cache).map(|(usage, _)| usage)
}

/// Like [`try_measure`], for a command that may never end: killed after `limit`, and an
/// error saying so.
pub fn try_measure_within(
    program: &Path,
    args: &[String],
    cache: &Path,
    limit: std::time::Duration,
) -> Result<Usage, String> {
    let mut child = Command::new(program)
        .env("IMAGE_MIRROR_CACHE_DIR", cache)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let wall = started.elapsed().as_secs_f64();
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(err);
            }
            return Ok(Usage {
                wall,
                ..Usage::default()
            });
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("hung: no end within {} s, killed", limit.as_secs()));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn run_measured(program: &Path, args: &[String], cache: &Path) -> Result<(Usage, String), String> {
    let stats = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .env("IMAGE_MIRROR_CACHE_DIR", cache)
        .arg("-f")
        .arg("%U %S %M")
        .arg("-o")
        .arg(stats.path())
        .arg(program)
        .args(args)
        .output()
        .expect("GNU time (Debian package `time`)");
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let text = std::fs::read_to_string(stats.path()).unwrap();
    let fields: Vec<f64> = text
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let usage = Usage {
        wall,
        cpu: fields[0] + fields[1],
        peak_rss_mib: fields[2] / 1024.0,
    };
    Ok((usage, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The table of one copy scenario for several tools, image-mirror first, then image-mirror's
/// ratio to each of the others (below 1: image-mirror used less).
pub fn report_many(name: &str, rows: &[(&str, Usage)], gib: f64) {
    println!("\n### {name}\n");
    println!("| tool | wall s | CPU s | CPU s per GiB | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    for (tool, u) in rows {
        println!(
            "| {tool} | {:.2} | {:.2} | {:.2} | {:.1} |",
            u.wall,
            u.cpu,
            u.cpu / gib,
            u.peak_rss_mib
        );
    }
    let Some((_, ours)) = rows.first() else {
        return;
    };
    for (tool, theirs) in &rows[1..] {
        println!(
            "| image-mirror / {tool} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ours.wall / theirs.wall,
            ours.cpu / theirs.cpu,
            ours.cpu / theirs.cpu,
            ours.peak_rss_mib / theirs.peak_rss_mib
        );
    }
}

/// A table for scenarios where bytes copied mean nothing; the last row says how many times
/// faster image-mirror was.
pub fn report_plain(name: &str, ours: Usage, theirs: Usage) {
    println!("\n### {name}\n");
    println!("| tool | wall s | CPU s | peak RSS MiB |");
    println!("|---|---:|---:|---:|");
    for (tool, u) in [("image-mirror", ours), ("baseline", theirs)] {
        println!(
            "| {tool} | {:.2} | {:.2} | {:.1} |",
            u.wall, u.cpu, u.peak_rss_mib
        );
    }
    println!(
        "| baseline / image-mirror (times faster) | {:.1} | {:.1} | |",
        theirs.wall / ours.wall,
        theirs.cpu / ours.cpu
    );
}
