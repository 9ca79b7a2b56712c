//! The median of each criterion benchmark's last run, beside the figure criterion
//! prints. `cargo run --release -p allot-benches --example criterion_medians [-- DIR]`
//! (DIR defaults to `target/criterion`, where `cargo bench` writes its results).
//!
//! Criterion prints a benchmark's `time` as the slope of a line through its samples
//! (total time against iterations, each sample running more iterations than the one
//! before). A benchmark whose book grows as it runs, such as `engine/place_3_lines`,
//! has its largest samples last; they weigh most in that line, and they were slow
//! ones: its printed figure was 11–43 % above the median of its samples in the runs
//! of 2026-11-26. The
//! targets are medians, which criterion writes to `new/estimates.json` but does not
//! print.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/criterion"), PathBuf::from);
    let mut found = Vec::new();
    collect(&root, &mut found)
        .with_context(|| format!("reading criterion results under {}", root.display()))?;
    if found.is_empty() {
        anyhow::bail!(
            "no criterion results under {} (run `cargo bench` first)",
            root.display()
        );
    }
    found.sort();
    println!("{:<40} {:>14} {:>14}", "benchmark", "median", "printed");
    for path in found {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let estimates: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let point = |name: &str| estimates[name]["point_estimate"].as_f64();
        let median = point("median")
            .with_context(|| format!("{} has no median estimate", path.display()))?;
        // Criterion prints the slope when it sampled linearly, else the mean.
        let printed = point("slope").or_else(|| point("mean"));
        let name = benchmark_name(&root, &path);
        let printed = printed.map_or_else(|| "-".to_owned(), format_ns);
        println!("{name:<40} {:>14} {printed:>14}", format_ns(median));
    }
    Ok(())
}

/// Every `new/estimates.json` under `dir`.
fn collect(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, found)?;
        } else if path.ends_with("new/estimates.json") {
            found.push(path);
        }
    }
    Ok(())
}

/// `engine/place_3_lines` for `ROOT/engine/place_3_lines/new/estimates.json`.
fn benchmark_name(root: &Path, estimates: &Path) -> String {
    let bench_dir = estimates
        .parent()
        .and_then(Path::parent)
        .unwrap_or(estimates);
    let relative = bench_dir.strip_prefix(root).unwrap_or(bench_dir);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Nanoseconds as criterion shows them: ns, µs or ms.
fn format_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}
