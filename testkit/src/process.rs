//! Driving the binary's long-running roles in tests: wait for a line they print (no sleeping),
//! keep reading the rest so they never block on a full pipe, and stop them as an orchestrator
//! does, with SIGTERM.

use std::io::{BufRead, Read};
use std::process::{Child, Command};
use std::thread::JoinHandle;

/// Reads `reader` until a line contains `needle` and returns that line; panics, naming `who`,
/// if the stream ends first.
pub fn wait_for_line(reader: &mut impl BufRead, needle: &str, who: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .expect("read the process output");
        assert!(n > 0, "{who} ended before printing {needle:?}");
        if line.contains(needle) {
            return line.trim_end().to_owned();
        }
    }
}

/// Reads `reader` on a thread until a line contains `needle`, then drains the rest (so the
/// process never blocks writing); returns that line. Panics, naming `who`, when the stream
/// ends first or no such line comes `within`.
pub fn wait_for_line_within(
    mut reader: impl BufRead + Send + 'static,
    needle: &str,
    who: &str,
    within: std::time::Duration,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = needle.to_owned();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            if line.contains(&wanted) {
                let _ = tx.send(line.trim_end().to_owned());
                let mut rest = String::new();
                let _ = reader.read_to_string(&mut rest);
                return;
            }
        }
    });
    match rx.recv_timeout(within) {
        Ok(line) => line,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{who} printed no line with {needle:?} within {within:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{who} ended before printing {needle:?}")
        }
    }
}

/// Reads what is left of `reader` on a thread (so the process never blocks writing) and
/// returns it when joined.
pub fn drain(mut reader: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        rest
    })
}

/// Sends SIGTERM to `child`.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {}", child.id());
}
