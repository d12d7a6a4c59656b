//! `filter`: keeps or drops JSON events by conditions on their fields.
//!
//! ```toml
//! [[stages]]
//! name = "big-eu-orders"
//! plugin = "../plugins/filter.wasm"
//! config = { all = [
//!     { field = "price", gt = 10 },
//!     { field = "country", in = ["DE", "FR"] },
//!     { not = { field = "user.test", eq = true } },
//! ] }
//! ```
//!
//! The config is one condition; an event is kept when it holds. A condition
//! is one of:
//!
//! - `{ all = [...] }`: every condition holds (an empty list holds),
//! - `{ any = [...] }`: at least one holds (an empty list does not),
//! - `{ not = {...} }`: the condition does not hold,
//! - `{ field = "path", <operator> = value }`: a test on one payload field.
//!   `field` is a dotted path (`user.id`, `items.0.sku`). Operators, exactly
//!   one per condition: `eq`, `ne` (any value), `gt`, `gte`, `lt`, `lte` (a
//!   number, or a string compared lexically), `in`, `not_in` (a list),
//!   `exists` (a bool; a field that is present with a `null` value exists).
//!
//! A missing field makes every test false except `ne`, `not_in` and
//! `exists = false`, which are true. Numbers compare by value (`1 == 1.0`); a
//! number never equals a string. A payload that is not JSON is refused as
//! invalid.
//!
//! Only the fields the conditions name are read out of each payload (see
//! [`weir_sdk::Selection`]); the rest is checked for JSON syntax and
//! skipped.

use weir_sdk::serde_json::{Map, Value};
use weir_sdk::{Config, Error, Event, Output, Path, Selection, Stage};

const OPERATORS: &str = "eq, ne, gt, gte, lt, lte, in, not_in, exists";

/// The stage: the parsed condition tree, and the fields it reads.
pub struct Filter {
    condition: Condition,
    fields: Selection,
}

/// A condition, parsed once from the config.
#[derive(Debug)]
pub enum Condition {
    /// Every condition holds.
    All(Vec<Condition>),
    /// At least one condition holds.
    Any(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
    /// A test on one field.
    Test(Path, Test),
}

/// A test on the value of one field.
#[derive(Debug)]
pub enum Test {
    /// Equal to.
    Eq(Value),
    /// Not equal to (true when the field is missing).
    Ne(Value),
    /// Greater than.
    Gt(Value),
    /// Greater than or equal to.
    Gte(Value),
    /// Less than.
    Lt(Value),
    /// Less than or equal to.
    Lte(Value),
    /// Equal to one of the values.
    In(Vec<Value>),
    /// Equal to none of the values (true when the field is missing).
    NotIn(Vec<Value>),
    /// Present (`true`) or missing (`false`).
    Exists(bool),
}

impl Stage for Filter {
    fn init(config: Config) -> Result<Self, String> {
        let condition = Condition::parse(config.value(), "")?;
        let mut paths = Vec::new();
        condition.paths(&mut paths);
        let fields = Selection::new(paths);
        Ok(Filter { condition, fields })
    }

    fn process(&mut self, event: Event) -> Result<Output, Error> {
        let payload = self.fields.parse(&event.payload)?;
        Ok(if self.condition.holds(&payload) { Output::One(event) } else { Output::Drop })
    }
}

weir_sdk::export_stage!(Filter);

impl Condition {
    /// Adds the paths of the fields this condition tests to `paths`.
    pub fn paths<'c>(&'c self, paths: &mut Vec<&'c Path>) {
        match self {
            Condition::All(conditions) | Condition::Any(conditions) => {
                conditions.iter().for_each(|c| c.paths(paths));
            }
            Condition::Not(condition) => condition.paths(paths),
            Condition::Test(path, _) => paths.push(path),
        }
    }

    /// Parses the condition at `at` (`all[1].not`, or `""` for the root).
    pub fn parse(value: &Value, at: &str) -> Result<Condition, String> {
        let place = if at.is_empty() { "config" } else { at };
        let Value::Object(table) = value else {
            return Err(format!("{place}: expected a condition table, found {value}"));
        };
        let nested = |key: &'static str| table.get(key).map(|v| (key, v));
        match nested("all").or(nested("any")).or(nested("not")) {
            Some((key, _)) if table.len() > 1 => Err(format!("{place}: `{key}` must be the only key of its condition")),
            Some(("not", inner)) => Ok(Condition::Not(Box::new(Condition::parse(inner, &join(at, "not"))?))),
            Some((key, Value::Array(items))) => {
                let parsed = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Condition::parse(item, &format!("{}[{i}]", join(at, key))))
                    .collect::<Result<_, _>>()?;
                Ok(if key == "all" { Condition::All(parsed) } else { Condition::Any(parsed) })
            }
            Some((key, other)) => Err(format!("{place}: `{key}` must be a list, found {other}")),
            None => Condition::parse_test(table, place),
        }
    }

    fn parse_test(table: &Map<String, Value>, place: &str) -> Result<Condition, String> {
        let field = match table.get("field") {
            Some(Value::String(field)) => Path::parse(field).map_err(|e| format!("{place}: {e}"))?,
            Some(other) => return Err(format!("{place}: `field` must be a string, found {other}")),
            None if table.is_empty() => {
                return Err(format!("{place}: empty condition; expected `all`, `any`, `not`, or `field` with an operator"));
            }
            None => return Err(format!("{place}: condition has no `field`")),
        };
        let known = |op: &str| OPERATORS.split(", ").any(|known| known == op);
        let mut tests = table.iter().filter(|(key, _)| *key != "field");
        if let Some((unknown, _)) = tests.clone().find(|(key, _)| !known(key)) {
            return Err(format!("{place}: unknown operator {unknown:?}; valid: {OPERATORS}"));
        }
        let Some((op, operand)) = tests.next() else {
            return Err(format!("{place}: condition on {:?} has no operator; one of: {OPERATORS}", field.as_str()));
        };
        if let Some((second, _)) = tests.next() {
            return Err(format!("{place}: condition on {:?} has two operators ({op}, {second}); combine them with `all`", field.as_str()));
        }
        let expect = |what: &str| format!("{place}: `{op}` needs {what}, found {operand}");
        let test = match (op.as_str(), operand) {
            ("eq", v) => Test::Eq(v.clone()),
            ("ne", v) => Test::Ne(v.clone()),
            ("gt" | "gte" | "lt" | "lte", Value::Number(_) | Value::String(_)) => {
                let v = operand.clone();
                match op.as_str() {
                    "gt" => Test::Gt(v),
                    "gte" => Test::Gte(v),
                    "lt" => Test::Lt(v),
                    _ => Test::Lte(v),
                }
            }
            ("gt" | "gte" | "lt" | "lte", _) => return Err(expect("a number or a string")),
            ("in", Value::Array(list)) => Test::In(list.clone()),
            ("not_in", Value::Array(list)) => Test::NotIn(list.clone()),
            ("in" | "not_in", _) => return Err(expect("a list")),
            ("exists", Value::Bool(b)) => Test::Exists(*b),
            ("exists", _) => return Err(expect("true or false")),
            (unknown, _) => {
                return Err(format!("{place}: unknown operator {unknown:?}; valid: {OPERATORS}"));
            }
        };
        Ok(Condition::Test(field, test))
    }

    /// Whether the condition holds for a payload.
    pub fn holds(&self, payload: &Value) -> bool {
        match self {
            Condition::All(all) => all.iter().all(|c| c.holds(payload)),
            Condition::Any(any) => any.iter().any(|c| c.holds(payload)),
            Condition::Not(inner) => !inner.holds(payload),
            Condition::Test(field, test) => test.holds(field.get(payload)),
        }
    }
}

impl Test {
    /// Whether the test holds for a field's value (`None`: missing).
    pub fn holds(&self, field: Option<&Value>) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let Some(v) = field else {
            return matches!(self, Test::Ne(_) | Test::NotIn(_) | Test::Exists(false));
        };
        match self {
            Test::Eq(x) => equal(v, x),
            Test::Ne(x) => !equal(v, x),
            Test::Gt(x) => matches!(compare(v, x), Some(Greater)),
            Test::Gte(x) => matches!(compare(v, x), Some(Greater | Equal)),
            Test::Lt(x) => matches!(compare(v, x), Some(Less)),
            Test::Lte(x) => matches!(compare(v, x), Some(Less | Equal)),
            Test::In(list) => list.iter().any(|x| equal(v, x)),
            Test::NotIn(list) => !list.iter().any(|x| equal(v, x)),
            Test::Exists(present) => *present,
        }
    }
}

/// JSON equality, except that numbers compare by value (`1 == 1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(std::cmp::Ordering::Equal),
        _ => a == b,
    }
}

/// Orders two numbers or two strings; anything else does not compare.
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        },
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") }
}

#[cfg(test)]
mod tests {
    use weir_sdk::serde_json::json;
    use weir_sdk::{Event, testing};

    use super::Filter;

    /// Runs `payloads` through a filter and returns which were kept.
    fn kept(config: &str, payloads: &[&str]) -> Vec<bool> {
        let events = payloads.iter().map(|p| Event::new("in", *p)).collect();
        testing::run::<Filter>(config, events)
            .into_iter()
            .map(|r| !r.expect("no error").is_empty())
            .collect()
    }

    fn init_error(config: &str) -> String {
        testing::init::<Filter>(config).err().expect("init should fail")
    }

    #[test]
    fn all_of_a_comparison_and_a_list() {
        let config = r#"{"all": [{"field": "price", "gt": 10}, {"field": "country", "in": ["DE", "FR"]}]}"#;
        let payloads =
            [r#"{"price": 12.5, "country": "DE"}"#, r#"{"price": 10, "country": "DE"}"#, r#"{"price": 50, "country": "US"}"#, r#"{"country": "FR"}"#];
        assert_eq!(kept(config, &payloads), [true, false, false, false]);
    }

    #[test]
    fn any_not_and_nesting() {
        let config = r#"{"any": [
            {"field": "vip", "eq": true},
            {"all": [{"field": "total", "gte": 100}, {"not": {"field": "user.test", "exists": true}}]}
        ]}"#;
        let payloads = [r#"{"vip": true}"#, r#"{"total": 100}"#, r#"{"total": 100, "user": {"test": null}}"#, r#"{"total": 99}"#];
        assert_eq!(kept(config, &payloads), [true, true, false, false]);
    }

    #[test]
    fn missing_fields_make_comparisons_false_but_ne_true() {
        let payload = [r#"{"other": 1}"#];
        assert_eq!(kept(r#"{"field": "x", "eq": 1}"#, &payload), [false]);
        assert_eq!(kept(r#"{"field": "x", "lt": 1}"#, &payload), [false]);
        assert_eq!(kept(r#"{"field": "x", "in": [1]}"#, &payload), [false]);
        assert_eq!(kept(r#"{"field": "x", "ne": 1}"#, &payload), [true]);
        assert_eq!(kept(r#"{"field": "x", "not_in": [1]}"#, &payload), [true]);
        assert_eq!(kept(r#"{"field": "x", "exists": false}"#, &payload), [true]);
    }

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let config = r#"{"all": [{"field": "user.id", "eq": 7}, {"field": "items.1.sku", "eq": "B"}]}"#;
        let payloads = [r#"{"user": {"id": 7}, "items": [{"sku": "A"}, {"sku": "B"}]}"#, r#"{"user": {"id": 7}, "items": [{"sku": "A"}]}"#];
        assert_eq!(kept(config, &payloads), [true, false]);
    }

    #[test]
    fn numbers_compare_by_value_and_strings_lexically() {
        assert_eq!(kept(r#"{"field": "n", "eq": 1}"#, &[r#"{"n": 1.0}"#, r#"{"n": "1"}"#]), [true, false]);
        assert_eq!(kept(r#"{"field": "n", "lte": 2.5}"#, &[r#"{"n": 2}"#, r#"{"n": 3}"#]), [true, false]);
        let config = r#"{"field": "day", "gte": "2024-01-01"}"#;
        assert_eq!(kept(config, &[r#"{"day": "2024-03-01"}"#, r#"{"day": "2023-12-31"}"#]), [true, false]);
        // A string never orders against a number.
        assert_eq!(kept(r#"{"field": "n", "gt": 1}"#, &[r#"{"n": "5"}"#]), [false]);
    }

    #[test]
    fn a_non_json_payload_is_invalid() {
        let out = testing::run_one::<Filter>(r#"{"field": "a", "exists": true}"#, Event::new("in", "nope"));
        let error = out.unwrap_err();
        assert!(error.is_invalid());
        assert!(error.message().starts_with("payload is not valid JSON: "), "{error}");
    }

    #[test]
    fn a_kept_event_is_passed_through_unchanged() {
        let event = Event::new_json("orders", &json!({"price": 20})).unwrap().with_header("h", "v");
        let out = testing::run_one::<Filter>(r#"{"field": "price", "gt": 10}"#, event.clone());
        assert_eq!(out, Ok(vec![event]));
    }

    #[test]
    fn config_errors_name_the_condition() {
        assert_eq!(
            init_error(r#"{"all": [{"field": "a", "eq": 1}, {"field": "price", "gtt": 10}]}"#),
            r#"all[1]: unknown operator "gtt"; valid: eq, ne, gt, gte, lt, lte, in, not_in, exists"#
        );
        assert_eq!(
            init_error(r#"{"all": [{"any": [{"field": "price"}]}]}"#),
            r#"all[0].any[0]: condition on "price" has no operator; one of: eq, ne, gt, gte, lt, lte, in, not_in, exists"#
        );
        assert_eq!(
            init_error(r#"{"field": "price", "gt": 1, "lt": 5}"#),
            r#"config: condition on "price" has two operators (gt, lt); combine them with `all`"#
        );
        assert_eq!(init_error(r#"{"not": {"field": "x", "in": 3}}"#), "not: `in` needs a list, found 3");
        assert_eq!(init_error(r#"{"field": "x", "gt": [1]}"#), "config: `gt` needs a number or a string, found [1]");
        assert_eq!(init_error(r#"{"field": "x", "exists": "yes"}"#), r#"config: `exists` needs true or false, found "yes""#);
        assert_eq!(init_error(r#"{"any": {"field": "x"}}"#), r#"config: `any` must be a list, found {"field":"x"}"#);
        assert_eq!(init_error(r#"{"all": [], "field": "x"}"#), "config: `all` must be the only key of its condition");
        assert_eq!(init_error(r#"{"eq": 1}"#), "config: condition has no `field`");
        assert_eq!(init_error(r#"{"field": 3, "eq": 1}"#), "config: `field` must be a string, found 3");
        assert_eq!(init_error(r#"{"all": ["x"]}"#), r#"all[0]: expected a condition table, found "x""#);
        assert_eq!(init_error(r#"{"field": "a..b", "eq": 1}"#), r#"config: path "a..b" has an empty segment"#);
        assert!(init_error("{}").starts_with("config: empty condition"));
    }
}
