//! The process-wide `weir.toml`: NATS connection, pipelines directory, workers, metrics.
//!
//! Every key has a default, so that `weir run pipelines/` works against a local NATS with
//! no file at all. Relative paths in the file are relative to the file's directory, so the
//! result does not depend on where weir is started from.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::Deserializer;
use toml::Spanned;

use super::error::{ConfigError, InvalidValue, SourceFile, mask_urls};
use super::names::{Name, StrVisitor};
use super::table::Table;
use super::units::{CacheSize, IoThreads, ShutdownTimeout, WorkerCount};

/// The global configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Names this process in metrics, logs and the NATS connection (default: the hostname,
    /// else "weir").
    pub instance: Name,
    /// Directory of pipeline files (default "pipelines" next to weir.toml, or in the
    /// working directory when there is no file).
    pub pipelines: PathBuf,
    /// Threads running stages (default: the number of cores).
    pub workers: usize,
    /// Threads of the async reactor, which moves events between NATS and the
    /// workers (default: a quarter of the cores, at least one). See
    /// [`default_io_threads`].
    pub io_threads: usize,
    /// How long shutdown waits for in-flight events (default 10s).
    pub shutdown_timeout: Duration,
    /// Compiled-code cache (default `$XDG_CACHE_HOME/weir` or `$HOME/.cache/weir`).
    pub cache_dir: PathBuf,
    /// Most bytes of compiled code kept in `cache_dir` (default 2 GiB); the
    /// least recently used entries go first.
    pub cache_size: u64,
    pub nats: NatsConfig,
    pub metrics: MetricsConfig,
    /// The file this was read from; `None` for all defaults.
    pub file: Option<PathBuf>,
}

/// `[nats]`: how to reach the NATS server.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// One URL, or several separated by commas (see [`NatsConfig::urls`]).
    pub url: String,
    /// Connection name shown by the server (default: the instance name).
    pub name: String,
    pub auth: NatsAuth,
    /// `[nats.tls]`, if present.
    pub tls: Option<TlsConfig>,
}

// A URL may carry a password (nats://user:pass@host); keep it out of logs.
impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &mask_urls(&self.url))
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .finish()
    }
}

impl NatsConfig {
    /// The server URLs, split at commas.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty())
    }
}

/// How to authenticate to NATS: at most one method.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    #[default]
    None,
    /// A `.creds` file (JWT and seed).
    Creds(PathBuf),
    /// A file holding an NKey seed.
    NKey(PathBuf),
    Token(String),
    UserPassword {
        user: String,
        password: String,
    },
}

// Secrets stay out of logs and panic messages.
impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Creds(path) => f.debug_tuple("Creds").field(path).finish(),
            Self::NKey(path) => f.debug_tuple("NKey").field(path).finish(),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::UserPassword { user, .. } => f.debug_struct("UserPassword").field("user", user).field("password", &"<redacted>").finish(),
        }
    }
}

/// `[nats.tls]`. `cert` and `key` are both set or both unset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// CA certificate to trust, in addition to the system roots.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client private key.
    pub key: Option<PathBuf>,
    /// Refuse to connect without TLS.
    pub required: bool,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub address: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, address: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464)) }
    }
}

const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl NatsConfig {
    fn defaults(instance: &Name) -> Self {
        Self {
            url: std::env::var("NATS_URL")
                .ok()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned()),
            name: instance.to_string(),
            auth: NatsAuth::None,
            tls: None,
        }
    }
}

impl Default for Global {
    fn default() -> Self {
        let instance = default_instance();
        Self {
            nats: NatsConfig::defaults(&instance),
            instance,
            pipelines: PathBuf::from("pipelines"),
            workers: default_workers(),
            io_threads: default_io_threads(),
            shutdown_timeout: Duration::from_secs(10),
            cache_dir: default_cache_dir(),
            cache_size: DEFAULT_CACHE_SIZE,
            metrics: MetricsConfig::default(),
            file: None,
        }
    }
}

/// The hostname made into a valid [`Name`], else "weir".
fn default_instance() -> Name {
    let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    // Only the first label: "web-3.example.com" names the machine as "web-3".
    let short = hostname.trim().split('.').next().unwrap_or_default();
    Name::sanitize(short).unwrap_or_else(Name::weir)
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A quarter of the cores, at least one. The reactor only moves bytes (the
/// wasm work runs on the workers), and the NATS connection is one task
/// whatever the thread count, so a reactor thread keeps up with several
/// workers. On small machines, where weir shares the cores with NATS,
/// more reactor threads only compete with the workers and hand events
/// between threads: on 2 cores, one reactor thread relayed 15-20% more
/// events per second than two, with a lower p99 (relay bench).
fn default_io_threads() -> usize {
    (default_workers() / 4).max(1)
}

/// Room for a few dozen compiled plugins: a Rust stage compiles to a few
/// MiB, a Python or JavaScript one to a few tens.
const DEFAULT_CACHE_SIZE: u64 = 2 << 30;

fn default_cache_dir() -> PathBuf {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(xdg) = absolute("XDG_CACHE_HOME") {
        xdg.join("weir")
    } else if let Some(home) = absolute("HOME") {
        home.join(".cache").join("weir")
    } else {
        std::env::temp_dir().join("weir")
    }
}

// ---- the TOML shape ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    instance: Option<Name>,
    pipelines: Option<RelPath>,
    workers: Option<WorkerCount>,
    io_threads: Option<IoThreads>,
    shutdown_timeout: Option<ShutdownTimeout>,
    cache_dir: Option<RelPath>,
    cache_size: Option<CacheSize>,
    nats: Option<Table<RawNats>>,
    metrics: Option<Table<RawMetrics>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: Option<NatsUrl>,
    name: Option<NonEmpty>,
    creds: Option<Spanned<RelPath>>,
    nkey: Option<Spanned<RelPath>>,
    token: Option<Spanned<NonEmpty>>,
    user: Option<Spanned<NonEmpty>>,
    password: Option<Spanned<NonEmpty>>,
    tls: Option<Table<RawTls>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: Option<RelPath>,
    cert: Option<Spanned<RelPath>>,
    key: Option<Spanned<RelPath>>,
    required: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    address: Option<MetricsAddress>,
    enabled: Option<bool>,
}

/// A path as written; joined to the file's directory later.
struct RelPath(PathBuf);

impl<'de> Deserialize<'de> for RelPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn parse(path: String) -> Result<PathBuf, InvalidValue> {
            if path.is_empty() { Err(InvalidValue::new("path is empty")) } else { Ok(PathBuf::from(path)) }
        }
        deserializer.deserialize_str(StrVisitor { expecting: "a path", parse }).map(RelPath)
    }
}

/// A string that must not be empty (an empty token or user is always a mistake).
struct NonEmpty(String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn parse(text: String) -> Result<String, InvalidValue> {
            if text.is_empty() { Err(InvalidValue::new("value is empty")) } else { Ok(text) }
        }
        deserializer.deserialize_str(StrVisitor { expecting: "a string", parse }).map(NonEmpty)
    }
}

/// `nats.url`: one or more comma-separated server URLs.
struct NatsUrl(String);

impl<'de> Deserialize<'de> for NatsUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(StrVisitor { expecting: "a NATS URL", parse: check_nats_url })
            .map(NatsUrl)
    }
}

fn check_nats_url(text: String) -> Result<String, InvalidValue> {
    let help = "write nats://host:port (or tls://, ws://, wss://); separate several servers with commas";
    for url in text.split(',').map(str::trim) {
        let host = match url.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
                    return Err(InvalidValue::new(format!("unsupported scheme {scheme:?} in NATS URL {url:?}")).with_help(help));
                }
                rest
            }
            None => url,
        };
        // Credentials may precede the host: nats://user:pass@host.
        let host = host.rsplit('@').next().unwrap_or(host);
        if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
            return Err(InvalidValue::new(format!("invalid NATS URL {url:?}")).with_help(help));
        }
    }
    Ok(text)
}

/// `metrics.address`: an IP address and a port.
struct MetricsAddress(SocketAddr);

impl<'de> Deserialize<'de> for MetricsAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn parse(text: String) -> Result<SocketAddr, InvalidValue> {
            text.parse().map_err(|_| {
                InvalidValue::new(format!("invalid address {text:?}")).with_help("write an IP address and a port, like \"127.0.0.1:9464\" or \"[::]:9464\"")
            })
        }
        deserializer
            .deserialize_str(StrVisitor { expecting: "an address like \"127.0.0.1:9464\"", parse })
            .map(MetricsAddress)
    }
}

// ---- checks across fields ------------------------------------------------------------

impl RawGlobal {
    pub(crate) fn validate(self, source: &SourceFile<'_>) -> Result<Global, ConfigError> {
        let base = source.path.parent().unwrap_or(Path::new(""));
        let resolve = |p: RelPath| base.join(p.0);
        let defaults = Global::default();
        let instance = self.instance.unwrap_or(defaults.instance);
        let nats = self.nats.map(|n| n.0).unwrap_or_default().validate(source, &instance, &resolve)?;
        let metrics = self.metrics.map(|m| m.0).unwrap_or_default();
        Ok(Global {
            pipelines: self.pipelines.map_or_else(|| base.join("pipelines"), resolve),
            workers: self.workers.map_or(defaults.workers, |w| w.0),
            io_threads: self.io_threads.map_or(defaults.io_threads, |w| w.0),
            shutdown_timeout: self.shutdown_timeout.map_or(defaults.shutdown_timeout, |t| t.0),
            cache_dir: self.cache_dir.map_or(defaults.cache_dir, resolve),
            cache_size: self.cache_size.map_or(defaults.cache_size, |s| s.0),
            nats,
            metrics: MetricsConfig {
                enabled: metrics.enabled.unwrap_or(defaults.metrics.enabled),
                address: metrics.address.map_or(defaults.metrics.address, |a| a.0),
            },
            instance,
            file: Some(source.path.to_owned()),
        })
    }
}

impl RawNats {
    fn validate(self, source: &SourceFile<'_>, instance: &Name, resolve: &dyn Fn(RelPath) -> PathBuf) -> Result<NatsConfig, ConfigError> {
        let defaults = NatsConfig::defaults(instance);
        let auth_help = "choose one way to authenticate: creds, nkey, token, or user and password";
        match (&self.user, &self.password) {
            (Some(user), None) => {
                return Err(source.error_at(user.span(), "nats.user", "\"user\" requires \"password\"", Some("add password = \"...\" to [nats]".to_owned())));
            }
            (None, Some(password)) => {
                return Err(source.error_at(
                    password.span(),
                    "nats.password",
                    "\"password\" requires \"user\"",
                    Some("add user = \"...\" to [nats]".to_owned()),
                ));
            }
            _ => {}
        }
        let mut methods = [
            self.creds.as_ref().map(|s| ("creds", s.span())),
            self.nkey.as_ref().map(|s| ("nkey", s.span())),
            self.token.as_ref().map(|s| ("token", s.span())),
            self.user.as_ref().map(|s| ("user", s.span())),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        // Blame the one written second, so the message reads in file order.
        methods.sort_by_key(|(_, span)| span.start);
        if let [(first, _), (second, span), ..] = methods.as_slice() {
            return Err(source.error_at(
                span.clone(),
                format!("nats.{second}"),
                format!("\"{first}\" and \"{second}\" are both set, but NATS takes one way to authenticate"),
                Some(auth_help.to_owned()),
            ));
        }
        let auth = if let Some(creds) = self.creds {
            NatsAuth::Creds(resolve(creds.into_inner()))
        } else if let Some(nkey) = self.nkey {
            NatsAuth::NKey(resolve(nkey.into_inner()))
        } else if let Some(token) = self.token {
            NatsAuth::Token(token.into_inner().0)
        } else if let (Some(user), Some(password)) = (self.user, self.password) {
            NatsAuth::UserPassword { user: user.into_inner().0, password: password.into_inner().0 }
        } else {
            NatsAuth::None
        };
        let tls = match self.tls.map(|t| t.0) {
            None => None,
            Some(tls) => {
                let (cert, key) = match (tls.cert, tls.key) {
                    (Some(cert), None) => {
                        return Err(source.error_at(
                            cert.span(),
                            "nats.tls.cert",
                            "\"cert\" requires \"key\"",
                            Some("a client certificate needs its private key: add key = \"path/to/client.key\" to [nats.tls]".to_owned()),
                        ));
                    }
                    (None, Some(key)) => {
                        return Err(source.error_at(
                            key.span(),
                            "nats.tls.key",
                            "\"key\" requires \"cert\"",
                            Some("a private key needs its client certificate: add cert = \"path/to/client.crt\" to [nats.tls]".to_owned()),
                        ));
                    }
                    (cert, key) => (cert.map(|c| resolve(c.into_inner())), key.map(|k| resolve(k.into_inner()))),
                };
                Some(TlsConfig { ca: tls.ca.map(resolve), cert, key, required: tls.required.unwrap_or(false) })
            }
        };
        Ok(NatsConfig { url: self.url.map_or(defaults.url, |u| u.0), name: self.name.map_or(defaults.name, |n| n.0), auth, tls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let global = Global::default();
        assert!(global.workers >= 1);
        assert!(global.io_threads >= 1 && global.io_threads <= global.workers);
        assert_eq!(global.pipelines, PathBuf::from("pipelines"));
        assert_eq!(global.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(global.metrics.address.to_string(), "127.0.0.1:9464");
        assert!(global.metrics.enabled);
        assert_eq!(global.nats.auth, NatsAuth::None);
        assert_eq!(global.nats.name, global.instance.to_string());
        assert!(global.cache_dir.ends_with("weir"));
        assert!(global.file.is_none());
    }

    #[test]
    fn urls() {
        assert!(check_nats_url("nats://127.0.0.1:4222".to_owned()).is_ok());
        assert!(check_nats_url("nats://a:4222, tls://b:4222".to_owned()).is_ok());
        assert!(check_nats_url("localhost:4222".to_owned()).is_ok());
        assert!(check_nats_url("nats://u:p@host:4222".to_owned()).is_ok());
        assert!(check_nats_url("http://a:4222".to_owned()).is_err());
        assert!(check_nats_url("nats://".to_owned()).is_err());
        assert!(check_nats_url("nats://a,".to_owned()).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let auth = NatsAuth::UserPassword { user: "app".to_owned(), password: "hunter2".to_owned() };
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", NatsAuth::Token("s3cret".to_owned())).contains("s3cret"));
    }
}
