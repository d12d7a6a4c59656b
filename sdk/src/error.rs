use std::fmt;

use crate::__private::bindings::StageError;

/// Why a stage refused one event.
///
/// Errors are per event: the other events of the batch go on. There are two
/// kinds, chosen with the constructor:
///
/// - [`Error::invalid`]: this event is bad for this stage (malformed payload,
///   missing field, failed check). weir sends it to the dead-letter subject
///   with the message and never retries it.
/// - [`Error::retry`]: a transient failure. On a JetStream source weir
///   redelivers the event later and dead-letters it once the delivery limit is
///   reached; on a core NATS source it is dead-lettered at once.
///
/// ```
/// use weir_sdk::Error;
///
/// let error = Error::invalid("field \"price\" is missing");
/// assert!(!error.is_retry());
/// assert_eq!(error.to_string(), "field \"price\" is missing");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Invalid,
    Retry,
}

impl Error {
    /// The event is bad for this stage: dead-letter it, never retry it.
    ///
    /// ```
    /// let error = weir_sdk::Error::invalid("price must be positive");
    /// assert!(error.is_invalid());
    /// ```
    pub fn invalid(message: impl Into<String>) -> Error {
        Error { kind: Kind::Invalid, message: message.into() }
    }

    /// A transient failure: redeliver the event later if the source can.
    ///
    /// ```
    /// let error = weir_sdk::Error::retry("lookup service unavailable");
    /// assert!(error.is_retry());
    /// ```
    pub fn retry(message: impl Into<String>) -> Error {
        Error { kind: Kind::Retry, message: message.into() }
    }

    /// Whether this error was made by [`Error::invalid`].
    ///
    /// ```
    /// assert!(weir_sdk::Error::invalid("bad").is_invalid());
    /// assert!(!weir_sdk::Error::retry("later").is_invalid());
    /// ```
    pub fn is_invalid(&self) -> bool {
        self.kind == Kind::Invalid
    }

    /// Whether this error was made by [`Error::retry`].
    ///
    /// ```
    /// assert!(weir_sdk::Error::retry("later").is_retry());
    /// ```
    pub fn is_retry(&self) -> bool {
        self.kind == Kind::Retry
    }

    /// The message, as weir will put it in the dead-letter headers.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Error::invalid("bad").message(), "bad");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn into_stage_error(self) -> StageError {
        match self.kind {
            Kind::Invalid => StageError::Invalid(self.message),
            Kind::Retry => StageError::Retry(self.message),
        }
    }

    /// The error for a payload that could not be read as JSON.
    pub(crate) fn from_json_read(error: serde_json::Error) -> Error {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => Error::invalid(format!("payload does not match the expected shape: {error}")),
            Category::Syntax | Category::Eof | Category::Io => Error::invalid(format!("payload is not valid JSON: {error}")),
        }
    }

    /// The error for a value that could not be written as JSON.
    pub(crate) fn from_json_write(error: serde_json::Error) -> Error {
        Error::invalid(format!("cannot write the payload as JSON: {error}"))
    }
}

/// Shows the message alone, without the kind.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Reading JSON failed: an [`Error::invalid`] that says whether the payload
/// was not JSON at all or JSON of the wrong shape, so that `?` works on
/// `serde_json::from_slice(&event.payload)`.
///
/// ```
/// fn price(payload: &[u8]) -> Result<f64, weir_sdk::Error> {
///     let value: weir_sdk::serde_json::Value = weir_sdk::serde_json::from_slice(payload)?;
///     Ok(value["price"].as_f64().unwrap_or(0.0))
/// }
///
/// let error = price(b"{oops").unwrap_err();
/// assert!(error.is_invalid());
/// assert!(error.message().starts_with("payload is not valid JSON: "));
/// ```
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error::from_json_read(error)
    }
}
