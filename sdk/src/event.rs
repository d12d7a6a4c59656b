use serde::{Deserialize, Serialize};

use crate::Error;

/// One message: a NATS subject, headers and a payload.
///
/// On input, `subject` is the subject the message arrived on, `headers` its
/// NATS headers in arrival order (a name may repeat), and `payload` its
/// bytes, untouched. On output, the same fields describe a message to
/// publish: an output whose subject differs from its input's is routed there.
///
/// This is the very type the bindings lift the WIT `event` record into, so
/// events cross the sandbox boundary without conversion. The builder methods
/// take `self` and move it, so chaining them copies nothing.
///
/// ```
/// use weir_sdk::Event;
///
/// let event = Event::new("orders.created", r#"{"id": 7}"#)
///     .with_header("source", "shop")
///     .with_subject("orders.checked");
/// assert_eq!(event.subject, "orders.checked");
/// assert_eq!(event.header("source"), Some("shop"));
/// assert_eq!(event.payload, br#"{"id": 7}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Event {
    /// The NATS subject.
    pub subject: String,
    /// The NATS headers, in order; a name may appear more than once. Names
    /// are compared exactly (case-sensitive), as NATS does.
    pub headers: Vec<(String, String)>,
    /// The payload, as raw bytes.
    pub payload: Vec<u8>,
}

impl Event {
    /// An event with a subject and a payload and no headers.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("logs.app", "started");
    /// assert_eq!(event.payload, b"started");
    /// assert!(event.headers.is_empty());
    /// ```
    pub fn new(subject: impl Into<String>, payload: impl Into<Vec<u8>>) -> Event {
        Event { subject: subject.into(), headers: Vec::new(), payload: payload.into() }
    }

    /// An event whose payload is `value` written as JSON.
    ///
    /// ```
    /// use weir_sdk::serde_json::json;
    ///
    /// let event = weir_sdk::Event::new_json("orders", &json!({ "id": 7 })).unwrap();
    /// assert_eq!(event.payload, br#"{"id":7}"#);
    /// ```
    pub fn new_json<T: Serialize + ?Sized>(subject: impl Into<String>, value: &T) -> Result<Event, Error> {
        let payload = serde_json::to_vec(value).map_err(Error::from_json_write)?;
        Ok(Event::new(subject, payload))
    }

    /// Reads the payload as JSON into `T`.
    ///
    /// `T` may borrow from the payload (`&str` fields), which saves copies.
    /// A payload that is not JSON is an [`Error::invalid`] saying `payload is
    /// not valid JSON: ...`; JSON of another shape says `payload does not
    /// match the expected shape: ...`.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use weir_sdk::Event;
    ///
    /// #[derive(Debug, Deserialize)]
    /// struct Order<'a> { id: u64, country: &'a str }
    ///
    /// let event = Event::new("orders", r#"{"id": 7, "country": "DE"}"#);
    /// let order: Order<'_> = event.json().unwrap();
    /// assert_eq!((order.id, order.country), (7, "DE"));
    ///
    /// let error = Event::new("orders", "not json").json::<Order<'_>>().unwrap_err();
    /// assert!(error.message().starts_with("payload is not valid JSON: "));
    ///
    /// let error = Event::new("orders", r#"{"id": "x"}"#).json::<Order<'_>>().unwrap_err();
    /// assert!(error.message().starts_with("payload does not match the expected shape: "));
    /// ```
    pub fn json<'a, T: Deserialize<'a>>(&'a self) -> Result<T, Error> {
        serde_json::from_slice(&self.payload).map_err(Error::from_json_read)
    }

    /// Reads the payload as any JSON value.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("orders", r#"{"items": [{"sku": "A1"}]}"#);
    /// let value = event.json_value().unwrap();
    /// assert_eq!(value["items"][0]["sku"], "A1");
    /// ```
    pub fn json_value(&self) -> Result<serde_json::Value, Error> {
        self.json()
    }

    /// The payload as UTF-8 text; an [`Error::invalid`] if it is not.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("logs", "hello");
    /// assert_eq!(event.payload_str().unwrap(), "hello");
    ///
    /// let binary = weir_sdk::Event::new("logs", vec![0xff, 0xfe]);
    /// assert!(binary.payload_str().is_err());
    /// ```
    pub fn payload_str(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.payload).map_err(|e| Error::invalid(format!("payload is not valid UTF-8: {e}")))
    }

    /// The value of the first header called `name`, if any.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("a", "").add_header("tag", "x").add_header("tag", "y");
    /// assert_eq!(event.header("tag"), Some("x"));
    /// assert_eq!(event.header("Tag"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of the headers called `name`, in order.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("a", "").add_header("tag", "x").add_header("tag", "y");
    /// assert_eq!(event.header_values("tag").collect::<Vec<_>>(), ["x", "y"]);
    /// ```
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The same event with another subject: published there, it is routed.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("orders", "").with_subject("orders.de");
    /// assert_eq!(event.subject, "orders.de");
    /// ```
    pub fn with_subject(mut self, subject: impl Into<String>) -> Event {
        self.subject = subject.into();
        self
    }

    /// The same event with another payload.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("a", "old").with_payload("new");
    /// assert_eq!(event.payload, b"new");
    /// ```
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Event {
        self.payload = payload.into();
        self
    }

    /// The same event with `value`, written as JSON, as its payload.
    ///
    /// ```
    /// use weir_sdk::serde_json::json;
    ///
    /// let event = weir_sdk::Event::new("a", "").with_json(&json!([1, 2])).unwrap();
    /// assert_eq!(event.payload, b"[1,2]");
    /// ```
    pub fn with_json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Event, Error> {
        // Reuse the old payload's buffer.
        self.payload.clear();
        serde_json::to_writer(&mut self.payload, value).map_err(Error::from_json_write)?;
        Ok(self)
    }

    /// The same event with the header `name` set to `value`, replacing every
    /// header of that name.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("a", "")
    ///     .add_header("tag", "x")
    ///     .add_header("tag", "y")
    ///     .with_header("tag", "z");
    /// assert_eq!(event.headers, [("tag".to_string(), "z".to_string())]);
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Event {
        let name = name.into();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// The same event with one more header, after any of the same name.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("a", "").add_header("tag", "x").add_header("tag", "y");
    /// assert_eq!(event.headers.len(), 2);
    /// ```
    pub fn add_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Event {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same event without any header called `name`.
    ///
    /// ```
    /// let event = weir_sdk::Event::new("a", "").add_header("debug", "1").without_header("debug");
    /// assert_eq!(event.header("debug"), None);
    /// ```
    pub fn without_header(mut self, name: &str) -> Event {
        self.headers.retain(|(n, _)| n != name);
        self
    }
}
