//! Test support for the server's black-box tests: starts the `allot` server as a child
//! process on 127.0.0.1 with an ephemeral port and a temp data dir, talks raw HTTP/1.1
//! to it, and stops it (SIGTERM) or kills it (`kill -9`).
//!
//! The child is this very test executable re-run with `server_child --exact` and the
//! server's arguments in `ALLOT_TEST_SERVER_ARGS`: its `server_child` test then calls
//! `allot_server::cli::run`, the same entry point as the `allot` binary, so no binary
//! path has to be found across packages. (`real_binary_*` tests also run the binary.)

// Helpers used by only some test files, and string building that reads best as is.
#![allow(dead_code, clippy::format_push_string)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ARGS_VAR: &str = "ALLOT_TEST_SERVER_ARGS";

/// Call from a `#[test] fn server_child()`: runs the server when this process was
/// spawned as one, and does nothing otherwise.
pub fn child_entry() {
    let Ok(args) = std::env::var(ARGS_VAR) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).expect("server args are JSON");
    let code = allot_server::cli::run(std::iter::once("allot".to_owned()).chain(args));
    std::process::exit(i32::from(code != std::process::ExitCode::SUCCESS));
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    args: Vec<String>,
}

/// Spawns the server process with `args` after `serve`; returns at once.
pub fn spawn(args: &[String], log: &Path) -> Child {
    let exe = std::env::current_exe().expect("current exe");
    let mut full = vec!["serve".to_owned()];
    full.extend(args.iter().cloned());
    let log_file = std::fs::File::create(log).expect("log file");
    Command::new(exe)
        .args(["server_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ARGS_VAR, serde_json::to_string(&full).expect("json"))
        .env("ALLOT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn the server")
}

impl Server {
    /// Starts a server on `data_dir` with extra flags and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            addr: String::new(),
            data_dir: data_dir.to_owned(),
            log: data_dir.with_extension("log"),
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.boot();
        server
    }

    fn boot(&mut self) {
        let port_file = self.data_dir.with_extension("port");
        let _ = std::fs::remove_file(&port_file);
        let mut args = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            self.data_dir.display().to_string(),
            "--port-file".to_owned(),
            port_file.display().to_string(),
        ];
        if !self.args.iter().any(|a| a == "--shards") {
            args.extend(["--shards".to_owned(), "2".to_owned()]);
        }
        args.extend(self.args.iter().cloned());
        let mut child = spawn(&args, &self.log);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if !text.is_empty() {
                    self.addr = text;
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("server exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        while get(&self.addr, "/readyz").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "server not ready: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; returns the exit status and how long the stop took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = started + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status, started.elapsed());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop after SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same data dir (after a kill or stop).
    pub fn restart(&mut self) {
        self.kill9();
        self.boot();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one raw request (one connection, `Connection: close`).
pub fn raw(addr: &str, head: &str, body: &[u8]) -> Response {
    // A refused connection (a killed server) reads as status 0, like a cut one.
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_response(&bytes)
}

fn parse_response(bytes: &[u8]) -> Response {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let mut body = bytes.get(split + 4..).unwrap_or_default().to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        })
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = data.get(start + size + 2..).unwrap_or_default();
    }
    out
}

/// A request with optional headers and body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    raw(addr, &head, body)
}

/// GET → (status, JSON).
pub fn get(addr: &str, path: &str) -> (u16, Value) {
    let r = request(addr, "GET", path, &[], b"");
    (r.status, r.json())
}

/// A JSON request → (status, JSON).
pub fn send(addr: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = request(addr, method, path, &[], body.to_string().as_bytes());
    (r.status, r.json())
}

/// Sets up a catalog: warehouses `W1` (north) and `W2` (south), the given SKUs at
/// price 100 with `stock` units in W1, and dealers `D1`, `D2` (north, limit `credit`).
pub fn seed(addr: &str, skus: &[&str], stock: u64, credit: i64) {
    for (w, region) in [("W1", "north"), ("W2", "south")] {
        let (s, b) = send(
            addr,
            "PUT",
            &format!("/admin/warehouses/{w}"),
            &serde_json::json!({ "region": region }),
        );
        assert_eq!(s, 200, "{b}");
    }
    for sku in skus {
        let (s, b) = send(
            addr,
            "PUT",
            &format!("/admin/skus/{sku}"),
            &serde_json::json!({ "base_price": 100 }),
        );
        assert_eq!(s, 200, "{b}");
        let (s, b) = send(
            addr,
            "POST",
            &format!("/admin/stock/{sku}/W1/receive"),
            &serde_json::json!({ "qty": stock }),
        );
        assert_eq!(s, 200, "{b}");
    }
    for d in ["D1", "D2"] {
        let body = serde_json::json!({ "tier": "gold", "region": "north", "credit_limit": credit });
        let (s, b) = send(addr, "PUT", &format!("/admin/dealers/{d}"), &body);
        assert_eq!(s, 200, "{b}");
    }
}
