//! Lines appended to a cache file by a thread of its own, so that no copy waits on the disk;
//! dropped, it writes what is left. The blob location cache and the target tag record use it.

use std::fs::File;
use std::io::Write;
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

/// Appends lines to `file` on a thread of its own.
#[derive(Debug)]
pub(crate) struct Appender {
    lines: Mutex<Option<mpsc::Sender<String>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Appender {
    pub(crate) fn new(mut file: File, what: &'static str) -> Self {
        let (tx, rx) = mpsc::channel::<String>();
        let thread = std::thread::spawn(move || {
            for line in rx {
                if let Err(e) = file.write_all(line.as_bytes()) {
                    tracing::debug!(error = %e, "could not write the {what}");
                }
            }
        });
        Self {
            lines: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues `line` (ending in a newline) for the file.
    pub(crate) fn append(&self, line: String) {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = lines.as_ref() {
            let _ = tx.send(line);
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        drop(self.lines.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}
