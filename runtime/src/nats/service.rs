//! weir's face as a NATS service (the "micro" protocol): `$SRV.PING`,
//! `$SRV.INFO` and `$SRV.STATS` list every running weir with its pipelines
//! and counters, and `weir.control.<instance>.status` answers with the same
//! status as JSON (with samples of candidates' differences when the request
//! says `diff`); `.reload` reloads, and `.decide` promotes or rolls back a
//! stage's candidate.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use async_nats::service::ServiceExt as _;
use futures::StreamExt as _;

use super::Nats;
use crate::control::{CandidateReport, DecideReport, DecideRequest, PipelineReport, ReloadReport, StatusReport};
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
    /// Its stages' candidates, reported live (with samples when asked).
    pub candidates: Vec<Arc<dyn Fn(bool) -> CandidateReport + Send + Sync>>,
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

/// What the control subjects ask of the supervisor.
pub enum ControlRequest {
    /// `weir reload`.
    Reload(ReloadRequest),
    /// `weir promote`, `weir rollback`.
    Decide(DecideRequest, oneshot::Sender<DecideReport>),
}

fn status(instance: &str, started: Instant, pipelines: &SharedStatus, diff: bool) -> StatusReport {
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
                candidates: p.candidates.iter().map(|report| report(diff)).collect(),
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
/// `weir.control.<instance>.status`, `reload` on
/// `weir.control.<instance>.reload` and `decide` on
/// `weir.control.<instance>.decide`.
pub async fn start_service(nats: &Nats, instance: &str, pipelines: SharedStatus, control: mpsc::Sender<ControlRequest>) -> Result<Service, String> {
    let started = Instant::now();
    let instance: Arc<str> = instance.into();
    let for_stats = (pipelines.clone(), instance.clone());
    let service = nats
        .client
        .service_builder()
        .description("weir: a WebAssembly stream processor")
        .metadata([("instance".to_owned(), instance.to_string())].into())
        .stats_handler(move |_endpoint, _stats| serde_json::to_value(status(&for_stats.1, started, &for_stats.0, false)).unwrap_or_default())
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
    let mut decide = service
        .endpoint_builder()
        .name("decide")
        .add(format!("weir.control.{instance}.decide"))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(request) = endpoint.next().await {
            let diff = request.message.payload.as_ref() == b"diff";
            let body = serde_json::to_string(&status(&instance, started, &pipelines, diff)).unwrap_or_default();
            if let Err(e) = request.respond(Ok(body.into())).await {
                tracing::debug!(error = %e, "status reply failed");
            }
        }
    });
    let decisions = control.clone();
    tokio::spawn(async move {
        while let Some(request) = decide.next().await {
            let report = match serde_json::from_slice::<DecideRequest>(&request.message.payload) {
                Err(e) => DecideReport { error: Some(format!("unreadable request: {e}")), ..Default::default() },
                Ok(asked) => {
                    let (tx, rx) = oneshot::channel();
                    match decisions.send(ControlRequest::Decide(asked, tx)).await {
                        Ok(()) => rx
                            .await
                            .unwrap_or_else(|_| DecideReport { error: Some("weir is shutting down".into()), ..Default::default() }),
                        Err(_) => DecideReport { error: Some("weir is shutting down".into()), ..Default::default() },
                    }
                }
            };
            if let Err(e) = request.respond(Ok(serde_json::to_string(&report).unwrap_or_default().into())).await {
                tracing::debug!(error = %e, "decide reply failed");
            }
        }
    });
    tokio::spawn(async move {
        while let Some(request) = reload.next().await {
            let (tx, rx) = oneshot::channel();
            let report = match control.send(ControlRequest::Reload(tx)).await {
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
