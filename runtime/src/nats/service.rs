//! weir's face as a NATS service (the "micro" protocol): `$SRV.PING`,
//! `$SRV.INFO` and `$SRV.STATS` list every running weir with its pipelines
//! and counters, and `weir.control.<instance>.status` answers with the same
//! status as JSON.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use async_nats::service::ServiceExt as _;
use futures::StreamExt as _;

use super::Nats;
use crate::control::{PipelineReport, ReloadReport, StatusReport};
use crate::metrics::PipelineMetrics;

/// What the service reports of one running pipeline.
pub struct PipelineStatus {
    /// The pipeline's name.
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// The running version.
    pub version: String,
    /// When this version started.
    pub since: Instant,
    /// Its counters.
    pub metrics: PipelineMetrics,
}

/// A registered service; stop it on shutdown.
pub struct Service {
    service: async_nats::service::Service,
}

impl Service {
    /// Unregisters.
    pub async fn stop(self) -> Result<(), String> {
        self.service.stop().await.map_err(|e| e.to_string())
    }
}

/// The status reply; `pipelines` is what the supervisor keeps current.
pub type SharedStatus = Arc<Mutex<Vec<PipelineStatus>>>;

/// A reload asked for over NATS: the supervisor answers on the channel.
pub type ReloadRequest = oneshot::Sender<ReloadReport>;

fn status(instance: &str, started: Instant, pipelines: &SharedStatus) -> StatusReport {
    let pipelines = pipelines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let pipelines = pipelines
        .iter()
        .map(|p| {
            let m = &p.metrics;
            PipelineReport {
                name: p.name.clone(),
                file: p.file.display().to_string(),
                version: p.version.clone(),
                uptime_seconds: p.since.elapsed().as_secs(),
                events_in: m.events_in.get(),
                events_out: m.events_out.get(),
                dropped: m.dropped.get(),
                dead_lettered: m.dead_lettered_total(),
                retried: m.retried.get(),
                publish_errors: m.publish_errors.get(),
            }
        })
        .collect();
    StatusReport {
        instance: instance.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: started.elapsed().as_secs(),
        pipelines,
        error: None,
    }
}

/// Registers this weir as service `weir` with endpoints `status` on
/// `weir.control.<instance>.status` and `reload` on
/// `weir.control.<instance>.reload`.
pub async fn start_service(nats: &Nats, instance: &str, pipelines: SharedStatus, reloads: mpsc::Sender<ReloadRequest>) -> Result<Service, String> {
    let started = Instant::now();
    let instance: Arc<str> = instance.into();
    let for_stats = (pipelines.clone(), instance.clone());
    let service = nats
        .client
        .service_builder()
        .description("weir: a WebAssembly stream processor")
        .metadata([("instance".to_owned(), instance.to_string())].into())
        .stats_handler(move |_endpoint, _stats| serde_json::to_value(status(&for_stats.1, started, &for_stats.0)).unwrap_or_default())
        .start("weir", env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| e.to_string())?;
    let mut endpoint = service
        .endpoint_builder()
        .name("status")
        .add(format!("weir.control.{instance}.status"))
        .await
        .map_err(|e| e.to_string())?;
    let mut reload = service
        .endpoint_builder()
        .name("reload")
        .add(format!("weir.control.{instance}.reload"))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(request) = endpoint.next().await {
            let body = serde_json::to_string(&status(&instance, started, &pipelines)).unwrap_or_default();
            if let Err(e) = request.respond(Ok(body.into())).await {
                tracing::debug!(error = %e, "status reply failed");
            }
        }
    });
    tokio::spawn(async move {
        while let Some(request) = reload.next().await {
            let (tx, rx) = oneshot::channel();
            let report = match reloads.send(tx).await {
                Ok(()) => rx.await.unwrap_or_else(|_| ReloadReport::error("weir is shutting down")),
                Err(_) => ReloadReport::error("weir is shutting down"),
            };
            if let Err(e) = request.respond(Ok(serde_json::to_string(&report).unwrap_or_default().into())).await {
                tracing::debug!(error = %e, "reload reply failed");
            }
        }
    });
    Ok(Service { service })
}
