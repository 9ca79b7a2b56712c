//! The HTTP shell: binds, starts the shards, serves connections with header-read
//! timeouts, and shuts down gracefully (stop accepting, finish in-flight requests and
//! queued commands, snapshot).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::routes::{router, AppParts, AppState};
use crate::shard::Shards;

/// Longest time a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time in-flight requests get at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the server until `shutdown` resolves (or start-up fails).
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let addr = config.listen_addr().map_err(|e| e.to_string())?;
    let auth = Auth::from_config(&config);
    if auth.is_open() {
        if !addr.ip().is_loopback() {
            return Err(format!(
                "no API keys are configured and {addr} is not a loopback address; refusing to start"
            ));
        }
        tracing::warn!("no API keys configured: running OPEN (every request is admin; tenants are created on first use)");
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let config = Arc::new(config);
    let (shards, started) = Shards::start(Arc::clone(&config))?;
    tracing::info!(addr = %local, shards = shards.len(), data_dir = %config.data_dir.display(), "listening on {local}");
    if let Some(path) = &config.port_file {
        std::fs::write(path, local.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let recovery = recovery_watch(Arc::clone(&shards), started);
    let state = AppState::new(AppParts {
        shards: Arc::clone(&shards),
        auth: Arc::new(auth),
        metrics: Arc::new(Metrics::default()),
        config: Arc::clone(&config),
    });
    let result = accept_loop(listener, router(state), shutdown, recovery).await;
    tracing::info!("stopping: finishing queued commands and writing snapshots");
    let stopper = Arc::clone(&shards);
    let _ = tokio::task::spawn_blocking(move || stopper.stop()).await;
    tracing::info!("stopped");
    result
}

/// Resolves with an error as soon as a shard's recovery fails; never resolves if all
/// succeed.
fn recovery_watch(
    shards: Arc<Shards>,
    started: std::sync::mpsc::Receiver<Result<usize, String>>,
) -> impl Future<Output = String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        for _ in 0..shards.len() {
            match started.recv() {
                Ok(Ok(_)) => {}
                Ok(Err(why)) => {
                    let _ = tx.send(why);
                    return;
                }
                Err(_) => {
                    let _ = tx.send("a shard stopped during recovery".to_owned());
                    return;
                }
            }
        }
        tracing::info!("all shards recovered: ready");
        // Keep the sender alive so the watch never resolves.
        std::mem::forget(tx);
    });
    async move {
        match rx.await {
            Ok(why) => why,
            Err(_) => std::future::pending().await,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
    recovery: impl Future<Output = String>,
) -> Result<(), String> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    tokio::pin!(recovery);
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            why = &mut recovery => {
                tracing::error!(error = %why, "recovery failed");
                break Err(format!("recovery failed: {why}"));
            }
            accepted = listener.accept() => {
                let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    };
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time");
    }
    outcome
}
