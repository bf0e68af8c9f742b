//! containerd as a third independent client (Debian's `containerd` and `ctr`): a private
//! daemon per test, its root, state and socket in a temporary folder, without the CRI plugin,
//! stopped when dropped. Images are never unpacked (the test images' layers are not
//! filesystems): what is checked is what containerd stores under which name and digest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running containerd.
pub struct Containerd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts a private containerd; panics when it does not answer within 30 s.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        )
        .expect("write containerd config");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("containerd runs (install the containerd package)");
        let mut started = Self {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !started.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not answer");
            assert!(
                started.child.try_wait().ok().flatten().is_none(),
                "containerd exited"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        started
    }

    /// `ctr --address SOCKET <args>`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("ctr runs")
    }

    /// The images containerd holds: name and digest, from `ctr images ls`.
    pub fn images(&self) -> Vec<(String, String)> {
        let out = self.ctr(&["images", "ls"]);
        assert!(out.status.success(), "ctr images ls: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                Some((cols.first()?.to_string(), cols.get(2)?.to_string()))
            })
            .collect()
    }

    /// Fetches `image` over plain HTTP, every platform, digests checked, without unpacking:
    /// `ctr content fetch`.
    pub fn fetch(&self, image: &str, platform: Option<&str>) -> Output {
        let mut args = vec!["content", "fetch", "--plain-http"];
        match platform {
            Some(p) => args.extend(["--platform", p]),
            None => args.push("--all-platforms"),
        }
        args.push(image);
        self.ctr(&args)
    }

    /// The digests of the content containerd holds.
    pub fn content(&self) -> Vec<String> {
        let out = self.ctr(&["content", "ls", "-q"]);
        assert!(out.status.success(), "ctr content ls: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Imports the tar at `path`, every platform, without unpacking.
    pub fn import(&self, path: &Path) -> Output {
        self.ctr(&[
            "images",
            "import",
            "--all-platforms",
            "--no-unpack",
            path.to_str().expect("UTF-8 path"),
        ])
    }
}

/// What a command printed, both streams.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
