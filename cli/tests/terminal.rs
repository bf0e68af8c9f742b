//! The live display as a person sees it: the binary runs in a pseudo-terminal, what it draws
//! is read through a terminal emulator (vt100), and Ctrl-C is typed on the terminal. While a
//! 200 MiB blob goes up a slow link, bytes in the target and the rate show within two seconds;
//! the message Ctrl-C prints goes above the display, never through it, and once the process
//! has ended no bar is left on the screen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_mirror_testkit::images::{self, Format};
use image_mirror_testkit::push::push_image;
use image_mirror_testkit::{
    Blob, FaultProxy, Faults, Implementation, Platform, Registry, RegistryOptions,
};
use portable_pty::{native_pty_system, CommandBuilder, PtySize};

const MIB: u64 = 1024 * 1024;
const ROWS: u16 = 30;
const COLS: u16 = 200;

/// What the terminal shows, as the bytes arrive.
#[derive(Clone)]
struct Screen(Arc<Mutex<vt100::Parser>>);

impl Screen {
    fn rows(&self) -> Vec<String> {
        let parser = self.0.lock().unwrap();
        parser.screen().rows(0, COLS).collect()
    }

    /// Waits up to `within` for a row `matches`; the rows then.
    fn wait_for(
        &self,
        within: Duration,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let rows = self.rows();
            if rows.iter().any(|r| matches(r)) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the screen within {within:?}:\n{}",
                rows.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A row of the per-copy display: `  12.50 MiB/200.00 MiB   20.00 MiB/s  src -> dst`.
fn is_copy_row(row: &str) -> bool {
    row.contains(" -> ") && row.contains("MiB/s") && row.contains("/200.00 MiB")
}

/// A row of the overall display: `⠁ [00:00:03] [====>   ] 0/1 jobs …`.
fn is_overall_row(row: &str) -> bool {
    row.contains("0/1 jobs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_display_shows_bytes_at_once_and_a_message_leaves_no_stale_bar() {
    let src = Registry::start();
    let dst = Registry::start_with(&RegistryOptions::default().on(Implementation::Distribution3));
    let link = FaultProxy::start(
        dst.host(),
        Faults {
            upload_rate: Some(20 * MIB),
            ..Faults::default()
        },
    );
    let layer = Blob::new(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        images::random_bytes(31, usize::try_from(200 * MIB).unwrap()),
    );
    let image = images::single_with_layers(Format::Oci, &Platform::LINUX_AMD64, vec![layer]);
    push_image(&src.url(), "up/big", "v1", &image).await;
    let dir = tempfile::tempdir().unwrap();

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: ROWS,
            cols: COLS,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_image-mirror"));
    cmd.args([
        "copy",
        "--insecure-registry",
        &format!("{},{}", src.host(), link.host()),
        &format!("{}/up/big:v1", src.host()),
        &format!("{}/mirror/big:v1", link.host()),
    ]);
    cmd.env("TERM", "xterm-256color");
    cmd.env("IMAGE_MIRROR_CACHE_DIR", dir.path());
    cmd.env("DOCKER_CONFIG", dir.path());
    cmd.env_remove("RUST_LOG");
    cmd.env_remove("NO_COLOR");
    let started = Instant::now();
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let screen = Screen(Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0))));
    let mut reader = pty.master.try_clone_reader().unwrap();
    let feed = screen.clone();
    let reading = std::thread::spawn(move || {
        let mut buf = [0_u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            feed.0.lock().unwrap().process(&buf[..n]);
        }
    });

    // Bytes and the rate, within two seconds of starting.
    let rows = screen.wait_for(Duration::from_secs(2), "byte progress", is_copy_row);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        rows.iter().filter(|r| is_overall_row(r)).count(),
        1,
        "{}",
        rows.join("\n")
    );
    // The blob moves on the screen.
    let moving = |rows: &[String]| {
        rows.iter().find(|r| is_copy_row(r)).map(|r| {
            r.trim_start()
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
    };
    let before = moving(&rows);
    screen.wait_for(Duration::from_secs(5), "the byte count moving", |r| {
        is_copy_row(r)
            && Some(
                r.trim_start()
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ) != before
    });

    // Ctrl-C, typed: its message goes above the display.
    let mut keys = pty.master.take_writer().unwrap();
    keys.write_all(b"\x03").unwrap();
    keys.flush().unwrap();
    let rows = screen.wait_for(Duration::from_secs(2), "the stop message", |r| {
        r.starts_with("stopping: ")
    });
    for row in rows.iter().filter(|r| r.contains("stopping: ")) {
        assert!(
            row.starts_with("stopping: "),
            "a message drawn into a bar: {row:?}"
        );
        assert!(
            !row.contains("MiB/s") && !row.contains(" jobs"),
            "a message drawn into a bar: {row:?}"
        );
    }
    assert!(
        rows.iter().filter(|r| is_overall_row(r)).count() <= 1,
        "a stale bar:\n{}",
        rows.join("\n")
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 5 s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(keys);
    drop(pty.master);
    let _ = reading.join();
    assert_eq!(status.exit_code(), 130);
    let rows = screen.rows();
    let shown = rows.join("\n");
    assert!(shown.contains("interrupted: copy "), "{shown}");
    assert!(
        !rows.iter().any(|r| is_copy_row(r) || is_overall_row(r)),
        "a bar was left on the screen:\n{shown}"
    );
}
