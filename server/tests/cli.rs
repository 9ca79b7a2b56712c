//! The real `allot` binary: `serve` answers on an ephemeral port and stops cleanly on
//! SIGTERM, `import` loads a stopped data dir, and `verify` reports it clean. (Being an
//! integration test of this package also makes `cargo test` build `target/*/allot`.)
//! Reproduce with `cargo test -p allot-server --test cli`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_allot");

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[test]
fn import_then_serve_then_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = dir.path().join("catalog.ndjson");
    std::fs::write(
        &file,
        "{\"type\":\"warehouse\",\"code\":\"W1\",\"region\":\"north\"}\n\
         {\"type\":\"sku\",\"code\":\"S1\",\"base_price\":100}\n\
         {\"type\":\"stock\",\"sku\":\"S1\",\"warehouse\":\"W1\",\"on_hand\":12}\n\
         {\"type\":\"bogus\"}\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args([
            "import",
            file.to_str().expect("utf-8"),
            "--shards",
            "2",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("run import");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("applied 3 line(s), refused 1"), "{stdout}");

    let port_file = dir.path().join("port");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--port-file")
        .arg(&port_file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Ok(addr) = std::fs::read_to_string(&port_file) {
            if !addr.is_empty() && http_get(&addr, "/readyz").contains(" 200 ") {
                break addr;
            }
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    let sku = http_get(&addr, "/v1/skus/S1");
    assert!(sku.contains("\"available\":12"), "{sku}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(child.wait().expect("wait").success());

    let out = Command::new(BIN)
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .expect("verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("shard-0: ok") && stdout.contains("shard-1: ok"),
        "{stdout}"
    );
}

#[test]
fn bad_flags_and_configs_fail_with_a_message() {
    let out = Command::new(BIN)
        .args(["serve", "--durability", "sometimes"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("durability"));
}
