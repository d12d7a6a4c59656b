use std::fmt;

use serde_json::{Map, Value};

/// A dotted path to a field inside a JSON value, such as `user.id` or
/// `items.0.sku`, the way stage configurations name payload fields.
///
/// Segments are separated by `.`. A segment made of digits also indexes an
/// array (`items.0`); on an object it is an ordinary key. A path is parsed
/// once, in [`Stage::init`](crate::Stage::init), and then used per event.
///
/// ```
/// use weir_sdk::{serde_json::json, Path};
///
/// let path = Path::parse("items.0.sku").unwrap();
/// let order = json!({ "items": [{ "sku": "A1" }] });
/// assert_eq!(path.get(&order), Some(&json!("A1")));
/// assert_eq!(path.to_string(), "items.0.sku");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Segment {
    key: String,
    index: Option<usize>,
}

impl Path {
    /// Parses a dotted path. Every segment must be non-empty.
    ///
    /// ```
    /// use weir_sdk::Path;
    ///
    /// assert!(Path::parse("user.id").is_ok());
    /// assert_eq!(
    ///     Path::parse("user..id").unwrap_err(),
    ///     r#"path "user..id" has an empty segment"#,
    /// );
    /// ```
    pub fn parse(text: &str) -> Result<Path, String> {
        let segments = text
            .split('.')
            .map(|key| {
                if key.is_empty() {
                    return Err(format!("path {text:?} has an empty segment"));
                }
                let index = match key.bytes().all(|b| b.is_ascii_digit()) {
                    true => key.parse().ok(),
                    false => None,
                };
                Ok(Segment { key: key.to_owned(), index })
            })
            .collect::<Result<_, _>>()?;
        Ok(Path { text: text.to_owned(), segments })
    }

    /// The segments: each key, and the index it also names when it is
    /// made of digits.
    pub(crate) fn segments(&self) -> impl Iterator<Item = (&str, Option<usize>)> {
        self.segments.iter().map(|s| (s.key.as_str(), s.index))
    }

    /// The path as written.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Path::parse("a.b").unwrap().as_str(), "a.b");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if there is one.
    ///
    /// ```
    /// use weir_sdk::{serde_json::json, Path};
    ///
    /// let doc = json!({ "user": { "id": 7 }, "tags": ["a", "b"] });
    /// assert_eq!(Path::parse("user.id").unwrap().get(&doc), Some(&json!(7)));
    /// assert_eq!(Path::parse("tags.1").unwrap().get(&doc), Some(&json!("b")));
    /// assert_eq!(Path::parse("user.name").unwrap().get(&doc), None);
    /// assert_eq!(Path::parse("tags.5").unwrap().get(&doc), None);
    /// ```
    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments.iter().try_fold(value, |value, segment| segment.get(value))
    }

    /// The value at this path, to change in place.
    ///
    /// ```
    /// use weir_sdk::{serde_json::json, Path};
    ///
    /// let mut doc = json!({ "price": 10 });
    /// *Path::parse("price").unwrap().get_mut(&mut doc).unwrap() = json!(12);
    /// assert_eq!(doc, json!({ "price": 12 }));
    /// ```
    pub fn get_mut<'v>(&self, value: &'v mut Value) -> Option<&'v mut Value> {
        self.segments.iter().try_fold(value, |value, segment| segment.get_mut(value))
    }

    /// Removes the value at this path and returns it; `None` when there was
    /// none. From an array, the element is removed and later ones move up.
    ///
    /// ```
    /// use weir_sdk::{serde_json::json, Path};
    ///
    /// let mut doc = json!({ "user": { "id": 7, "ip": "10.0.0.1" } });
    /// let ip = Path::parse("user.ip").unwrap().remove(&mut doc);
    /// assert_eq!(ip, Some(json!("10.0.0.1")));
    /// assert_eq!(doc, json!({ "user": { "id": 7 } }));
    /// ```
    pub fn remove(&self, value: &mut Value) -> Option<Value> {
        let (last, parents) = self.segments.split_last()?;
        let parent = parents.iter().try_fold(value, |value, segment| segment.get_mut(value))?;
        match parent {
            Value::Object(map) => map.remove(&last.key),
            Value::Array(items) => match last.index {
                Some(i) if i < items.len() => Some(items.remove(i)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Sets the value at this path, creating missing objects on the way (a
    /// `null` on the way counts as missing).
    ///
    /// An array element can be replaced but not appended. The error names
    /// the part of the path that is neither an object nor such an element.
    ///
    /// ```
    /// use weir_sdk::{serde_json::json, Path};
    ///
    /// let mut doc = json!({ "id": 7 });
    /// Path::parse("meta.source").unwrap().set(&mut doc, json!("weir")).unwrap();
    /// assert_eq!(doc, json!({ "id": 7, "meta": { "source": "weir" } }));
    ///
    /// let error = Path::parse("id.x").unwrap().set(&mut doc, json!(1)).unwrap_err();
    /// assert_eq!(error, r#"cannot set "id.x": "id" is a number, not an object"#);
    /// ```
    pub fn set(&self, value: &mut Value, new: Value) -> Result<(), String> {
        let mut current = value;
        for depth in 0..self.segments.len() - 1 {
            current = self.step(current, depth)?;
        }
        *self.step(current, self.segments.len() - 1)? = new;
        Ok(())
    }

    /// For `set`: the child named by segment `depth`, created if missing.
    fn step<'v>(&self, current: &'v mut Value, depth: usize) -> Result<&'v mut Value, String> {
        if current.is_null() {
            *current = Value::Object(Map::new());
        }
        let segment = &self.segments[depth];
        match current {
            Value::Object(map) => Ok(map.entry(segment.key.as_str()).or_insert(Value::Null)),
            Value::Array(items) => match segment.index.and_then(|i| items.get_mut(i)) {
                Some(item) => Ok(item),
                None => Err(format!("cannot set {:?}: {:?} has no element {:?}", self.text, self.prefix(depth), segment.key)),
            },
            other => Err(format!("cannot set {:?}: {:?} is {}, not an object", self.text, self.prefix(depth), kind_of(other))),
        }
    }

    /// The first `len` segments, as text (the whole document for `0`).
    fn prefix(&self, len: usize) -> String {
        match len {
            0 => "the payload".to_owned(),
            _ => self.segments[..len].iter().map(|s| s.key.as_str()).collect::<Vec<_>>().join("."),
        }
    }
}

impl Segment {
    fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        match value {
            Value::Object(map) => map.get(&self.key),
            Value::Array(items) => items.get(self.index?),
            _ => None,
        }
    }

    fn get_mut<'v>(&self, value: &'v mut Value) -> Option<&'v mut Value> {
        match value {
            Value::Object(map) => map.get_mut(&self.key),
            Value::Array(items) => items.get_mut(self.index?),
            _ => None,
        }
    }
}

/// `a string`, `a number` …, for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Shows the path as written.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a dotted path, as [`Path::parse`].
///
/// ```
/// let path: weir_sdk::Path = "user.id".parse().unwrap();
/// assert_eq!(path.as_str(), "user.id");
/// ```
impl std::str::FromStr for Path {
    type Err = String;

    fn from_str(text: &str) -> Result<Path, String> {
        Path::parse(text)
    }
}

/// Reads a path from a configuration string, so that a field of a config
/// type can be a `Path`.
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Settings { field: weir_sdk::Path }
///
/// let config = weir_sdk::Config::from_json(r#"{"field": "a..b"}"#).unwrap();
/// let error = config.parse::<Settings>().err().unwrap();
/// assert_eq!(error, r#"config.field: path "a..b" has an empty segment"#);
/// ```
impl<'de> serde::Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Path, D::Error> {
        let text = String::deserialize(deserializer)?;
        Path::parse(&text).map_err(serde::de::Error::custom)
    }
}
