//! Reading only the parts of a payload a stage looks at.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::{Error, Path};

/// The fields of a payload that a stage reads, known when it starts: a
/// filter's conditions, a router's template. [`Selection::parse`] reads a
/// payload into a [`Value`] holding only those fields, and skips
/// everything else without building it.
///
/// Skipping is cheap: a skipped string is scanned, never copied, and a
/// skipped object allocates nothing. For a stage that reads two fields of
/// a product event, that is several times less work than
/// [`Event::json_value`](crate::Event::json_value), and more so in wasm,
/// where every allocation costs more.
///
/// For every selected path, [`Path::get`] gives the same on the selection
/// as on the whole payload; a selected path that ends at an object or
/// array gets all of it. The whole payload must still be valid JSON: a
/// syntax error or a byte that is not UTF-8 anywhere is an error, as with
/// `json_value`.
///
/// ```
/// use weir_sdk::{serde_json::json, Event, Path, Selection};
///
/// let country = Path::parse("shop.country").unwrap();
/// let kind = Path::parse("type").unwrap();
/// let selection = Selection::new([&country, &kind]);
///
/// let event = Event::new(
///     "tracking.product.view",
///     r#"{"type": "view", "title": "Red dress", "shop": {"country": "DE", "name": "Mode"}}"#,
/// );
/// let read = selection.parse(&event.payload).unwrap();
/// assert_eq!(read, json!({ "type": "view", "shop": { "country": "DE" } }));
/// assert_eq!(country.get(&read), Some(&json!("DE")));
///
/// assert!(selection.parse(br#"{"type": "view", "title": }"#).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    root: Node,
}

/// Selects all of a value.
static WHOLE: Node = Node { whole: true, children: Vec::new() };

/// A node of the selection tree: a path ends here (`whole`), or some of
/// its children are selected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    whole: bool,
    /// `(key, index, node)`: an object's member `key`, or an array's
    /// element `index` when the key is made of digits.
    children: Vec<(String, Option<usize>, Node)>,
}

impl Selection {
    /// The selection of `paths`.
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p Path>) -> Selection {
        let mut root = Node::default();
        for path in paths {
            let mut node = &mut root;
            for (key, index) in path.segments() {
                let at = match node.children.iter().position(|(k, _, _)| k == key) {
                    Some(at) => at,
                    None => {
                        node.children.push((key.to_owned(), index, Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].2;
            }
            node.whole = true;
        }
        Selection { root }
    }

    /// Reads the selected fields of a JSON payload; an [`Error::invalid`]
    /// that says why when the payload is not JSON.
    pub fn parse(&self, payload: &[u8]) -> Result<Value, Error> {
        // Checked whole, so that a skipped string is valid UTF-8 too, as
        // in a payload read whole.
        let payload = std::str::from_utf8(payload).map_err(|e| Error::invalid(format!("payload is not valid JSON: it is not UTF-8 ({e})")))?;
        let mut reader = serde_json::Deserializer::from_str(payload);
        let value = (&self.root).deserialize(&mut reader).and_then(|value| reader.end().map(|()| value));
        value.map_err(Error::from_json_read)
    }
}

/// Writes `payload`, the text of a JSON object, into `out` with `members`
/// appended: the payload's own members keep their text and their order.
/// The stage must know that none of the keys is in the payload already
/// (select them with a [`Selection`] to find out); JSON keeps duplicates.
///
/// With [`Selection`], a stage that adds a few fields to an event reads
/// only what it needs and never parses or writes the rest.
///
/// ```
/// use weir_sdk::append_members;
///
/// let mut out = Vec::new();
/// append_members(&mut out, br#"{"id": 7, "price": 12.50} "#, [("tag", &"sale")]).unwrap();
/// assert_eq!(out, br#"{"id": 7, "price": 12.50,"tag":"sale"}"#);
///
/// let mut out = Vec::new();
/// append_members(&mut out, b"{}", [("n", &1)]).unwrap();
/// assert_eq!(out, br#"{"n":1}"#);
/// assert!(append_members(&mut Vec::new(), b"[1]", [("n", &1)]).is_err());
/// ```
pub fn append_members<'m, V: serde::Serialize + ?Sized + 'm>(
    out: &mut Vec<u8>,
    payload: &[u8],
    members: impl IntoIterator<Item = (&'m str, &'m V)>,
) -> Result<(), Error> {
    let body = match payload.trim_ascii_end() {
        [body @ .., b'}'] if payload.trim_ascii_start().starts_with(b"{") => body.trim_ascii_end(),
        _ => return Err(Error::invalid("payload is not a JSON object")),
    };
    out.extend_from_slice(body);
    let mut first = body.last() == Some(&b'{');
    for (key, value) in members {
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut *out, key).map_err(Error::from_json_write)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, value).map_err(Error::from_json_write)?;
    }
    out.push(b'}');
    Ok(())
}

impl Node {
    fn member(&self, key: &str) -> Option<&Node> {
        self.children.iter().find(|(k, _, _)| k == key).map(|(_, _, node)| node)
    }

    fn element(&self, index: usize) -> Option<&Node> {
        let mut named = self.children.iter().filter(|(_, i, _)| *i == Some(index)).map(|(_, _, node)| node);
        let first = named.next()?;
        // "1" and "01" are two members of an object but one element of an
        // array: rather than merge what each selects, keep the element whole.
        match named.next() {
            Some(_) => Some(&WHOLE),
            None => Some(first),
        }
    }

    /// One past the highest selected element index.
    fn elements(&self) -> usize {
        self.children.iter().filter_map(|(_, i, _)| i.map(|i| i.saturating_add(1))).max().unwrap_or(0)
    }
}

impl<'de> DeserializeSeed<'de> for &Node {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.whole {
            return serde::Deserialize::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

/// Builds what is selected; scalars are kept as they are (a path may end
/// at them or look through them and find nothing, as on the whole value).
impl<'de> Visitor<'de> for &Node {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // The index comes from the stage's config and may be far past the
        // end (`items.4000000000`): the array's own length bounds the
        // elements kept, not the index.
        let wanted = self.elements();
        let mut items = Vec::with_capacity(wanted.min(seq.size_hint().unwrap_or(0)).min(64));
        while items.len() < wanted {
            let next = match self.element(items.len()) {
                Some(node) => seq.next_element_seed(node)?,
                None => seq.next_element::<IgnoredAny>()?.map(|_| Value::Null),
            };
            match next {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.member(key.as_str()) {
                Some(node) => {
                    members.insert(key.into_owned(), map.next_value_seed(node)?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(members))
    }
}

/// An object key, borrowed from the payload when it has no escapes, so
/// that skipped members allocate nothing.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    fn into_owned(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_owned(),
            Key::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn select(paths: &[&str]) -> Selection {
        let paths: Vec<Path> = paths.iter().map(|p| Path::parse(p).unwrap()).collect();
        Selection::new(&paths)
    }

    /// Every selected path reads the same on the selection as on the
    /// whole value, present or not.
    #[test]
    fn selected_paths_read_as_on_the_whole_payload() {
        let doc = json!({
            "type": "view",
            "title": "Robe \"midi\" \u{e9}t\u{e9}",
            "shop": { "country": "DE", "name": "Mode", "tags": ["a", "b"] },
            "items": [{ "sku": "A1", "qty": 2 }, { "sku": "B2" }, { "sku": "C3" }],
            "n": 1.5, "ok": true, "none": null,
            "esc\"aped": { "k": 1 },
            "0": "zero"
        });
        let paths = [
            "type",
            "shop.country",
            "shop.tags",
            "shop.tags.1",
            "items.1.sku",
            "items.7.sku",
            "n",
            "ok",
            "none",
            "missing",
            "type.x",
            "esc\"aped.k",
            "0",
            "title.0",
            "shop.country.x",
        ];
        let bytes = serde_json::to_vec(&doc).unwrap();
        let selection = select(&paths);
        let read = selection.parse(&bytes).unwrap();
        for path in paths {
            let path = Path::parse(path).unwrap();
            assert_eq!(path.get(&read), path.get(&doc), "{path}");
        }
        // Only what was asked for was built.
        assert!(read["items"][0].is_null(), "an element not selected is a placeholder");
        assert_eq!(read["items"][1], json!({ "sku": "B2" }));
        assert_eq!(read["shop"].as_object().unwrap().len(), 2);
        assert_eq!(read["items"].as_array().unwrap().len(), 3, "elements up to the highest selected index, at most all");
    }

    #[test]
    fn scalars_and_arrays_at_the_top() {
        let selection = select(&["a"]);
        assert_eq!(selection.parse(b"7").unwrap(), json!(7));
        assert_eq!(selection.parse(br#""text""#).unwrap(), json!("text"));
        assert_eq!(selection.parse(b"[1, 2]").unwrap(), json!([]));
        assert_eq!(select(&["1"]).parse(b"[1, 2, 3]").unwrap(), json!([null, 2]));
        assert_eq!(Selection::default().parse(br#"{"a": 1}"#).unwrap(), json!({}));
    }

    #[test]
    fn bad_json_anywhere_is_an_error() {
        let selection = select(&["a"]);
        for bad in [&br#"{"a": 1, "b": [1, }"#[..], br#"{"a": 1} trailing"#, b"", br#"{"b": "unterminated}"#, b"\xff", b"{\"a\": 1, \"skipped\": \"\xff\"}"] {
            let error = selection.parse(bad).unwrap_err();
            assert!(error.message().starts_with("payload is not valid JSON"), "{}", error.message());
        }
    }

    /// An index from the config far past any array reads nothing, and
    /// does not size anything by it (this once aborted on allocation).
    #[test]
    fn an_index_far_past_the_end_reads_nothing() {
        let read = select(&["items.4000000000000", "items.18446744073709551615.a"])
            .parse(br#"{"items": [1, 2]}"#)
            .unwrap();
        assert_eq!(read, json!({ "items": [null, null] }));
    }

    /// "0" and "00" name one element: both paths read as on the whole.
    #[test]
    fn one_element_named_two_ways() {
        let doc = json!([{ "a": 1, "b": 2, "c": 3 }]);
        let read = select(&["0.a", "00.b"]).parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
        for path in ["0.a", "00.b"] {
            let path = Path::parse(path).unwrap();
            assert_eq!(path.get(&read), path.get(&doc), "{path}");
        }
    }

    #[test]
    fn the_last_of_duplicate_keys_wins_as_in_a_value() {
        let read = select(&["a"]).parse(br#"{"a": 1, "a": 2}"#).unwrap();
        assert_eq!(read, json!({ "a": 2 }));
    }
}
