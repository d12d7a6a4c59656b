//! Connecting to NATS: authentication, TLS, and what to tell the operator
//! when the server cannot be reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};
use tokio_util::sync::CancellationToken;

use super::{Nats, SUBSCRIPTION_CAPACITY};
use crate::config::{NatsAuth, NatsConfig};
use crate::metrics::Metrics;

/// The longest wait between two connection attempts.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// NATS could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server refused the credentials: retrying cannot help.
    #[error("NATS at {url} refused the credentials ({message}); check the authentication keys of [nats] in weir.toml (user/password, token, creds or nkey)")]
    Auth {
        /// The server.
        url: String,
        /// The server's word.
        message: String,
    },
    /// A credentials or TLS file could not be read.
    #[error("cannot use {what}: {message}")]
    Setup {
        /// Which setting.
        what: String,
        /// Why.
        message: String,
    },
    /// Shutdown was asked for before a connection was made.
    #[error("stopped before NATS at {url} could be reached")]
    Cancelled {
        /// The server.
        url: String,
    },
}

/// Connects, retrying with backoff (and saying so) until the server answers
/// or `cancel` fires. Credentials the server refuses end the attempt at once.
pub async fn connect(config: &NatsConfig, cancel: &CancellationToken, metrics: Option<Metrics>) -> Result<Nats, ConnectError> {
    let url = config.url.clone();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 0u32;
    // The client, once made: the connection callback asks it which server it
    // is on, to say which one was lost.
    let server = Arc::new(std::sync::OnceLock::<async_nats::Client>::new());
    let losses = Arc::new(AtomicU64::new(0));
    loop {
        attempt += 1;
        let options = options(config, metrics.clone(), server.clone(), losses.clone()).await?;
        let servers = config
            .urls()
            .map(str::parse::<async_nats::ServerAddr>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConnectError::Setup { what: format!("[nats].url {url:?}"), message: e.to_string() })?;
        match options.connect(servers.as_slice()).await {
            Ok(client) => {
                if attempt > 1 {
                    tracing::info!(url = %url, "reached NATS after {attempt} attempts");
                }
                if let Some(m) = &metrics {
                    m.nats_connected(true);
                }
                let info = client.server_info();
                tracing::info!(url = %url, "connected to NATS server {} ({}:{}, version {})", info.server_name, info.host, info.port, info.version);
                let _ = server.set(client.clone());
                let js = async_nats::jetstream::new(client.clone());
                return Ok(Nats { client, js, url: Arc::from(url.as_str()), losses });
            }
            Err(e) if matches!(e.kind(), ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication) => {
                return Err(ConnectError::Auth { url, message: e.to_string() });
            }
            Err(e) => {
                let hint = match e.kind() {
                    ConnectErrorKind::Tls => "check [nats.tls] in weir.toml and the server's TLS settings",
                    ConnectErrorKind::ServerParse => "check [nats].url (or NATS_URL): expected e.g. nats://127.0.0.1:4222",
                    _ => "is nats-server running there? start it (`nats-server -js`) or point [nats].url / NATS_URL at it",
                };
                // Said once, then every tenth attempt: a retry loop must not
                // flood the log while an operator fixes the server.
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(
                        url = %url,
                        "cannot reach NATS at {url}: {e}; {hint}; retrying with backoff (every {}s at most), attempt {attempt}",
                        MAX_DELAY.as_secs()
                    );
                } else {
                    tracing::debug!(url = %url, attempt, "still cannot reach NATS: {e}");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(ConnectError::Cancelled { url }),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}

async fn options(
    config: &NatsConfig,
    metrics: Option<Metrics>,
    client: Arc<std::sync::OnceLock<async_nats::Client>>,
    losses: Arc<AtomicU64>,
) -> Result<ConnectOptions, ConnectError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| ConnectError::Setup { what: what.to_owned(), message: e.to_string() };
    let mut options = ConnectOptions::new();
    match &config.auth {
        NatsAuth::None => {}
        NatsAuth::Creds(path) => {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| setup(&format!("[nats].creds {}", path.display()), &e))?;
        }
        NatsAuth::NKey(path) => {
            let seed = std::fs::read_to_string(path).map_err(|e| setup(&format!("[nats].nkey {}", path.display()), &e))?;
            options = options.nkey(seed.trim().to_owned());
        }
        NatsAuth::Token(token) => options = options.token(token.clone()),
        NatsAuth::UserPassword { user, password } => options = options.user_and_password(user.clone(), password.clone()),
    }
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options = options.require_tls(tls.required);
    }
    let url = config.url.clone();
    // The server the client was last connected to, as "name (host:port)".
    let last_server: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    Ok(options
        .name(config.name.clone())
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .client_capacity(1 << 16)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(move |event| {
            let url = url.clone();
            let metrics = metrics.clone();
            let client = client.clone();
            let last_server = last_server.clone();
            let losses = losses.clone();
            async move {
                let current = || {
                    client.get().map(|c| c.server_info()).filter(|i| !i.host.is_empty()).map(|i| format!("{} ({}:{})", i.server_name, i.host, i.port))
                };
                match event {
                    async_nats::Event::Disconnected => {
                        losses.fetch_add(1, Ordering::Relaxed);
                        if let Some(m) = &metrics {
                            m.nats_connected(false);
                        }
                        // Said once per loss, naming the server: with
                        // several URLs weir goes on with the others.
                        let lost = last_server.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().or_else(current);
                        match lost {
                            Some(server) => tracing::warn!(url = %url, "lost NATS server {server}; reconnecting (to another server of {url} if there are several)"),
                            None => tracing::warn!(url = %url, "disconnected from NATS; reconnecting"),
                        }
                    }
                    async_nats::Event::Connected => {
                        if let Some(m) = &metrics {
                            m.nats_connected(true);
                        }
                        // The first connection is said by `connect`, once
                        // it knows the client.
                        if let Some(server) = current() {
                            tracing::info!(url = %url, "connected to NATS server {server}");
                            *last_server.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(server);
                        }
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(subscription = sid, "NATS dropped messages: weir is a slow consumer (core NATS has no backpressure); add workers or weir processes, or use a JetStream source")
                    }
                    other => tracing::info!(url = %url, "NATS: {other}"),
                }
            }
        }))
}
