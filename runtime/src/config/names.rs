//! Validated identifiers: weir names (pipelines, stages, the instance) and NATS names
//! (streams, consumers, queue groups).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::error::InvalidValue;

const NAME_MAX: usize = 64;
const NAME_HELP: &str = r#"names may contain only letters, digits, "_" and "-", up to 64 characters"#;

/// A pipeline, stage or instance name: `[A-Za-z0-9_-]{1,64}`.
///
/// Names end up in metrics labels, NATS headers and log fields, so they are kept to a
/// character set that needs no quoting anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidValue> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidValue::new("name is empty").with_help(NAME_HELP));
        }
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(InvalidValue::new(format!("invalid character {bad:?} in name {name:?}")).with_help(NAME_HELP));
        }
        if name.len() > NAME_MAX {
            return Err(InvalidValue::new(format!("name {name:?} is {} characters long", name.len())).with_help(NAME_HELP));
        }
        Ok(Self(name))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fallback name, "weir".
    pub(crate) fn weir() -> Self {
        Self("weir".to_owned())
    }

    /// Turns any text (a hostname, say) into a valid name, or `None` if nothing is left.
    pub(crate) fn sanitize(text: &str) -> Option<Self> {
        let cleaned: String = text
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
            .take(NAME_MAX)
            .collect();
        let cleaned = cleaned.trim_matches('-');
        Self::new(cleaned).ok()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor { expecting: "a name (letters, digits, \"_\" and \"-\")", parse: Name::new })
    }
}

/// A visitor for string newtypes: the validation function's message and help become the
/// error, which the `toml` crate then pins to the value's span.
pub(crate) struct StrVisitor<T> {
    pub(crate) expecting: &'static str,
    pub(crate) parse: fn(String) -> Result<T, InvalidValue>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v.to_owned()).map_err(InvalidValue::into_de)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
        (self.parse)(v).map_err(InvalidValue::into_de)
    }
}

/// Characters NATS forbids in stream and consumer names: they would clash with the
/// `$JS.API.…` subjects those names are embedded in, or with file names on the server.
const NATS_NAME_FORBIDDEN: &[char] = &['.', '*', '>', '/', '\\'];

/// Validates a JetStream stream or durable consumer name.
pub(crate) fn nats_name(name: String) -> Result<String, InvalidValue> {
    let help = r#"stream and consumer names cannot contain whitespace, ".", "*", ">", "/" or "\""#;
    if name.is_empty() {
        return Err(InvalidValue::new("name is empty").with_help(help));
    }
    if let Some(bad) = name.chars().find(|c| c.is_whitespace() || c.is_control() || NATS_NAME_FORBIDDEN.contains(c)) {
        return Err(InvalidValue::new(format!("invalid character {bad:?} in name {name:?}")).with_help(help));
    }
    Ok(name)
}

/// A JetStream stream or consumer name, validated while deserializing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NatsName(pub(crate) String);

impl<'de> Deserialize<'de> for NatsName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(StrVisitor { expecting: "a NATS name", parse: nats_name })
            .map(NatsName)
    }
}

/// A core NATS queue group: like a subject token list, it only must not be empty or contain
/// whitespace (the protocol separates fields with spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueGroup(pub(crate) String);

impl<'de> Deserialize<'de> for QueueGroup {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn parse(name: String) -> Result<String, InvalidValue> {
            let help = "a queue group is a name without whitespace, like \"weir\"";
            if name.is_empty() {
                Err(InvalidValue::new("queue group is empty").with_help(help))
            } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Err(InvalidValue::new(format!("invalid queue group {name:?}")).with_help(help))
            } else {
                Ok(name)
            }
        }
        deserializer.deserialize_str(StrVisitor { expecting: "a queue group name", parse }).map(QueueGroup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Name::new("product-views_2").map(|n| n.to_string()).ok(), Some("product-views_2".to_owned()));
        assert!(Name::new("a".repeat(64)).is_ok());
        assert!(Name::new("a".repeat(65)).is_err());
        assert!(Name::new("").is_err());
        let err = Name::new("my pipeline").expect_err("space");
        assert_eq!(err.message, r#"invalid character ' ' in name "my pipeline""#);
        assert!(Name::new("é").is_err());
    }

    #[test]
    fn sanitize() {
        assert_eq!(Name::sanitize("host.example.com").map(|n| n.0), Some("host-example-com".to_owned()));
        assert_eq!(Name::sanitize("..."), None);
    }

    #[test]
    fn nats_names() {
        assert!(nats_name("ORDERS".to_owned()).is_ok());
        assert!(nats_name("weir-views_1".to_owned()).is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", "a\\b"] {
            assert!(nats_name(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
