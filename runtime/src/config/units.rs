//! Durations (`"20ms"`, `"1s"`) and byte sizes (`"64MiB"`, `1048576`) as operators write
//! them, plus the range-checked newtypes that read them from TOML.
//!
//! Parsing lives in plain functions so that the CLI and tests can use them without serde;
//! the private newtypes wrap them in visitors so that a bad value is reported by the
//! `toml` crate with the value's span.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

use super::error::InvalidValue;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Units accepted by [`parse_size`], with their factor. Case matters: `mb` is rejected
/// rather than guessed, because `Mb` (megabit) and `MB` differ by a factor of eight.
const SIZE_UNITS: &[(&str, u64)] = &[("B", 1), ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("KiB", KIB), ("MiB", MIB), ("GiB", GIB)];

const DURATION_HELP: &str = r#"write a number and a unit, like "20ms", "1s" or "2m""#;
const SIZE_HELP: &str = r#"write a whole number and a unit (B, KB, MB, GB, KiB, MiB or GiB), like "64MiB", or a number of bytes"#;

/// Parses a duration written like `20ms`, `1s`, `2m`, `1h` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidValue> {
    let trimmed = text.trim();
    let invalid = || InvalidValue::new(format!("invalid duration {text:?}")).with_help(DURATION_HELP);
    // humantime accepts a bare "0"; any other bare number is ambiguous (seconds? ms?),
    // so it goes through humantime too and fails for want of a unit.
    if trimmed.is_empty() {
        return Err(invalid());
    }
    humantime::parse_duration(trimmed).map_err(|_| invalid())
}

/// Parses a size in bytes written like `64MiB`, `512KiB`, `1GiB`, `10MB` or `1048576`.
pub fn parse_size(text: &str) -> Result<u64, InvalidValue> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let unit = unit.trim_start();
    let invalid = |help: String| InvalidValue::new(format!("invalid size {text:?}")).with_help(help);
    if digits.is_empty() {
        return Err(invalid(SIZE_HELP.to_owned()));
    }
    // No unit: bytes.
    let found = if unit.is_empty() { Some(&("", 1)) } else { SIZE_UNITS.iter().find(|(name, _)| *name == unit) };
    let Some(&(_, factor)) = found else {
        // Name the unit they most likely meant: units are case-sensitive.
        let help = match SIZE_UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit)) {
            Some((name, _)) => {
                format!("units are case-sensitive: did you mean \"{digits}{name}\"?")
            }
            None if unit.starts_with('.') => "write a whole number: use a smaller unit instead of a fraction, like \"1536MiB\"".to_owned(),
            None => SIZE_HELP.to_owned(),
        };
        return Err(invalid(help));
    };
    let too_large = || InvalidValue::new(format!("size {text:?} is too large")).with_help("sizes must fit in 64 bits");
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    number.checked_mul(factor).ok_or_else(too_large)
}

/// Formats a byte count for messages, in the largest binary unit that divides it exactly.
pub fn format_size(bytes: u64) -> String {
    for (name, factor) in [("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{name}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Formats a duration for messages the way it would be written in TOML.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// A duration that must lie within `min..=max`; the bounds come from the caller so that each
/// newtype below states its own range once.
fn check_duration(text: &str, value: Duration, what: &str, min: Duration, max: Duration) -> Result<Duration, InvalidValue> {
    let range = format!("{what} must be between {} and {}", format_duration(min), format_duration(max));
    if value < min {
        Err(InvalidValue::new(format!("{what} {text:?} is below the minimum of {}", format_duration(min))).with_help(range))
    } else if value > max {
        Err(InvalidValue::new(format!("{what} {text:?} is over the maximum of {}", format_duration(max))).with_help(range))
    } else {
        Ok(value)
    }
}

/// Shared visitor body for durations: a string in humantime syntax. Integers are rejected
/// with a hint because a bare number has no unit.
struct DurationVisitor {
    what: &'static str,
    min: Duration,
    max: Duration,
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, r#"a duration string like "20ms", "1s" or "2m""#)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        let value = parse_duration(text).map_err(InvalidValue::into_de)?;
        check_duration(text, value, self.what, self.min, self.max).map_err(InvalidValue::into_de)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        Err(InvalidValue::new(format!("duration {n} has no unit"))
            .with_help(format!(r#"write a string with a unit, like "{n}ms" or "{n}s""#))
            .into_de())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

macro_rules! duration_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) struct $name(pub(crate) Duration);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer
                    .deserialize_any(DurationVisitor { what: $what, min: $min, max: $max })
                    .map($name)
            }
        }
    };
}

duration_newtype!(
    /// `limits.timeout`: the time budget of one event in one stage.
    StageTimeout,
    "timeout",
    Duration::from_millis(1),
    Duration::from_secs(60)
);
duration_newtype!(
    /// A stage's `timer`: how often weir calls its `tick`.
    TimerInterval,
    "timer",
    Duration::from_millis(10),
    Duration::from_secs(24 * 3600)
);
duration_newtype!(
    /// `ack_wait`: NATS rejects a zero ack wait, and more than a day is certainly a typo.
    AckWait,
    "ack_wait",
    Duration::from_millis(1),
    Duration::from_secs(24 * 3600)
);
duration_newtype!(
    /// `shutdown_timeout`: zero is allowed (stop at once, drop in-flight work).
    ShutdownTimeout,
    "shutdown_timeout",
    Duration::ZERO,
    Duration::from_secs(3600)
);

/// `limits.memory`: an instance's linear-memory cap. Below 1 MiB no component can even
/// instantiate; wasm32 cannot address more than 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryLimit(pub(crate) u64);

impl MemoryLimit {
    const MIN: u64 = MIB;
    const MAX: u64 = 4 * GIB;
}

/// `limits.state`: the most a stage's state may hold (keys and values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateLimit(pub(crate) u64);

impl StateLimit {
    const MIN: u64 = 1024;
    const MAX: u64 = 64 * GIB;
}

/// `limits.state_value`: the most one state value may hold. NATS's default
/// largest message is 1 MiB; a value travels in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateValueLimit(pub(crate) u64);

impl StateValueLimit {
    const MIN: u64 = 16;
    const MAX: u64 = 512 * 1024;
}

/// `cache_size`: how much compiled code the on-disk cache keeps. Below 64 MiB a
/// single Python or JavaScript stage would not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheSize(pub(crate) u64);

impl CacheSize {
    const MIN: u64 = 64 * MIB;
    const MAX: u64 = 1024 * GIB;
}

/// Checks a size against `min..=max`; `what` names it in the message ("memory limit").
fn bounded_size(what: &str, key: &str, text: &str, bytes: u64, min: u64, max: u64) -> Result<u64, InvalidValue> {
    let range = format!("{key} must be between {} and {}", format_size(min), format_size(max));
    if bytes < min {
        Err(InvalidValue::new(format!("{what} {text} is below the minimum of {}", format_size(min))).with_help(range))
    } else if bytes > max {
        Err(InvalidValue::new(format!("{what} {text} is over the maximum of {}", format_size(max))).with_help(range))
    } else {
        Ok(bytes)
    }
}

/// A size (`"64MiB"` or a number of bytes) within bounds, deserialized into `T`.
macro_rules! bounded_size {
    ($type:ident, $what:literal, $key:literal) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl V {
                    fn check(text: &str, bytes: u64) -> Result<$type, InvalidValue> {
                        bounded_size($what, $key, text, bytes, $type::MIN, $type::MAX).map($type)
                    }
                }
                impl Visitor<'_> for V {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, r#"a size like "64MiB" or a number of bytes"#)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$type, E> {
                        let bytes = parse_size(text).map_err(InvalidValue::into_de)?;
                        V::check(&format!("{text:?}"), bytes).map_err(InvalidValue::into_de)
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$type, E> {
                        let bytes = u64::try_from(n).map_err(|_| E::invalid_value(Unexpected::Signed(n), &self))?;
                        V::check(&n.to_string(), bytes).map_err(InvalidValue::into_de)
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$type, E> {
                        V::check(&n.to_string(), n).map_err(InvalidValue::into_de)
                    }
                }
                deserializer.deserialize_any(V)
            }
        }
    };
}

bounded_size!(MemoryLimit, "memory limit", "memory");
bounded_size!(StateLimit, "state limit", "limits.state");
bounded_size!(StateValueLimit, "state value limit", "limits.state_value");
bounded_size!(CacheSize, "cache size", "cache_size");

/// An integer that must lie within `min..=max`, for counts like `batch_size` and `workers`.
/// Serde's own integer types would report `-1` as "expected usize", which tells an operator
/// nothing about the valid range.
pub(crate) struct IntegerVisitor {
    pub(crate) min: i64,
    pub(crate) max: i64,
}

impl Visitor<'_> for IntegerVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.max == i64::MAX { write!(f, "an integer of at least {}", self.min) } else { write!(f, "an integer from {} to {}", self.min, self.max) }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
        if (self.min..=self.max).contains(&n) { Ok(n) } else { Err(E::invalid_value(Unexpected::Signed(n), &self)) }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
        match i64::try_from(n) {
            Ok(n) => self.visit_i64(n),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(n), &self)),
        }
    }
}

macro_rules! integer_newtype {
    ($(#[$doc:meta])* $name:ident($ty:ty), $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) struct $name(pub(crate) $ty);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let n = deserializer.deserialize_any(IntegerVisitor { min: $min, max: $max })?;
                // In range by construction, so the conversion cannot fail; map rather than
                // unwrap all the same.
                <$ty>::try_from(n).map($name).map_err(|_| {
                    <D::Error as de::Error>::custom(format!("{n} is out of range"))
                })
            }
        }
    };
}

integer_newtype!(
    /// `batch_size`: events handed to a stage in one call.
    BatchSize(usize),
    1,
    4096
);
integer_newtype!(
    /// `workers`: threads running stages.
    WorkerCount(usize),
    1,
    1024
);
integer_newtype!(
    /// `io_threads`: threads of the async reactor.
    IoThreads(usize),
    1,
    256
);
integer_newtype!(
    /// `max_deliver` and `max_ack_pending`: JetStream counts, where 0 is meaningless.
    PositiveCount(i64),
    1,
    i64::MAX
);
integer_newtype!(
    /// `deliver = { start_sequence = N }`: JetStream sequences start at 1.
    Sequence(u64),
    1,
    i64::MAX
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20ms").ok(), Some(Duration::from_millis(20)));
        assert_eq!(parse_duration("1s").ok(), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h 30m").ok(), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 5s ").ok(), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("0").ok(), Some(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        for text in ["", "fast", "20", "ms", "1x", "-1s", "1.5.2s"] {
            let err = parse_duration(text).expect_err(text);
            assert_eq!(err.message, format!("invalid duration {text:?}"));
            assert!(err.help.is_some());
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").ok(), Some(64 * MIB));
        assert_eq!(parse_size("512KiB").ok(), Some(512 * KIB));
        assert_eq!(parse_size("1GiB").ok(), Some(GIB));
        assert_eq!(parse_size("1048576").ok(), Some(1_048_576));
        assert_eq!(parse_size("10MB").ok(), Some(10_000_000));
        assert_eq!(parse_size("3KB").ok(), Some(3_000));
        assert_eq!(parse_size("2GB").ok(), Some(2_000_000_000));
        assert_eq!(parse_size("7B").ok(), Some(7));
        assert_eq!(parse_size("64 MiB").ok(), Some(64 * MIB));
    }

    #[test]
    fn bad_sizes() {
        let err = parse_size("64mib").expect_err("lowercase unit");
        assert_eq!(err.message, r#"invalid size "64mib""#);
        assert_eq!(err.help.as_deref(), Some(r#"units are case-sensitive: did you mean "64MiB"?"#));
        for text in ["", "MiB", "64TiB", "1.5GiB", "-1MiB", "big"] {
            assert!(parse_size(text).is_err(), "{text}");
        }
        assert_eq!(parse_size("99999999999GiB").expect_err("overflow").message, r#"size "99999999999GiB" is too large"#);
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(4 * GIB), "4GiB");
        assert_eq!(format_size(MIB), "1MiB");
        assert_eq!(format_size(1536), "1536B");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
    }
}
