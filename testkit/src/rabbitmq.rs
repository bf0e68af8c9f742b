//! RabbitMQ for tests: `AMQP_URL` when set, else the node at 127.0.0.1:5672, else a private
//! node this crate starts (port 5673, data under the temp folder) and shares between test
//! processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The URL of the machine's default node.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The port of the private node.
pub const PRIVATE_PORT: u16 = 5673;
const PRIVATE_NODE: &str = "image-mirror-test@localhost";
const BIN: &str = "/usr/lib/rabbitmq/bin";

/// A broker URL to test against; starts a private node when no broker answers.
pub fn amqp_url() -> String {
    if let Ok(url) = std::env::var("AMQP_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    if speaks_amqp(([127, 0, 0, 1], 5672).into()) {
        return DEFAULT_URL.to_owned();
    }
    private_node()
}

/// Whether something at `addr` answers the AMQP 0-9-1 protocol header with a method frame
/// (`connection.start`).
pub fn speaks_amqp(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if stream.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut frame_type = [0_u8; 1];
    matches!(stream.read(&mut frame_type), Ok(1) if frame_type[0] == 1)
}

/// Starts (or reuses) the private node and returns its URL. Test processes serialise on a lock
/// file so that only one of them starts it.
pub fn private_node() -> String {
    let url = format!("amqp://guest:guest@127.0.0.1:{PRIVATE_PORT}/%2f");
    let addr: SocketAddr = ([127, 0, 0, 1], PRIVATE_PORT).into();
    let base = std::env::temp_dir().join("image-mirror-test-rabbitmq");
    std::fs::create_dir_all(&base).expect("create the private node's folder");
    let lock = std::fs::File::create(base.join("lock")).expect("lock file");
    lock.lock().expect("lock the private node's folder");
    if speaks_amqp(addr) {
        return url;
    }
    let pid_file = base.join("node.pid");
    let _ = std::fs::remove_file(&pid_file);
    std::fs::write(base.join("enabled_plugins"), "[].\n").expect("write enabled_plugins");
    std::fs::write(base.join("rabbitmq.conf"), "log.console = false\n").expect("write config");
    let status = node_command("rabbitmq-server", &base)
        .arg("-detached")
        .status()
        .expect("start rabbitmq-server (install the rabbitmq-server package)");
    assert!(
        status.success(),
        "rabbitmq-server -detached failed: {status}"
    );
    let out = node_command("rabbitmqctl", &base)
        .args(["-n", PRIVATE_NODE, "wait", "--timeout", "120"])
        .arg(&pid_file)
        .output()
        .expect("rabbitmqctl wait");
    assert!(
        out.status.success(),
        "private RabbitMQ node did not start: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        speaks_amqp(addr),
        "private RabbitMQ node started but does not answer on {addr}"
    );
    url
}

/// The private node for a test that stops and starts it: its URL, and a lock that keeps every
/// other such test (in any test process) waiting until this one drops it.
pub fn private_node_exclusive() -> (String, std::fs::File) {
    let url = private_node();
    let base = std::env::temp_dir().join("image-mirror-test-rabbitmq");
    let lock = std::fs::File::create(base.join("exclusive.lock")).expect("lock file");
    lock.lock().expect("lock the private node for this test");
    (url, lock)
}

/// Stops the RabbitMQ application of the private node: every connection drops and nothing
/// answers AMQP until [`start_private_node`].
pub fn stop_private_node() {
    private_node_app("stop_app");
    let addr: SocketAddr = ([127, 0, 0, 1], PRIVATE_PORT).into();
    assert!(!speaks_amqp(addr), "the private node still answers");
}

/// Starts the RabbitMQ application of the private node again, with its durable queues.
pub fn start_private_node() {
    private_node_app("start_app");
    let addr: SocketAddr = ([127, 0, 0, 1], PRIVATE_PORT).into();
    assert!(speaks_amqp(addr), "the private node did not come back");
}

fn private_node_app(action: &str) {
    let base = std::env::temp_dir().join("image-mirror-test-rabbitmq");
    let out = node_command("rabbitmqctl", &base)
        .args(["-n", PRIVATE_NODE, action])
        .output()
        .expect("rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {action}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node_command(program: &str, base: &std::path::Path) -> Command {
    let mut cmd = Command::new(PathBuf::from(BIN).join(program));
    cmd.env("RABBITMQ_NODENAME", PRIVATE_NODE)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", PRIVATE_PORT.to_string())
        .env("RABBITMQ_DIST_PORT", (PRIVATE_PORT + 20000).to_string())
        .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", base.join("log"))
        .env("RABBITMQ_PID_FILE", base.join("node.pid"))
        .env(
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            base.join("enabled_plugins"),
        )
        .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq.conf"))
        .stdin(std::process::Stdio::null());
    cmd
}

/// Stops the private node's Erlang VM altogether (its transient queues and memory with it) and
/// starts it afresh: for measuring the broker from an idle start.
pub fn restart_private_node() -> String {
    let base = std::env::temp_dir().join("image-mirror-test-rabbitmq");
    if speaks_amqp(([127, 0, 0, 1], PRIVATE_PORT).into()) {
        let out = node_command("rabbitmqctl", &base)
            .args(["-n", PRIVATE_NODE, "stop"])
            .arg(base.join("node.pid"))
            .output()
            .expect("rabbitmqctl stop");
        assert!(
            out.status.success(),
            "rabbitmqctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    private_node()
}

/// The resident memory of the private node's VM, in bytes (from `/proc`).
pub fn private_node_rss() -> u64 {
    let base = std::env::temp_dir().join("image-mirror-test-rabbitmq");
    let pid = std::fs::read_to_string(base.join("node.pid")).expect("the private node's pid");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .expect("the private node's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS in /proc status")
}

/// Runs `rabbitmqctl` against the private node and returns what it printed.
pub fn private_node_ctl(args: &[&str]) -> String {
    let base = std::env::temp_dir().join("image-mirror-test-rabbitmq");
    let out = node_command("rabbitmqctl", &base)
        .args(["-n", PRIVATE_NODE])
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
