//! A real `brook server` process for the client's integration tests.
//!
//! The server binary is `$BROOK_BIN`, else `$CARGO_TARGET_DIR/debug/brook`, else the
//! workspace's `target/debug/brook` (which `scripts/test` has built by the time tests run:
//! clippy builds every target first). If none exists, `cargo build -p brook-server` runs once.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the workspace root is, from this crate's manifest.
fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn candidates() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(bin) = std::env::var_os("BROOK_BIN") {
        paths.push(PathBuf::from(bin));
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        paths.push(PathBuf::from(dir).join("debug/brook"));
    }
    paths.push(workspace_root().join("target/debug/brook"));
    paths
}

/// The `brook` binary, built first if no candidate exists.
pub fn brook_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(found) = candidates().into_iter().find(|p| p.is_file()) {
            return found;
        }
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "brook-server"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build -p brook-server");
        assert!(status.success(), "cargo build -p brook-server failed");
        candidates()
            .into_iter()
            .find(|p| p.is_file())
            .expect("target/debug/brook after building brook-server")
    })
    .clone()
}

/// A `brook server` on a free port with its data in a temporary directory; killed when
/// dropped.
pub struct Server {
    child: Option<Child>,
    /// HOST:PORT it listens on.
    pub addr: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Server {
            child: None,
            addr: format!("127.0.0.1:{port}"),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(brook_bin())
            .args(["server", "--listen", &self.addr, "--log-level", "warn"])
            .args(["--auto-create-topics", "false"])
            .arg("--data-dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start brook server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&self.addr).is_err() {
            assert!(Instant::now() < deadline, "brook server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (no clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL brook server");
            child.wait().expect("reap brook server");
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
