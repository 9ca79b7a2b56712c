//! Black-box tests of the server's HTTP API: every endpoint and error code, auth
//! scopes and tenant isolation, no oversell and idempotency under concurrency, a
//! malformed-request corpus, and orders flowing during a 100,000-row stock read.
//! Each test starts its own server (see `support/server.rs`) on 127.0.0.1 with an
//! ephemeral port and a temp data dir. Reproduce one with
//! `cargo test -p allot-tests --test server_api NAME -- --nocapture`.

// Walk-through tests read top to bottom as one story, with short names for the
// address and statuses; NDJSON is built with format! on purpose.
#![allow(
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::similar_names,
    clippy::format_push_string
)]

#[path = "support/server.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{get, request, seed, send, Server};

#[test]
fn server_child() {
    support::child_entry();
}

fn order(cid: &str, dealer: &str, lines: &[(&str, u64)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(s, q)| json!({ "sku": s, "qty": q }))
        .collect();
    json!({ "client_order_id": cid, "dealer": dealer, "lines": lines })
}

#[test]
fn order_lifecycle_and_every_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let a = server.addr.as_str();
    seed(a, &["S1", "S2"], 10, 100_000);
    // Place (201), replay (200), conflicting replay (409).
    let (s, placed) = send(a, "POST", "/v1/orders", &order("po-1", "D1", &[("S1", 4)]));
    assert_eq!(s, 201, "{placed}");
    assert_eq!(placed["status"], "held");
    assert_eq!(
        placed["lines"][0]["allocations"][0],
        json!({ "warehouse": "W1", "qty": 4 })
    );
    assert!(placed["hold_expires_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    for key in [
        "id",
        "client_order_id",
        "dealer",
        "total",
        "rebate_used",
        "created_at",
        "updated_at",
    ] {
        assert!(placed.get(key).is_some(), "order lacks {key}");
    }
    let id = placed["id"].as_u64().expect("id");
    let replay = request(
        a,
        "POST",
        "/v1/orders",
        &[],
        order("po-1", "D1", &[("S1", 4)]).to_string().as_bytes(),
    );
    assert_eq!(replay.header("content-type"), Some("application/json"));
    assert_eq!(
        (replay.status, replay.json()["id"].as_u64()),
        (200, Some(id))
    );
    let (s, e) = send(a, "POST", "/v1/orders", &order("po-1", "D1", &[("S1", 5)]));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("idempotency_conflict"))
    );
    // Business conflicts and body validation.
    let (s, e) = send(a, "POST", "/v1/orders", &order("po-2", "D1", &[("S1", 7)]));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("insufficient_stock")),
        "{e}"
    );
    let (s, e) = send(
        a,
        "POST",
        "/v1/orders",
        &order("po-3", "NOPE", &[("S1", 1)]),
    );
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("unknown_dealer"))
    );
    let (s, e) = send(
        a,
        "POST",
        "/v1/orders",
        &order("po-3", "D1", &[("NOPE", 1)]),
    );
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("unknown_sku")));
    let (s, e) = send(a, "POST", "/v1/orders", &order("po-4", "D2", &[("S2", 10)]));
    assert_eq!(s, 201, "{e}");
    // Reads.
    let (s, got) = get(a, &format!("/v1/orders/{id}"));
    assert_eq!((s, got["id"].as_u64()), (200, Some(id)));
    assert_eq!(get(a, "/v1/orders/999").0, 404);
    assert_eq!(get(a, "/v1/orders/abc").0, 404);
    let (s, list) = get(a, "/v1/orders?dealer=D1&limit=1");
    assert_eq!((s, list["orders"].as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(get(a, "/v1/orders?dealer=NOPE").0, 404);
    assert_eq!(get(a, "/v1/orders?dealer=D1&status=bogus").0, 422);
    let (s, sku) = get(a, "/v1/skus/S1?dealer=D1");
    assert_eq!(
        (s, sku["available"].as_u64(), sku["unit_price"].as_i64()),
        (200, Some(6), Some(100))
    );
    assert_eq!(get(a, "/v1/skus/NOPE").0, 404);
    assert_eq!(get(a, "/v1/skus/S1?dealer=NOPE").0, 404);
    let (s, dealer) = get(a, "/v1/dealers/D1");
    assert_eq!((s, dealer["credit_held"].as_i64()), (200, Some(400)));
    for key in [
        "code",
        "tier",
        "region",
        "credit_limit",
        "credit_used",
        "available_credit",
        "rebate_balance",
    ] {
        assert!(dealer.get(key).is_some(), "dealer lacks {key}");
    }
    assert_eq!(get(a, "/v1/dealers/NOPE").0, 404);
    // Confirm, ship; a second confirm is an invalid transition.
    let (s, c) = send(a, "POST", &format!("/v1/orders/{id}/confirm"), &json!({}));
    assert_eq!((s, c["status"].as_str()), (200, Some("confirmed")));
    let (s, e) = send(a, "POST", &format!("/v1/orders/{id}/confirm"), &json!({}));
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("invalid_transition"))
    );
    assert_eq!(send(a, "POST", "/v1/orders/999/confirm", &json!({})).0, 404);
    let (s, c) = send(a, "POST", &format!("/admin/orders/{id}/ship"), &json!({}));
    assert_eq!((s, c["status"].as_str()), (200, Some("shipped")));
    // Payments.
    let (s, d) = send(
        a,
        "POST",
        "/admin/dealers/D1/payments",
        &json!({ "amount": 100 }),
    );
    assert_eq!((s, d["credit_used"].as_i64()), (200, Some(300)));
    let (s, e) = send(
        a,
        "POST",
        "/admin/dealers/D1/payments",
        &json!({ "amount": 1000 }),
    );
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("overpayment")));
    assert_eq!(
        send(
            a,
            "POST",
            "/admin/dealers/NOPE/payments",
            &json!({ "amount": 1 })
        )
        .0,
        404
    );
    // Approval: a dealer with a threshold; approve one, reject another, cancel.
    let dealer = json!({ "tier": "silver", "region": "north", "credit_limit": 100_000, "approval_threshold": 150 });
    assert_eq!(send(a, "PUT", "/admin/dealers/D3", &dealer).0, 200);
    let (_, p1) = send(a, "POST", "/v1/orders", &order("big-1", "D3", &[("S1", 2)]));
    assert_eq!(p1["status"], "pending_approval");
    let (s, p) = send(
        a,
        "POST",
        &format!("/admin/orders/{}/approve", p1["id"]),
        &json!({}),
    );
    assert_eq!((s, p["status"].as_str()), (200, Some("confirmed")));
    let (_, p2) = send(a, "POST", "/v1/orders", &order("big-2", "D3", &[("S1", 2)]));
    let (s, p) = send(
        a,
        "POST",
        &format!("/admin/orders/{}/reject", p2["id"]),
        &json!({}),
    );
    assert_eq!((s, p["status"].as_str()), (200, Some("rejected")));
    let (_, p3) = send(a, "POST", "/v1/orders", &order("small", "D3", &[("S1", 1)]));
    let (s, p) = send(
        a,
        "POST",
        &format!("/v1/orders/{}/cancel", p3["id"]),
        &json!({}),
    );
    assert_eq!((s, p["status"].as_str()), (200, Some("cancelled")));
    // Stock: receive, adjust (below reserved is 409), unknown path codes 404.
    let (s, row) = send(
        a,
        "POST",
        "/admin/stock/S2/W2/receive",
        &json!({ "qty": 5 }),
    );
    assert_eq!((s, row["on_hand"].as_u64()), (200, Some(5)));
    let (s, e) = send(
        a,
        "POST",
        "/admin/stock/S2/W1/adjust",
        &json!({ "on_hand": 1 }),
    );
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("below_reserved"))
    );
    let (s, row) = send(
        a,
        "POST",
        "/admin/stock/S2/W2/adjust",
        &json!({ "on_hand": 3 }),
    );
    assert_eq!((s, row["available"].as_u64()), (200, Some(3)));
    assert_eq!(
        send(
            a,
            "POST",
            "/admin/stock/NOPE/W1/receive",
            &json!({ "qty": 1 })
        )
        .0,
        404
    );
    assert_eq!(
        send(
            a,
            "POST",
            "/admin/stock/S1/NOPE/receive",
            &json!({ "qty": 1 })
        )
        .0,
        404
    );
    // The stock views.
    let (s, page) = get(a, "/admin/stock?limit=1");
    assert_eq!(s, 200, "{page}");
    assert!(page["as_of_seq"].as_u64().is_some());
    assert_eq!(page["skus"][0]["sku"], "S1");
    let next = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page2) = get(a, &format!("/admin/stock?limit=1&cursor={next}"));
    assert_eq!(page2["skus"][0]["sku"], "S2");
    assert!(page2.get("next_cursor").is_none(), "{page2}");
    let (_, w2) = get(a, "/admin/stock?warehouse=W2");
    assert_eq!(w2["skus"].as_array().map(Vec::len), Some(1));
    assert_eq!(get(a, "/admin/stock?sku=NOPE").0, 404);
    assert_eq!(get(a, "/admin/stock?warehouse=NOPE").0, 404);
    let (s, ds) = get(a, "/admin/dealers/D2/stock");
    assert_eq!((s, ds["skus"][0]["reserved"].as_u64()), (200, Some(10)));
    assert_eq!(get(a, "/admin/dealers/NOPE/stock").0, 404);
    // Low stock alerts, holds, audit.
    let sku = json!({ "base_price": 100, "low_stock_threshold": 50 });
    assert_eq!(send(a, "PUT", "/admin/skus/S1", &sku).0, 200);
    let (s, alerts) = get(a, "/admin/alerts");
    assert_eq!(
        (s, alerts["alerts"][0]["sku"].as_str()),
        (200, Some("S1")),
        "{alerts}"
    );
    let (s, holds) = get(a, "/admin/holds?expiring_within=100000");
    assert_eq!(
        (s, holds["orders"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{holds}"
    );
    let (s, audit) = get(a, "/admin/audit");
    assert_eq!(s, 200);
    assert!(audit["shards"].as_array().is_some_and(|s| s.len() == 2));
    // Settings, promotions.
    let (s, settings) = send(
        a,
        "PUT",
        "/admin/settings",
        &json!({ "order_retention_s": 86400 }),
    );
    assert_eq!(
        (s, settings["order_retention_s"].as_u64()),
        (200, Some(86_400))
    );
    let (s, _) = send(
        a,
        "PUT",
        "/admin/settings",
        &json!({ "order_retention_s": -1 }),
    );
    assert_eq!(s, 422);
    let (s, settings) = send(a, "PUT", "/admin/settings", &json!({ "hold_ttl_s": 60 }));
    assert_eq!(
        (
            s,
            settings["hold_ttl_s"].as_u64(),
            settings["max_lines"].as_u64()
        ),
        (200, Some(60), Some(200))
    );
    let promo = json!({ "sku": "S2", "price": 80, "starts_at": "2020-01-01T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z" });
    let (s, p) = send(a, "PUT", "/admin/promotions/P1", &promo);
    assert_eq!((s, p["price"].as_i64()), (200, Some(80)), "{p}");
    let (_, sku) = get(a, "/v1/skus/S2?dealer=D1");
    assert_eq!(
        (sku["unit_price"].as_i64(), sku["promotion"].as_str()),
        (Some(80), Some("P1"))
    );
    let bad = json!({ "sku": "S2", "price": 80, "starts_at": "yesterday", "ends_at": "2100-01-01T00:00:00Z" });
    let (s, e) = send(a, "PUT", "/admin/promotions/P2", &bad);
    assert_eq!(
        (s, e["error"]["details"]["field"].as_str()),
        (422, Some("starts_at"))
    );
    // Events: in order, long poll, 410 not reachable while everything is kept.
    let (s, ev) = get(a, "/v1/events?after=0&limit=5");
    assert_eq!(s, 200);
    let events = ev["events"].as_array().expect("events");
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["seq"], 1);
    assert!(events
        .iter()
        .all(|e| e["type"].is_string() && e["at"].is_string()));
    let last = get(a, "/v1/events?after=0&limit=1000").1["last_seq"]
        .as_u64()
        .expect("last");
    let started = Instant::now();
    let (s, ev) = get(a, &format!("/v1/events?after={last}&wait=1"));
    assert_eq!((s, ev["events"].as_array().map(Vec::len)), (200, Some(0)));
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Ops.
    assert_eq!(get(a, "/healthz").0, 200);
    assert_eq!(get(a, "/readyz").0, 200);
    let metrics = request(a, "GET", "/metrics", &[], b"");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("allot_orders_total{outcome=\"placed\"}"),
        "{text}"
    );
    assert!(text.contains("allot_wal_fsync_latency_us_bucket"));
    assert!(
        !text.contains("D1") && !text.contains("S1"),
        "metrics leak tenant data"
    );
}

#[test]
fn import_applies_good_lines_and_reports_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let a = server.addr.as_str();
    let ndjson = [
        r#"{"type":"warehouse","code":"W1","region":"north"}"#,
        r#"{"type":"sku","code":"S1","base_price":100}"#,
        r#"{"type":"stock","sku":"S1","warehouse":"W1","on_hand":7}"#,
        r#"{"type":"dealer","code":"D1","tier":"gold","region":"north","credit_limit":1000}"#,
        r"not json",
        r#"{"type":"stock","sku":"NOPE","warehouse":"W1","on_hand":7}"#,
        r#"{"type":"gadget"}"#,
    ]
    .join("\n");
    let r = request(a, "POST", "/admin/import", &[], ndjson.as_bytes());
    let body = r.json();
    assert_eq!(r.status, 200, "{body}");
    assert_eq!(body["applied"], 4);
    let lines: Vec<u64> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["line"].as_u64())
        .collect();
    assert_eq!(lines, [5, 6, 7]);
    assert_eq!(body["errors"][1]["code"], "unknown_sku");
    assert_eq!(get(a, "/v1/skus/S1").1["available"], 7);
}

#[test]
fn malformed_requests_get_4xx_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let a = server.addr.as_str();
    seed(a, &["S1"], 10, 1000);
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("POST", "/v1/orders", b"{not json".to_vec(), 400),
        ("POST", "/v1/orders", b"\xff\xfe\xfd".to_vec(), 400),
        ("POST", "/v1/orders", b"".to_vec(), 400),
        ("POST", "/v1/orders", b"[]".to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"x","dealer":"D1","lines":[{"sku":"S1","qty":-1}]}"#.to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"x","dealer":"D1","lines":[{"sku":"S1","qty":1e99}]}"#.to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"x","dealer":"D1","lines":[{"sku":"S1","qty":99999999999999999999999999}]}"#.to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"x","dealer":"D1","lines":[{"sku":"S1","qty":1,"unit":"crate"}]}"#.to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"x","dealer":"D1","lines":[],"extra":true}"#.to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"","dealer":"D1","lines":[{"sku":"S1","qty":1}]}"#.to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"x","dealer":"D1","lines":[{"sku":"S1","qty":1000000000000000}]}"#.to_vec(), 422),
        ("POST", "/v1/orders", br#"{"client_order_id":"x","dealer":"D1","lines":[]}"#.to_vec(), 422),
        ("PUT", "/admin/skus/S%20X", br#"{"base_price":1}"#.to_vec(), 422),
        ("PUT", "/admin/skus/S1", br#"{"base_price":"cheap"}"#.to_vec(), 422),
        ("GET", "/nowhere", Vec::new(), 404),
        ("DELETE", "/v1/orders/1", Vec::new(), 405),
        ("PATCH", "/admin/settings", Vec::new(), 405),
        ("GET", "/v1/events?after=banana", Vec::new(), 422),
        ("POST", "/v1/orders", vec![b' '; 10 << 20], 413),
    ];
    for (method, path, body, expected) in cases {
        let r = request(a, method, path, &[], &body);
        assert_eq!(
            r.status,
            expected,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if expected != 405 || !r.body.is_empty() {
            assert!(
                r.json()["error"]["code"].is_string(),
                "{method} {path}: error body"
            );
        }
    }
    // A huge body without a Content-Length is cut at the limit too.
    let head = format!("POST /v1/orders HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut body = Vec::new();
    for _ in 0..40 {
        body.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        body.extend(std::iter::repeat_n(b' ', 65536));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(support::raw(a, &head, &body).status, 413);
    // Garbage that is not HTTP at all.
    let r = support::raw(a, "\x00\x01garbage\r\n\r\n", b"");
    assert!(r.status == 0 || (400..500).contains(&r.status));
    assert_eq!(
        send(a, "POST", "/v1/orders", &order("ok", "D1", &[("S1", 1)])).0,
        201
    );
    assert_eq!(get(a, "/healthz").0, 200);
}

#[test]
fn auth_scopes_and_tenant_isolation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("allot.toml");
    std::fs::write(
        &config,
        "[tenants.acme]\nadmin_keys = [\"acme-admin\"]\nportal_keys = [\"acme-portal\"]\n\
         [tenants.globex]\nadmin_keys = [\"globex-admin\"]\n",
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    );
    let a = server.addr.as_str();
    let call = |key: Option<&str>, tenant: Option<&str>, method: &str, path: &str, body: &Value| {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers = Vec::new();
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        if let Some(t) = tenant {
            headers.push(("X-Tenant", t));
        }
        let body = if method == "GET" {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let r = request(a, method, path, &headers, &body);
        (r.status, r.json())
    };
    let wh = json!({ "region": "north" });
    assert_eq!(call(None, None, "PUT", "/admin/warehouses/W1", &wh).0, 401);
    assert_eq!(
        call(Some("wrong"), None, "PUT", "/admin/warehouses/W1", &wh).0,
        401
    );
    assert_eq!(
        call(
            Some("acme-portal"),
            None,
            "PUT",
            "/admin/warehouses/W1",
            &wh
        )
        .0,
        403
    );
    assert_eq!(
        call(
            Some("acme-admin"),
            Some("globex"),
            "PUT",
            "/admin/warehouses/W1",
            &wh
        )
        .0,
        403
    );
    assert_eq!(
        call(
            Some("acme-admin"),
            Some("acme"),
            "PUT",
            "/admin/warehouses/W1",
            &wh
        )
        .0,
        200
    );
    for (path, body) in [
        ("/admin/skus/S1", json!({ "base_price": 10 })),
        (
            "/admin/dealers/D1",
            json!({ "tier": "gold", "region": "north", "credit_limit": 1000 }),
        ),
    ] {
        assert_eq!(call(Some("acme-admin"), None, "PUT", path, &body).0, 200);
    }
    assert_eq!(
        call(
            Some("acme-admin"),
            None,
            "POST",
            "/admin/stock/S1/W1/receive",
            &json!({ "qty": 5 })
        )
        .0,
        200
    );
    // The portal key places and reads; it cannot reach /admin.
    let (s, o) = call(
        Some("acme-portal"),
        None,
        "POST",
        "/v1/orders",
        &order("p1", "D1", &[("S1", 1)]),
    );
    assert_eq!(s, 201, "{o}");
    assert_eq!(
        call(Some("acme-portal"), None, "GET", "/v1/skus/S1", &json!({})).0,
        200
    );
    assert_eq!(
        call(Some("acme-portal"), None, "GET", "/admin/stock", &json!({})).0,
        403
    );
    // Another tenant sees none of it.
    assert_eq!(
        call(Some("globex-admin"), None, "GET", "/v1/skus/S1", &json!({})).0,
        404
    );
    assert_eq!(
        call(
            Some("globex-admin"),
            None,
            "GET",
            "/v1/orders/1",
            &json!({})
        )
        .0,
        404
    );
    let (s, stock) = call(
        Some("globex-admin"),
        None,
        "GET",
        "/admin/stock",
        &json!({}),
    );
    assert_eq!((s, stock["skus"].as_array().map(Vec::len)), (200, Some(0)));
    // Ops need no key.
    assert_eq!(get(a, "/metrics").0, 200);
    assert_eq!(get(a, "/healthz").0, 200);
}

#[test]
fn refuses_to_run_open_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "--listen",
        "0.0.0.0:0",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut child = support::spawn(&args, &dir.path().join("log"));
    let status = child.wait().expect("wait");
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("log")).expect("log");
    assert!(log.contains("refusing to start"), "{log}");
}

/// `THP_enabled` of a process, from `/proc/PID/status`.
#[cfg(target_os = "linux")]
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("the kernel reports THP_enabled")
        .trim()
        .to_owned()
}

#[cfg(target_os = "linux")]
#[test]
fn transparent_huge_pages_are_off_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    assert_eq!(thp_enabled(server.pid()), "0", "off by default");
    drop(server);
    let allowed = Server::start(&dir.path().join("data2"), &["--huge-pages", "true"]);
    assert_eq!(thp_enabled(allowed.pid()), "1", "on when allowed");
}

#[test]
fn no_oversell_under_concurrent_orders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let addr = Arc::new(server.addr.clone());
    seed(&addr, &["HOT", "A", "B", "C"], 50, 1_000_000_000);
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let addr = Arc::clone(&addr);
            std::thread::spawn(move || {
                let dealer = if i % 2 == 0 { "D1" } else { "D2" };
                send(
                    &addr,
                    "POST",
                    "/v1/orders",
                    &order(&format!("hot-{i}"), dealer, &[("HOT", 1)]),
                )
                .0
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        50,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 409 || s == 503),
        "{statuses:?}"
    );
    let (_, sku) = get(&addr, "/v1/skus/HOT");
    assert_eq!(sku["available"], 0);
    // Three-line orders over shared SKUs: all-or-nothing, never past on_hand.
    let threads: Vec<_> = (0..60)
        .map(|i| {
            let addr = Arc::clone(&addr);
            std::thread::spawn(move || {
                let lines = [
                    ("A", 1 + i % 3),
                    ("B", 1 + (i + 1) % 3),
                    ("C", 1 + (i + 2) % 3),
                ];
                let (s, body) = send(
                    &addr,
                    "POST",
                    "/v1/orders",
                    &order(&format!("multi-{i}"), "D1", &lines),
                );
                (
                    s,
                    if s == 201 {
                        lines.iter().map(|l| l.1).collect()
                    } else {
                        vec![0, 0, 0]
                    },
                    body,
                )
            })
        })
        .collect();
    let mut used = [0_u64; 3];
    for t in threads {
        let (s, qty, body) = t.join().expect("thread");
        assert!(s == 201 || s == 409, "{s} {body}");
        for (u, q) in used.iter_mut().zip(qty) {
            *u += q;
        }
    }
    for (sku, used) in ["A", "B", "C"].iter().zip(used) {
        let (_, view) = get(&addr, &format!("/v1/skus/{sku}"));
        assert!(used <= 50);
        assert_eq!(view["available"].as_u64(), Some(50 - used), "{sku}");
    }
}

#[test]
fn idempotent_under_concurrent_identical_submissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let addr = Arc::new(server.addr.clone());
    seed(&addr, &["S1"], 100, 1_000_000);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let addr = Arc::clone(&addr);
            std::thread::spawn(move || {
                send(
                    &addr,
                    "POST",
                    "/v1/orders",
                    &order("same", "D1", &[("S1", 3)]),
                )
            })
        })
        .collect();
    let results: Vec<(u16, Value)> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 1);
    assert!(results
        .iter()
        .all(|(s, b)| (*s == 201 || *s == 200) && b["id"] == results[0].1["id"]));
    assert_eq!(get(&addr, "/v1/skus/S1").1["available"], 97);
    assert_eq!(
        get(&addr, "/v1/orders?dealer=D1").1["orders"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn orders_keep_flowing_during_a_full_stock_read_of_100k_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("data"),
        &["--durability", "async", "--shards", "1"],
    );
    let addr = Arc::new(server.addr.clone());
    let mut ndjson = String::new();
    for w in 0..8 {
        ndjson.push_str(&format!(
            "{{\"type\":\"warehouse\",\"code\":\"W{w}\",\"region\":\"r{w}\"}}\n"
        ));
    }
    ndjson.push_str("{\"type\":\"dealer\",\"code\":\"D1\",\"tier\":\"gold\",\"region\":\"r0\",\"credit_limit\":1000000000}\n");
    for s in 0..12_500 {
        ndjson.push_str(&format!(
            "{{\"type\":\"sku\",\"code\":\"S{s:05}\",\"base_price\":10}}\n"
        ));
        for w in 0..8 {
            ndjson.push_str(&format!("{{\"type\":\"stock\",\"sku\":\"S{s:05}\",\"warehouse\":\"W{w}\",\"on_hand\":100}}\n"));
        }
    }
    let r = request(&addr, "POST", "/admin/import", &[], ndjson.as_bytes());
    assert_eq!(
        (r.status, r.json()["applied"].as_u64()),
        (200, Some(112_509)),
        "{}",
        r.json()
    );
    let reader = {
        let addr = Arc::clone(&addr);
        std::thread::spawn(move || {
            let mut rows = 0;
            for _ in 0..2 {
                let mut cursor: Option<String> = None;
                loop {
                    let path = match &cursor {
                        Some(c) => format!("/admin/stock?limit=1000&cursor={c}"),
                        None => "/admin/stock?limit=1000".to_owned(),
                    };
                    let (s, page) = get(&addr, &path);
                    assert_eq!(s, 200);
                    for sku in page["skus"].as_array().expect("skus") {
                        rows += sku["warehouses"].as_array().map_or(0, Vec::len);
                    }
                    match page["next_cursor"].as_str() {
                        Some(next) => cursor = Some(next.to_owned()),
                        None => break,
                    }
                }
            }
            rows
        })
    };
    let mut slowest = Duration::ZERO;
    let mut placed = 0;
    while !reader.is_finished() || placed < 20 {
        let started = Instant::now();
        let (s, b) = send(
            &addr,
            "POST",
            "/v1/orders",
            &order(
                &format!("o{placed}"),
                "D1",
                &[(&format!("S{:05}", placed % 12_500), 1)],
            ),
        );
        assert_eq!(s, 201, "{b}");
        slowest = slowest.max(started.elapsed());
        placed += 1;
    }
    assert_eq!(reader.join().expect("reader"), 200_000);
    assert!(
        slowest < Duration::from_secs(2),
        "an order took {slowest:?} during the read"
    );
}
