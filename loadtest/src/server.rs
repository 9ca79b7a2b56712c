//! `--spawn`: a fresh `allot serve` on a free loopback port with a temporary data dir,
//! stopped (SIGTERM, then SIGKILL after 10 s) when the run is over.
//!
//! By default the server is this very binary re-executed as `allot-load __serve serve
//! …`, which hosts `allot_server::cli::run`, the entry point of the `allot` binary: a
//! load test then never depends on finding another executable. `--server-bin PATH`
//! runs a real `allot` binary instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// How long the server may take to bind and replay an empty log.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Spawned {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
    // Removed (with the data dir) when the server is dropped.
    _dir: tempfile::TempDir,
}

/// Starts the server and waits until its port is known.
pub fn spawn(server_bin: Option<&Path>, args: &[String]) -> anyhow::Result<Spawned> {
    let dir = tempfile::Builder::new()
        .prefix("allot-load-")
        .tempdir()
        .context("temporary data dir")?;
    let port_file = dir.path().join("port");
    let log = dir.path().join("server.log");
    let mut command = if let Some(bin) = server_bin {
        Command::new(bin)
    } else {
        let mut c = Command::new(std::env::current_exe().context("current executable")?);
        c.arg("__serve");
        c
    };
    command
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--port-file")
        .arg(&port_file)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).context("server log")?);
    let mut child = command.spawn().context("starting the server")?;
    let started = Instant::now();
    let addr = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                break addr;
            }
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("the server exited ({status}) before binding:\n{text}");
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            anyhow::bail!("the server did not bind within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Spawned {
        child: Some(child),
        addr,
        log,
        _dir: dir,
    })
}

impl Spawned {
    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then a kill if it is still running after 10 s; its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
