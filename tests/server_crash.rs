//! Crash tests of the server: `kill -9` under concurrent load and restart on the same
//! data dir (several kill points, also across snapshots), expiry of holds while the
//! server is down, a corrupt log stopping start-up, and graceful shutdown. Kill points
//! come from a seed printed at the start; `ALLOT_SEED=N` replays the same points.

#[path = "support/server.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{get, seed, send, Server};

#[test]
fn server_child() {
    support::child_entry();
}

fn seed_value() -> u64 {
    std::env::var("ALLOT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What a client saw acknowledged for one order: its status, and the status an
/// unanswered request may have moved it to.
#[derive(Debug, Clone)]
struct Seen {
    acked: String,
    maybe: Option<String>,
}

const SKUS: [&str; 4] = ["K0", "K1", "K2", "K3"];

fn client(
    addr: &str,
    name: &str,
    mut rng: u64,
    stop: &AtomicBool,
    seen: &Mutex<HashMap<u64, Seen>>,
) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let sku = SKUS[(next(&mut rng) % 4) as usize];
        let qty = 1 + next(&mut rng) % 3;
        let body = json!({ "client_order_id": format!("{name}-{i}"), "dealer": if i % 2 == 0 { "D1" } else { "D2" }, "lines": [{ "sku": sku, "qty": qty }] });
        let (s, placed) = send(addr, "POST", "/v1/orders", &body);
        if s == 0 {
            return;
        }
        if s != 201 {
            continue;
        }
        let id = placed["id"].as_u64().expect("id");
        seen.lock().expect("lock").insert(
            id,
            Seen {
                acked: "held".into(),
                maybe: None,
            },
        );
        let action = match next(&mut rng) % 3 {
            0 => continue,
            1 => ("confirm", "confirmed"),
            _ => ("cancel", "cancelled"),
        };
        seen.lock().expect("lock").get_mut(&id).expect("seen").maybe = Some(action.1.into());
        let (s, _) = send(
            addr,
            "POST",
            &format!("/v1/orders/{id}/{}", action.0),
            &json!({}),
        );
        if s == 0 {
            return;
        }
        if s == 200 {
            seen.lock().expect("lock").insert(
                id,
                Seen {
                    acked: action.1.into(),
                    maybe: None,
                },
            );
        }
    }
}

fn all_orders(addr: &str, dealer: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<u64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/v1/orders?dealer={dealer}&limit=1000&cursor={c}"),
            None => format!("/v1/orders?dealer={dealer}&limit=1000"),
        };
        let (s, page) = get(addr, &path);
        assert_eq!(s, 200, "{page}");
        out.extend(page["orders"].as_array().expect("orders").iter().cloned());
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Stock and credit ledgers equal a recomputation from the orders the server has.
fn check_ledgers(addr: &str, stock_each: u64) {
    let mut reserved: HashMap<String, u64> = HashMap::new();
    for dealer in ["D1", "D2"] {
        let (mut held, mut used) = (0, 0);
        for order in all_orders(addr, dealer) {
            let status = order["status"].as_str().expect("status");
            let total = order["total"].as_i64().expect("total");
            match status {
                "held" | "pending_approval" | "backordered" => held += total,
                "confirmed" => used += total,
                _ => continue,
            }
            for line in order["lines"].as_array().expect("lines") {
                let allocated: u64 = line["allocations"]
                    .as_array()
                    .expect("allocs")
                    .iter()
                    .filter_map(|a| a["qty"].as_u64())
                    .sum();
                *reserved
                    .entry(line["sku"].as_str().expect("sku").to_owned())
                    .or_default() += allocated;
            }
        }
        let (_, d) = get(addr, &format!("/v1/dealers/{dealer}"));
        assert_eq!(
            (d["credit_held"].as_i64(), d["credit_used"].as_i64()),
            (Some(held), Some(used)),
            "{dealer}: {d}"
        );
    }
    for sku in SKUS {
        let (_, view) = get(addr, &format!("/v1/skus/{sku}"));
        let want = reserved.get(sku).copied().unwrap_or(0);
        assert_eq!(
            view["warehouses"][0]["reserved"].as_u64(),
            Some(want),
            "{sku}: {view}"
        );
        assert_eq!(
            view["warehouses"][0]["on_hand"].as_u64(),
            Some(stock_each),
            "{sku}: {view}"
        );
    }
}

#[test]
fn kill9_under_load_loses_no_acknowledged_order() {
    let seed_at = seed_value();
    println!("ALLOT_SEED={seed_at}");
    let mut rng = seed_at;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("allot.toml");
    std::fs::write(&config, "snapshot_interval_s = 1\n").expect("config");
    let mut server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    );
    seed(&server.addr, &SKUS, 100_000, 1_000_000_000_000);
    let seen = Arc::new(Mutex::new(HashMap::new()));
    for round in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..6)
            .map(|c| {
                let (addr, stop, seen) =
                    (server.addr.clone(), Arc::clone(&stop), Arc::clone(&seen));
                let rng = next(&mut rng) | 1;
                std::thread::spawn(move || {
                    client(&addr, &format!("r{round}c{c}"), rng, &stop, &seen);
                })
            })
            .collect();
        // Rounds 1 and 3 run past the 1 s snapshot interval, so they crash after one.
        let base = if round % 2 == 1 { 1200 } else { 100 };
        std::thread::sleep(Duration::from_millis(base + next(&mut rng) % 600));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().expect("client");
        }
        server.restart();
        let seen = seen.lock().expect("lock").clone();
        assert!(!seen.is_empty(), "round {round} acknowledged nothing");
        for (id, s) in &seen {
            let (code, order) = get(&server.addr, &format!("/v1/orders/{id}"));
            assert_eq!(code, 200, "order {id} lost (seed {seed_at})");
            let status = order["status"].as_str().expect("status");
            assert!(
                status == s.acked || s.maybe.as_deref() == Some(status),
                "order {id}: {status}, saw {s:?} (seed {seed_at})"
            );
        }
        check_ledgers(&server.addr, 100_000);
    }
    let snapshots = std::fs::read_dir(dir.path().join("data/shard-0"))
        .into_iter()
        .chain(std::fs::read_dir(dir.path().join("data/shard-1")))
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .count();
    assert!(snapshots > 0, "no snapshot was written during the load");
}

#[test]
fn a_hold_that_expires_while_down_is_expired_after_restart_and_shutdown_is_graceful() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(&dir.path().join("data"), &[]);
    let a = server.addr.clone();
    seed(&a, &["S1"], 10, 10_000);
    assert_eq!(
        send(&a, "PUT", "/admin/settings", &json!({ "hold_ttl_s": 1 })).0,
        200
    );
    let (s, placed) = send(
        &a,
        "POST",
        "/v1/orders",
        &json!({ "client_order_id": "h", "dealer": "D1", "lines": [{ "sku": "S1", "qty": 4 }] }),
    );
    assert_eq!(s, 201, "{placed}");
    let (status, took) = server.terminate();
    assert!(status.success(), "{status}: {}", server.log_text());
    assert!(took < Duration::from_secs(10));
    assert!(
        server.log_text().contains("snapshot written"),
        "{}",
        server.log_text()
    );
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let a = server.addr.clone();
    let (_, order) = get(&a, &format!("/v1/orders/{}", placed["id"]));
    assert_eq!(order["status"], "expired", "{order}");
    assert_eq!(get(&a, "/v1/skus/S1").1["available"], 10);
    assert_eq!(get(&a, "/v1/dealers/D1").1["credit_held"], 0);
    // Events before the snapshot are gone (410 with the oldest kept); the expiry at
    // start-up is kept, with a sequence number continuing the old ones.
    let (s, gone) = get(&a, "/v1/events?after=0");
    assert_eq!(s, 410, "{gone}");
    let oldest = gone["error"]["details"]["oldest_seq"]
        .as_u64()
        .expect("oldest");
    assert!(oldest > 1);
    let (s, events) = get(&a, &format!("/v1/events?after={}", oldest - 1));
    assert_eq!(s, 200);
    assert_eq!(events["events"][0]["seq"].as_u64(), Some(oldest));
    assert_eq!(events["events"][0]["type"], "hold_expired", "{events}");
}

#[test]
fn a_corrupt_log_stops_startup_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--shards", "1"]);
    seed(&server.addr, &["S1", "S2", "S3"], 10, 10_000);
    for i in 0..5 {
        let body = json!({ "client_order_id": format!("c{i}"), "dealer": "D1", "lines": [{ "sku": "S1", "qty": 1 }] });
        assert_eq!(send(&server.addr, "POST", "/v1/orders", &body).0, 201);
    }
    server.kill9();
    let segment = std::fs::read_dir(data.join("shard-0"))
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(&segment, &bytes).expect("write");
    let mut report = Vec::new();
    assert!(allot_server::verify::verify_data_dir(&data, &mut report).is_err());
    let report = String::from_utf8_lossy(&report);
    assert!(
        report.contains("DAMAGED") && report.contains(".wal"),
        "{report}"
    );
    let log = dir.path().join("corrupt.log");
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--shards",
        "1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let started = Instant::now();
    let status = support::spawn(&args, &log).wait().expect("wait");
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).expect("log");
    let name = segment
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(text.contains(&name) && text.contains("byte"), "{text}");
}
