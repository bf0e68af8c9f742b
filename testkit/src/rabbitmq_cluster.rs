//! A RabbitMQ cluster of three nodes on this machine, for a test that loses a node: distinct
//! node names, AMQP and distribution ports, one Erlang cookie (in the cluster's own `HOME`, for
//! the servers and `rabbitmqctl` alike), the second and third nodes joined to the first. Its
//! data lives in a temporary folder; dropped, every node is stopped.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::ports::free_port;
use crate::rabbitmq::speaks_amqp;

const BIN: &str = "/usr/lib/rabbitmq/bin";

/// One node of the cluster.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its Erlang node name (`name@localhost`).
    pub name: String,
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    dist_port: u16,
    base: PathBuf,
}

impl Node {
    /// Its AMQP URL.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn pid_file(&self) -> PathBuf {
        self.base.join("node.pid")
    }
}

/// Three RabbitMQ nodes joined as one cluster.
pub struct Cluster {
    home: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts three nodes and joins the second and third to the first; returns once every
    /// node answers AMQP and the cluster lists the three.
    pub fn start() -> Self {
        let home = tempfile::tempdir().expect("a folder for the cluster");
        let cookie = home.path().join(".erlang.cookie");
        std::fs::write(&cookie, format!("IMAGEMIRRORTEST{}", std::process::id()))
            .expect("write the Erlang cookie");
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))
            .expect("the cookie's mode");
        let unique = std::process::id();
        let nodes: Vec<Node> = (1..=3)
            .map(|i| {
                let base = home.path().join(format!("n{i}"));
                std::fs::create_dir_all(&base).expect("a node's folder");
                std::fs::write(base.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
                std::fs::write(base.join("rabbitmq.conf"), "log.console = false\n")
                    .expect("rabbitmq.conf");
                Node {
                    name: format!("image-mirror-c{i}-{unique}@localhost"),
                    port: free_port(),
                    dist_port: free_port(),
                    base,
                }
            })
            .collect();
        let cluster = Self { home, nodes };
        for node in &cluster.nodes {
            cluster.start_node(node);
        }
        let first = cluster.nodes[0].name.clone();
        for node in &cluster.nodes[1..] {
            cluster.ctl(node, &["stop_app"]);
            cluster.ctl(node, &["join_cluster", &first]);
            cluster.ctl(node, &["start_app"]);
        }
        let status = cluster.ctl(&cluster.nodes[0], &["cluster_status"]);
        let text = String::from_utf8_lossy(&status.stdout);
        for node in &cluster.nodes {
            assert!(
                text.contains(&node.name),
                "{} is not a member: {text}",
                node.name
            );
        }
        cluster
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every node's URL, comma-separated (what `--amqp-url` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node that leads the queue `name` (from `rabbitmqctl list_queues`, asked of a node
    /// that answers).
    pub fn leader_of(&self, name: &str) -> &Node {
        let asked = self
            .nodes
            .iter()
            .find(|n| speaks_amqp(n.addr()))
            .expect("a node that answers");
        let out = self.ctl(asked, &["list_queues", "-q", "name", "leader"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let leader = text
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(name)).then(|| f.next().map(str::to_owned))?
            })
            .unwrap_or_else(|| panic!("no queue {name}: {text}"));
        self.nodes
            .iter()
            .find(|n| n.name == leader)
            .unwrap_or_else(|| panic!("leader {leader} is not a node of the cluster"))
    }

    /// `rabbitmqctl list_queues -q name messages` of a node that answers: (name, messages).
    pub fn queue_lengths(&self) -> Vec<(String, u64)> {
        let asked = self
            .nodes
            .iter()
            .find(|n| speaks_amqp(n.addr()))
            .expect("a node that answers");
        let out = self.ctl(asked, &["list_queues", "-q", "name", "messages"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
            })
            .collect()
    }

    /// Kills `node`'s Erlang VM with SIGKILL, as a machine that loses power would.
    pub fn kill(&self, node: &Node) {
        let pid = std::fs::read_to_string(node.pid_file()).expect("the node's pid");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {}", pid.trim());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while speaks_amqp(node.addr()) {
            assert!(
                std::time::Instant::now() < deadline,
                "{} still answers",
                node.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `node` again on its data: it comes back as a member.
    pub fn restart(&self, node: &Node) {
        self.start_node(node);
    }

    fn start_node(&self, node: &Node) {
        let _ = std::fs::remove_file(node.pid_file());
        let status = self
            .command("rabbitmq-server", node)
            .arg("-detached")
            .status()
            .expect("start rabbitmq-server (install the rabbitmq-server package)");
        assert!(status.success(), "rabbitmq-server -detached: {status}");
        let pid_file = node.pid_file();
        let out = self.ctl(
            node,
            &["wait", "--timeout", "120", &pid_file.display().to_string()],
        );
        assert!(out.status.success());
        assert!(
            speaks_amqp(node.addr()),
            "{} does not answer AMQP",
            node.name
        );
    }

    /// `rabbitmqctl -n NODE ARGS`, which must succeed.
    pub fn ctl_ok(&self, node: &Node, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ctl(node, args).stdout).into_owned()
    }

    fn ctl(&self, node: &Node, args: &[&str]) -> Output {
        let out = self
            .command("rabbitmqctl", node)
            .args(["-n", &node.name])
            .args(args)
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl -n {} {args:?}: {}{}",
            node.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn command(&self, program: &str, node: &Node) -> Command {
        let mut cmd = Command::new(Path::new(BIN).join(program));
        cmd.env("HOME", self.home.path())
            .env("RABBITMQ_NODENAME", &node.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", node.port.to_string())
            .env("RABBITMQ_DIST_PORT", node.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", node.base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", node.base.join("log"))
            .env("RABBITMQ_PID_FILE", node.pid_file())
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                node.base.join("enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", node.base.join("rabbitmq.conf"))
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Ok(pid) = std::fs::read_to_string(node.pid_file()) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
    }
}
