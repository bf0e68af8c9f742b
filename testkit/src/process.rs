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

/// A process a test started: killed (SIGKILL) and reaped when dropped while it still runs, so
/// that a test that fails leaves no process behind. It derefs to the [`Child`].
pub struct Running(Option<Child>);

/// Starting a [`Running`] process.
pub trait SpawnRunning {
    /// Spawns the command, panicking with its program's name when it cannot start.
    fn running(&mut self) -> Running;
}

impl SpawnRunning for Command {
    fn running(&mut self) -> Running {
        let child = self
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", self.get_program()));
        Running(Some(child))
    }
}

impl Running {
    /// The child, whose end is now the caller's (`wait_with_output`, say).
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("a running child")
    }
}

impl std::ops::Deref for Running {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a running child")
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a running child")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_dropped_while_running_is_killed_and_reaped() {
        let running = Command::new("sleep").arg("600").running();
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", running.id()));
        assert!(proc_dir.exists());
        drop(running);
        assert!(!proc_dir.exists(), "the process is still there");
    }
}
