//! Configuration: command-line flags, `ALLOT_*` environment variables and an optional
//! TOML file, merged in that order of precedence over embedded defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use allot_engine::SettingsPatch;
use allot_wal::Durability;
use serde::Deserialize;

/// Default listen address (loopback: open mode is allowed there).
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7878";
/// Longest commit delay accepted (a longer one would only add latency); a larger
/// value is refused.
pub const COMMIT_DELAY_US_MAX: u64 = 10_000;
/// Default data directory.
pub const DATA_DIR_DEFAULT: &str = "./allot-data";

/// The flags of `allot serve`; each also reads an `ALLOT_*` variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; see --port-file).
    #[arg(long, env = "ALLOT_LISTEN")]
    pub listen: Option<String>,
    /// Directory holding one WAL directory per shard.
    #[arg(long, env = "ALLOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Sequencer shards (default: the number of cores). Fixed for a data dir.
    #[arg(long, env = "ALLOT_SHARDS")]
    pub shards: Option<usize>,
    /// fsync | async | none.
    #[arg(long, env = "ALLOT_DURABILITY")]
    pub durability: Option<String>,
    /// A TOML config file (tenants, keys and everything below).
    #[arg(long, env = "ALLOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Hold TTL of tenants that do not set their own, in seconds.
    #[arg(long, env = "ALLOT_HOLD_TTL_S")]
    pub hold_ttl_s: Option<u64>,
    /// Commands a shard queue holds before requests get 503.
    #[arg(long, env = "ALLOT_QUEUE_MAX")]
    pub queue_max: Option<usize>,
    /// Commands a shard applies per WAL batch.
    #[arg(long, env = "ALLOT_BATCH_MAX")]
    pub batch_max: Option<usize>,
    /// Seconds between snapshots.
    #[arg(long, env = "ALLOT_SNAPSHOT_INTERVAL_S")]
    pub snapshot_interval_s: Option<u64>,
    /// Largest request body, in bytes (import excepted).
    #[arg(long, env = "ALLOT_BODY_LIMIT_BYTES")]
    pub body_limit_bytes: Option<usize>,
    /// Largest /admin/import body, in bytes.
    #[arg(long, env = "ALLOT_IMPORT_LIMIT_BYTES")]
    pub import_limit_bytes: Option<usize>,
    /// Write the bound address to this file once listening.
    #[arg(long, env = "ALLOT_PORT_FILE")]
    pub port_file: Option<PathBuf>,
    /// Threads serving HTTP (default: half the cores, at least one).
    #[arg(long, env = "ALLOT_HTTP_THREADS")]
    pub http_threads: Option<usize>,
    /// Let the kernel back this process with transparent huge pages (default: false;
    /// see `--huge-pages` under "Tuning" in docs/OPERATIONS.md).
    #[arg(long, env = "ALLOT_HUGE_PAGES")]
    pub huge_pages: Option<bool>,
    /// Group commit under load: microseconds the log writer may wait for a small
    /// batch to grow (0: never; see docs/OPERATIONS.md).
    #[arg(long, env = "ALLOT_COMMIT_DELAY_US")]
    pub commit_delay_us: Option<u64>,
}

/// The TOML file. Unknown keys are refused so that a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub durability: Option<String>,
    pub hold_ttl_s: Option<u64>,
    pub queue_max: Option<usize>,
    pub batch_max: Option<usize>,
    pub snapshot_interval_s: Option<u64>,
    pub body_limit_bytes: Option<usize>,
    pub import_limit_bytes: Option<usize>,
    pub tick_interval_ms: Option<u64>,
    pub event_window: Option<usize>,
    pub events_wait_max_s: Option<u64>,
    pub stock_view_refresh_ms: Option<u64>,
    pub request_timeout_s: Option<u64>,
    pub http_threads: Option<usize>,
    pub huge_pages: Option<bool>,
    pub commit_delay_us: Option<u64>,
    pub commit_delay_records: Option<usize>,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// One tenant's keys and initial settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub admin_keys: Vec<String>,
    #[serde(default)]
    pub portal_keys: Vec<String>,
    pub hold_ttl_s: Option<u64>,
    pub max_lines: Option<u32>,
    pub backorder_priority: Option<Vec<String>>,
    /// Seconds a closed order stays in the book (0: forever).
    pub order_retention_s: Option<u64>,
}

/// Everything the server runs with, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub durability: Durability,
    pub hold_ttl_s: Option<u64>,
    pub queue_max: usize,
    pub batch_max: usize,
    pub snapshot_interval: Duration,
    pub body_limit_bytes: usize,
    pub import_limit_bytes: usize,
    /// How often each shard expires due holds when idle.
    pub tick_interval: Duration,
    /// Events kept per tenant for /v1/events.
    pub event_window: usize,
    pub events_wait_max: Duration,
    /// Shortest time between two rebuilds of a tenant's published stock view.
    pub stock_view_refresh: Duration,
    /// Longest time one request may take (a long poll included).
    pub request_timeout: Duration,
    pub tenants: BTreeMap<String, TenantConfig>,
    pub port_file: Option<PathBuf>,
    /// Threads serving HTTP.
    pub http_threads: usize,
    /// Whether the process may use transparent huge pages. Off by default: the first
    /// touch of a huge page zeroes 2 MiB at once, which stalls the sequencer that
    /// touched it for milliseconds.
    pub huge_pages: bool,
    /// How long the log writer may wait for a small batch to reach
    /// `commit_delay_records` when the previous batch was at least that large.
    pub commit_delay: Duration,
    pub commit_delay_records: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: LISTEN_DEFAULT.to_owned(),
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            shards: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            durability: Durability::Fsync,
            hold_ttl_s: None,
            queue_max: 4096,
            batch_max: 1024,
            snapshot_interval: Duration::from_secs(300),
            body_limit_bytes: 1 << 20,
            import_limit_bytes: 64 << 20,
            tick_interval: Duration::from_millis(100),
            event_window: 10_000,
            events_wait_max: Duration::from_secs(30),
            stock_view_refresh: Duration::from_millis(250),
            request_timeout: Duration::from_secs(60),
            tenants: BTreeMap::new(),
            port_file: None,
            // Half the cores: the other half runs the shard sequencers and log writers,
            // which every order passes through (measured in docs/PERFORMANCE.md).
            http_threads: (std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                / 2)
            .max(1),
            huge_pages: false,
            // Off: on this project's machine it saved a quarter of the fdatasyncs but
            // no throughput, and cost open-loop latency (docs/PERFORMANCE.md).
            commit_delay: Duration::ZERO,
            commit_delay_records: 16,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

/// Parses `fsync`, `async` or `none`.
pub fn parse_durability(text: &str) -> Result<Durability, ConfigError> {
    match text {
        "fsync" => Ok(Durability::Fsync),
        "async" => Ok(Durability::Async {
            sync_interval: Duration::from_millis(10),
        }),
        "none" => Ok(Durability::None),
        other => Err(ConfigError(format!(
            "durability `{other}`: expected fsync, async or none"
        ))),
    }
}

impl Config {
    /// Flags and env over the file over the defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut config = Self::default();
        let secs = Duration::from_secs;
        config.listen = args.listen.clone().or(file.listen).unwrap_or(config.listen);
        config.data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or(config.data_dir);
        config.shards = args.shards.or(file.shards).unwrap_or(config.shards);
        if let Some(text) = args.durability.as_deref().or(file.durability.as_deref()) {
            config.durability = parse_durability(text)?;
        }
        config.hold_ttl_s = args.hold_ttl_s.or(file.hold_ttl_s);
        config.queue_max = args
            .queue_max
            .or(file.queue_max)
            .unwrap_or(config.queue_max);
        config.batch_max = args
            .batch_max
            .or(file.batch_max)
            .unwrap_or(config.batch_max);
        config.http_threads = args
            .http_threads
            .or(file.http_threads)
            .unwrap_or(config.http_threads)
            .max(1);
        config.huge_pages = args
            .huge_pages
            .or(file.huge_pages)
            .unwrap_or(config.huge_pages);
        if let Some(us) = args.commit_delay_us.or(file.commit_delay_us) {
            if us > COMMIT_DELAY_US_MAX {
                return Err(ConfigError(format!(
                    "commit_delay_us {us}: at most {COMMIT_DELAY_US_MAX}"
                )));
            }
            config.commit_delay = Duration::from_micros(us);
        }
        config.commit_delay_records = file
            .commit_delay_records
            .unwrap_or(config.commit_delay_records)
            .max(1);
        if let Some(s) = args.snapshot_interval_s.or(file.snapshot_interval_s) {
            config.snapshot_interval = secs(s.max(1));
        }
        config.body_limit_bytes = args
            .body_limit_bytes
            .or(file.body_limit_bytes)
            .unwrap_or(config.body_limit_bytes);
        config.import_limit_bytes = args
            .import_limit_bytes
            .or(file.import_limit_bytes)
            .unwrap_or(config.import_limit_bytes);
        if let Some(ms) = file.tick_interval_ms {
            config.tick_interval = Duration::from_millis(ms.max(1));
        }
        config.event_window = file.event_window.unwrap_or(config.event_window).max(1);
        if let Some(s) = file.events_wait_max_s {
            config.events_wait_max = secs(s);
        }
        if let Some(ms) = file.stock_view_refresh_ms {
            config.stock_view_refresh = Duration::from_millis(ms);
        }
        if let Some(s) = file.request_timeout_s {
            config.request_timeout = secs(s.max(1));
        }
        config.tenants = file.tenants;
        config.port_file.clone_from(&args.port_file);
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.shards == 0 || self.shards > 256 {
            return Err(ConfigError("shards must be 1..=256".into()));
        }
        if self.queue_max == 0 || self.batch_max == 0 {
            return Err(ConfigError(
                "queue_max and batch_max must be at least 1".into(),
            ));
        }
        for (name, tenant) in &self.tenants {
            if !allot_engine::ids::is_valid_code(name) {
                return Err(ConfigError(format!(
                    "tenant name `{name}` is not a valid code"
                )));
            }
            if tenant
                .admin_keys
                .iter()
                .chain(&tenant.portal_keys)
                .any(String::is_empty)
            {
                return Err(ConfigError(format!("tenant `{name}` has an empty key")));
            }
        }
        Ok(())
    }

    /// Whether any key is configured (otherwise the server runs open).
    pub fn has_keys(&self) -> bool {
        self.tenants
            .values()
            .any(|t| !t.admin_keys.is_empty() || !t.portal_keys.is_empty())
    }

    /// The settings a new tenant starts with (logged as its first command).
    pub fn initial_settings(&self, tenant: &str) -> SettingsPatch {
        let configured = self.tenants.get(tenant);
        SettingsPatch {
            hold_ttl_s: configured.and_then(|t| t.hold_ttl_s).or(self.hold_ttl_s),
            max_lines: configured.and_then(|t| t.max_lines),
            backorder_priority: configured.and_then(|t| t.backorder_priority.clone()),
            order_retention_s: configured.and_then(|t| t.order_retention_s),
        }
    }

    /// The listen address, resolved.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|e| ConfigError(format!("listen `{}`: {e}", self.listen)))
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("allot.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\nshards = 3\nqueue_max = 9\nhuge_pages = true\ncommit_delay_us = 250\ncommit_delay_records = 8\n[tenants.acme]\nadmin_keys = [\"k\"]\nhold_ttl_s = 5\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(path),
            shards: Some(2),
            ..ServeArgs::default()
        };
        let config = Config::resolve(&args).expect("resolves");
        assert_eq!(config.listen, "127.0.0.1:1");
        assert_eq!(config.shards, 2);
        assert_eq!(config.queue_max, 9);
        assert!(config.huge_pages);
        assert!(!Config::default().huge_pages);
        assert_eq!(config.commit_delay, Duration::from_micros(250));
        assert_eq!(config.commit_delay_records, 8);
        let off = Config::resolve(&ServeArgs {
            commit_delay_us: Some(0),
            ..args.clone()
        })
        .expect("resolves");
        assert!(off.commit_delay.is_zero(), "the flag wins over the file");
        let too_long = Config::resolve(&ServeArgs {
            commit_delay_us: Some(COMMIT_DELAY_US_MAX + 1),
            ..args.clone()
        });
        assert!(too_long.is_err(), "a delay past the maximum is refused");
        assert!(config.has_keys());
        assert_eq!(config.initial_settings("acme").hold_ttl_s, Some(5));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("allot.toml");
        std::fs::write(&path, "lisen = \"x\"\n").expect("write");
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(Config::resolve(&args).is_err());
    }
}
