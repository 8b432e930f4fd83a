//! Redaction of sensitive values: one place decides what may leave the process.
//!
//! Terraform marks sensitive values with `*_sensitive` masks but prints them in clear, and
//! it does not carry sensitivity into computed attributes (`terraform_data.output` repeats a
//! sensitive input). So besides the masks, every string that equals or contains a sensitive
//! string seen anywhere in the same plan is replaced too.

use aho_corasick::AhoCorasick;
use serde_json::Value;

/// What a sensitive value is written as.
pub const SENSITIVE: &str = "(sensitive)";
/// What a value unknown until apply is written as.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";
/// Shorter strings are too common to hunt for inside other strings (`"a"`, `"on"`); the
/// masks still hide them where Terraform marks them.
pub const MIN_SECRET_LEN: usize = 4;

/// A mask (`after_unknown`, `before_sensitive`, ...) at one position of a value: it mirrors
/// the value's shape with `true` on affected leaves, and a bare `true` covers everything below.
#[derive(Debug, Clone, Copy)]
pub struct Mask<'v>(pub Option<&'v Value>);

impl<'v> Mask<'v> {
    pub const NONE: Mask<'static> = Mask(None);

    /// True when this position (and so everything below it) is marked.
    pub fn is_set(self) -> bool {
        matches!(self.0, Some(Value::Bool(true)))
    }

    /// The mask of an object member.
    pub fn key(self, key: &str) -> Mask<'v> {
        match self.0 {
            Some(Value::Bool(true)) => self,
            Some(Value::Object(map)) => Mask(map.get(key)),
            _ => Mask(None),
        }
    }

    /// The mask of a list element.
    pub fn index(self, index: usize) -> Mask<'v> {
        match self.0 {
            Some(Value::Bool(true)) => self,
            Some(Value::Array(items)) => Mask(items.get(index)),
            _ => Mask(None),
        }
    }

    /// True when anything at or below this position is marked.
    pub fn any(self) -> bool {
        fn any(value: &Value) -> bool {
            match value {
                Value::Bool(b) => *b,
                Value::Object(map) => map.values().any(any),
                Value::Array(items) => items.iter().any(any),
                _ => false,
            }
        }
        self.0.is_some_and(any)
    }

    /// Keys an object mask names (unknown attributes are absent from `after`).
    pub fn keys(self) -> impl Iterator<Item = &'v String> {
        let map = match self.0 {
            Some(Value::Object(map)) => Some(map),
            _ => None,
        };
        map.into_iter().flat_map(|m| m.keys())
    }
}

/// Collects the sensitive strings of one plan, to be hunted everywhere afterwards.
#[derive(Debug, Default)]
pub struct SecretCollector {
    secrets: Vec<String>,
}

impl SecretCollector {
    /// Records every string leaf of `value` that `mask` (or `inherited`) marks sensitive.
    pub fn collect_masked(&mut self, value: &Value, mask: Mask<'_>, inherited: bool) {
        let marked = inherited || mask.is_set();
        match value {
            Value::String(s) if marked => self.add(s),
            Value::Object(map) => {
                for (key, child) in map {
                    self.collect_masked(child, mask.key(key), marked);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    self.collect_masked(child, mask.index(i), marked);
                }
            }
            _ => {}
        }
    }

    /// Records a known secret (a value from an `env_files` entry, say).
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() >= MIN_SECRET_LEN {
            self.secrets.push(secret.to_owned());
        }
    }

    pub fn finish(mut self) -> Redactor {
        self.secrets.sort();
        self.secrets.dedup();
        // Longest first, so that a secret containing another is replaced whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let matcher = if self.secrets.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&self.secrets)
                .ok()
        };
        Redactor { matcher }
    }
}

/// Replaces strings that carry a secret of the plan.
#[derive(Debug, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    /// True when `text` contains a secret.
    pub fn finds(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// Every string leaf that contains a secret becomes `"(sensitive)"`.
    pub fn redact_value(&self, value: &mut Value) {
        if self.matcher.is_none() {
            return;
        }
        match value {
            Value::String(s) if self.finds(s) => *value = Value::String(SENSITIVE.to_owned()),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }

    /// Free text (an attribute path, an error message): each secret is replaced in place.
    pub fn redact_text(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                let replacements = vec![SENSITIVE; m.patterns_len()];
                m.replace_all(text, &replacements)
            }
            _ => text.to_owned(),
        }
    }
}

/// A copy of `value` fit to be shown: marked leaves become `"(sensitive)"`, leaves that the
/// unknown mask marks become `"(known after apply)"` (also where `after` omits them).
pub fn render(
    value: Option<&Value>,
    sensitive: Mask<'_>,
    inherited: bool,
    unknown: Mask<'_>,
) -> Value {
    let marked = inherited || sensitive.is_set();
    if unknown.is_set() {
        return Value::String(KNOWN_AFTER_APPLY.to_owned());
    }
    match value {
        None | Some(Value::Null) => {
            if unknown.any() {
                // An object whose members are all still unknown.
                let mut map = serde_json::Map::new();
                for key in unknown.keys() {
                    map.insert(
                        key.clone(),
                        render(None, sensitive.key(key), marked, unknown.key(key)),
                    );
                }
                Value::Object(map)
            } else {
                Value::Null
            }
        }
        Some(Value::Object(map)) => {
            let mut out = serde_json::Map::new();
            for (key, child) in map {
                out.insert(
                    key.clone(),
                    render(Some(child), sensitive.key(key), marked, unknown.key(key)),
                );
            }
            for key in unknown.keys() {
                if !out.contains_key(key) {
                    out.insert(
                        key.clone(),
                        render(None, sensitive.key(key), marked, unknown.key(key)),
                    );
                }
            }
            Value::Object(out)
        }
        Some(Value::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, child)| render(Some(child), sensitive.index(i), marked, unknown.index(i)))
                .collect(),
        ),
        Some(_) if marked => Value::String(SENSITIVE.to_owned()),
        Some(leaf) => leaf.clone(),
    }
}
