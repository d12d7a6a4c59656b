//! `weir run`: the long-running process. Loads and builds every pipeline,
//! connects to NATS, and for each pipeline runs source → workers → sink
//! until shutdown, then drains.
//!
//! This module is the process's life: start (files checked, metrics served,
//! NATS connected, worker threads started, every pipeline started through the
//! reload supervisor), the loop that waits for shutdown and reload triggers
//! (file changes, SIGHUP, `weir reload`), and the stop (drain, flush, join
//! the workers). One pipeline's path is in `task.rs` and `sink.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Global};
use crate::engine::{Engine, EngineOptions};
use crate::metrics::{self, Metrics};
use crate::nats::{self, KvMirror};
use crate::pipeline::workers::Workers;
use crate::reload::{self, Supervisor};
use crate::task::ProcessContext;

/// Runs every pipeline of `paths` (or of the configured pipelines directory)
/// until `shutdown` fires, then drains and returns. Pipelines are reloaded
/// live when their files change, on SIGHUP and on `weir reload`.
pub async fn run(global: &Global, paths: &[PathBuf], shutdown: CancellationToken) -> anyhow::Result<()> {
    let paths = if paths.is_empty() { vec![global.pipelines.clone()] } else { paths.to_vec() };
    // Check the files before connecting: a typo should fail fast, not after
    // NATS is reached.
    let (pipelines, errors) = config::load_pipelines(&paths);
    if !errors.is_empty() {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}\n{} pipeline file(s) are invalid; `weir validate` checks them before a deploy", all.join("\n"), errors.len());
    }
    if pipelines.is_empty() {
        anyhow::bail!(
            "no pipelines in {}: put pipeline *.toml files there, or name them on the command line",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }

    // Health and metrics come up first: /healthz answers while weir waits
    // for NATS, and /readyz says why it is not ready yet.
    let metrics = Metrics::new(global.metrics.enabled);
    let endpoint_stop = CancellationToken::new();
    if global.metrics.enabled {
        let address = global.metrics.address;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot serve metrics on {address}; change [metrics].address in weir.toml or set [metrics] enabled = false"))?;
        tracing::info!("metrics on http://{address}/metrics, health on /healthz and /readyz");
        tokio::spawn(metrics::serve(metrics.clone(), listener, endpoint_stop.clone()));
    }

    let nats = nats::connect(&global.nats, &shutdown, Some(metrics.clone())).await?;
    let kv = KvMirror::default();
    let engine =
        Engine::new(&EngineOptions { cache_dir: Some(global.cache_dir.clone()), cache_size: Some(global.cache_size), kv: Some(Arc::new(kv.clone())) })?;
    let workers = Arc::new(Workers::start(global.workers)?);
    let captures = nats::Captures::watch(&nats, shutdown.clone()).await;
    let context = ProcessContext {
        nats: nats.clone(),
        workers: workers.clone(),
        metrics: metrics.clone(),
        kv,
        captures,
        stop: shutdown.clone(),
        instance: global.instance.to_string(),
    };
    let mut supervisor = Supervisor::new(context, engine, paths);
    let report = supervisor.reload().await;
    if !report.failed.is_empty() {
        let all: Vec<String> = report.failed.iter().map(|f| f.error.clone()).collect();
        supervisor.stop_all().await;
        anyhow::bail!("{}", all.join("\n"));
    }

    let (control_tx, mut control_rx) = mpsc::channel::<nats::ControlRequest>(4);
    let service = nats::start_service(&nats, global.instance.as_str(), supervisor.status(), control_tx).await;
    if let Err(e) = &service {
        tracing::warn!(error = %e, "cannot register the NATS service (weir runs without $SRV answers and remote reload)");
    }
    let (trigger_tx, mut trigger_rx) = mpsc::channel(64);
    let mut watcher = reload::Watcher::new(trigger_tx.clone());
    watcher.watch(&supervisor.watched_paths());
    tokio::spawn(reload::on_sighup(trigger_tx));

    // A subscription is only queued until the server has it: a round trip
    // through the server makes "ready" true for events published right
    // after it.
    // (A user who may not use `_INBOX.>` gets a warning, and weir's
    // flush: the subscriptions are then on their way when it says ready.)
    if let Err(e) = nats.round_trip(Duration::from_secs(5)).await {
        tracing::warn!(error = %e, "cannot confirm the subscriptions with a round trip through the server (inboxes not permitted?); they were sent");
        nats.flush().await.map_err(|e| anyhow::anyhow!("NATS at {}: {e}", nats.url()))?;
    }
    metrics.set_running(supervisor.len(), true);
    tracing::info!(url = %nats.url(), workers = workers.len(), io_threads = global.io_threads, "ready: {} running", plural(supervisor.len(), "pipeline"));

    // Candidates' samples are published, and their decisions carried out,
    // within this period.
    let mut candidates = tokio::time::interval(Duration::from_millis(100));
    candidates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(why) = trigger_rx.recv() => {
                reload::debounce(&mut trigger_rx).await;
                tracing::info!("reloading ({why})");
                supervisor.reload().await;
            }
            Some(request) = control_rx.recv() => match request {
                nats::ControlRequest::Reload(reply) => {
                    let report = supervisor.reload().await;
                    let _ = reply.send(report);
                }
                nats::ControlRequest::Decide(request, reply) => {
                    let _ = reply.send(supervisor.decide(request).await);
                }
            },
            _ = candidates.tick() => {
                supervisor.tend_candidates().await;
                continue;
            }
        }
        watcher.watch(&supervisor.watched_paths());
        metrics.set_running(supervisor.len(), true);
    }

    metrics.set_running(supervisor.len(), false);
    tracing::info!("shutting down: finishing in-flight events (at most {:?})", global.shutdown_timeout);
    if tokio::time::timeout(global.shutdown_timeout, supervisor.stop_all()).await.is_err() {
        tracing::warn!("shutdown timeout reached; unfinished JetStream events will be redelivered");
    }
    if let Err(e) = tokio::time::timeout(Duration::from_secs(5), nats.flush()).await.unwrap_or(Err("timed out".into())) {
        tracing::warn!(error = %e, "final flush to NATS failed");
    }
    drop(supervisor);
    if let Ok(workers) = Arc::try_unwrap(workers) {
        tokio::task::spawn_blocking(move || workers.shutdown()).await?;
    }
    if let Ok(service) = service {
        let _ = service.stop().await;
    }
    endpoint_stop.cancel();
    tracing::info!("stopped");
    Ok(())
}

/// "1 pipeline", "2 pipelines".
fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
