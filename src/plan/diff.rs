//! Attribute-level diff of one resource change (interface §7): objects key by key, lists of
//! equal length index by index, and the whole value where the two sides do not line up.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::Value;

use super::redact::{KNOWN_AFTER_APPLY, Mask, SENSITIVE, render};
use crate::report::AttributeChange;

/// The two sides of a change and their masks.
#[derive(Debug, Clone, Copy)]
pub struct Sides<'v> {
    /// What the plan saw in the real infrastructure.
    pub actual: Option<&'v Value>,
    /// What the code declares.
    pub expected: Option<&'v Value>,
    pub actual_sensitive: Mask<'v>,
    pub expected_sensitive: Mask<'v>,
    /// `after_unknown`: positions of `expected` known only after apply.
    pub expected_unknown: Mask<'v>,
}

impl<'v> Sides<'v> {
    fn key(self, key: &str) -> Sides<'v> {
        Sides {
            actual: member(self.actual, key),
            expected: member(self.expected, key),
            actual_sensitive: self.actual_sensitive.key(key),
            expected_sensitive: self.expected_sensitive.key(key),
            expected_unknown: self.expected_unknown.key(key),
        }
    }

    fn index(self, index: usize) -> Sides<'v> {
        Sides {
            actual: element(self.actual, index),
            expected: element(self.expected, index),
            actual_sensitive: self.actual_sensitive.index(index),
            expected_sensitive: self.expected_sensitive.index(index),
            expected_unknown: self.expected_unknown.index(index),
        }
    }
}

fn member<'v>(value: Option<&'v Value>, key: &str) -> Option<&'v Value> {
    match value {
        Some(Value::Object(map)) => map.get(key),
        _ => None,
    }
}

fn element(value: Option<&Value>, index: usize) -> Option<&Value> {
    match value {
        Some(Value::Array(items)) => items.get(index),
        _ => None,
    }
}

/// Every differing path of `sides`, deepest first-class values, in key order.
pub fn diff(sides: Sides<'_>) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    let mut path = String::new();
    walk(sides, false, &mut path, &mut out);
    out
}

fn walk(sides: Sides<'_>, inherited: bool, path: &mut String, out: &mut Vec<AttributeChange>) {
    let sensitive =
        inherited || sides.actual_sensitive.is_set() || sides.expected_sensitive.is_set();
    if sides.expected_unknown.is_set() {
        let actual = if sensitive && !is_null(sides.actual) {
            Value::String(SENSITIVE.to_owned())
        } else {
            render(sides.actual, sides.actual_sensitive, sensitive, Mask::NONE)
        };
        out.push(AttributeChange {
            path: path.clone(),
            actual,
            expected: Value::String(KNOWN_AFTER_APPLY.to_owned()),
        });
        return;
    }
    match (sides.actual, sides.expected) {
        (Some(Value::Object(a)), Some(Value::Object(e))) => {
            let unknown_only = sides
                .expected_unknown
                .keys()
                .any(|k| !a.contains_key(k) && !e.contains_key(k));
            let keys: Vec<&String> = if unknown_only {
                let all: BTreeSet<&String> = a
                    .keys()
                    .chain(e.keys())
                    .chain(sides.expected_unknown.keys())
                    .collect();
                all.into_iter().collect()
            } else {
                merged(a.keys(), e.keys())
            };
            for key in keys {
                let len = path.len();
                push_key(path, key);
                walk(sides.key(key), sensitive, path, out);
                path.truncate(len);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(e))) if a.len() == e.len() => {
            for i in 0..a.len() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                walk(sides.index(i), sensitive, path, out);
                path.truncate(len);
            }
        }
        (actual, expected) => {
            if same(actual, expected) && !sides.expected_unknown.any() {
                return;
            }
            let (actual, expected) = if sensitive {
                (hide(actual), hide(expected))
            } else {
                (
                    render(actual, sides.actual_sensitive, false, Mask::NONE),
                    render(
                        expected,
                        sides.expected_sensitive,
                        false,
                        sides.expected_unknown,
                    ),
                )
            };
            out.push(AttributeChange {
                path: path.clone(),
                actual,
                expected,
            });
        }
    }
}

/// The union of two sorted key lists, in order (objects of a plan share most keys).
fn merged<'k>(
    a: impl Iterator<Item = &'k String>,
    b: impl Iterator<Item = &'k String>,
) -> Vec<&'k String> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    let mut out = Vec::new();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x == y => {
                b.next();
                a.next()
            }
            (Some(x), Some(y)) if x < y => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => return out,
        };
        out.extend(next);
    }
}

fn is_null(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

/// A missing key and a null are the same to Terraform.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        (a, b) => is_null(a) && is_null(b),
    }
}

fn hide(value: Option<&Value>) -> Value {
    if is_null(value) {
        Value::Null
    } else {
        Value::String(SENSITIVE.to_owned())
    }
}

/// Appends one object key to a path: `a.b` for identifier-like keys, `a["x.y"]` otherwise.
pub fn push_key(path: &mut String, key: &str) {
    if is_identifier(key) {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sides<'v>(a: &'v Value, e: &'v Value, unknown: &'v Value, sens: &'v Value) -> Sides<'v> {
        Sides {
            actual: Some(a),
            expected: Some(e),
            actual_sensitive: Mask(Some(sens)),
            expected_sensitive: Mask(Some(sens)),
            expected_unknown: Mask(Some(unknown)),
        }
    }

    #[test]
    fn paths_use_dots_brackets_and_indexes() {
        let a =
            json!({"disk": [{"size": 10}], "tags": {"env": "a", "app.io/name": "x"}, "same": 1});
        let e =
            json!({"disk": [{"size": 20}], "tags": {"env": "b", "app.io/name": "y"}, "same": 1});
        let got: Vec<String> = diff(sides(&a, &e, &json!({}), &json!({})))
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(got, ["disk[0].size", "tags[\"app.io/name\"]", "tags.env"]);
    }

    #[test]
    fn lists_of_other_length_and_type_changes_give_the_whole_value() {
        let a = json!({"l": [1, 2], "t": "x", "n": null});
        let e = json!({"l": [1, 2, 3], "t": 5, "n": {"k": 1}});
        let got = diff(sides(&a, &e, &json!({}), &json!({})));
        assert_eq!(got[0].path, "l");
        assert_eq!(got[0].expected, json!([1, 2, 3]));
        assert_eq!(got[1].path, "n");
        assert_eq!(got[1].actual, Value::Null);
        assert_eq!(got[2].path, "t");
    }

    #[test]
    fn unknown_and_sensitive_values_are_never_shown() {
        let a = json!({"id": "1", "pw": "hunter22", "o": {"x": "hunter22"}});
        let e = json!({"pw": "n3w-pass", "o": {"x": "y"}});
        let got = diff(sides(
            &a,
            &e,
            &json!({"id": true}),
            &json!({"pw": true, "o": true}),
        ));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].path, "id");
        assert_eq!(got[0].expected, json!(KNOWN_AFTER_APPLY));
        assert_eq!(got[1].path, "o.x");
        assert_eq!(got[1].actual, json!(SENSITIVE));
        assert_eq!(got[2].path, "pw");
        assert_eq!(got[2].expected, json!(SENSITIVE));
        assert!(!format!("{got:?}").contains("hunter22"));
    }
}
