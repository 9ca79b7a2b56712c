//! End-to-end runs of `allot-load run --spawn`: each scenario for a few seconds against
//! a fresh server (hosted by the `allot-load` binary itself, so no other binary must
//! be built first), checking the JSON report and a clean audit; and a run with a
//! tampered tally, whose audit must fail with a non-zero exit.
//!
//! Reproduce one by hand with the arguments in `run_load` below, e.g.
//! `cargo run -p allot-loadtest -- run --spawn --scenario flash-sale --skus 300 \
//!  --dealers 40 --warehouses 4 --rate 300 --duration 2 --warmup 0.5 --seed 7`.

use std::process::Command;

use serde_json::Value;

/// Runs `allot-load run --spawn` with a small book and `extra` arguments; the exit
/// code and the JSON report.
fn run_load(extra: &[&str]) -> (i32, Value, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    let output = Command::new(env!("CARGO_BIN_EXE_allot-load"))
        .args([
            "run",
            "--spawn",
            "--quiet",
            "--skus",
            "300",
            "--dealers",
            "40",
            "--warehouses",
            "4",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--connections",
            "8",
            "--seed",
            "7",
        ])
        .args(extra)
        .arg("--report")
        .arg(&report)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("allot-load runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}); stderr:\n{stderr}"));
    let value: Value = serde_json::from_str(&text).expect("the report is JSON");
    (output.status.code().unwrap_or(-1), value, dir)
}

fn outcome(report: &Value, name: &str) -> u64 {
    report["outcomes"][name].as_u64().unwrap_or(0)
}

/// The contract of the report, and a clean audit.
fn assert_clean(report: &Value, code: i32, scenario: &str) {
    let failed: Vec<&Value> = report["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] != Value::Bool(true))
        .collect();
    assert!(failed.is_empty(), "{scenario}: failed checks {failed:?}");
    assert_eq!(report["audit"]["ok"], Value::Bool(true));
    assert_eq!(code, 0, "{scenario}: exit code");
    assert_eq!(report["scenario"], scenario);
    for key in ["duration_s", "achieved_rate", "orders_ok"] {
        assert!(report[key].is_number(), "{key} in {report}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(report["latency_us"][p].as_u64().is_some(), "latency_us.{p}");
    }
    assert!(report["latency_us"]["p50"].as_u64() <= report["latency_us"]["p99"].as_u64());
    assert!(
        report["orders_ok"].as_u64().unwrap_or(0) > 0,
        "some orders succeed"
    );
    assert_eq!(outcome(report, "errors"), 0);
    assert_eq!(outcome(report, "timeouts"), 0);
}

#[test]
fn steady_closed_loop_audits_clean() {
    let (code, report, dir) = run_load(&["--scenario", "steady", "--rate", "max"]);
    assert_clean(&report, code, "steady");
    assert_eq!(report["offered_rate"], Value::Null);
    assert_eq!(outcome(&report, "insufficient_stock"), 0);
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("percentile spectrum"));
    assert!(
        !html.contains("<script") && !html.contains("src="),
        "self-contained"
    );
}

#[test]
fn flash_sale_runs_out_of_hot_stock_cleanly() {
    let (code, report, _dir) = run_load(&["--scenario", "flash-sale", "--rate", "300"]);
    assert_clean(&report, code, "flash-sale");
    assert_eq!(report["offered_rate"].as_f64(), Some(300.0));
    assert!(
        outcome(&report, "insufficient_stock") > 0,
        "{}",
        report["outcomes"]
    );
    assert_eq!(outcome(&report, "credit_exceeded"), 0);
    assert_eq!(outcome(&report, "other_rejections"), 0);
}

#[test]
fn promo_peak_expires_holds_and_fills_backorders() {
    let (code, report, _dir) = run_load(&["--scenario", "promo-peak", "--rate", "300"]);
    assert_clean(&report, code, "promo-peak");
    assert!(
        outcome(&report, "backordered") > 0,
        "{}",
        report["outcomes"]
    );
    assert!(outcome(&report, "received") > 0);
    assert!(outcome(&report, "confirmed") > 0);
}

#[test]
fn lifecycle_confirms_ships_and_cancels() {
    let (code, report, _dir) = run_load(&["--scenario", "lifecycle", "--rate", "300"]);
    assert_clean(&report, code, "lifecycle");
    for o in ["confirmed", "shipped", "cancelled"] {
        assert!(outcome(&report, o) > 0, "{o}: {}", report["outcomes"]);
    }
}

#[test]
fn a_tampered_tally_fails_the_audit() {
    let (code, report, _dir) =
        run_load(&["--scenario", "steady", "--rate", "200", "--tamper-tally"]);
    assert_eq!(report["audit"]["ok"], Value::Bool(false));
    assert_eq!(code, 1, "a failed audit exits 1");
    let failed: Vec<&str> = report["audit"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == Value::Bool(false))
        .filter_map(|c| c["name"].as_str())
        .collect();
    for name in [
        "acknowledged_orders_exist_with_status",
        "stock_matches_tally",
        "credit_matches_tally",
    ] {
        assert!(failed.contains(&name), "{name} should fail: {failed:?}");
    }
}
