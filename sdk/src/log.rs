//! Logging into weir's log.
//!
//! Lines a stage logs end up in weir's own log, tagged with the pipeline and
//! the stage. weir may drop lines from a stage that logs faster than its rate
//! limit, so do not log per event at `info` in a busy pipeline.
//!
//! Use the macros, which take `format!` arguments:
//!
//! ```
//! let id = 7;
//! weir_sdk::info!("loaded {} rules", 3);
//! weir_sdk::warn!("order {id} has no country");
//! ```
//!
//! On `wasm32` they call weir's `host.log` import. On any other target (a
//! native `cargo test`) they print `[LEVEL] message` to stderr.

use std::fmt;

/// Severity of a log line.
///
/// ```
/// use weir_sdk::log::Level;
/// assert!(Level::Warn > Level::Info);
/// assert_eq!(Level::Error.to_string(), "ERROR");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation worth noting.
    Info,
    /// Something unexpected that the stage handled.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        })
    }
}

/// Writes one line into weir's log.
///
/// ```
/// use weir_sdk::log::{log, Level};
/// log(Level::Info, "model loaded");
/// ```
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::__private::bindings::weir::stage::host;
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        eprintln!("[{level}] {message}");
    }
}

/// Used by the macros: formats only when there are arguments to format.
#[doc(hidden)]
pub fn __log_fmt(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(message) => log(level, message),
        None => log(level, &args.to_string()),
    }
}

/// Logs at [`Level::Trace`](crate::log::Level::Trace), with `format!` arguments.
///
/// ```
/// weir_sdk::trace!("batch of {} events", 12);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::__log_fmt($crate::log::Level::Trace, ::core::format_args!($($arg)+))
    };
}

/// Logs at [`Level::Debug`](crate::log::Level::Debug), with `format!` arguments.
///
/// ```
/// weir_sdk::debug!("rule {} matched", "price");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::__log_fmt($crate::log::Level::Debug, ::core::format_args!($($arg)+))
    };
}

/// Logs at [`Level::Info`](crate::log::Level::Info), with `format!` arguments.
///
/// ```
/// weir_sdk::info!("loaded {} rules", 3);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::__log_fmt($crate::log::Level::Info, ::core::format_args!($($arg)+))
    };
}

/// Logs at [`Level::Warn`](crate::log::Level::Warn), with `format!` arguments.
///
/// ```
/// let id = 7;
/// weir_sdk::warn!("order {id} has no country");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::__log_fmt($crate::log::Level::Warn, ::core::format_args!($($arg)+))
    };
}

/// Logs at [`Level::Error`](crate::log::Level::Error), with `format!` arguments.
///
/// ```
/// weir_sdk::error!("lookup failed: {}", "timeout");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::__log_fmt($crate::log::Level::Error, ::core::format_args!($($arg)+))
    };
}
